//! `docker pull --platform all`: every manifest of an index (platform images and attestation
//! manifests) with all their content, and the air-gapped round trip that needs it: pull all,
//! `docker save`, `docker load` into another daemon, `docker push` elsewhere, which must give
//! back the source index byte for byte. Sources are seeded by skopeo from the generator's OCI
//! layout; the truth is the generator's bytes and what skopeo and the registries read back.

mod push_support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

use hoist_testkit::docker::DockerCli;
use hoist_testkit::image::{
    BlobDir, Flavor, Image, ImageBuilder, ImageIndex, IndexBuilder, LayerSpec, Platform,
    sha256_digest,
};
use hoist_testkit::proxy::{FaultAction, FaultProxy, FaultRule};
use hoist_testkit::registry::{RegistryOptions, TestRegistry};
use hoist_testkit::skopeo;
use push_support::*;

/// linux/amd64, linux/arm64/v8 and linux/arm/v7 images with BuildKit-style attestation
/// manifests; arm64 shares amd64's bottom layer, as platforms built from one context do.
fn three_platform_index(seed: u64) -> ImageIndex {
    let dir = BlobDir::new();
    let image = |platform: &str, seed: u64| {
        ImageBuilder::new(Flavor::Oci)
            .seed(seed)
            .platform(Platform::parse(platform))
            .blob_dir(&dir)
    };
    let amd64 = image("linux/amd64", seed)
        .layers([LayerSpec::single(30_000), LayerSpec::single(4_000)])
        .build();
    let arm64 = image("linux/arm64/v8", seed + 1)
        .existing_layer(&amd64.layers[0])
        .layer(LayerSpec::single(5_000))
        .build();
    let arm = image("linux/arm/v7", seed + 2)
        .layers([LayerSpec::single(20_000), LayerSpec::single(2_000)])
        .build();
    IndexBuilder::new(Flavor::Oci)
        .image(amd64)
        .image(arm64)
        .image(arm)
        .with_attestations()
        .build()
}

/// Seeds `registry` with `index` as `repo:1` through skopeo and checks, with `skopeo inspect
/// --raw`, that the registry serves the generator's index bytes.
fn seed(registry: &TestRegistry, index: &ImageIndex, repo: &str) {
    skopeo::push_index(index, &registry.host(), repo, "1");
    assert_eq!(
        raw_manifest(&format!("{}/{repo}:1", registry.host())),
        index.index_bytes(),
        "skopeo inspect --raw of the source"
    );
}

/// `skopeo inspect --raw docker://<reference>`: the manifest bytes as the registry serves them.
fn raw_manifest(reference: &str) -> Vec<u8> {
    let out = skopeo::skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{reference}"),
    ]);
    out.assert_success("skopeo inspect --raw");
    out.stdout.into_bytes()
}

/// `docker save -o <dir>/<file> <name>`; returns the archive's path.
fn save(cli: &DockerCli, dir: &Path, name: &str) -> std::path::PathBuf {
    let archive = dir.join("saved.tar");
    cli.run(&["save", "-o", archive.to_str().expect("utf-8 path"), name])
        .assert_success("docker save");
    archive
}

/// The archive's `blobs/sha256/` files: digest of the path → digest of the bytes.
fn archive_blobs(archive: &Path) -> BTreeMap<String, String> {
    let mut blobs = BTreeMap::new();
    let file = std::fs::File::open(archive).expect("open archive");
    for entry in tar::Archive::new(file).entries().expect("tar entries") {
        let mut entry = entry.expect("tar entry");
        let path = entry.path().expect("entry path").display().to_string();
        let Some(hex) = path.strip_prefix("blobs/sha256/") else {
            continue;
        };
        if hex.is_empty() {
            continue;
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).expect("read tar entry");
        blobs.insert(format!("sha256:{hex}"), sha256_digest(&bytes));
    }
    blobs
}

/// Everything the index consists of, by digest: the index, every child manifest, every config
/// and layer.
fn index_contents(index: &ImageIndex) -> BTreeSet<String> {
    index.contents().map(|b| b.digest.clone()).collect()
}

fn platform_layers(index: &ImageIndex) -> impl Iterator<Item = &str> {
    index
        .images
        .iter()
        .flat_map(|i| &i.layers)
        .map(|l| l.blob.digest.as_str())
}

