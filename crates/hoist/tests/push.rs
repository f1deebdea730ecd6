//! `docker push` against the real registry: what the CLI prints, what the registry ends up
//! holding (compared with the generator's bytes), and the statuses of the Engine API.

mod push_support;

use hoist_testkit::archive::ArchiveFormat;
use hoist_testkit::docker::DockerCli;
use hoist_testkit::http1::query_escape;
use hoist_testkit::image::{Compression, Flavor, ImageBuilder, IndexBuilder, LayerSpec};
use hoist_testkit::registry::TestRegistry;
use push_support::*;
use serde_json::json;

fn small_image(flavor: Flavor, seed: u64) -> hoist_testkit::image::Image {
    ImageBuilder::new(flavor)
        .seed(seed)
        .layers([
            LayerSpec::single(300_000),
            LayerSpec::files(&[20_000, 5_000]),
            LayerSpec::single(1_000),
        ])
        .build()
}

#[test]
fn push_of_a_docker_archive_image_is_byte_exact_and_reported_like_docker() {
    let registry = TestRegistry::shared();
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let image = small_image(Flavor::Docker, 1);
    let repo = unique_repo("team/plain");
    let name = format!("{}/{repo}:1.0", registry.host());
    load_image(&cli, &image, &[&name], ArchiveFormat::DockerLegacy);

    let out = cli.run(&["push", &name]);
    out.assert_success("docker push");
    let first_line = out.stdout.lines().next().unwrap_or_default();
    assert_eq!(
        first_line,
        format!("The push refers to repository [{}/{repo}]", registry.host())
    );
    for layer in &image.layers {
        let lines = layer_lines(&out.stdout, layer_id(&layer.blob.digest));
        assert_eq!(
            lines,
            ["Preparing", "Pushed"],
            "layer {}:\n{}",
            layer.blob.digest,
            out.stdout
        );
    }
    let digest_line = format!("1.0: digest: {} size: {}", image.digest(), image.size());
    assert!(
        out.stdout.lines().any(|l| l == digest_line),
        "expected {digest_line:?} in:\n{}",
        out.stdout
    );
    assert!(out.stderr.trim().is_empty(), "stderr: {}", out.stderr);
    assert_registry_has_image(registry, &repo, "1.0", &image);

    // RepoDigests records where the image now lives.
    let inspect = cli.run(&[
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        &name,
    ]);
    inspect.assert_success("inspect");
    let digests: Vec<String> =
        serde_json::from_str(inspect.stdout.trim()).expect("RepoDigests JSON");
    assert_eq!(
        digests,
        [format!("{}/{repo}@{}", registry.host(), image.digest())]
    );

    // Pushing again sends nothing: every layer already exists.
    let again = cli.run(&["push", &name]);
    again.assert_success("second docker push");
    for layer in &image.layers {
        let lines = layer_lines(&again.stdout, layer_id(&layer.blob.digest));
        assert_eq!(
            lines,
            ["Preparing", "Layer already exists"],
            "{}",
            again.stdout
        );
    }
    assert!(again.stdout.contains(&digest_line));
}

#[test]
fn push_keeps_oci_media_types_and_zstd_layers() {
    let registry = TestRegistry::shared();
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let image = ImageBuilder::new(Flavor::Oci)
        .seed(2)
        .layers([
            LayerSpec::single(200_000).compression(Compression::ZSTD),
            LayerSpec::single(100_000).compression(Compression::None),
            LayerSpec::single(50_000),
        ])
        .build();
    let repo = unique_repo("oci");
    let name = format!("{}/{repo}:v2", registry.host());
    load_image(&cli, &image, &[&name], ArchiveFormat::Oci);
    cli.run(&["push", &name]).assert_success("docker push");
    assert_registry_has_image(registry, &repo, "v2", &image);
}

