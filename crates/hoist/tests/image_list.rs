//! `GET /images/json` through real clients: every filter as the docker CLI sends it, the
//! `--tree` view, shared sizes and manifests, compared with what the generator made.

mod foundation_support;

use foundation_support::*;
use hoist_testkit::archive::{ArchiveBuilder, ArchiveFormat};
use hoist_testkit::docker::DockerCli;
use hoist_testkit::hoistd::Hoistd;
use hoist_testkit::image::{Flavor, Image, ImageBuilder, ImageIndex, IndexBuilder, LayerSpec};
use hoist_testkit::registry::TestRegistry;
use serde_json::json;

/// Three images created years apart, with labels, loaded under `<prefix>-{old,mid,new}:1`; the
/// middle one also as `<prefix>-mid:2` and `<prefix>-other:1`.
struct Fixture {
    daemon: Hoistd,
    docker: DockerCli,
    prefix: String,
    old: Image,
    mid: Image,
    new: Image,
}

impl Fixture {
    fn new() -> Fixture {
        let daemon = start_daemon();
        let docker = DockerCli::new(&daemon.socket());
        let prefix = unique_repo("ls");
        let old = ImageBuilder::new(Flavor::Oci)
            .created("2020-01-01T00:00:00Z")
            .label("tier", "base")
            .label("color", "red")
            .layer(LayerSpec::single(4_000))
            .build();
        let mid = ImageBuilder::new(Flavor::Oci)
            .created("2022-06-01T12:00:00Z")
            .label("tier", "app")
            .layer(LayerSpec::single(5_000))
            .build();
        let new = ImageBuilder::new(Flavor::Oci)
            .created("2024-03-01T00:00:00Z")
            .layer(LayerSpec::single(6_000))
            .build();
        let scratch = Scratch::new();
        let name = |n: &str| format!("{prefix}-{n}");
        let archive = scratch.archive(
            "images.tar",
            &ArchiveBuilder::new(ArchiveFormat::Oci)
                .image(&old, &[&format!("{}:1", name("old"))])
                .image(
                    &mid,
                    &[
                        &format!("{}:1", name("mid")),
                        &format!("{}:2", name("mid")),
                        &format!("{}:1", name("other")),
                    ],
                )
                .image(&new, &[&format!("{}:1", name("new"))]),
        );
        docker_load(&docker, &archive);
        Fixture {
            daemon,
            docker,
            prefix,
            old,
            mid,
            new,
        }
    }

    /// `docker image ls` with `args`, as `repo:tag id` lines, sorted (the CLI prints the names
    /// of one image in map order).
    fn ls(&self, args: &[&str]) -> Vec<String> {
        self.ls_as("{{.Repository}}:{{.Tag}} {{.ID}}", args)
    }

    fn ls_as(&self, format: &str, args: &[&str]) -> Vec<String> {
        let mut all = vec!["image", "ls", "--no-trunc", "--format", format];
        all.extend_from_slice(args);
        let mut lines: Vec<String> = docker_ok(&self.docker, &all)
            .lines()
            .map(|l| l.replace(&format!("{}-", self.prefix), ""))
            .collect();
        lines.sort();
        lines
    }

    fn row(&self, name: &str, image: &Image) -> String {
        format!("{name} {}", image.digest())
    }
}

