//! The Foundation calls through docker-py 7.1 (the preinstalled python3 `docker` package), as
//! a Python program would make them: `version`, `info`, `images.load/list/get/tag/remove`,
//! `image.save()`. Each test runs a small script that prints what docker-py returned as JSON;
//! the assertions compare it with the generator's digests.

mod foundation_support;

use std::collections::BTreeSet;

use foundation_support::*;
use hoist_testkit::archive::{ArchiveBuilder, ArchiveCompression, ArchiveFormat, Breakage};
use hoist_testkit::docker::DockerCli;
use hoist_testkit::image::{Compression, Flavor, ImageBuilder, LayerSpec};

fn run_py(docker: &DockerCli, script: &str, env: &[(&str, &str)]) -> serde_json::Value {
    docker.docker_py_json(script, env)
}

#[test]
fn docker_py_reads_version_and_info() {
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let result = run_py(
        &docker,
        r#"
v = client.version()
i = client.info()
import os
low = docker.APIClient(base_url=os.environ["DOCKER_HOST"], version='1.41')
print(json.dumps({
    "ping": client.ping(),
    "api": client.api.api_version,
    "version": v["Version"], "ApiVersion": v["ApiVersion"], "MinAPIVersion": v["MinAPIVersion"],
    "Os": v["Os"], "components": [c["Name"] for c in v["Components"]],
    "Images": i["Images"], "Driver": i["Driver"], "DockerRootDir": i["DockerRootDir"],
    "ServerVersion": i["ServerVersion"], "OSType": i["OSType"],
    "IndexConfigs": sorted(i["RegistryConfig"]["IndexConfigs"]),
    "low_api": low.version()["ApiVersion"], "low_images": len(low.images()),
}))
"#,
        &[],
    );
    assert_eq!(
        result,
        serde_json::json!({
            "ping": true,
            // docker-py negotiates through GET /version and takes the server's maximum.
            "api": "1.50",
            "version": env!("CARGO_PKG_VERSION"),
            "ApiVersion": "1.50",
            "MinAPIVersion": "1.24",
            "Os": "linux",
            "components": ["Engine"],
            "Images": 0,
            "Driver": "hoist",
            "DockerRootDir": daemon.data_root().display().to_string(),
            "ServerVersion": env!("CARGO_PKG_VERSION"),
            "OSType": "linux",
            "IndexConfigs": ["docker.io"],
            // A client pinned to 1.41 is served at 1.41; /version still names the maximum.
            "low_api": "1.50",
            "low_images": 0,
        })
    );
}