#[test]
fn push_all_tags_pushes_every_local_tag_sorted_with_a_digest_line_each() {
    let registry = TestRegistry::shared();
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let (one, two) = (small_image(Flavor::Docker, 3), small_image(Flavor::Oci, 4));
    let repo = unique_repo("alltags");
    let base = format!("{}/{repo}", registry.host());
    load_image(
        &cli,
        &one,
        &[&format!("{base}:b"), &format!("{base}:a")],
        ArchiveFormat::DockerBlobs,
    );
    load_image(&cli, &two, &[&format!("{base}:c")], ArchiveFormat::Oci);
    // Another repository's tag must not be pushed.
    load_image(
        &cli,
        &two,
        &[&format!("{base}-other:zzz")],
        ArchiveFormat::Oci,
    );

    let out = cli.run(&["push", "--all-tags", &base]);
    out.assert_success("docker push -a");
    let refers = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("The push refers to"))
        .count();
    assert_eq!(refers, 1, "{}", out.stdout);
    let digest_lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.contains(": digest: "))
        .collect();
    assert_eq!(
        digest_lines,
        [
            format!("a: digest: {} size: {}", one.digest(), one.size()),
            format!("b: digest: {} size: {}", one.digest(), one.size()),
            format!("c: digest: {} size: {}", two.digest(), two.size()),
        ]
    );
    let mut tags = registry.tags(&repo);
    tags.sort();
    assert_eq!(tags, ["a", "b", "c"]);
    assert_registry_has_image(registry, &repo, "b", &one);
    assert_registry_has_image(registry, &repo, "c", &two);
    // The second tag of the same image finds its layers pushed already in this request.
    let after_b: String = out
        .stdout
        .split("a: digest:")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    for layer in &one.layers {
        assert!(
            layer_lines(&after_b, layer_id(&layer.blob.digest)).contains(&"Layer already exists"),
            "{}",
            out.stdout
        );
    }
}

