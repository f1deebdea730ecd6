//! One image whose content cannot be read must not take the daemon down for everyone: the list
//! leaves it out, inspecting it fails with a clear message, garbage collection goes on for every
//! other image, and content of that kind is refused when it is loaded.
//!
//! hoistd refuses to create such records, so the test plants them as an earlier hoistd could
//! have left them: blobs in the data root and records in the `meta.json` that hoistd migrates
//! into its database at start-up.

mod foundation_support;

use std::path::Path;

use foundation_support::*;
use hoist_testkit::archive::{ArchiveBuilder, ArchiveFormat, RawData, RawKind};
use hoist_testkit::docker::DockerCli;
use hoist_testkit::image::{Flavor, Image, ImageBuilder, LayerSpec};

const MAX_MANIFEST_BYTES: usize = 4 << 20;

fn write_blob(data_root: &Path, bytes: &[u8]) -> String {
    let hex = digest_of(bytes).trim_start_matches("sha256:").to_owned();
    std::fs::write(data_root.join("blobs/sha256").join(&hex), bytes).expect("write blob");
    format!("sha256:{hex}")
}

fn record(media_type: &str, digest: &str, size: usize) -> serde_json::Value {
    serde_json::json!({
        "target": {"mediaType": media_type, "digest": digest, "size": size},
        "created_unix_nanos": 1_700_000_000_000_000_000u64,
        "updated_unix_nanos": 1_700_000_000_000_000_000u64,
    })
}

fn image(seed: u64) -> Image {
    ImageBuilder::new(Flavor::Oci)
        .seed(seed)
        .layer(LayerSpec::single(4096))
        .build()
}

fn load(docker: &DockerCli, scratch: &Scratch, image: &Image, tag: &str) {
    let archive = ArchiveBuilder::new(ArchiveFormat::Oci).image(image, &[tag]);
    docker_load(docker, &scratch.archive(&format!("{tag}.tar"), &archive));
}

#[test]
fn an_unreadable_image_leaves_list_inspect_and_gc_working_for_the_others() {
    let mut daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let scratch = Scratch::new();
    let (good, doomed, named) = (image(1), image(2), image(3));
    load(&docker, &scratch, &good, "good:1");
    load(&docker, &scratch, &doomed, "doomed:1");

    // Planted while the daemon is down: a manifest over the limit that names `named`'s blobs
    // (written alongside), and a "manifest" that is not JSON.
    daemon.stop();
    let data_root = daemon.data_root();
    for blob in named.blobs() {
        write_blob(&data_root, &blob.bytes());
    }
    let mut oversized = named.manifest_json();
    oversized["annotations"] = serde_json::json!({"padding": "x".repeat(MAX_MANIFEST_BYTES)});
    let oversized = serde_json::to_vec(&oversized).expect("encode");
    let oversized_digest = write_blob(&data_root, &oversized);
    let corrupt = b"\x1f\x8b not a manifest at all";
    let corrupt_digest = write_blob(&data_root, corrupt);
    let manifest_type = named.manifest.media_type.as_str();
    let legacy = serde_json::json!({
        "version": 1,
        "images": {
            "docker.io/library/oversized:1": record(manifest_type, &oversized_digest, oversized.len()),
            "docker.io/library/corrupt:1": record(manifest_type, &corrupt_digest, corrupt.len()),
        },
        "labels": {},
    });
    std::fs::write(data_root.join("meta.json"), legacy.to_string()).expect("write meta.json");
    daemon.restart();
    assert!(
        !data_root.join("meta.json").exists(),
        "migrated at start-up"
    );

    // The list shows every other image.
    let listed = docker_ok(&docker, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let mut listed: Vec<&str> = listed.lines().collect();
    listed.sort();
    assert_eq!(listed, ["doomed:1", "good:1"]);
    assert_eq!(inspect(&docker, "good:1")["Id"], good.digest());

    // The unreadable ones fail alone, saying why (500, as moby reports content it cannot read).
    let out = docker_fails(&docker, &["image", "inspect", "oversized:1"]);
    assert!(
        out.stderr.contains(&format!(
            "manifest {oversized_digest} cannot be read: it is {} bytes, more than the 4194304 bytes a manifest may have",
            oversized.len()
        )),
        "{out}"
    );
    let response = daemon.request("GET", "/v1.50/images/oversized:1/json", &[], b"");
    assert_eq!(response.status, 500);
    let body: serde_json::Value = serde_json::from_slice(&response.body).expect("JSON error body");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with(&format!("manifest {oversized_digest} cannot be read"))),
        "{body}"
    );
    let out = docker_fails(&docker, &["history", "corrupt:1"]);
    assert!(
        out.stderr
            .contains(&format!("manifest {corrupt_digest} is not valid JSON")),
        "{out}"
    );
    assert!(
        daemon
            .log()
            .contains("leaving an image whose content cannot be read out of the list")
    );

    // Garbage collection still runs: removing an image frees its blobs, and what the oversized
    // manifest names is kept.
    let before = stored_blobs(&data_root);
    for blob in doomed.contents() {
        assert!(before.contains_key(blob.hex()), "{} stored", blob.hex());
    }
    docker_ok(&docker, &["rmi", "doomed:1"]);
    let after = stored_blobs(&data_root);
    for blob in doomed.contents() {
        assert!(!after.contains_key(blob.hex()), "{} collected", blob.hex());
    }
    for blob in good.contents().chain(named.blobs()) {
        assert!(after.contains_key(blob.hex()), "{} kept", blob.hex());
    }
    assert!(daemon.log().contains("keeping every blob it names"));

    // The bad records can be removed like any other, and then their content goes too.
    docker_ok(&docker, &["rmi", "oversized:1", "corrupt:1"]);
    let listed = docker_ok(&docker, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(listed, "good:1\n");
    let left = stored_blobs(&data_root);
    let mut good_blobs: Vec<&str> = good.contents().map(|b| b.hex()).collect();
    good_blobs.sort();
    assert_eq!(
        left.keys().map(String::as_str).collect::<Vec<_>>(),
        good_blobs
    );
}