#[test]
fn docker_image_ls_filters_by_time_label_and_reference() {
    let f = Fixture::new();
    assert_eq!(
        f.ls(&[]),
        [
            f.row("mid:1", &f.mid),
            f.row("mid:2", &f.mid),
            f.row("new:1", &f.new),
            f.row("old:1", &f.old),
            f.row("other:1", &f.mid),
        ],
        "every tag"
    );
    let mut ids: Vec<String> = docker_ok(&f.docker, &["image", "ls", "--no-trunc", "-q"])
        .lines()
        .map(str::to_owned)
        .collect();
    ids.dedup();
    assert_eq!(
        ids,
        [f.new.digest(), f.mid.digest(), f.old.digest()],
        "newest first"
    );
    let mid = format!("{}-mid:1", f.prefix);
    assert_eq!(
        f.ls(&["--filter", &format!("before={mid}")]),
        [f.row("old:1", &f.old)]
    );
    assert_eq!(
        f.ls(&["--filter", &format!("since={mid}")]),
        [f.row("new:1", &f.new)]
    );
    // By ID too, as moby resolves any image reference.
    assert_eq!(
        f.ls(&["--filter", &format!("since={}", &f.old.digest()[7..19])])
            .len(),
        4
    );
    assert_eq!(
        f.ls(&["--filter", "label=tier=app"]),
        [
            f.row("mid:1", &f.mid),
            f.row("mid:2", &f.mid),
            f.row("other:1", &f.mid)
        ]
    );
    assert_eq!(
        f.ls(&["--filter", "label=tier", "--filter", "label=color"]),
        [f.row("old:1", &f.old)]
    );
    assert_eq!(f.ls(&["--filter", "label!=tier"]), [f.row("new:1", &f.new)]);
    // As in moby 28.2, `label!=k=v` keeps only images that have `k` with another value.
    assert_eq!(
        f.ls(&["--filter", "label!=tier=app"]),
        [f.row("old:1", &f.old)]
    );

    // `until` compares with when each name was stored: just now.
    assert!(f.ls(&["--filter", "until=10m"]).is_empty());
    assert_eq!(f.ls(&["--filter", "until=2099-01-01T00:00:00Z"]).len(), 5);
    assert_eq!(f.ls(&["--filter", "until=2099-01-01"]).len(), 5);
    assert!(
        f.ls(&["--filter", "until=2000-01-01T00:00:00.5+02:00"])
            .is_empty()
    );
    assert_eq!(f.ls(&["--filter", "until=4102444800.5"]).len(), 5);

    // One digest per image, in the repository of its last name that passed the filters (by
    // name order), as moby's containerd store gives it.
    let with_digests = "{{.Repository}}:{{.Tag}} {{.Digest}}";
    assert_eq!(
        f.ls_as(with_digests, &[]),
        [
            "mid:1 <none>".to_owned(),
            "mid:2 <none>".to_owned(),
            format!("new:1 {}", f.new.digest()),
            format!("old:1 {}", f.old.digest()),
            format!("other:1 {}", f.mid.digest()),
        ]
    );
    // A reference filter keeps the matching names and that repository's digest only: no row
    // for another repository of the same image.
    let filter = format!("reference={}-mid", f.prefix);
    assert_eq!(
        f.ls_as(with_digests, &["--filter", &filter]),
        [
            format!("mid:1 {}", f.mid.digest()),
            format!("mid:2 {}", f.mid.digest()),
        ]
    );
    assert_eq!(
        f.ls(&[&format!("{}-mid:2", f.prefix)]),
        [f.row("mid:2", &f.mid)]
    );
    assert_eq!(f.ls(&["--filter", "dangling=true"]), Vec::<String>::new());

    let out = docker_fails(&f.docker, &["image", "ls", "--filter", "color=red"]);
    assert!(out.stderr.contains("invalid filter 'color'"), "{out}");
    let out = docker_fails(&f.docker, &["image", "ls", "--filter", "until=soon"]);
    assert!(
        out.stderr
            .contains("failed to parse value as time or duration: \\\"soon\\\"")
            || out
                .stderr
                .contains("failed to parse value as time or duration: \"soon\""),
        "{out}"
    );
    let out = docker_fails(
        &f.docker,
        &["image", "ls", "--filter", "before=nothing-here:1"],
    );
    assert!(
        out.stderr.contains("No such image: nothing-here:1"),
        "{out}"
    );
    drop(f.daemon);
}