#[test]
fn tag_parameter_and_name_forms_of_the_engine_api() {
    let registry = TestRegistry::shared();
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let (one, two) = (
        small_image(Flavor::Docker, 5),
        small_image(Flavor::Docker, 6),
    );
    let repo = unique_repo("forms");
    let base = format!("{}/{repo}", registry.host());
    load_image(
        &cli,
        &one,
        &[&format!("{base}:one")],
        ArchiveFormat::DockerLegacy,
    );
    load_image(
        &cli,
        &two,
        &[&format!("{base}:two")],
        ArchiveFormat::DockerLegacy,
    );
    let auth = [("X-Registry-Auth", "e30=")];

    // `tag` replaces the tag written in the name.
    let r = hoistd.request(
        "POST",
        &format!("/v1.50/images/{base}:one/push?tag=two"),
        &auth,
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(registry.tags(&repo), ["two"]);
    assert_eq!(registry.get_manifest(&repo, "two").digest, two.digest());

    // A tag in the name and no `tag` pushes that tag only (not all tags).
    let r = hoistd.request("POST", &format!("/images/{base}:one/push"), &auth, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let mut tags = registry.tags(&repo);
    tags.sort();
    assert_eq!(tags, ["one", "two"]);
    assert_registry_has_image(registry, &repo, "one", &one);

    // The stream: first line, digest line, then a separate PushResult aux.
    let msgs = messages(&r.body);
    assert_eq!(
        msgs[0],
        json!({"status": format!("The push refers to repository [{base}]")})
    );
    let n = msgs.len();
    assert_eq!(
        msgs[n - 2],
        json!({"status": format!("one: digest: {} size: {}", one.digest(), one.size())})
    );
    assert_eq!(
        msgs[n - 1],
        json!({"progressDetail": {}, "aux": {"Tag": "one", "Digest": one.digest(), "Size": one.size()}})
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(
        r.body.windows(2).any(|w| w == b"\r\n"),
        "messages are separated by CRLF"
    );
}

#[test]
fn docker_py_pushes_by_short_name_with_a_json_body() {
    let registry = TestRegistry::shared();
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let image = small_image(Flavor::Oci, 7);
    let repo = unique_repo("py");
    let base = format!("{}/{repo}", registry.host());
    load_image(
        &cli,
        &image,
        &[&format!("{base}:x"), &format!("{base}:y")],
        ArchiveFormat::Oci,
    );
    // docker-py sends the name as given, `{}` as the body when it has no credentials, and no
    // `tag` for "all tags".
    let script = format!(
        r#"
import docker, json
c = docker.APIClient(base_url="unix://{socket}", version="auto")
events = list(c.push("{base}", stream=True, decode=True))
errors = [e for e in events if "error" in e or "errorDetail" in e]
assert not errors, errors
print(json.dumps([e for e in events if "aux" in e]))
"#,
        socket = hoistd.socket().display(),
    );
    let out = cli.python(&script, &[]);
    out.assert_success("docker-py push");
    let auxes: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("aux list");
    assert_eq!(auxes[0]["aux"]["Tag"], "x");
    assert_eq!(auxes[1]["aux"]["Tag"], "y");
    assert_registry_has_image(registry, &repo, "x", &image);
    assert_registry_has_image(registry, &repo, "y", &image);
}

#[test]
fn multi_platform_index_is_pushed_whole_with_attestations() {
    let registry = TestRegistry::shared();
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let index = IndexBuilder::new(Flavor::Oci)
        .seed(8)
        .platform(
            "linux/amd64",
            &[LayerSpec::single(100_000), LayerSpec::single(10_000)],
        )
        .platform("linux/arm64/v8", &[LayerSpec::single(90_000)])
        .platform("linux/arm/v7", &[LayerSpec::single(80_000)])
        .with_attestations()
        .build();
    let repo = unique_repo("multi");
    let name = format!("{}/{repo}:latest", registry.host());
    load_index(&cli, &index, &[&name], |b| b);
    let out = cli.run(&["push", &name]);
    out.assert_success("docker push of an index");
    assert!(
        out.stdout.contains(&format!(
            "latest: digest: {} size: {}",
            index.digest(),
            index.size()
        )),
        "{}",
        out.stdout
    );
    assert_registry_has_index(registry, &repo, "latest", &index);
}

#[test]
fn platform_selects_one_manifest_of_an_index() {
    let registry = TestRegistry::shared();
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let index = IndexBuilder::new(Flavor::Oci)
        .seed(9)
        .platform("linux/amd64", &[LayerSpec::single(60_000)])
        .platform("linux/arm64/v8", &[LayerSpec::single(70_000)])
        .build();
    let repo = unique_repo("platform");
    let name = format!("{}/{repo}:1", registry.host());
    load_index(&cli, &index, &[&name], |b| b);

    // `arm64` means `arm64/v8`, as in containerd.
    let out = cli.run(&["push", "--platform", "linux/arm64", &name]);
    out.assert_success("docker push --platform");
    let arm = index.image_for("linux/arm64/v8");
    assert_registry_has_image(registry, &repo, "1", arm);
    let amd = index.image_for("linux/amd64");
    assert!(
        !registry.has_blob(&repo, &amd.layers[0].blob.digest),
        "other platforms stay local"
    );

    // A platform the image lacks: 404 before the stream, with moby's wording.
    let platform = r#"{"os":"linux","architecture":"s390x"}"#;
    let path = format!(
        "/v1.50/images/{}/{repo}/push?tag=1&platform={}",
        registry.host(),
        query_escape(platform)
    );
    let r = hoistd.request("POST", &path, &[("X-Registry-Auth", "e30=")], b"");
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json()["message"],
        format!(
            "image with reference {name} was found but does not provide the specified platform (linux/s390x)"
        )
    );
    let cli_out = cli.run(&["push", "--platform", "linux/s390x", &name]);
    assert!(!cli_out.success());
    assert!(
        cli_out
            .stderr
            .contains("does not provide the specified platform (linux/s390x)"),
        "{}",
        cli_out.stderr
    );

    // Bad platform JSON and missing fields are 400.
    for (bad, message) in [
        ("linux/amd64", "failed to parse platform"),
        (
            r#"{"os":"linux"}"#,
            "both OS and Architecture must be provided",
        ),
        (
            r#"{"variant":"v8"}"#,
            "optional platform fields provided, but OS and Architecture are missing",
        ),
    ] {
        let path = format!(
            "/v1.50/images/{}/{repo}/push?tag=1&platform={}",
            registry.host(),
            query_escape(bad)
        );
        let r = hoistd.request("POST", &path, &[("X-Registry-Auth", "e30=")], b"");
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert!(
            r.json()["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with(message),
            "{bad}: {}",
            r.text()
        );
    }

    // Below API 1.46 `platform` is ignored: the whole index goes.
    let path = format!(
        "/v1.45/images/{}/{repo}/push?tag=1&platform={}",
        registry.host(),
        query_escape(platform)
    );
    let r = hoistd.request("POST", &path, &[("X-Registry-Auth", "e30=")], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_registry_has_index(registry, &repo, "1", &index);
}

#[test]
fn platform_of_a_single_platform_image_must_match() {
    let registry = TestRegistry::shared();
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let image = small_image(Flavor::Docker, 10);
    let repo = unique_repo("single-platform");
    let name = format!("{}/{repo}:1", registry.host());
    load_image(&cli, &image, &[&name], ArchiveFormat::DockerLegacy);
    let wrong = cli.run(&["push", "--platform", "linux/arm64", &name]);
    assert!(!wrong.success());
    assert!(
        wrong
            .stderr
            .contains("does not provide the specified platform (linux/arm64)"),
        "{}",
        wrong.stderr
    );
    assert!(registry.tags(&repo).is_empty());
    cli.run(&["push", "--platform", "linux/amd64", &name])
        .assert_success("matching platform");
    assert_registry_has_image(registry, &repo, "1", &image);
}

#[test]
fn cross_repository_mount_from_where_the_blobs_went_before() {
    let registry = TestRegistry::shared();
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let image = small_image(Flavor::Docker, 11);
    let (first, second) = (unique_repo("mount/source"), unique_repo("mount/target"));
    let a = format!("{}/{first}:1", registry.host());
    let b = format!("{}/{second}:1", registry.host());
    load_image(&cli, &image, &[&a], ArchiveFormat::DockerLegacy);
    cli.run(&["push", &a]).assert_success("first push");
    cli.run(&["tag", &a, &b]).assert_success("tag");
    let out = cli.run(&["push", &b]);
    out.assert_success("second push");
    for layer in &image.layers {
        let lines = layer_lines(&out.stdout, layer_id(&layer.blob.digest));
        assert_eq!(
            lines,
            ["Preparing", &format!("Mounted from {first}")],
            "{}",
            out.stdout
        );
    }
    assert_registry_has_image(registry, &second, "1", &image);
}

#[test]
fn partial_index_is_pushed_whole_when_the_registry_has_the_rest() {
    let registry = TestRegistry::shared();
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let index = IndexBuilder::new(Flavor::Oci)
        .seed(12)
        .platform("linux/amd64", &[LayerSpec::single(40_000)])
        .platform("linux/arm64/v8", &[LayerSpec::single(50_000)])
        .build();
    let repo = unique_repo("partial-whole");
    // The registry already holds the whole index under another tag (an earlier pull source).
    registry.push_index(&repo, "source", &index);
    let name = format!("{}/{repo}:copy", registry.host());
    load_index(&cli, &index, &[&name], |b| {
        b.only_platform_blobs("linux/amd64")
    });
    let out = cli.run(&["push", &name]);
    out.assert_success("push of a partial index");
    assert!(
        out.stdout
            .contains(&format!("copy: digest: {}", index.digest())),
        "{}",
        out.stdout
    );
    assert_registry_has_index(registry, &repo, "copy", &index);
}

#[test]
fn partial_index_falls_back_to_the_host_platform_manifest_under_the_tag() {
    let registry = TestRegistry::shared();
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let index = IndexBuilder::new(Flavor::Oci)
        .seed(13)
        .platform("linux/amd64", &[LayerSpec::single(40_000)])
        .platform("linux/arm64/v8", &[LayerSpec::single(50_000)])
        .build();
    let repo = unique_repo("partial-fallback");
    let name = format!("{}/{repo}:1", registry.host());
    load_index(&cli, &index, &[&name], |b| {
        b.only_platform_blobs("linux/amd64")
    });
    let host = index.image_for("linux/amd64");

    let r = hoistd.request(
        "POST",
        &format!("/v1.50/images/{}/{repo}/push?tag=1", registry.host()),
        &[("X-Registry-Auth", "e30=")],
        b"",
    );
    assert_eq!(r.status, 200);
    let msgs = messages(&r.body);
    assert!(
        msgs.iter().all(|m| m.get("errorDetail").is_none()),
        "{}",
        r.text()
    );
    let aux = msgs
        .iter()
        .find_map(|m| {
            m.get("aux")
                .filter(|a| a.get("manifestPushedInsteadOfIndex").is_some())
        })
        .unwrap_or_else(|| panic!("no manifestPushedInsteadOfIndex aux in {}", r.text()));
    assert_eq!(aux["manifestPushedInsteadOfIndex"], true);
    assert_eq!(aux["originalIndex"]["digest"], index.digest());
    assert_eq!(aux["selectedManifest"]["digest"], host.digest());
    let note = msgs
        .iter()
        .filter_map(|m| m["status"].as_str())
        .find(|s| s.contains("instead of the image index"));
    assert!(
        note.is_some(),
        "a visible status line explains the fallback: {}",
        r.text()
    );
    assert_registry_has_image(registry, &repo, "1", host);

    // Nothing usable: no complete manifest for this host.
    let arm_only = IndexBuilder::new(Flavor::Oci)
        .seed(14)
        .platform("linux/arm64/v8", &[LayerSpec::single(10_000)])
        .platform("linux/s390x", &[LayerSpec::single(10_000)])
        .build();
    let name2 = format!("{}/{repo}-none:1", registry.host());
    load_index(&cli, &arm_only, &[&name2], |b| {
        b.only_platform_blobs("linux/s390x")
    });
    let out = cli.run(&["push", &name2]);
    assert!(!out.success(), "{}", out.stdout);
    assert!(
        out.stderr.contains("only partly in the local store"),
        "{}",
        out.stderr
    );
}

#[test]
fn missing_images_are_404_and_bad_names_400_before_the_stream() {
    let registry = TestRegistry::shared();
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let repo = unique_repo("missing");
    let name = format!("{}/{repo}:1", registry.host());

    let out = cli.run(&["push", &name]);
    assert!(!out.success());
    assert_eq!(
        out.stderr.trim(),
        format!("Error response from daemon: No such image: {name}")
    );

    let auth = [("X-Registry-Auth", "e30=")];
    let r = hoistd.request(
        "POST",
        &format!("/v1.50/images/{}/{repo}/push?tag=1", registry.host()),
        &auth,
        b"",
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({"message": format!("No such image: {name}")})
    );
    // Docker Hub names are familiar.
    let r = hoistd.request(
        "POST",
        "/v1.50/images/docker.io/library/nothing-here/push?tag=latest",
        &auth,
        b"",
    );
    assert_eq!(
        r.json(),
        json!({"message": "No such image: nothing-here:latest"})
    );
    // All tags of a repository without local tags.
    let r = hoistd.request(
        "POST",
        &format!("/v1.50/images/{}/{repo}/push", registry.host()),
        &auth,
        b"",
    );
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json(),
        json!({"message": format!("No such image: {}/{repo}", registry.host())})
    );
    // Invalid references are 400 with distribution's wording.
    let r = hoistd.request("POST", "/v1.50/images/Upper/push?tag=1", &auth, b"");
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        "invalid reference format: repository name (library/Upper) must be lowercase"
    );
    let r = hoistd.request("POST", "/v1.50/images/foo/push?tag=bad:tag", &auth, b"");
    assert_eq!(r.status, 400, "{}", r.text());
    // Nothing was pushed.
    assert!(registry.tags(&repo).is_empty());
}

#[test]
fn quiet_push_prints_the_reference_only() {
    let registry = TestRegistry::shared();
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let image = small_image(Flavor::Docker, 15);
    let repo = unique_repo("quiet");
    let name = format!("{}/{repo}:q", registry.host());
    load_image(&cli, &image, &[&name], ArchiveFormat::DockerLegacy);
    let out = cli.run(&["push", "-q", &name]);
    out.assert_success("docker push -q");
    assert_eq!(out.stdout.trim(), name);
    assert_registry_has_image(registry, &repo, "q", &image);
}

#[test]
fn loopback_registries_need_tls_when_insecure_loopback_is_off() {
    let registry = TestRegistry::shared();
    let image = small_image(Flavor::Docker, 16);
    let repo = unique_repo("secure-loopback");
    let name = format!("{}/{repo}:1", registry.host());

    // Verified TLS is required: the plain-HTTP registry fails with a clear error.
    let hoistd = start_hoistd_with(json!({"insecure-loopback": false}));
    let cli = DockerCli::new(&hoistd.socket());
    load_image(&cli, &image, &[&name], ArchiveFormat::DockerLegacy);
    let out = cli.run(&["push", &name]);
    assert!(!out.success(), "{}", out.stdout);
    assert!(
        out.stderr.contains(&registry.host()) && out.stderr.to_lowercase().contains("tls"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stdout.contains("Retrying"),
        "a TLS failure is not worth retrying: {}",
        out.stdout
    );
    assert!(registry.tags(&repo).is_empty());
    let info = cli.run(&[
        "info",
        "--format",
        "{{json .RegistryConfig.InsecureRegistryCIDRs}}",
    ]);
    assert_eq!(info.stdout.trim(), "[]");

    // Naming it insecure explicitly brings the HTTP fallback back.
    let hoistd = start_hoistd_with(
        json!({"insecure-loopback": false, "insecure-registries": [registry.host()]}),
    );
    let cli = DockerCli::new(&hoistd.socket());
    load_image(&cli, &image, &[&name], ArchiveFormat::DockerLegacy);
    cli.run(&["push", &name])
        .assert_success("push to an explicitly insecure registry");
    assert_registry_has_image(registry, &repo, "1", &image);
}
