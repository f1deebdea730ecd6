//! Platform options on the image endpoints, as moby 28.2 (API 1.50) answers them: `docker image
//! inspect --platform`, `docker history --platform`, `docker save --platform` and
//! `docker rmi --platform`, through the docker CLI, dockerode and raw HTTP, checked against the
//! generator's digests, the data root and what the registry receives.

mod push_support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

use hoist_testkit::archive::ArchiveFormat;
use hoist_testkit::docker::DockerCli;
use hoist_testkit::hoistd::Hoistd;
use hoist_testkit::http1::query_escape;
use hoist_testkit::image::{
    Flavor, Image, ImageBuilder, ImageIndex, IndexBuilder, LayerSpec, Platform,
};
use hoist_testkit::registry::TestRegistry;
use push_support::*;

const ARM64_JSON: &str = r#"{"architecture":"arm64","os":"linux"}"#;
const S390X_JSON: &str = r#"{"architecture":"s390x","os":"linux"}"#;

/// linux/amd64 and linux/arm64/v8 with attestations; the two platforms share their first layer.
fn two_platform_index(seed: u64) -> ImageIndex {
    let amd = ImageBuilder::new(Flavor::Oci)
        .seed(seed)
        .platform(Platform::linux_amd64())
        .layers([LayerSpec::single(40_000), LayerSpec::single(9_000)])
        .build();
    let arm = ImageBuilder::new(Flavor::Oci)
        .seed(seed + 1)
        .platform(Platform::new("linux", "arm64", Some("v8")))
        .existing_layer(&amd.layers[0])
        .layer(LayerSpec::single(30_000))
        .build();
    IndexBuilder::new(Flavor::Oci)
        .image(amd)
        .image(arm)
        .with_attestations()
        .build()
}

