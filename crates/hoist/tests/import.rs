//! `docker import`: a tarball becomes a one-layer image whose config carries the `--change`
//! instructions, and which pushes like any other. Checked against the tar's own bytes and
//! digests and against what the registry ends up holding.

mod push_support;

use std::io::Write;

use hoist_testkit::docker::DockerCli;
use hoist_testkit::registry::TestRegistry;
use push_support::*;
use sha2::Digest as _;

/// A small root filesystem as a tar.
fn rootfs_tar() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, content) in [
        ("bin/app", b"#!/bin/sh\necho hello\n".to_vec()),
        ("etc/app.conf", vec![b'x'; 3000]),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o755);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        builder
            .append_data(&mut header, path, &content[..])
            .expect("append to tar");
    }
    builder.into_inner().expect("finish tar")
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    gzip_filter("-dc", bytes)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    gzip_filter("-c", bytes)
}

/// `bytes` through the gzip command with `flag`.
fn gzip_filter(flag: &str, bytes: &[u8]) -> Vec<u8> {
    let out = std::process::Command::new("gzip")
        .arg(flag)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().expect("gzip stdin").write_all(bytes)?;
            child.wait_with_output()
        })
        .expect("run gzip");
    assert!(out.status.success(), "gzip {flag} failed");
    out.stdout
}

/// GET a blob of `repo` from the registry, whole.
fn registry_blob(registry: &TestRegistry, repo: &str, digest: &str) -> Vec<u8> {
    let response = hoist_testkit::http_client()
        .get(format!("{}/v2/{repo}/blobs/{digest}", registry.url()))
        .send()
        .expect("GET blob");
    assert_eq!(response.status(), 200, "GET blob {digest}");
    response.bytes().expect("blob body").to_vec()
}

#[test]
fn docker_import_makes_a_one_layer_image_with_the_changes_that_pushes_byte_exact() {
    let registry = TestRegistry::shared();
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let tar = rootfs_tar();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("rootfs.tar");
    std::fs::write(&file, &tar).expect("write tar");
    let repo = unique_repo("import/plain");
    let name = format!("{}/{repo}:imp", registry.host());

    let out = cli.run(&[
        "import",
        "-c",
        r#"CMD ["/bin/app", "--serve"]"#,
        "-c",
        r#"ENTRYPOINT ["/bin/sh", "-c"]"#,
        "-c",
        r#"ENV A=1 B="two words""#,
        "-c",
        "WORKDIR /srv",
        "-c",
        "LABEL team=infra",
        "-c",
        "USER 1000",
        "-c",
        "EXPOSE 8080 53/udp",
        "-m",
        "made by a test",
        file.to_str().expect("utf-8 path"),
        &name,
    ]);
    out.assert_success("docker import");
    let id = out.stdout.trim().to_owned();
    assert!(
        id.starts_with("sha256:") && id.len() == 71,
        "import printed {:?}",
        out.stdout
    );
    let config: serde_json::Value =
        serde_json::from_str(&inspect_json(&cli, &name, "{{json .Config}}")).expect("config");
    assert_eq!(
        config,
        serde_json::json!({
            "Cmd": ["/bin/app", "--serve"],
            "Entrypoint": ["/bin/sh", "-c"],
            "Env": ["A=1", "B=two words"],
            "WorkingDir": "/srv",
            "Labels": {"team": "infra"},
            "User": "1000",
            "ExposedPorts": {"53/udp": {}, "8080/tcp": {}},
        })
    );
    assert_eq!(inspect_json(&cli, &name, "{{.Id}}"), id);
    assert_eq!(inspect_json(&cli, &name, "{{.Comment}}"), "made by a test");
    assert_eq!(
        inspect_json(&cli, &name, "{{json .RootFS.Layers}}"),
        format!("[\"{}\"]", sha256(&tar))
    );

    // What the registry receives is what was imported: the image ID is the manifest digest and
    // the one layer is the tar, gzip-compressed.
    let pushed = cli.run(&["push", &name]);
    pushed.assert_success("docker push");
    assert!(
        pushed.stdout.contains(&format!("imp: digest: {id} size: ")),
        "{}",
        pushed.stdout
    );
    let manifest = registry.get_manifest(&repo, "imp");
    assert_eq!(manifest.digest, id);
    let manifest = manifest.json();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1);
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let layer = registry_blob(
        registry,
        &repo,
        layers[0]["digest"].as_str().expect("digest"),
    );
    assert_eq!(gunzip(&layer), tar);
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .expect("config digest");
    let config: serde_json::Value =
        serde_json::from_slice(&registry_blob(registry, &repo, config_digest)).expect("config");
    assert_eq!(config["rootfs"]["diff_ids"][0], sha256(&tar));
    assert_eq!(config["history"][0]["comment"], "made by a test");
    assert_eq!(config["os"], "linux");
}