#[test]
fn docker_py_loads_lists_gets_tags_and_removes_images() {
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let scratch = Scratch::new();
    let repo = unique_repo("py");
    let oci = ImageBuilder::new(Flavor::Oci)
        .layers([
            LayerSpec::single(3000),
            LayerSpec::single(1000).compression(Compression::ZSTD),
        ])
        .build();
    let legacy = ImageBuilder::new(Flavor::Docker)
        .layer(LayerSpec::single(2000).compression(Compression::None))
        .build();
    let oci_path = scratch.archive(
        "oci.tar",
        &ArchiveBuilder::new(ArchiveFormat::Oci)
            .compression(ArchiveCompression::Gzip)
            .image(&oci, &[&format!("{repo}:oci")]),
    );
    let legacy_path = scratch.archive(
        "legacy.tar",
        &ArchiveBuilder::new(ArchiveFormat::DockerLegacy).image(
            &legacy,
            &[
                &format!("{repo}-legacy:1"),
                &format!("localhost:5000/{repo}:1"),
            ],
        ),
    );
    let result = run_py(
        &docker,
        r#"
import os
repo = os.environ["REPO"]
out = {}
with open(os.environ["OCI"], "rb") as f:
    out["loaded_oci"] = [(i.id, i.tags) for i in client.images.load(f.read())]
with open(os.environ["LEGACY"], "rb") as f:
    out["loaded_legacy"] = [(i.id, i.tags) for i in client.images.load(f.read())]
out["list"] = sorted((i.id, sorted(i.tags)) for i in client.images.list())
out["list_repo"] = [i.id for i in client.images.list(name=repo)]
img = client.images.get(repo + ":oci")
out["get"] = {"id": img.id, "short_id": img.short_id, "tags": img.tags,
              "arch": img.attrs["Architecture"], "layers": img.attrs["RootFS"]["Layers"],
              "labels": img.labels}
out["by_short_id"] = client.images.get(img.short_id.split(":")[1]).id
out["tag"] = img.tag(repo + "-copy", "2")
img.reload()
out["tags_after_tag"] = sorted(img.tags)
out["history"] = [h["CreatedBy"] for h in img.history()]
try:
    img.remove()
    out["remove_by_id"] = "removed"
except docker.errors.APIError as e:
    out["remove_by_id"] = [e.status_code, e.explanation]
out["remove_name"] = client.api.remove_image(repo + "-copy:2")
try:
    client.images.get("no-such-image-for-py")
except docker.errors.ImageNotFound as e:
    out["not_found"] = [e.status_code, e.explanation]
client.images.remove(repo + "-legacy:1")
client.images.remove("localhost:5000/" + repo + ":1")
out["dangling"] = [i.id for i in client.images.list(filters={"dangling": True})]
out["remove_force"] = client.api.remove_image(img.id, force=True)
out["left"] = [i.id for i in client.images.list(all=True)]
print(json.dumps(out))
"#,
        &[
            ("REPO", &repo),
            ("OCI", oci_path.to_str().unwrap()),
            ("LEGACY", legacy_path.to_str().unwrap()),
        ],
    );
    let legacy_id = legacy.docker_archive_id();
    assert_eq!(
        result["loaded_oci"],
        serde_json::json!([[oci.digest(), [format!("{repo}:oci")]]])
    );
    // Loaded once per name; both names show on the image.
    let both = serde_json::json!([
        legacy_id,
        [
            format!("{repo}-legacy:1"),
            format!("localhost:5000/{repo}:1")
        ]
    ]);
    assert_eq!(result["loaded_legacy"], serde_json::json!([both, both]));
    let mut expected_list = vec![
        serde_json::json!([oci.digest(), [format!("{repo}:oci")]]),
        serde_json::json!([
            legacy_id,
            [
                format!("localhost:5000/{repo}:1"),
                format!("{repo}-legacy:1")
            ]
        ]),
    ];
    expected_list.sort_by_key(|v| v[0].as_str().unwrap().to_owned());
    assert_eq!(result["list"], serde_json::Value::Array(expected_list));
    assert_eq!(result["list_repo"], serde_json::json!([oci.digest()]));
    assert_eq!(
        result["get"],
        serde_json::json!({
            "id": oci.digest(),
            "short_id": format!("sha256:{}", short_id(oci.digest())),
            "tags": [format!("{repo}:oci")],
            "arch": "amd64",
            "layers": oci.diff_ids(),
            "labels": {"org.hoist.testkit.seed": oci.seed.to_string()},
        })
    );
    assert_eq!(result["by_short_id"], oci.digest());
    assert_eq!(result["tag"], true);
    assert_eq!(
        result["tags_after_tag"],
        serde_json::json!([format!("{repo}-copy:2"), format!("{repo}:oci")])
    );
    assert_eq!(
        result["history"],
        serde_json::json!(
            oci.layers
                .iter()
                .enumerate()
                .rev()
                .map(|(i, l)| format!("COPY layer-{i} / # {}", l.diff_id))
                .collect::<Vec<_>>()
        )
    );
    // image.remove() deletes by ID: two repositories make it a conflict.
    assert_eq!(
        result["remove_by_id"],
        serde_json::json!([
            409,
            format!(
                "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                short_id(oci.digest())
            )
        ])
    );
    assert_eq!(
        result["remove_name"],
        serde_json::json!([{"Untagged": format!("{repo}-copy:2")}])
    );
    assert_eq!(
        result["not_found"],
        serde_json::json!([404, "No such image: no-such-image-for-py:latest"])
    );
    assert_eq!(result["dangling"], serde_json::json!([]));
    assert_eq!(
        result["remove_force"],
        serde_json::json!([{"Untagged": format!("{repo}:oci")}, {"Deleted": oci.digest()}])
    );
    assert_eq!(result["left"], serde_json::json!([]));
    assert_eq!(stored_blobs(&daemon.data_root()).len(), 0);
}