/// A fresh daemon holding [`two_platform_index`] of `seed` under `name`.
fn daemon_with_index(seed: u64, name: &str) -> (Hoistd, DockerCli, ImageIndex) {
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let index = two_platform_index(seed);
    load_index(&cli, &index, &[name], |b| b);
    (hoistd, cli, index)
}

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// Hex digests of the blobs in a data root.
fn stored(data_root: &Path) -> BTreeSet<String> {
    std::fs::read_dir(data_root.join("blobs/sha256"))
        .expect("blob dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

/// Hex digests of everything one platform image is made of.
fn image_blobs(image: &Image) -> BTreeSet<String> {
    image.contents().map(|b| b.hex().to_owned()).collect()
}

fn error_message(r: &hoist_testkit::http1::RawResponse) -> String {
    r.json()["message"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn inspect_and_history_show_the_requested_platform() {
    let name = format!("{}:1", unique_repo("plat-inspect"));
    let (hoistd, cli, index) = daemon_with_index(20, &name);
    let arm = index.image_for("linux/arm64/v8");

    // `arm64` is `arm64/v8`: the arm64 manifest, shown as moby shows it (ID and descriptor are
    // the manifest's).
    let out = cli.run(&[
        "image",
        "inspect",
        "--platform",
        "linux/arm64",
        "--format",
        "{{.Id}}|{{.Architecture}}|{{.Variant}}|{{json .RootFS.Layers}}|{{.Descriptor.digest}}|{{json .RepoTags}}",
        &name,
    ]);
    out.assert_success("inspect --platform");
    let diff_ids = serde_json::to_string(&arm.diff_ids()).expect("json");
    assert_eq!(
        out.stdout.trim(),
        format!(
            "{}|arm64|v8|{diff_ids}|{}|[\"{name}\"]",
            arm.digest(),
            arm.digest()
        )
    );
    let whole = cli.run(&["image", "inspect", "--format", "{{.Id}}", &name]);
    whole.assert_success("inspect");
    assert_eq!(whole.stdout.trim(), index.digest());

    // The descriptor carries the platform the index gives the manifest.
    let path = format!(
        "/v1.50/images/{name}/json?platform={}",
        query_escape(ARM64_JSON)
    );
    let r = hoistd.request("GET", &path, &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let descriptor = &r.json()["Descriptor"];
    assert_eq!(descriptor["digest"], arm.digest());
    assert_eq!(descriptor["size"], arm.size());
    assert_eq!(descriptor["platform"]["architecture"], "arm64");
    assert_eq!(descriptor["platform"]["variant"], "v8");

    // A platform the image lacks: 404 with moby's words, in the CLI and on the wire.
    let wanted = format!(
        "image with reference {name} was found but does not provide the specified platform (linux/s390x)"
    );
    let missing = cli.run(&["image", "inspect", "--platform", "linux/s390x", &name]);
    assert!(!missing.success(), "{missing}");
    assert!(missing.stderr.contains(&wanted), "{}", missing.stderr);
    let path = format!(
        "/v1.50/images/{name}/json?platform={}",
        query_escape(S390X_JSON)
    );
    let r = hoistd.request("GET", &path, &[], b"");
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(error_message(&r), wanted);
    // Strict: a newer arm64 variant is not the v8 image.
    let newer = cli.run(&["image", "inspect", "--platform", "linux/arm64/v8.2", &name]);
    assert!(!newer.success(), "{newer}");
    assert!(
        newer
            .stderr
            .contains("does not provide the specified platform (linux/arm64/v8.2)"),
        "{}",
        newer.stderr
    );

    // Before API 1.49 moby does not read the option: the image as a whole.
    let r = hoistd.request(
        "GET",
        &format!(
            "/v1.48/images/{name}/json?platform={}",
            query_escape(S390X_JSON)
        ),
        &[],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["Id"], index.digest());

    // A platform and the manifest list together are a contradiction.
    let r = hoistd.request(
        "GET",
        &format!(
            "/v1.50/images/{name}/json?manifests=1&platform={}",
            query_escape(ARM64_JSON)
        ),
        &[],
        b"",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        error_message(&r),
        "conflicting options: manifests and platform options cannot both be set"
    );

    // Unusable platform values are the client's error.
    for (bad, message) in [
        (
            "linux/arm64",
            "failed to parse platform: invalid character 'l' looking for beginning of value",
        ),
        (
            r#"{"os":"linux"}"#,
            "both OS and Architecture must be provided",
        ),
        (
            r#"{"variant":"v8"}"#,
            "optional platform fields provided, but OS and Architecture are missing",
        ),
    ] {
        let path = format!("/v1.50/images/{name}/json?platform={}", query_escape(bad));
        let r = hoistd.request("GET", &path, &[], b"");
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert_eq!(error_message(&r), message, "{bad}");
    }

    // History: the arm64 config's steps, newest first.
    let history = cli.run(&[
        "history",
        "--platform",
        "linux/arm64",
        "--no-trunc",
        "--format",
        "{{.CreatedBy}}",
        &name,
    ]);
    history.assert_success("history --platform");
    let mut steps: Vec<String> = arm
        .diff_ids()
        .iter()
        .enumerate()
        .map(|(i, diff_id)| format!("COPY layer-{i} / # {diff_id}"))
        .collect();
    steps.reverse();
    assert_eq!(history.stdout.lines().collect::<Vec<_>>(), steps);
    // History matches as containerd's `Only`: an arm64/v8.2 host runs the v8 image.
    let compatible = cli.run(&[
        "history",
        "--platform",
        "linux/arm64/v8.2",
        "--no-trunc",
        "--format",
        "{{.CreatedBy}}",
        &name,
    ]);
    compatible.assert_success("history --platform linux/arm64/v8.2");
    assert_eq!(compatible.stdout.lines().collect::<Vec<_>>(), steps);
    let missing = cli.run(&["history", "--platform", "linux/s390x", &name]);
    assert!(!missing.success(), "{missing}");
    assert!(missing.stderr.contains(&wanted), "{}", missing.stderr);
    // Before API 1.48 the option is ignored.
    let r = hoistd.request(
        "GET",
        &format!(
            "/v1.47/images/{name}/history?platform={}",
            query_escape(S390X_JSON)
        ),
        &[],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = hoistd.request(
        "GET",
        &format!(
            "/v1.48/images/{name}/history?platform={}",
            query_escape(S390X_JSON)
        ),
        &[],
        b"",
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(error_message(&r), wanted);
}

/// The members of a tar archive, by path.
fn tar_members(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut archive = tar::Archive::new(bytes);
    let mut members = BTreeMap::new();
    for entry in archive.entries().expect("tar entries") {
        let mut entry = entry.expect("tar entry");
        let path = entry.path().expect("path").to_string_lossy().into_owned();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).expect("read member");
        members.insert(path, content);
    }
    members
}

#[test]
fn save_with_a_platform_writes_only_that_platform_and_loads_back_as_it() {
    let name = format!("{}:1", unique_repo("plat-save"));
    let (hoistd, cli, index) = daemon_with_index(30, &name);
    let arm = index.image_for("linux/arm64/v8");
    let dir = tempfile::tempdir().expect("temp dir");
    let archive = dir.path().join("arm64.tar");
    let archive_arg = archive.to_str().expect("utf-8 path");

    cli.run(&[
        "save",
        "--platform",
        "linux/arm64",
        "-o",
        archive_arg,
        &name,
    ])
    .assert_success("save --platform");
    let members = tar_members(&std::fs::read(&archive).expect("archive"));
    let blobs: BTreeSet<String> = members
        .keys()
        .filter_map(|p| p.strip_prefix("blobs/sha256/"))
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
        .collect();
    assert_eq!(blobs, image_blobs(arm), "only the arm64 image's blobs");
    for blob in arm.contents() {
        assert_eq!(
            members[&format!("blobs/sha256/{}", blob.hex())],
            blob.bytes(),
            "{} byte for byte",
            blob.digest
        );
    }
    let index_json: serde_json::Value =
        serde_json::from_slice(&members["index.json"]).expect("index.json");
    let entries = index_json["manifests"].as_array().expect("manifests");
    assert_eq!(entries.len(), 1, "{index_json}");
    assert_eq!(entries[0]["digest"], arm.digest());
    assert_eq!(entries[0]["mediaType"], arm.media_type());
    assert_eq!(entries[0]["platform"]["architecture"], "arm64");
    assert_eq!(
        entries[0]["annotations"]["io.containerd.image.name"],
        format!("docker.io/library/{name}")
    );
    let manifest_json: serde_json::Value =
        serde_json::from_slice(&members["manifest.json"]).expect("manifest.json");
    let layers: Vec<String> = arm
        .layers
        .iter()
        .map(|l| format!("blobs/sha256/{}", l.blob.hex()))
        .collect();
    assert_eq!(
        manifest_json,
        serde_json::json!([{
            "Config": format!("blobs/sha256/{}", arm.config.hex()),
            "RepoTags": [name],
            "Layers": layers,
        }])
    );

    // dockerode's `getImages` passes `platform` through (an object goes as its JSON): the same
    // archive.
    let from_node = dir.path().join("dockerode.tar");
    let script = format!(
        "const fs = require('fs');\n\
         const Docker = require('dockerode');\n\
         const docker = new Docker({{ socketPath: process.env.DOCKER_HOST.replace('unix://', '') }});\n\
         docker.getImages({{ names: [{name:?}], platform: {{ os: 'linux', architecture: 'arm64' }} }})\n\
           .then((s) => new Promise((ok, fail) => s.pipe(fs.createWriteStream({from_node:?})).on('finish', ok).on('error', fail)))\n\
           .then(() => console.log('saved'), (e) => {{ console.error(e); process.exit(1); }});"
    );
    let node = cli.node(&script, &[]);
    node.assert_success("dockerode getImages with platform");
    assert_eq!(
        tar_members(&std::fs::read(&from_node).expect("dockerode archive")),
        members
    );

    // A fresh daemon loads it as the arm64 image alone.
    let fresh = start_hoistd();
    let fresh_cli = DockerCli::new(&fresh.socket());
    let loaded = fresh_cli.run(&["load", "-i", archive_arg]);
    loaded.assert_success("load");
    assert_eq!(loaded.stdout.trim(), format!("Loaded image: {name}"));
    let id = fresh_cli.run(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}} {{.Architecture}}",
        &name,
    ]);
    id.assert_success("inspect loaded");
    assert_eq!(id.stdout.trim(), format!("{} arm64", arm.digest()));
    assert_eq!(stored(&fresh.data_root()), image_blobs(arm));

    // A platform the image lacks fails before any archive byte, as moby's 404.
    let missing = cli.run(&[
        "save",
        "--platform",
        "linux/s390x",
        "-o",
        archive_arg,
        &name,
    ]);
    assert!(!missing.success(), "{missing}");
    let wanted = format!(
        "no suitable export target found: image with reference {name} was found but does not provide the specified platform (linux/s390x)"
    );
    assert!(missing.stderr.contains(&wanted), "{}", missing.stderr);
    let r = hoistd.request(
        "GET",
        &format!(
            "/v1.50/images/{name}/get?platform={}",
            query_escape(S390X_JSON)
        ),
        &[],
        b"",
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(error_message(&r), wanted);
    let r = hoistd.request(
        "GET",
        &format!(
            "/v1.50/images/get?names={name}&platform={}&platform={}",
            query_escape(ARM64_JSON),
            query_escape(S390X_JSON)
        ),
        &[],
        b"",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        error_message(&r),
        "multiple platform parameters not supported"
    );

    // Before API 1.48 the option is ignored: the whole index is saved.
    let r = hoistd.request(
        "GET",
        &format!(
            "/v1.47/images/get?names={name}&platform={}",
            query_escape(S390X_JSON)
        ),
        &[],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let members = tar_members(&r.body);
    let index_json: serde_json::Value =
        serde_json::from_slice(&members["index.json"]).expect("index.json");
    assert_eq!(index_json["manifests"][0]["digest"], index.digest());
}

#[test]
fn rmi_platform_removes_that_platform_and_the_rest_still_pushes() {
    let registry = TestRegistry::shared();
    let repo = unique_repo("plat-rmi");
    let name = format!("{}/{repo}:1", registry.host());
    let (hoistd, cli, index) = daemon_with_index(40, &name);
    let (amd, arm) = (
        index.image_for("linux/amd64"),
        index.image_for("linux/arm64/v8"),
    );

    // moby asks for --force: the content goes from every image that uses it.
    let unforced = cli.run(&["rmi", "--platform", "linux/arm64", &name]);
    assert!(!unforced.success(), "{unforced}");
    assert_eq!(
        unforced.stderr,
        "Error response from daemon: Content will be removed from all images referencing this variant. Use \u{2014}-force to force delete.\n"
    );

    // Every platform is resolved first: one the image lacks fails the call and removes nothing.
    let before = stored(&hoistd.data_root());
    let partly = cli.run(&[
        "rmi",
        "--force",
        "--platform",
        "linux/arm64",
        "--platform",
        "linux/s390x",
        &name,
    ]);
    assert_eq!(partly.stdout, "");
    assert_eq!(
        partly.stderr,
        format!(
            "Error response from daemon: failed to delete platform linux/s390x for image {}: image with reference {name} was found but does not provide the specified platform (linux/s390x)\n",
            index.digest()
        )
    );
    assert_eq!(stored(&hoistd.data_root()), before);

    let out = cli.run(&["rmi", "--force", "--platform", "linux/arm64", &name]);
    out.assert_success("rmi --platform");
    assert_eq!(out.stdout, format!("Deleted: {}\n", arm.digest()));
    assert_eq!(out.stderr, "");

    // The arm64 manifest, config and own layer are gone; the shared layer, the amd64 image, the
    // index and the attestations stay.
    let blobs = stored(&hoistd.data_root());
    for gone in [
        arm.digest(),
        arm.config_digest(),
        &arm.layers[1].blob.digest,
    ] {
        assert!(!blobs.contains(hex(gone)), "{gone} removed");
    }
    let kept = image_blobs(amd)
        .into_iter()
        .chain(index.attestations.iter().flat_map(image_blobs))
        .chain([hex(index.digest()).to_owned()]);
    for digest in kept {
        assert!(blobs.contains(&digest), "{digest} kept");
    }
    let whole = cli.run(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}} {{json .RepoTags}}",
        &name,
    ]);
    whole.assert_success("inspect after rmi --platform");
    assert_eq!(
        whole.stdout.trim(),
        format!("{} [\"{name}\"]", index.digest())
    );

    // The amd64 platform still pushes byte for byte; nothing of arm64 reaches the registry.
    cli.run(&["push", "--platform", "linux/amd64", &name])
        .assert_success("push --platform linux/amd64");
    assert_registry_has_image(registry, &repo, "1", amd);
    assert!(!registry.has_blob(&repo, &arm.layers[1].blob.digest));

    // The platform is gone now: moby's 404, which the CLI only reports under --force.
    let wanted = format!(
        "failed to delete platform linux/arm64 for image {}: image with reference {name} was found but does not provide the specified platform (linux/arm64)",
        index.digest()
    );
    let again = cli.run(&["rmi", "--force", "--platform", "linux/arm64", &name]);
    assert_eq!(again.stdout, "");
    assert_eq!(
        again.stderr,
        format!("Error response from daemon: {wanted}\n")
    );
    let delete = |version: &str, query: &str| {
        hoistd.request(
            "DELETE",
            &format!("/{version}/images/{name}?{query}"),
            &[],
            b"",
        )
    };
    let r = delete(
        "v1.50",
        &format!("force=1&platforms={}", query_escape(ARM64_JSON)),
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(error_message(&r), wanted);
    let r = delete(
        "v1.50",
        &format!("force=1&platforms={}", query_escape("linux/arm64")),
    );
    assert_eq!(r.status, 400, "{}", r.text());

    // Before API 1.50 moby does not read `platforms`: a plain rmi of the whole image.
    let r = delete("v1.49", &format!("platforms={}", query_escape(S390X_JSON)));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!([{"Untagged": name}, {"Deleted": index.digest()}])
    );
}

#[test]
fn rmi_platform_of_a_single_platform_image() {
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let image = ImageBuilder::new(Flavor::Docker)
        .seed(50)
        .layers([LayerSpec::single(20_000)])
        .build();
    let name = format!("{}:1", unique_repo("plat-single"));
    load_image(&cli, &image, &[&name], ArchiveFormat::DockerLegacy);

    let other = cli.run(&["rmi", "-f", "--platform", "linux/arm64", &name]);
    assert_eq!(
        other.stderr,
        format!(
            "Error response from daemon: failed to delete platform linux/arm64 for image {}: image with reference {name} was found but does not provide the specified platform (linux/arm64)\n",
            image.digest()
        )
    );
    cli.run(&["image", "inspect", &name])
        .assert_success("still there");

    // Its only platform is the image: its content goes, and with it the image.
    let out = cli.run(&["rmi", "-f", "--platform", "linux/amd64", &name]);
    out.assert_success("rmi --platform linux/amd64");
    assert_eq!(out.stdout, format!("Deleted: {}\n", image.digest()));
    let gone = cli.run(&["image", "inspect", &name]);
    assert!(!gone.success(), "{gone}");
    assert!(stored(&hoistd.data_root()).is_empty());
}

#[test]
fn a_platform_that_was_not_pulled_is_never_replaced_by_another() {
    let registry = TestRegistry::shared();
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let index = two_platform_index(60);
    let amd = index.image_for("linux/amd64");
    let repo = unique_repo("plat-partial");
    registry.push_index(&repo, "1", &index);
    let name = format!("{}/{repo}:1", registry.host());
    cli.run(&["pull", "--platform", "linux/amd64", &name])
        .assert_success("pull --platform linux/amd64");

    let present = cli.run(&[
        "image",
        "inspect",
        "--platform",
        "linux/amd64",
        "--format",
        "{{.Id}}",
        &name,
    ]);
    present.assert_success("inspect the pulled platform");
    assert_eq!(present.stdout.trim(), amd.digest());

    // arm64 is listed by the index but not here: every option says so, none shows amd64.
    let wanted = format!(
        "image with reference {name} was found but does not provide the specified platform (linux/arm64)"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let archive = dir.path().join("arm64.tar");
    let archive_arg = archive.to_str().expect("utf-8 path");
    for args in [
        vec!["image", "inspect", "--platform", "linux/arm64", &name],
        vec!["history", "--platform", "linux/arm64", &name],
        vec![
            "save",
            "--platform",
            "linux/arm64",
            "-o",
            archive_arg,
            &name,
        ],
    ] {
        let out = cli.run(&args);
        assert!(!out.success(), "{args:?}: {out}");
        assert!(out.stderr.contains(&wanted), "{args:?}: {}", out.stderr);
        assert!(
            !out.stdout.contains(hex(amd.digest())),
            "{args:?}: {}",
            out.stdout
        );
    }
    let rmi = cli.run(&["rmi", "-f", "--platform", "linux/arm64", &name]);
    assert_eq!(
        rmi.stderr,
        format!(
            "Error response from daemon: failed to delete platform linux/arm64 for image {}: {wanted}\n",
            index.digest()
        )
    );
    assert!(stored(&hoistd.data_root()).contains(hex(amd.digest())));
}