fn inspect_json(cli: &DockerCli, name: &str, format: &str) -> String {
    let out = cli.run(&["image", "inspect", "--format", format, name]);
    out.assert_success("docker image inspect");
    out.stdout.trim().to_owned()
}

#[test]
fn a_gzip_tarball_from_stdin_is_kept_as_it_came() {
    let registry = TestRegistry::shared();
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let tar = rootfs_tar();
    let mut gz = Vec::new();
    {
        let mut child = std::process::Command::new("gzip")
            .arg("-c")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run gzip -c");
        child
            .stdin
            .take()
            .expect("gzip stdin")
            .write_all(&tar)
            .expect("feed gzip");
        let out = child.wait_with_output().expect("gzip output");
        assert!(out.status.success());
        gz.extend(out.stdout);
    }
    let repo = unique_repo("import/gz");
    let name = format!("{}/{repo}", registry.host());

    let out = cli.run_with_stdin(&["import", "-", &name], gz.clone());
    out.assert_success("docker import -");
    assert_eq!(
        inspect_json(&cli, &format!("{name}:latest"), "{{json .RootFS.Layers}}"),
        format!("[\"{}\"]", sha256(&tar))
    );
    cli.run(&["push", &name]).assert_success("docker push");
    let manifest = registry.get_manifest(&repo, "latest").json();
    assert_eq!(manifest["layers"][0]["digest"], sha256(&gz));
    assert_eq!(
        registry_blob(registry, &repo, &sha256(&gz)),
        gz,
        "the layer is the gzip stream as given"
    );
}