#[test]
fn docker_py_save_then_load_round_trips_byte_identical() {
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let scratch = Scratch::new();
    let repo = unique_repo("py-saved");
    let image = ImageBuilder::new(Flavor::Oci)
        .layers([
            LayerSpec::single(5000),
            LayerSpec::single(700).compression(Compression::None),
        ])
        .build();
    let archive = scratch.archive(
        "in.tar",
        &ArchiveBuilder::new(ArchiveFormat::Both).image(&image, &[&format!("{repo}:1")]),
    );
    let saved_named = scratch.path("named.tar");
    let saved_by_id = scratch.path("by-id.tar");
    let result = run_py(
        &docker,
        r#"
import os
with open(os.environ["ARCHIVE"], "rb") as f:
    [img] = client.images.load(f.read())
for path, named in ((os.environ["NAMED"], True), (os.environ["BY_ID"], False)):
    with open(path, "wb") as f:
        for chunk in img.save(chunk_size=4096, named=named):
            f.write(chunk)
client.images.remove(img.tags[0])
after_remove = [i.id for i in client.images.list()]
with open(os.environ["NAMED"], "rb") as f:
    again = client.images.load(f.read())
print(json.dumps({"after_remove": after_remove, "again": [(i.id, i.tags) for i in again]}))
"#,
        &[
            ("ARCHIVE", archive.to_str().unwrap()),
            ("NAMED", saved_named.to_str().unwrap()),
            ("BY_ID", saved_by_id.to_str().unwrap()),
        ],
    );
    assert_eq!(result["after_remove"], serde_json::json!([]));
    assert_eq!(
        result["again"],
        serde_json::json!([[image.digest(), [format!("{repo}:1")]]])
    );
    let expected: BTreeSet<String> = image.contents().map(|b| b.hex().to_owned()).collect();
    for saved in [&saved_named, &saved_by_id] {
        let files = tar_files(saved);
        let blobs: BTreeSet<String> = files
            .keys()
            .filter_map(|k| k.strip_prefix("blobs/sha256/"))
            .map(str::to_owned)
            .collect();
        assert_eq!(blobs, expected, "{}", saved.display());
        for blob in image.contents() {
            assert_eq!(files[&format!("blobs/sha256/{}", blob.hex())], blob.bytes());
        }
        let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
        assert_eq!(index["manifests"][0]["digest"], image.digest());
    }
    // Saved by name, the archive carries the name; by ID, it does not.
    let named_index: serde_json::Value =
        serde_json::from_slice(&tar_files(&saved_named)["index.json"]).unwrap();
    assert_eq!(
        named_index["manifests"][0]["annotations"]["io.containerd.image.name"],
        format!("docker.io/library/{repo}:1")
    );
    let by_id_index: serde_json::Value =
        serde_json::from_slice(&tar_files(&saved_by_id)["index.json"]).unwrap();
    assert!(by_id_index["manifests"][0].get("annotations").is_none());
}

#[test]
fn docker_py_reports_a_broken_archive_as_image_load_error() {
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let scratch = Scratch::new();
    let image = ImageBuilder::new(Flavor::Oci).build();
    let broken = scratch.raw_archive(
        "broken.tar",
        &ArchiveBuilder::new(ArchiveFormat::Oci)
            .image(&image, &["py-broken:1"])
            .broken(Breakage::BlobContentMismatch),
    );
    let result = run_py(
        &docker,
        r#"
import os
with open(os.environ["ARCHIVE"], "rb") as f:
    data = f.read()
try:
    client.images.load(data)
    out = "loaded"
except docker.errors.ImageLoadError as e:
    out = str(e)
print(json.dumps({"error": out, "images": len(client.images.list())}))
"#,
        &[("ARCHIVE", broken.to_str().unwrap())],
    );
    let error = result["error"].as_str().expect("error text");
    assert!(
        error.starts_with("invalid archive: content of blobs/sha256/")
            && error.contains("does not match its digest"),
        "{error}"
    );
    assert_eq!(result["images"], 0);
    assert_eq!(stored_blobs(&daemon.data_root()).len(), 0);
}