#[test]
fn docker_py_and_dockerode_list_with_filters_and_shared_sizes() {
    let f = Fixture::new();
    let out = f.docker.python(
        &format!(
            r#"
import docker, json
client = docker.from_env()
app = client.images.list(filters={{"label": "tier=app"}})
old = client.images.list(filters={{"before": "{p}-mid:1"}})
no_tier = client.images.list(filters={{"label!": "tier"}})
named = client.images.list(name="{p}-new")
print(json.dumps({{
  "app": [i.id for i in app], "old": [i.id for i in old],
  "no_tier": [i.id for i in no_tier], "named": [i.tags for i in named],
}}))
"#,
            p = f.prefix
        ),
        &[],
    );
    out.assert_success("docker-py list");
    let got: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("json");
    assert_eq!(
        got,
        json!({
            "app": [f.mid.digest()],
            "old": [f.old.digest()],
            "no_tier": [f.new.digest()],
            "named": [[format!("{}-new:1", f.prefix)]],
        })
    );

    let result = run_js(
        &f.docker,
        &format!(
            r#"
const since = await docker.listImages({{ filters: {{ since: ['{p}-old:1'] }} }});
const sized = await docker.listImages({{ 'shared-size': true }});
const plain = await docker.listImages();
const err = await docker.listImages({{ filters: {{ nope: ['1'] }} }}).then(() => null, (e) => [e.statusCode, e.json.message]);
return {{
  since: since.map((i) => i.Id).sort(),
  sized: sized.map((i) => [i.Id, i.SharedSize, i.Size, i.Containers]),
  plain: plain.map((i) => i.SharedSize),
  labels: plain.map((i) => i.Labels),
  err,
}};
"#,
            p = f.prefix
        ),
    );
    let mut since = vec![f.mid.digest().to_owned(), f.new.digest().to_owned()];
    since.sort();
    assert_eq!(result["since"], json!(since));
    assert_eq!(result["err"], json!([400, "invalid filter 'nope'"]));
    // Nothing is shared between these three images; sizes are their content.
    let size = |i: &Image| i.manifest.size + i.blobs_size();
    assert_eq!(
        result["sized"],
        json!([
            [f.new.digest(), 0, size(&f.new), -1],
            [f.mid.digest(), 0, size(&f.mid), -1],
            [f.old.digest(), 0, size(&f.old), -1],
        ])
    );
    assert_eq!(result["plain"], json!([-1, -1, -1]));
    // The generator labels every image with its seed.
    let seed = |i: &Image| i.seed.to_string();
    assert_eq!(
        result["labels"],
        json!([
            {"org.hoist.testkit.seed": seed(&f.new)},
            {"org.hoist.testkit.seed": seed(&f.mid), "tier": "app"},
            {"org.hoist.testkit.seed": seed(&f.old), "tier": "base", "color": "red"},
        ])
    );
}

#[test]
fn a_reference_filter_shows_no_row_for_a_digest_of_another_repository() {
    let registry = TestRegistry::shared();
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let repo = unique_repo("pushed");
    let local = unique_repo("local");
    let image = ImageBuilder::new(Flavor::Docker)
        .layer(LayerSpec::single(3_000))
        .build();
    let pushed = format!("{}/{repo}:1", registry.host());
    let scratch = Scratch::new();
    let archive = scratch.archive(
        "image.tar",
        &ArchiveBuilder::new(ArchiveFormat::Oci).image(&image, &[&pushed, &format!("{local}:1")]),
    );
    docker_load(&docker, &archive);
    // The push records the digest of the pushed repository.
    docker.run(&["push", &pushed]).assert_success("docker push");

    let format = "{{.Repository}}:{{.Tag}} {{.Digest}}";
    let rows = docker_ok(&docker, &["image", "ls", "--format", format, &local]);
    assert_eq!(rows.trim(), format!("{local}:1 {}", image.digest()));
    let rows = docker_ok(&docker, &["image", "ls", &local]);
    assert_eq!(table(&rows).len(), 2, "header and one row:\n{rows}");
    let rows = docker_ok(
        &docker,
        &[
            "image",
            "ls",
            "--format",
            format,
            &format!("{}/{repo}", registry.host()),
        ],
    );
    assert_eq!(rows.trim(), format!("{pushed} {}", image.digest()));
}

/// A multi-platform image of which only linux/amd64 is present, with attestations.
fn partial_index(docker: &DockerCli, name: &str) -> ImageIndex {
    let index = IndexBuilder::new(Flavor::Oci)
        .platform("linux/amd64", &[LayerSpec::single(20_000)])
        .platform("linux/arm64/v8", &[LayerSpec::single(30_000)])
        .with_attestations()
        .build();
    let scratch = Scratch::new();
    let archive = scratch.archive(
        "index.tar",
        &ArchiveBuilder::new(ArchiveFormat::Oci)
            .index(&index, &[name])
            .only_platform_blobs("linux/amd64"),
    );
    docker_load(docker, &archive);
    index
}

