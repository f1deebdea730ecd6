//! `POST /images/prune`, `GET /system/df` and `docker system prune` through real clients: what
//! they print and answer, compared with the generator's blobs and what stays in the data root.

mod foundation_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use foundation_support::*;
use hoist_testkit::archive::{ArchiveBuilder, ArchiveFormat};
use hoist_testkit::docker::DockerCli;
use hoist_testkit::image::{Flavor, Image, ImageBuilder, LayerSpec};
use hoist_testkit::proxy::{FaultAction, FaultProxy, FaultRule};
use hoist_testkit::registry::TestRegistry;
use serde_json::json;

fn load(docker: &DockerCli, image: &Image, tags: &[&str]) {
    let scratch = Scratch::new();
    let archive = scratch.archive(
        "image.tar",
        &ArchiveBuilder::new(ArchiveFormat::Oci).image(image, tags),
    );
    docker_load(docker, &archive);
}

/// Every blob of the image, manifest included, as `digest -> size`.
fn contents(image: &Image) -> BTreeSet<(String, u64)> {
    image
        .contents()
        .map(|b| (b.digest.clone(), b.size))
        .collect()
}

fn content_size(image: &Image) -> u64 {
    contents(image).iter().map(|(_, size)| size).sum()
}

/// go-units `HumanSize` (`%.4g` with decimal units), as prune and df print sizes.
fn human_size4(bytes: u64) -> String {
    human_size_with_precision(bytes, 4)
}

/// The `deleted:` lines and the total of `docker image prune` output.
fn pruned(stdout: &str) -> (Vec<String>, Vec<String>, String) {
    let untagged = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("untagged: "))
        .map(str::to_owned)
        .collect();
    let deleted = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("deleted: "))
        .map(str::to_owned)
        .collect();
    let total = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Total reclaimed space: "))
        .unwrap_or_else(|| panic!("no total in:\n{stdout}"))
        .to_owned();
    (untagged, deleted, total)
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn docker_image_prune_removes_dangling_images_then_filtered_then_all() {
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let repo = unique_repo("prune");
    let shared = ImageBuilder::new(Flavor::Oci)
        .label("tier", "app")
        .layer(LayerSpec::single(50_000))
        .layer(LayerSpec::single(3_000))
        .build();
    let sibling = ImageBuilder::new(Flavor::Oci)
        .existing_layer(&shared.layers[0])
        .layer(LayerSpec::single(4_000))
        .build();
    let first = ImageBuilder::new(Flavor::Oci)
        .layer(LayerSpec::single(7_000))
        .build();
    let second = ImageBuilder::new(Flavor::Oci)
        .layer(LayerSpec::single(8_000))
        .build();
    load(&docker, &shared, &[&format!("{repo}-app:1")]);
    load(&docker, &sibling, &[&format!("{repo}-sibling:1")]);
    load(&docker, &first, &[&format!("{repo}-moving:1")]);
    // Loading another image under the same name leaves `first` dangling.
    load(&docker, &second, &[&format!("{repo}-moving:1")]);
    let dangling = docker_ok(
        &docker,
        &["image", "ls", "-q", "--no-trunc", "-f", "dangling=true"],
    );
    assert_eq!(dangling.trim(), first.digest());

    let out = docker_ok(&docker, &["image", "prune", "-f"]);
    let (untagged, deleted, total) = pruned(&out);
    assert_eq!(untagged, [first.digest()], "{out}");
    let expected: Vec<String> = contents(&first).into_iter().map(|(d, _)| d).collect();
    assert_eq!(sorted(deleted), expected, "{out}");
    assert_eq!(total, human_size4(content_size(&first)), "{out}");

    // Nothing dangling is left: nothing to do.
    let out = docker_ok(&docker, &["image", "prune", "-f"]);
    assert_eq!(out.trim(), "Total reclaimed space: 0B");
    // Every image was stored just now.
    let out = docker_ok(
        &docker,
        &["image", "prune", "-a", "-f", "--filter", "until=1h"],
    );
    assert_eq!(out.trim(), "Total reclaimed space: 0B");

    // By label: the shared layer stays for the sibling.
    let out = docker_ok(
        &docker,
        &["image", "prune", "-a", "-f", "--filter", "label=tier=app"],
    );
    let (untagged, deleted, total) = pruned(&out);
    assert_eq!(untagged, [format!("{repo}-app:1")], "{out}");
    let gone: BTreeSet<(String, u64)> = contents(&shared)
        .into_iter()
        .filter(|(d, _)| *d != shared.layers[0].blob.digest)
        .collect();
    assert_eq!(
        sorted(deleted),
        gone.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>(),
        "{out}"
    );
    assert_eq!(
        total,
        human_size4(gone.iter().map(|(_, s)| s).sum()),
        "{out}"
    );

    let out = docker_ok(
        &docker,
        &["image", "prune", "-a", "-f", "--filter", "label!=nothing"],
    );
    let (untagged, _, total) = pruned(&out);
    assert_eq!(
        sorted(untagged),
        [format!("{repo}-moving:1"), format!("{repo}-sibling:1")],
        "{out}"
    );
    assert_eq!(
        total,
        human_size4(content_size(&second) + content_size(&sibling)),
        "{out}"
    );
    assert_eq!(docker_ok(&docker, &["image", "ls", "-q"]), "");
    assert!(stored_blobs(&daemon.data_root()).is_empty());

    let out = docker_fails(
        &docker,
        &["image", "prune", "-f", "--filter", "reference=x"],
    );
    assert!(out.stderr.contains("invalid filter 'reference'"), "{out}");
}