#[test]
fn a_docker_archive_listing_30000_layers_is_refused_and_leaves_nothing() {
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let scratch = Scratch::new();
    let good = image(4);
    load(&docker, &scratch, &good, "good:1");
    let before = stored_blobs(&daemon.data_root());

    // A valid archive, whose manifest.json then lists its one layer 30,000 times, with a config
    // listing its diff_id as often (so every layer checks out): the manifest hoist would build
    // for it is over 4 MiB.
    let many = image(5);
    let mut raw = ArchiveBuilder::new(ArchiveFormat::DockerBlobs)
        .image(&many, &["many:1"])
        .to_raw();
    let file = |raw: &hoist_testkit::archive::RawArchive, name: &str| -> Vec<u8> {
        let entry = raw
            .find(name)
            .unwrap_or_else(|| panic!("{name} in the archive"));
        let RawKind::File(data) = &entry.kind else {
            panic!("{name} is not a file");
        };
        RawData::bytes(data)
    };
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&file(&raw, "manifest.json")).expect("manifest.json");
    let config_path = manifest[0]["Config"].as_str().expect("Config").to_owned();
    let mut config: serde_json::Value =
        serde_json::from_slice(&file(&raw, &config_path)).expect("config");
    let diff_id = config["rootfs"]["diff_ids"][0].clone();
    config["rootfs"]["diff_ids"] = serde_json::Value::Array(vec![diff_id; 30_000]);
    let config = serde_json::to_vec(&config).expect("encode config");
    let config_path = format!(
        "blobs/sha256/{}",
        digest_of(&config).trim_start_matches("sha256:")
    );
    raw.push(&config_path, RawKind::File(RawData::Bytes(config)));
    manifest[0]["Config"] = config_path.into();
    let layer = manifest[0]["Layers"][0].clone();
    manifest[0]["Layers"] = serde_json::Value::Array(vec![layer; 30_000]);
    raw.replace(
        "manifest.json",
        serde_json::to_vec(&manifest).expect("encode"),
    );
    let path = scratch.raw_archive("many.tar", &raw);

    let out = docker_fails(&docker, &["load", "-i", path.to_str().expect("utf-8")]);
    assert!(
        out.stderr
            .contains("image docker.io/library/many:1 refused: manifest sha256:")
            && out
                .stderr
                .contains("more than the 4194304 bytes a manifest may have"),
        "{out}"
    );

    // Nothing of it stays, and the daemon serves the others.
    let listed = docker_ok(&docker, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(listed, "good:1\n");
    assert_eq!(stored_blobs(&daemon.data_root()), before);
    assert_eq!(inspect(&docker, "good:1")["Id"], good.digest());
}