#[test]
fn an_import_without_a_name_is_dangling_and_bad_changes_are_refused_with_400() {
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let tar = rootfs_tar();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("rootfs.tar");
    std::fs::write(&file, &tar).expect("write tar");
    let path = file.to_str().expect("utf-8 path");

    let out = cli.run(&["import", path]);
    out.assert_success("docker import without a name");
    let dangling = cli.run(&["images", "--filter", "dangling=true", "-q", "--no-trunc"]);
    assert_eq!(dangling.stdout.trim(), out.stdout.trim());
    assert_eq!(
        inspect_json(&cli, out.stdout.trim(), "{{.Comment}}"),
        "Imported from -"
    );

    let refused = cli.run(&["import", "-c", "RUN make", path, "x:1"]);
    assert!(!refused.success(), "{refused}");
    assert!(
        refused
            .stderr
            .contains("Error response from daemon: run is not a valid change command"),
        "{refused}"
    );
    let raw = hoistd.request(
        "POST",
        "/v1.50/images/create?fromSrc=-&repo=x&changes=EXPOSE%20eighty",
        &[("Content-Type", "text/plain")],
        &tar,
    );
    assert_eq!(raw.status, 400, "{}", String::from_utf8_lossy(&raw.body));
    let raw = hoistd.request(
        "POST",
        &format!(
            "/v1.50/images/create?fromSrc=-&repo=x%40sha256%3A{}",
            "a".repeat(64)
        ),
        &[],
        &tar,
    );
    assert_eq!(raw.status, 400);
    assert!(String::from_utf8_lossy(&raw.body).contains("cannot import digest reference"));
    // The raw answer of a good import: one status line with the ID.
    let raw = hoistd.request(
        "POST",
        "/v1.50/images/create?fromSrc=-&repo=x&tag=2",
        &[],
        &tar,
    );
    assert_eq!(raw.status, 200);
    let body = String::from_utf8(raw.body).expect("utf-8");
    assert!(
        body.starts_with("{\"status\":\"sha256:") && body.ends_with("\"}\r\n"),
        "{body:?}"
    );
    let images = cli.run(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(
        images.stdout.lines().any(|l| l == "x:2"),
        "{}",
        images.stdout
    );

    // An image may be called `create`: the import route does not shadow its removal.
    cli.run(&["import", path, "create"])
        .assert_success("docker import as `create`");
    let removed = cli.run(&["rmi", "create"]);
    removed.assert_success("docker rmi create");
    assert!(
        removed.stdout.contains("Untagged: create:latest"),
        "{}",
        removed.stdout
    );
}

/// The names of the blobs in the daemon's store.
fn stored_blob_names(hoistd: &hoist_testkit::hoistd::Hoistd) -> Vec<String> {
    let dir = hoistd.data_root().join("blobs/sha256");
    let mut names: Vec<String> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .map(|e| {
                e.expect("blob entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("list {}: {e}", dir.display()),
    };
    names.sort();
    names
}

/// moby unpacks what it imports: a body that is not a whole tar (random bytes, a tar cut inside
/// an entry, a gzip stream of something else) fails the import with 500 and the unpacker's
/// reason, and leaves nothing behind; the daemon goes on importing.
#[test]
fn an_import_of_something_that_is_not_a_whole_tar_is_refused_and_leaves_nothing() {
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let before = stored_blob_names(&hoistd);
    let tar = rootfs_tar();
    let random: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let truncated = tar[..700].to_vec();
    let gzip_of_text = gzip(&b"this is no tar\n".repeat(100));

    for (what, body, reason) in [
        ("random bytes", &random, "not a well-formed tar"),
        ("a truncated tar", &truncated, "unexpected EOF"),
        ("gzip of text", &gzip_of_text, "not a well-formed gzip tar"),
    ] {
        let out = cli.run_with_stdin(&["import", "-", "refused:1"], body.clone());
        assert!(!out.success(), "{what}: {out}");
        let stderr = out.stderr.trim_end();
        assert!(
            stderr.starts_with("Error response from daemon: failed to extract layer: ")
                && stderr.contains(reason)
                && !stderr.contains('\n'),
            "{what}: {out}"
        );
        let raw = hoistd.request("POST", "/v1.50/images/create?fromSrc=-&repo=raw", &[], body);
        assert_eq!(raw.status, 500, "{what}");
        let message: serde_json::Value = serde_json::from_slice(&raw.body).expect("JSON error");
        assert!(
            message["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("failed to extract layer: ") && m.contains(reason)),
            "{what}: {message}"
        );
        assert_eq!(stored_blob_names(&hoistd), before, "{what}: blobs left");
    }
    assert_eq!(cli.run(&["images", "-a", "-q"]).stdout, "");

    let good = cli.run_with_stdin(&["import", "-", "good:1"], tar.clone());
    good.assert_success("an import after the refused ones");
    let diff_ids = inspect_json(&cli, "good:1", "{{json .RootFS.Layers}}");
    assert_eq!(diff_ids, format!("[\"{}\"]", sha256(&tar)));
}

/// Go's `archive/tar`, which moby unpacks with, ends an archive at the end of its input when
/// that falls between entries: an empty body is an empty layer, and a tar without its closing
/// zero blocks is whole. Both import, with the DiffID of the bytes given.
#[test]
fn an_empty_body_and_a_tar_without_end_marker_import_as_moby_takes_them() {
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let tar = rootfs_tar();
    // The entries end where the two 512-byte zero blocks (and any padding after) begin.
    let last_data = tar.iter().rposition(|b| *b != 0).expect("tar content");
    let unterminated = tar[..last_data.div_ceil(512) * 512].to_vec();
    assert!(unterminated.len() < tar.len());
    for (what, body) in [("empty", Vec::new()), ("unterminated", unterminated)] {
        let name = format!("{what}:1");
        cli.run_with_stdin(&["import", "-", &name], body.clone())
            .assert_success(what);
        assert_eq!(
            inspect_json(&cli, &name, "{{json .RootFS.Layers}}"),
            format!("[\"{}\"]", sha256(&body)),
            "{what}"
        );
    }
}