#[test]
fn docker_system_df_and_system_prune_report_images_and_empty_sections() {
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let repo = unique_repo("df");
    let base = ImageBuilder::new(Flavor::Docker)
        .layer(LayerSpec::single(60_000))
        .build();
    let derived = ImageBuilder::new(Flavor::Docker)
        .existing_layer(&base.layers[0])
        .layer(LayerSpec::single(9_000))
        .build();
    load(&docker, &base, &[&format!("{repo}-base:1")]);
    load(&docker, &derived, &[&format!("{repo}-derived:1")]);
    let shared_layer = base.layers[0].blob.size;
    let all: BTreeSet<(String, u64)> = contents(&base)
        .union(&contents(&derived))
        .cloned()
        .collect();
    let layers_size: u64 = all.iter().map(|(_, s)| s).sum();

    let out = docker_ok(&docker, &["system", "df"]);
    let rows = table(&out);
    assert_eq!(
        rows[0],
        ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
        "{out}"
    );
    assert_eq!(
        rows[1],
        [
            "Images".to_owned(),
            "2".to_owned(),
            "0".to_owned(),
            human_size4(layers_size),
            format!("{} (100%)", human_size4(layers_size)),
        ],
        "{out}"
    );
    assert_eq!(rows[2], ["Containers", "0", "0", "0B", "0B"], "{out}");
    assert_eq!(rows[3], ["Local Volumes", "0", "0", "0B", "0B"], "{out}");
    assert_eq!(rows[4], ["Build Cache", "0", "0", "0B", "0B"], "{out}");

    let out = docker_ok(
        &docker,
        &[
            "system",
            "df",
            "-v",
            "--format",
            "{{range .Images}}{{.Repository}} {{.ID}} {{.SharedSize}} {{.UniqueSize}} {{.Containers}}\n{{end}}",
        ],
    );
    let mut lines: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            format!(
                "{repo}-base {} {} {} 0",
                base.digest(),
                human_size4(shared_layer),
                human_size4(content_size(&base) - shared_layer)
            ),
            format!(
                "{repo}-derived {} {} {} 0",
                derived.digest(),
                human_size4(shared_layer),
                human_size4(content_size(&derived) - shared_layer)
            ),
        ],
        "{out}"
    );
    let verbose = docker_ok(&docker, &["system", "df", "-v"]);
    assert!(verbose.contains("Images space usage:"), "{verbose}");
    assert!(verbose.contains("Build cache usage: 0B"), "{verbose}");

    // Containers, networks, images and build cache are pruned in turn; nothing is dangling.
    let out = docker_ok(&docker, &["system", "prune", "-f"]);
    assert_eq!(out.trim(), "Total reclaimed space: 0B");
    let out = docker_ok(&docker, &["system", "prune", "-a", "-f"]);
    let (untagged, _, total) = pruned(&out);
    assert_eq!(
        sorted(untagged),
        [format!("{repo}-base:1"), format!("{repo}-derived:1")],
        "{out}"
    );
    assert_eq!(total, human_size4(layers_size), "{out}");
    assert!(stored_blobs(&daemon.data_root()).is_empty());
    let out = docker_ok(&docker, &["system", "prune", "-f", "--volumes"]);
    assert_eq!(out.trim(), "Total reclaimed space: 0B");
}