#[test]
fn manifests_describe_platforms_and_tree_shows_them() {
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let name = format!("{}:1", unique_repo("tree"));
    let index = partial_index(&docker, &name);
    let amd64 = index.image_for("linux/amd64");
    let arm64 = index.image_for("linux/arm64/v8");
    let amd64_content = amd64.manifest.size + amd64.blobs_size();
    let amd64_attestation = &index.attestations[0];
    let attestation_content = amd64_attestation.manifest.size + amd64_attestation.blobs_size();

    let result = run_js(
        &docker,
        &format!(
            r#"
const list = await docker.listImages({{ manifests: true }});
const inspect = await new Promise((resolve, reject) => docker.modem.dial({{
  path: '/images/{name}/json?', method: 'GET', options: {{ manifests: true }},
  statusCodes: {{ 200: true, 404: 'no such image' }},
}}, (err, data) => err ? reject(err) : resolve(data)));
const socketPath = process.env.DOCKER_HOST.replace('unix://', '');
const old = await new Docker({{ socketPath, version: 'v1.46' }}).listImages({{ manifests: true }});
const v147 = new Docker({{ socketPath, version: 'v1.47' }});
const oldInspect = await new Promise((resolve, reject) => v147.modem.dial({{
  path: '/images/{name}/json?', method: 'GET', options: {{ manifests: true }},
  statusCodes: {{ 200: true }},
}}, (err, data) => err ? reject(err) : resolve(data)));
return {{ list, inspect: inspect.Manifests, old: old.map((i) => 'Manifests' in i), oldInspect: 'Manifests' in oldInspect }};
"#
        ),
    );
    let image = &result["list"][0];
    assert_eq!(image["Id"], index.digest());
    assert_eq!(image["RepoTags"], json!([name]));
    let manifests = image["Manifests"].as_array().expect("Manifests");
    assert_eq!(manifests.len(), 4, "{image:#}");
    let find = |digest: &str| {
        manifests
            .iter()
            .find(|m| m["ID"] == digest)
            .unwrap_or_else(|| panic!("{digest} in {image:#}"))
    };
    let m = find(amd64.digest());
    assert_eq!(m["Available"], true);
    assert_eq!(m["Kind"], "image");
    assert_eq!(
        m["Size"],
        json!({"Content": amd64_content, "Total": amd64_content})
    );
    assert_eq!(
        m["ImageData"],
        json!({"Platform": {"architecture": "amd64", "os": "linux"}, "Size": {"Unpacked": 0}, "Containers": null})
    );
    assert_eq!(m["Descriptor"]["digest"], amd64.digest());
    assert_eq!(m["Descriptor"]["platform"]["architecture"], "amd64");
    let m = find(arm64.digest());
    assert_eq!(m["Available"], false);
    assert_eq!(m["Kind"], "image");
    // Only the manifest of the absent platform is stored.
    assert_eq!(m["Size"]["Content"], arm64.manifest.size);
    assert_eq!(m["ImageData"]["Platform"]["variant"], "v8");
    let m = find(amd64_attestation.digest());
    assert_eq!(m["Kind"], "attestation");
    assert_eq!(m["AttestationData"], json!({"For": amd64.digest()}));
    assert_eq!(m["Size"]["Content"], attestation_content);
    assert!(m.get("ImageData").is_none());
    let total: u64 = manifests
        .iter()
        .map(|m| m["Size"]["Content"].as_u64().unwrap())
        .sum();
    assert_eq!(image["Size"], total);
    assert_eq!(result["inspect"], image["Manifests"]);
    // Older API versions do not know the parameter.
    assert_eq!(result["old"], json!([false]));
    assert_eq!(result["oldInspect"], false);

    let tree = without_ansi(&docker_ok(&docker, &["image", "ls", "--tree"]));
    let rows = table(&tree);
    assert!(
        rows.iter()
            .any(|r| r[..] == ["IMAGE", "ID", "DISK USAGE", "CONTENT SIZE", "EXTRA"]),
        "{tree}"
    );
    let top = rows
        .iter()
        .find(|r| r[0] == name)
        .unwrap_or_else(|| panic!("{tree}"));
    assert_eq!(top[1], short_id(index.digest()), "{tree}");
    assert_eq!(top[2], human_size(total), "{tree}");
    let platform_row = |platform: &str| {
        rows.iter()
            .find(|r| r[0].ends_with(platform))
            .unwrap_or_else(|| panic!("{platform} in {tree}"))
    };
    let amd = platform_row("linux/amd64");
    assert_eq!(amd[1], short_id(amd64.digest()), "{tree}");
    assert_eq!(amd[2], human_size(amd64_content), "{tree}");
    let arm = platform_row("linux/arm64/v8");
    assert_eq!(arm[1], short_id(arm64.digest()), "{tree}");
    assert_eq!(arm[2], human_size(arm64.manifest.size), "{tree}");
    assert!(!tree.contains("unknown/unknown"), "{tree}");
}

/// The text without terminal escape sequences (the tree view styles its header).
fn without_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn run_js(docker: &DockerCli, script: &str) -> serde_json::Value {
    docker.dockerode_json(script)
}