fn attestation_blobs(index: &ImageIndex) -> impl Iterator<Item = &str> {
    index
        .attestations
        .iter()
        .flat_map(Image::blobs)
        .map(|b| b.digest.as_str())
}

#[test]
fn pull_all_fetches_every_manifest_and_blob_of_the_index() {
    let registry = TestRegistry::shared();
    let index = three_platform_index(101);
    let repo = unique_repo("allplat/pull");
    seed(registry, &index, &repo);
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let name = format!("{}/{repo}:1", registry.host());
    let since = unix_now();

    let out = cli.run(&["pull", "--platform", "all", &name]);
    out.assert_success("docker pull --platform all");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[0],
        format!("1: Pulling from {repo}"),
        "{}",
        out.stdout
    );
    // Every layer of every platform is shown once, as a layer of a pull is; the layer arm64
    // shares with amd64 too. Attestation blobs are not image layers: no lines, as in moby.
    // (`Waiting` comes for the layers beyond `max-concurrent-downloads`.)
    for layer in platform_layers(&index) {
        let id = layer_id(layer);
        let shown: Vec<&str> = layer_lines(&out.stdout, id)
            .into_iter()
            .filter(|l| *l != "Waiting")
            .collect();
        assert_eq!(
            shown,
            [
                "Pulling fs layer",
                "Verifying Checksum",
                "Download complete",
                "Pull complete"
            ],
            "layer {id}:\n{}",
            out.stdout
        );
    }
    for blob in attestation_blobs(&index) {
        assert!(
            layer_lines(&out.stdout, layer_id(blob)).is_empty(),
            "{}",
            out.stdout
        );
    }
    assert_eq!(
        &lines[lines.len() - 3..],
        [
            format!("Digest: {}", index.digest()),
            format!("Status: Downloaded newer image for {name}"),
            name.clone(),
        ],
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("WARNING"), "{}", out.stdout);
    let id = cli.run(&["image", "inspect", "--format", "{{.Id}}", &name]);
    id.assert_success("docker image inspect");
    assert_eq!(id.stdout.trim(), index.digest());

    // The store holds the whole index: a save carries exactly its content, byte for byte.
    let dir = tempfile::tempdir().expect("temp dir");
    let saved = archive_blobs(&save(&cli, dir.path(), &name));
    assert_eq!(
        saved.keys().cloned().collect::<BTreeSet<_>>(),
        index_contents(&index),
        "blobs of the saved archive"
    );
    for (path_digest, content_digest) in &saved {
        assert_eq!(path_digest, content_digest, "saved blob content");
    }

    // One pull event, as for any pull of a tag.
    let until = unix_now() + 1;
    let events = cli.run(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &until.to_string(),
        "--filter",
        "type=image",
        "--format",
        "{{.Action}} {{.Actor.ID}}",
        "--filter",
        "event=pull",
    ]);
    events.assert_success("docker events");
    let familiar = name.clone();
    assert_eq!(
        events.stdout.lines().collect::<Vec<_>>(),
        [format!("pull {familiar}")],
        "{}",
        events.stdout
    );

    // Everything is there: a second pull of every platform fetches nothing.
    let again = cli.run(&["pull", "--platform", "all", &name]);
    again.assert_success("second docker pull --platform all");
    assert_eq!(
        again.stdout.lines().collect::<Vec<_>>(),
        [
            format!("1: Pulling from {repo}"),
            format!("Digest: {}", index.digest()),
            format!("Status: Image is up to date for {name}"),
            name.clone(),
        ]
    );
}