#[test]
fn docker_py_and_dockerode_prune_and_df() {
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let repo = unique_repo("py");
    let one = ImageBuilder::new(Flavor::Oci)
        .label("keep", "yes")
        .layer(LayerSpec::single(10_000))
        .build();
    let two = ImageBuilder::new(Flavor::Oci)
        .layer(LayerSpec::single(11_000))
        .build();
    load(&docker, &one, &[&format!("{repo}-one:1")]);
    load(&docker, &two, &[&format!("{repo}-two:1")]);

    let result = run_js(
        &docker,
        r#"
const nothing = await docker.pruneImages();
const df = await docker.df();
const typed = await new Promise((resolve, reject) => docker.modem.dial({
  path: '/system/df?', method: 'GET', options: { type: 'volume' }, statusCodes: { 200: true },
}, (err, data) => err ? reject(err) : resolve(data)));
const bad = await new Promise((resolve) => docker.modem.dial({
  path: '/system/df?', method: 'GET', options: { type: 'disk' }, statusCodes: { 200: true, 400: 'bad' },
}, (err) => resolve(err ? [err.statusCode, err.json.message] : null)));
const containers = await docker.pruneContainers();
const networks = await docker.pruneNetworks();
const volumes = await docker.pruneVolumes();
const builder = await docker.pruneBuilder();
return { nothing, df, typed, bad, containers, networks, volumes, builder };
"#,
    );
    assert_eq!(
        result["nothing"],
        json!({"ImagesDeleted": null, "SpaceReclaimed": 0})
    );
    let df = &result["df"];
    assert_eq!(df["LayersSize"], content_size(&one) + content_size(&two));
    assert_eq!(df["Containers"], json!([]));
    assert_eq!(df["Volumes"], json!([]));
    assert_eq!(df["BuildCache"], json!([]));
    let mut ids: Vec<&str> = df["Images"]
        .as_array()
        .expect("Images")
        .iter()
        .map(|i| {
            assert_eq!(i["Containers"], 0, "{i}");
            assert_eq!(i["SharedSize"], 0, "{i}");
            i["Id"].as_str().expect("Id")
        })
        .collect();
    ids.sort();
    let mut expected = vec![one.digest(), two.digest()];
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(
        result["typed"],
        json!({"LayersSize": 0, "Images": null, "Containers": null, "Volumes": [], "BuildCache": null})
    );
    assert_eq!(result["bad"], json!([400, "unknown object type: disk"]));
    assert_eq!(
        result["containers"],
        json!({"ContainersDeleted": null, "SpaceReclaimed": 0})
    );
    assert_eq!(result["networks"], json!({"NetworksDeleted": null}));
    assert_eq!(
        result["volumes"],
        json!({"VolumesDeleted": null, "SpaceReclaimed": 0})
    );
    assert_eq!(
        result["builder"],
        json!({"CachesDeleted": null, "SpaceReclaimed": 0})
    );

    let out = docker.python(
        r#"
import docker, json
client = docker.from_env()
df = client.df()
pruned = client.images.prune(filters={"dangling": False, "label!": "keep"})
left = [i.id for i in client.images.list()]
try:
    client.images.prune(filters={"dangling": "maybe"})
    error = None
except docker.errors.APIError as e:
    error = [e.status_code, e.explanation]
print(json.dumps({"df": sorted(i["Id"] for i in df["Images"]), "pruned": pruned, "left": left, "error": error}))
"#,
        &[],
    );
    out.assert_success("docker-py prune");
    let got: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("json");
    assert_eq!(got["df"], json!(expected));
    assert_eq!(got["left"], json!([one.digest()]));
    assert_eq!(
        got["error"],
        json!([400, "invalid filter 'dangling=[maybe]'"])
    );
    let deleted = got["pruned"]["ImagesDeleted"].as_array().expect("deleted");
    assert_eq!(deleted[0], json!({"Untagged": format!("{repo}-two:1")}));
    let blobs: BTreeSet<String> = deleted[1..]
        .iter()
        .map(|d| d["Deleted"].as_str().expect("Deleted").to_owned())
        .collect();
    assert_eq!(
        blobs,
        contents(&two)
            .into_iter()
            .map(|(d, _)| d)
            .collect::<BTreeSet<_>>()
    );
    assert_eq!(got["pruned"]["SpaceReclaimed"], content_size(&two));
}

#[test]
fn a_prune_during_a_push_leaves_the_pushed_content_until_the_push_ends() {
    let registry = TestRegistry::shared();
    let proxy = FaultProxy::in_front_of(registry);
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket()).with_timeout(Duration::from_secs(120));
    let repo = unique_repo("leased");
    let image = ImageBuilder::new(Flavor::Docker)
        .layer(LayerSpec::single(600_000))
        .layer(LayerSpec::single(5_000))
        .build();
    let name = format!("{}/{repo}:1", proxy.host());
    load(&docker, &image, &[&name]);
    // Uploads crawl, so the push is surely still running while the prune happens.
    let slow = proxy.add_rule(FaultRule::new(
        "PUT",
        "/blobs/uploads/",
        FaultAction::SlowBody {
            bytes_per_second: 200_000,
        },
    ));
    let push = docker.spawn(&["push", &name]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxy.upload_bytes() < 50_000 {
        assert!(Instant::now() < deadline, "no upload started");
        std::thread::sleep(Duration::from_millis(20));
    }

    let out = docker_ok(&docker, &["image", "prune", "-a", "-f"]);
    let (untagged, deleted, total) = pruned(&out);
    assert_eq!(untagged, [name.as_str()], "{out}");
    assert!(
        deleted.is_empty(),
        "leased content was reported deleted:\n{out}"
    );
    assert_eq!(total, "0B", "{out}");
    let stored = stored_blobs(&daemon.data_root());
    for (digest, size) in contents(&image) {
        assert_eq!(stored.get(&digest[7..]), Some(&size), "{digest} kept");
    }

    proxy.remove_rule(slow);
    let pushed = push.wait(Duration::from_secs(120));
    pushed.assert_success("docker push during prune");
    let registry_manifest = registry.get_manifest(&repo, "1");
    assert_eq!(registry_manifest.digest, image.digest());
    for layer in &image.layers {
        assert!(registry.has_blob(&repo, &layer.blob.digest));
    }
}

fn run_js(docker: &DockerCli, script: &str) -> serde_json::Value {
    docker.dockerode_json(script)
}
