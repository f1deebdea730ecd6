//! skopeo's `docker-daemon:` transport (containers/image, API 1.22) against hoistd started with
//! `DOCKER_MIN_API_VERSION=1.22`: an image copied from the real registry into hoistd, and from
//! hoistd into the registry, checked against the generator's digests and bytes.

mod foundation_support;

use std::io::Write;

use foundation_support::*;
use hoist_testkit::hoistd::{Hoistd, HoistdOptions};
use hoist_testkit::image::{Flavor, Image, ImageBuilder, LayerSpec};
use hoist_testkit::registry::TestRegistry;
use hoist_testkit::skopeo::skopeo;
use sha2::Digest as _;

fn start_for_api_1_22() -> Hoistd {
    start_daemon_with(HoistdOptions {
        env: vec![("DOCKER_MIN_API_VERSION".into(), "1.22".into())],
        ..HoistdOptions::default()
    })
}

fn daemon_host(daemon: &Hoistd) -> String {
    format!("unix://{}", daemon.socket().display())
}

fn image() -> Image {
    ImageBuilder::new(Flavor::Docker)
        .layers([
            LayerSpec::single(300 << 10),
            LayerSpec::files(&[1000, 20_000]),
        ])
        .build()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let out = std::process::Command::new("gzip")
        .args(["-dc"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            let mut stdin = child.stdin.take().expect("gzip stdin");
            let bytes = bytes.to_vec();
            let writer = std::thread::spawn(move || stdin.write_all(&bytes));
            let out = child.wait_with_output();
            writer.join().expect("gzip writer thread")?;
            out
        })
        .expect("run gzip -dc");
    assert!(out.status.success(), "gzip -dc failed");
    out.stdout
}

fn registry_blob(registry: &TestRegistry, repo: &str, digest: &str) -> Vec<u8> {
    let response = registry
        .client()
        .get(format!("{}/v2/{repo}/blobs/{digest}", registry.url()))
        .send()
        .expect("GET blob");
    assert_eq!(response.status(), 200, "GET blob {digest}");
    response.bytes().expect("blob body").to_vec()
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

#[test]
fn skopeo_copies_into_and_out_of_hoistd() {
    let registry = TestRegistry::shared();
    let daemon = start_for_api_1_22();
    let host = daemon_host(&daemon);
    let image = image();
    let source = unique_repo("skopeo/source");
    registry.push_image(&source, "1", &image);
    let local = format!("{}:1", unique_repo("skopeo/local"));

    // Registry → hoistd: `POST /v1.22/images/load`. skopeo returns once the response headers
    // arrive, so the image must exist by then.
    let out = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--dest-daemon-host",
        &host,
        &format!("docker://{}/{source}:1", registry.host()),
        &format!("docker-daemon:{local}"),
    ]);
    out.assert_success("skopeo copy docker:// docker-daemon:");
    let inspected = daemon.request("GET", &format!("/v1.22/images/{local}/json"), &[], b"");
    assert_eq!(inspected.status, 200, "{}", inspected.text());
    let inspected = inspected.json();
    assert_eq!(inspected["RepoTags"], serde_json::json!([local]));
    assert_eq!(
        inspected["RootFS"]["Layers"],
        serde_json::json!(image.diff_ids())
    );
    // skopeo hands the registry's blobs over as they are: the store holds exactly those.
    let stored = stored_blobs(&daemon.data_root());
    for blob in image.blobs() {
        assert!(
            stored.contains_key(blob.hex()),
            "{} not in the store",
            blob.digest
        );
    }

    // hoistd → registry: `GET /v1.22/images/get`. skopeo reads the docker-archive, hands the
    // layers over uncompressed and compresses them for the registry: the config keeps its
    // bytes, each layer its content (its DiffID).
    let destination = unique_repo("skopeo/destination");
    let out = skopeo(&[
        "copy",
        "--src-daemon-host",
        &host,
        "--dest-tls-verify=false",
        &format!("docker-daemon:{local}"),
        &format!("docker://{}/{destination}:1", registry.host()),
    ]);
    out.assert_success("skopeo copy docker-daemon: docker://");
    let manifest = registry.get_manifest(&destination, "1");
    let manifest: serde_json::Value =
        serde_json::from_slice(&manifest.bytes).expect("manifest JSON");
    assert_eq!(manifest["config"]["digest"], image.config_digest());
    assert_eq!(
        registry_blob(registry, &destination, image.config_digest()),
        image.config_bytes()
    );
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), image.layers.len());
    for (layer, expected) in layers.iter().zip(&image.layers) {
        let digest = layer["digest"].as_str().expect("layer digest");
        let bytes = registry_blob(registry, &destination, digest);
        assert_eq!(sha256(&gunzip(&bytes)), expected.diff_id, "layer {digest}");
    }
}

#[test]
fn skopeo_is_refused_without_an_older_minimum_api_version() {
    let registry = TestRegistry::shared();
    let daemon = start_daemon();
    let out = skopeo(&[
        "copy",
        "--src-daemon-host",
        &daemon_host(&daemon),
        "--dest-tls-verify=false",
        "docker-daemon:busybox:latest",
        &format!(
            "docker://{}/{}:1",
            registry.host(),
            unique_repo("skopeo/refused")
        ),
    ]);
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr
            .contains("client version 1.22 is too old. Minimum supported API version is 1.24"),
        "{out}"
    );
}