#[test]
fn every_platform_is_listed_available_after_docker_py_pulls_all() {
    let registry = TestRegistry::shared();
    let index = three_platform_index(202);
    let repo = unique_repo("allplat/list");
    seed(registry, &index, &repo);
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let name = format!("{}/{repo}:1", registry.host());

    // docker-py passes `platform` through, as the CLI does.
    let result = cli.docker_py_json(
        &format!(
            r#"
image = client.images.pull('{}/{repo}', tag='1', platform='all')
listed = client.api._result(client.api._get(client.api._url('/images/json'),
    params={{'manifests': '1'}}), True)
print(json.dumps({{'id': image.id, 'listed': listed}}))
"#,
            registry.host()
        ),
        &[],
    );
    assert_eq!(result["id"], index.digest());
    let listed = result["listed"].as_array().expect("image list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    let manifests = listed[0]["Manifests"].as_array().expect("Manifests");
    assert_eq!(manifests.len(), 6, "{manifests:?}");
    let find = |digest: &str| {
        manifests
            .iter()
            .find(|m| m["ID"] == digest)
            .unwrap_or_else(|| panic!("{digest} not in {manifests:?}"))
    };
    for image in &index.images {
        let m = find(image.digest());
        assert_eq!(m["Kind"], "image", "{m}");
        assert_eq!(m["Available"], true, "{m}");
        assert_eq!(
            m["Size"]["Content"],
            image.manifest.size + image.blobs_size(),
            "{m}"
        );
    }
    for (attestation, subject) in index.attestations.iter().zip(&index.images) {
        let m = find(attestation.digest());
        assert_eq!(m["Kind"], "attestation", "{m}");
        assert_eq!(m["AttestationData"]["For"], subject.digest(), "{m}");
        assert_eq!(
            m["Size"]["Content"],
            attestation.manifest.size + attestation.blobs_size(),
            "{m}"
        );
    }

    // The CLI's tree (which asks for `manifests`) shows every platform with its content.
    let tree = cli.run(&["image", "ls", "--tree", &name]);
    tree.assert_success("docker image ls --tree");
    for (platform, image) in [
        ("linux/amd64", &index.images[0]),
        ("linux/arm64/v8", &index.images[1]),
        ("linux/arm/v7", &index.images[2]),
    ] {
        let row = tree
            .stdout
            .lines()
            .find(|l| l.contains(platform))
            .unwrap_or_else(|| panic!("{platform} not in {}", tree.stdout));
        let short = &image.digest()["sha256:".len().."sha256:".len() + 12];
        assert!(row.contains(short), "{row}\n{}", tree.stdout);
    }
}

/// The air-gapped transfer of `index`, which `source` serves as `repo:1`: a daemon pulls every
/// platform and saves it to a file; a fresh daemon loads the file and pushes the image to
/// `target`, which must then serve the source's index byte for byte, every child manifest as
/// the source serves it, and every blob.
fn air_gap(source: &TestRegistry, target: &TestRegistry, repo: &str, index: &ImageIndex) {
    let name = format!("{}/{repo}:1", source.host());
    let source_raw = raw_manifest(&name);
    assert_eq!(source_raw, index.index_bytes(), "the source's index");
    let dir = tempfile::tempdir().expect("temp dir");

    // Connected side: pull every platform and save it.
    let connected = start_hoistd();
    let cli_a = DockerCli::new(&connected.socket());
    cli_a
        .run(&["pull", "--platform", "all", &name])
        .assert_success("docker pull --platform all");
    let archive = save(&cli_a, dir.path(), &name);
    drop(connected);

    // Air-gapped side: a fresh daemon loads the archive and pushes to its own registry.
    let gapped = start_hoistd();
    let cli_b = DockerCli::new(&gapped.socket());
    let load = cli_b.run(&["load", "-i", archive.to_str().expect("utf-8 path")]);
    load.assert_success("docker load");
    assert!(
        load.stdout.contains(&format!("Loaded image: {name}")),
        "{}",
        load.stdout
    );
    let mirrored = format!("{}/{repo}:1", target.host());
    cli_b
        .run(&["tag", &name, &mirrored])
        .assert_success("docker tag");
    let push = cli_b.run(&["push", &mirrored]);
    push.assert_success("docker push");
    assert!(
        push.stdout.contains(&format!(
            "1: digest: {} size: {}",
            index.digest(),
            index.size()
        )),
        "{}",
        push.stdout
    );
    assert!(
        !push.stdout.contains("instead of"),
        "pushed whole:\n{}",
        push.stdout
    );

    // The target serves the source's index byte for byte, every child and every blob.
    let target_raw = raw_manifest(&mirrored);
    assert_eq!(target_raw, source_raw, "index bytes, target against source");
    assert_eq!(sha256_digest(&target_raw), index.digest());
    assert_registry_has_index(target, repo, "1", index);
    for image in index.all_images() {
        let child = format!("{}/{repo}@{}", target.host(), image.digest());
        assert_eq!(
            raw_manifest(&child),
            raw_manifest(&format!("{}/{repo}@{}", source.host(), image.digest())),
            "child manifest {}",
            image.digest()
        );
    }
}

#[test]
fn air_gapped_round_trip_reproduces_the_source_index_byte_for_byte() {
    let source = TestRegistry::shared();
    let target = TestRegistry::start(RegistryOptions::default());
    let index = three_platform_index(303);
    let repo = unique_repo("allplat/airgap");
    seed(source, &index, &repo);
    air_gap(source, &target, &repo, &index);
}

#[test]
fn an_index_entry_without_a_platform_round_trips_too() {
    let source = TestRegistry::shared();
    let target = TestRegistry::start(RegistryOptions::default());
    let described = ImageBuilder::new(Flavor::Oci)
        .seed(808)
        .layer(LayerSpec::single(6_000))
        .build();
    let bare = ImageBuilder::new(Flavor::Oci)
        .seed(809)
        .platform(Platform::parse("linux/ppc64le"))
        .layer(LayerSpec::single(7_000))
        .build();
    let index = IndexBuilder::new(Flavor::Oci)
        .image(described)
        .image_without_platform(bare)
        .with_attestations()
        .build();
    assert!(
        index.index_json()["manifests"][1].get("platform").is_none(),
        "{}",
        index.index_json()
    );
    let repo = unique_repo("allplat/bare");
    seed(source, &index, &repo);
    air_gap(source, &target, &repo, &index);
}

#[test]
fn pull_all_after_one_platform_fetches_only_the_rest() {
    let registry = TestRegistry::shared();
    let index = three_platform_index(606);
    let repo = unique_repo("allplat/rest");
    seed(registry, &index, &repo);
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let name = format!("{}/{repo}:1", registry.host());
    cli.run(&["pull", "--platform", "linux/amd64", &name])
        .assert_success("docker pull --platform linux/amd64");

    let out = cli.run(&["pull", "--platform", "all", &name]);
    out.assert_success("docker pull --platform all");
    // amd64's layers (one of them arm64's too) are there; only the other layers come.
    let amd64 = &index.images[0];
    for layer in &amd64.layers {
        assert_eq!(
            layer_lines(&out.stdout, layer_id(&layer.blob.digest)),
            ["Already exists"],
            "{}",
            out.stdout
        );
    }
    for layer in index.images[1..]
        .iter()
        .flat_map(|i| &i.layers)
        .filter(|l| !amd64.layers.iter().any(|a| a.blob.digest == l.blob.digest))
    {
        assert_eq!(
            layer_lines(&out.stdout, layer_id(&layer.blob.digest)).last(),
            Some(&"Pull complete"),
            "{}",
            out.stdout
        );
    }
    // The name already pointed at this index, as containerd decides it.
    assert!(
        out.stdout
            .contains(&format!("Status: Image is up to date for {name}")),
        "{}",
        out.stdout
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let saved = archive_blobs(&save(&cli, dir.path(), &name));
    assert_eq!(
        saved.keys().cloned().collect::<BTreeSet<_>>(),
        index_contents(&index)
    );
}

#[test]
fn a_docker_manifest_list_round_trips_whole_too() {
    let source = TestRegistry::shared();
    let target = TestRegistry::start(RegistryOptions::default());
    let index = IndexBuilder::new(Flavor::Docker)
        .seed(707)
        .platform("linux/amd64", &[LayerSpec::single(8_000)])
        .platform("linux/arm64/v8", &[LayerSpec::single(9_000)])
        .platform("linux/s390x", &[LayerSpec::single(7_000)])
        .build();
    let repo = unique_repo("allplat/list-v2");
    // skopeo's OCI layouts cannot carry Docker media types; the harness PUTs them verbatim.
    source.push_index(&repo, "1", &index);
    air_gap(source, &target, &repo, &index);
}

#[test]
fn an_attestation_that_cannot_be_fetched_fails_a_pull_of_every_platform_only() {
    let registry = TestRegistry::shared();
    let proxy = FaultProxy::in_front_of(registry);
    let index = three_platform_index(909);
    let repo = unique_repo("allplat/noattest");
    seed(registry, &index, &repo);
    // arm/v7's attestation statement is gone from the registry, which says so as distribution
    // does.
    let statement = &index.attestations[2].layers[0].blob.digest;
    let unknown = format!(
        r#"{{"errors":[{{"code":"BLOB_UNKNOWN","message":"blob unknown to registry","detail":"{statement}"}}]}}"#
    );
    proxy.add_rule(FaultRule::new(
        "GET",
        &format!("/blobs/{statement}"),
        FaultAction::respond(
            404,
            &[("Content-Type", "application/json")],
            unknown.as_bytes(),
        ),
    ));
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let name = format!("{}/{repo}:1", proxy.host());

    let out = cli.run(&["pull", "--platform", "all", &name]);
    assert!(!out.success(), "{}", out.stdout);
    assert!(
        out.stderr.contains("blob unknown to registry"),
        "{}",
        out.stderr
    );
    let images = cli.run(&["image", "ls", "-q"]);
    images.assert_success("docker image ls");
    assert_eq!(images.stdout.trim(), "", "a failed pull keeps no image");

    // One platform's pull does without its attestations, as before.
    let host = cli.run(&["pull", "--platform", "linux/arm/v7", &name]);
    host.assert_success("docker pull --platform linux/arm/v7");
}

#[test]
fn an_invalid_platform_is_still_refused_as_moby_refuses_it() {
    let registry = TestRegistry::shared();
    let index = three_platform_index(404);
    let repo = unique_repo("allplat/invalid");
    seed(registry, &index, &repo);
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let name = format!("{}/{repo}:1", registry.host());

    // Neither an OS nor an architecture: containerd's `platforms.Parse` error, a 400. (The CLI
    // lowercases the value, so `ALL` reaches the daemon as `all`.)
    for value in ["bogus", "all-platforms"] {
        let out = cli.run(&["pull", "--platform", value, &name]);
        assert!(!out.success(), "{value}: {}", out.stdout);
        assert_eq!(
            out.stderr.trim(),
            format!(
                "Error response from daemon: \"{value}\": unknown operating system or architecture: invalid argument"
            ),
            "{value}"
        );
    }
    // The keyword is for pulls: an import with it is refused the same way.
    let import = cli.run_with_stdin(
        &["import", "--platform", "all", "-", "imported:1"],
        Vec::new(),
    );
    assert!(!import.success(), "{}", import.stdout);
    assert!(
        import
            .stderr
            .contains("\"all\": unknown operating system or architecture: invalid argument"),
        "{}",
        import.stderr
    );
    let images = cli.run(&["image", "ls", "-q"]);
    images.assert_success("docker image ls");
    assert_eq!(images.stdout.trim(), "", "nothing was stored");
}

#[test]
fn a_single_platform_image_pulled_with_all_just_works() {
    let registry = TestRegistry::shared();
    let image = ImageBuilder::new(Flavor::Docker)
        .seed(505)
        .platform(Platform::parse("linux/arm64/v8"))
        .layers([LayerSpec::single(12_000), LayerSpec::single(3_000)])
        .build();
    let repo = unique_repo("allplat/single");
    registry.push_image(&repo, "1", &image);
    assert_eq!(
        raw_manifest(&format!("{}/{repo}:1", registry.host())),
        image.manifest_bytes()
    );
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let name = format!("{}/{repo}:1", registry.host());

    let out = cli.run(&["pull", "--platform", "all", &name]);
    out.assert_success("docker pull --platform all");
    // No platform was named, so no platform mismatch is warned of.
    assert!(!out.stdout.contains("WARNING"), "{}", out.stdout);
    for layer in &image.layers {
        assert_eq!(
            layer_lines(&out.stdout, layer_id(&layer.blob.digest)).last(),
            Some(&"Pull complete"),
            "{}",
            out.stdout
        );
    }
    assert!(
        out.stdout
            .contains(&format!("Status: Downloaded newer image for {name}")),
        "{}",
        out.stdout
    );
    let id = cli.run(&["image", "inspect", "--format", "{{.Id}}", &name]);
    id.assert_success("docker image inspect");
    assert_eq!(id.stdout.trim(), image.digest());
    let dir = tempfile::tempdir().expect("temp dir");
    let saved = archive_blobs(&save(&cli, dir.path(), &name));
    let expected: BTreeSet<String> = std::iter::once(&image.manifest)
        .chain(image.blobs())
        .map(|b| b.digest.clone())
        .collect();
    assert_eq!(saved.keys().cloned().collect::<BTreeSet<_>>(), expected);
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}
