//! `docker pull` (and docker-py's) against real registries whose content an independent tool put
//! there (skopeo copying an OCI layout the generator wrote), checked against the generator's
//! digests and the registries' bytes; and the mirror workflow: pull, tag, push elsewhere.

mod push_support;

use hoist_testkit::docker::DockerCli;
use hoist_testkit::image::{Flavor, Image, ImageBuilder, ImageIndex, IndexBuilder, LayerSpec};
use hoist_testkit::proxy::FaultProxy;
use hoist_testkit::registry::TestRegistry;
use hoist_testkit::skopeo;
use push_support::*;

fn small_image(flavor: Flavor, seed: u64) -> Image {
    ImageBuilder::new(flavor)
        .seed(seed)
        .layers([
            LayerSpec::single(40_000),
            LayerSpec::files(&[6_000, 2_000]),
            LayerSpec::single(1_000),
        ])
        .build()
}

/// linux/amd64 and linux/arm64 images under one index.
fn two_platform_index(flavor: Flavor, seed: u64, attestations: bool) -> ImageIndex {
    let layers = [LayerSpec::single(30_000), LayerSpec::single(3_000)];
    let builder = IndexBuilder::new(flavor)
        .seed(seed)
        .platform("linux/amd64", &layers)
        .platform("linux/arm64", &layers);
    if attestations {
        builder.with_attestations().build()
    } else {
        builder.build()
    }
}

fn inspect(cli: &DockerCli, name: &str, format: &str) -> String {
    let out = cli.run(&["image", "inspect", "--format", format, name]);
    out.assert_success("docker image inspect");
    out.stdout.trim().to_owned()
}

/// GET requests for `digest`'s blob seen by `proxy`.
fn blob_gets(proxy: &FaultProxy, digest: &str) -> usize {
    proxy
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with(&format!("/blobs/{digest}")))
        .count()
}

#[test]
fn pull_by_tag_keeps_the_index_and_fetches_the_host_platform_only() {
    let registry = TestRegistry::shared();
    let proxy = FaultProxy::in_front_of(registry);
    let index = two_platform_index(Flavor::Oci, 11, true);
    let repo = unique_repo("pull/multi");
    skopeo::push_index(&index, &registry.host(), &repo, "1");
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let name = format!("{}/{repo}:1", proxy.host());

    let out = cli.run(&["pull", &name]);
    out.assert_success("docker pull");
    let host = index.image_for("linux/amd64");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[0],
        format!("1: Pulling from {repo}"),
        "{}",
        out.stdout
    );
    for layer in &host.layers {
        let id = layer_id(&layer.blob.digest);
        assert_eq!(
            layer_lines(&out.stdout, id),
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
    let tail = &lines[lines.len() - 3..];
    assert_eq!(
        tail,
        [
            format!("Digest: {}", index.digest()),
            format!("Status: Downloaded newer image for {name}"),
            name.clone(),
        ],
        "{}",
        out.stdout
    );
    // The image is the index, byte for byte: its ID is the index digest.
    assert_eq!(inspect(&cli, &name, "{{.Id}}"), index.digest());
    assert_eq!(
        inspect(&cli, &name, "{{json .RepoDigests}}"),
        format!("[\"{}/{repo}@{}\"]", proxy.host(), index.digest())
    );
    // The host platform's content travelled with its attestation (moby leaves attestations
    // behind; hoist keeps them so that a save or push of the image carries them), quietly: no
    // progress lines for it. arm64 and its attestation stayed behind. The index builder lists
    // attestations in platform order: amd64's first.
    let (host_attestation, arm_attestation) = (&index.attestations[0], &index.attestations[1]);
    for blob in host.blobs().chain(host_attestation.blobs()) {
        assert_eq!(blob_gets(&proxy, &blob.digest), 1, "{}", blob.digest);
    }
    for layer in &host_attestation.layers {
        let id = layer_id(&layer.blob.digest);
        assert!(layer_lines(&out.stdout, id).is_empty(), "{}", out.stdout);
    }
    let arm = index.image_for("linux/arm64");
    for blob in arm.blobs().chain(arm_attestation.blobs()) {
        assert_eq!(blob_gets(&proxy, &blob.digest), 0, "{}", blob.digest);
    }
    // A save of the pulled image carries the attestation.
    let dir = tempfile::tempdir().expect("temp dir");
    let archive = dir.path().join("saved.tar");
    cli.run(&["save", "-o", archive.to_str().expect("utf-8 path"), &name])
        .assert_success("docker save");
    let mut entries = Vec::new();
    for entry in tar::Archive::new(std::fs::File::open(&archive).expect("open archive"))
        .entries()
        .expect("tar entries")
    {
        let entry = entry.expect("tar entry");
        entries.push(entry.path().expect("entry path").display().to_string());
    }
    for blob in host_attestation.blobs() {
        let path = format!("blobs/sha256/{}", &blob.digest["sha256:".len()..]);
        assert!(entries.contains(&path), "{path} not in {entries:?}");
    }

    // Again: nothing to fetch, no layer lines, up to date.
    proxy.reset_observations();
    let again = cli.run(&["pull", &name]);
    again.assert_success("second docker pull");
    assert_eq!(
        again.stdout.lines().collect::<Vec<_>>(),
        [
            format!("1: Pulling from {repo}"),
            format!("Digest: {}", index.digest()),
            format!("Status: Image is up to date for {name}"),
            name.clone(),
        ]
    );
    // Only the tag is resolved again: no blob, and not the platform manifest it already has.
    assert!(
        !proxy
            .requests()
            .iter()
            .any(|r| r.path.contains("/blobs/") || r.path.contains("/manifests/sha256:")),
        "{:?}",
        proxy.requests()
    );
}

#[test]
fn pull_by_digest_names_the_image_by_that_digest_only() {
    let registry = TestRegistry::shared();
    let index = two_platform_index(Flavor::Docker, 12, false);
    let repo = unique_repo("pull/bydigest");
    // skopeo's OCI layouts cannot carry Docker media types; the harness PUTs them verbatim.
    registry.push_index(&repo, "1", &index);
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let name = format!("{}/{repo}@{}", registry.host(), index.digest());

    let out = cli.run(&["pull", &name]);
    out.assert_success("docker pull by digest");
    let lines: Vec<&str> = out.stdout.lines().collect();
    // moby names a digest pull by the whole reference.
    assert_eq!(lines[0], format!("{name}: Pulling from {repo}"));
    assert_eq!(
        &lines[lines.len() - 3..],
        [
            format!("Digest: {}", index.digest()),
            format!("Status: Downloaded newer image for {name}"),
            name.clone(),
        ]
    );
    assert_eq!(inspect(&cli, &name, "{{.Id}}"), index.digest());
    assert_eq!(inspect(&cli, &name, "{{json .RepoTags}}"), "[]");
    assert_eq!(
        inspect(&cli, &name, "{{json .RepoDigests}}"),
        format!("[\"{name}\"]")
    );
    let again = cli.run(&["pull", &name]);
    again.assert_success("second pull by digest");
    assert!(
        again
            .stdout
            .contains(&format!("Status: Image is up to date for {name}")),
        "{}",
        again.stdout
    );
}

#[test]
fn pull_with_platform_fetches_that_platform_and_refuses_one_the_index_lacks() {
    let registry = TestRegistry::shared();
    let proxy = FaultProxy::in_front_of(registry);
    let index = two_platform_index(Flavor::Oci, 13, true);
    let repo = unique_repo("pull/platform");
    skopeo::push_index(&index, &registry.host(), &repo, "2");
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let name = format!("{}/{repo}:2", proxy.host());

    let out = cli.run(&["pull", "--platform", "linux/arm64", &name]);
    out.assert_success("docker pull --platform linux/arm64");
    let arm = index.image_for("linux/arm64");
    for layer in &arm.layers {
        assert!(
            layer_lines(&out.stdout, layer_id(&layer.blob.digest)).contains(&"Pull complete"),
            "{}",
            out.stdout
        );
    }
    for blob in arm.blobs() {
        assert_eq!(blob_gets(&proxy, &blob.digest), 1, "{}", blob.digest);
    }
    for blob in index.image_for("linux/amd64").blobs() {
        assert_eq!(blob_gets(&proxy, &blob.digest), 0, "{}", blob.digest);
    }
    assert_eq!(inspect(&cli, &name, "{{.Id}}"), index.digest());

    let missing = cli.run(&["pull", "--platform", "linux/s390x", &name]);
    assert!(!missing.success(), "{missing}");
    assert!(
        missing
            .stderr
            .contains("no matching manifest for linux/s390x in the manifest list entries"),
        "{missing}"
    );
}

#[test]
fn mirror_workflow_pull_tag_push_copies_an_image_byte_for_byte() {
    let source = TestRegistry::shared();
    let target = TestRegistry::start(Default::default());
    let image = small_image(Flavor::Docker, 21);
    let repo = unique_repo("mirror/src");
    // skopeo's OCI layouts cannot carry Docker media types; the harness PUTs them verbatim.
    source.push_image(&repo, "1.0", &image);
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let from = format!("{}/{repo}:1.0", source.host());
    let to_repo = unique_repo("mirror/dst");
    let to = format!("{}/{to_repo}:1.0", target.host());

    let pulled = cli.run(&["pull", &from]);
    pulled.assert_success("docker pull");
    cli.run(&["tag", &from, &to]).assert_success("docker tag");
    let pushed = cli.run(&["push", &to]);
    pushed.assert_success("docker push");

    let pull_digest = pulled
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Digest: "))
        .unwrap_or_else(|| panic!("no Digest line:\n{}", pulled.stdout));
    let push_digest = pushed
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("1.0: digest: "))
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no digest line:\n{}", pushed.stdout));
    assert_eq!(pull_digest, image.digest());
    assert_eq!(push_digest, image.digest());
    assert_registry_has_image(&target, &to_repo, "1.0", &image);
    assert_eq!(
        target.get_manifest(&to_repo, "1.0").bytes,
        source.get_manifest(&repo, "1.0").bytes
    );
}

#[test]
fn a_pulled_image_pushed_to_another_repository_of_the_same_registry_is_mounted_not_uploaded() {
    let registry = TestRegistry::shared();
    let proxy = FaultProxy::in_front_of(registry);
    let image = small_image(Flavor::Docker, 22);
    let repo = unique_repo("mount/src");
    registry.push_image(&repo, "1", &image);
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let from = format!("{}/{repo}:1", proxy.host());
    let to_repo = unique_repo("mount/dst");
    let to = format!("{}/{to_repo}:1", proxy.host());

    cli.run(&["pull", &from]).assert_success("docker pull");
    cli.run(&["tag", &from, &to]).assert_success("docker tag");
    let pushed = cli.run(&["push", &to]);
    pushed.assert_success("docker push");

    // Every blob came by a cross-repository mount from where it was pulled: not a byte uploaded.
    let mounted = pushed
        .stdout
        .lines()
        .filter(|l| l.ends_with(&format!("Mounted from {repo}")))
        .count();
    assert_eq!(mounted, image.layers.len(), "{}", pushed.stdout);
    let requests = proxy.requests();
    let blob_uploads: Vec<_> = requests
        .iter()
        .filter(|r| {
            r.path.contains("/blobs/uploads/") && matches!(r.method.as_str(), "PUT" | "PATCH")
        })
        .collect();
    assert!(blob_uploads.is_empty(), "{blob_uploads:#?}");
    let mounts = requests
        .iter()
        .filter(|r| r.method == "POST" && r.path.contains("?mount=") && r.status == Some(201))
        .count();
    assert_eq!(mounts, image.blobs().count(), "{requests:#?}");
    assert_registry_has_image(registry, &to_repo, "1", &image);
}

#[test]
fn mirror_workflow_copies_a_whole_index_once_each_platform_is_pulled() {
    let source = TestRegistry::shared();
    let target = TestRegistry::start(Default::default());
    let index = two_platform_index(Flavor::Oci, 22, false);
    let repo = unique_repo("mirror/multi");
    skopeo::push_index(&index, &source.host(), &repo, "3");
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let from = format!("{}/{repo}:3", source.host());
    let to_repo = unique_repo("mirror/multi-dst");
    let to = format!("{}/{to_repo}:3", target.host());

    for platform in ["linux/amd64", "linux/arm64"] {
        cli.run(&["pull", "--platform", platform, &from])
            .assert_success("docker pull --platform");
    }
    cli.run(&["tag", &from, &to]).assert_success("docker tag");
    let pushed = cli.run(&["push", &to]);
    pushed.assert_success("docker push");
    let digest_line = format!("3: digest: {} size: {}", index.digest(), index.size());
    assert!(
        pushed.stdout.lines().any(|l| l == digest_line),
        "expected {digest_line:?}:\n{}",
        pushed.stdout
    );
    assert_registry_has_index(&target, &to_repo, "3", &index);
}

#[test]
fn layers_already_in_the_store_are_not_fetched_again() {
    let registry = TestRegistry::shared();
    let proxy = FaultProxy::in_front_of(registry);
    let base = small_image(Flavor::Oci, 31);
    let derived = ImageBuilder::new(Flavor::Oci)
        .seed(32)
        .existing_layer(&base.layers[0])
        .layer(LayerSpec::single(5_000))
        .build();
    let repo = unique_repo("pull/shared");
    skopeo::push_image(&base, &registry.host(), &repo, "base");
    skopeo::push_image(&derived, &registry.host(), &repo, "derived");
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    cli.run(&["pull", &format!("{}/{repo}:base", proxy.host())])
        .assert_success("pull base");

    proxy.reset_observations();
    let out = cli.run(&["pull", &format!("{}/{repo}:derived", proxy.host())]);
    out.assert_success("pull derived");
    let shared = &base.layers[0].blob.digest;
    assert_eq!(
        layer_lines(&out.stdout, layer_id(shared)),
        ["Already exists"]
    );
    assert_eq!(blob_gets(&proxy, shared), 0);
    let new = &derived.layers[1].blob.digest;
    assert_eq!(
        layer_lines(&out.stdout, layer_id(new)),
        [
            "Pulling fs layer",
            "Verifying Checksum",
            "Download complete",
            "Pull complete"
        ]
    );
    assert_eq!(blob_gets(&proxy, new), 1);
}

/// The most requests matching `what` the proxy had in flight at once.
fn max_in_flight(
    proxy: &FaultProxy,
    what: impl Fn(&hoist_testkit::proxy::RequestRecord) -> bool,
) -> usize {
    let requests: Vec<_> = proxy.requests().into_iter().filter(|r| what(r)).collect();
    requests
        .iter()
        .map(|r| {
            requests
                .iter()
                .filter(|o| o.started <= r.started && o.ended.is_none_or(|end| end > r.started))
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn downloads_are_limited_daemon_wide_and_queued_layers_say_waiting() {
    let registry = TestRegistry::shared();
    let proxy = FaultProxy::in_front_of(registry);
    let image = ImageBuilder::new(Flavor::Oci)
        .seed(41)
        .layers((0..6).map(|i| LayerSpec::single(2_000 + i)))
        .build();
    let repo = unique_repo("pull/limit");
    skopeo::push_image(&image, &registry.host(), &repo, "1");
    proxy.add_rule(hoist_testkit::proxy::FaultRule::new(
        "GET",
        "/blobs/sha256:",
        hoist_testkit::proxy::FaultAction::Delay(std::time::Duration::from_millis(300)),
    ));
    let hoistd = start_hoistd_with(serde_json::json!({"max-concurrent-downloads": 2}));
    let cli = DockerCli::new(&hoistd.socket());

    let out = cli.run(&["pull", &format!("{}/{repo}:1", proxy.host())]);
    out.assert_success("docker pull");
    let is_blob_get = |r: &hoist_testkit::proxy::RequestRecord| {
        r.method == "GET" && r.path.contains("/blobs/sha256:")
    };
    assert_eq!(
        max_in_flight(&proxy, is_blob_get),
        2,
        "{:#?}",
        proxy.requests()
    );
    let waiting = image
        .layers
        .iter()
        .filter(|l| layer_lines(&out.stdout, layer_id(&l.blob.digest)).contains(&"Waiting"))
        .count();
    assert!(waiting >= 3, "{waiting} layers waited:\n{}", out.stdout);
}

#[test]
fn a_transient_blob_failure_is_retried_with_a_countdown() {
    let registry = TestRegistry::shared();
    let proxy = FaultProxy::in_front_of(registry);
    let image = small_image(Flavor::Oci, 51);
    let repo = unique_repo("pull/retry");
    skopeo::push_image(&image, &registry.host(), &repo, "1");
    let flaky = &image.layers[0].blob.digest;
    proxy.add_rule(
        hoist_testkit::proxy::FaultRule::new(
            "GET",
            &format!("/blobs/{flaky}"),
            hoist_testkit::proxy::FaultAction::status(503),
        )
        .once(),
    );
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let out = cli.run(&["pull", &format!("{}/{repo}:1", proxy.host())]);
    out.assert_success("docker pull");
    let lines = layer_lines(&out.stdout, layer_id(flaky));
    assert!(
        lines.iter().any(|l| l.starts_with("Retrying in ")),
        "{}",
        out.stdout
    );
    assert_eq!(lines.last(), Some(&"Pull complete"), "{}", out.stdout);
    assert_eq!(blob_gets(&proxy, flaky), 2);
}

/// Blob files of the daemon's store (`blobs/sha256/<hex>`) among `digests`.
fn stored_blobs(hoistd: &hoist_testkit::hoistd::Hoistd, digests: &[String]) -> Vec<String> {
    digests
        .iter()
        .filter(|d| {
            let hex = d.trim_start_matches("sha256:");
            hoistd.data_root().join("blobs/sha256").join(hex).exists()
        })
        .cloned()
        .collect()
}

#[test]
fn a_corrupted_blob_fails_the_pull_and_leaves_nothing_behind() {
    let registry = TestRegistry::shared();
    let proxy = FaultProxy::in_front_of(registry);
    let image = small_image(Flavor::Oci, 61);
    let repo = unique_repo("pull/corrupt");
    skopeo::push_image(&image, &registry.host(), &repo, "1");
    let bad = &image.layers[0].blob;
    // The registry's answer with the right length and the wrong bytes.
    let mut corrupted = bad.bytes();
    corrupted[bad.size as usize / 2] ^= 0xff;
    proxy.add_rule(hoist_testkit::proxy::FaultRule::new(
        "GET",
        &format!("/blobs/{}", bad.digest),
        hoist_testkit::proxy::FaultAction::respond(
            200,
            &[("Content-Type", "application/octet-stream")],
            &corrupted,
        ),
    ));
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let name = format!("{}/{repo}:1", proxy.host());

    let out = cli.run(&["pull", &name]);
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr.contains(&format!(
            "filesystem layer verification failed for digest {}",
            bad.digest
        )),
        "{out}"
    );
    // Verification failures are not retried: the registry would serve the same bytes.
    assert_eq!(blob_gets(&proxy, &bad.digest), 1);
    let images = cli.run(&["images", "-aq"]);
    images.assert_success("docker images");
    assert_eq!(images.stdout.trim(), "", "images left: {}", images.stdout);
    let all: Vec<String> = image.contents().map(|b| b.digest.clone()).collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !stored_blobs(&hoistd, &all).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(stored_blobs(&hoistd, &all), Vec::<String>::new());
    let ingest: Vec<_> = std::fs::read_dir(hoistd.data_root().join("ingest"))
        .expect("list ingest/")
        .collect();
    assert!(ingest.is_empty(), "temp files left: {ingest:?}");
}

const USER: &str = "puller";
const PASSWORD: &str = "pa55?>word";

/// Copies `image` into a registry that demands Basic credentials, with skopeo.
fn push_with_credentials(image: &Image, registry: &TestRegistry, repo: &str, tag: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let archive = dir.path().join("image.tar");
    hoist_testkit::archive::ArchiveBuilder::new(hoist_testkit::archive::ArchiveFormat::Oci)
        .image(image, &[&format!("{repo}:{tag}")])
        .write(&archive);
    let source = format!("oci-archive:{}:{tag}", archive.display());
    let destination = format!("docker://{}/{repo}:{tag}", registry.host());
    skopeo::skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        &format!("{USER}:{PASSWORD}"),
        "--preserve-digests",
        &source,
        &destination,
    ])
    .assert_success("skopeo copy with credentials");
}

#[test]
fn pull_with_basic_auth_uses_the_cli_credentials_and_is_404_without_them() {
    let registry = TestRegistry::start(hoist_testkit::registry::RegistryOptions {
        auth: hoist_testkit::registry::RegistryAuth::Htpasswd(vec![(USER.into(), PASSWORD.into())]),
    });
    let image = small_image(Flavor::Oci, 71);
    let repo = unique_repo("pull/auth");
    push_with_credentials(&image, &registry, &repo, "1");
    let hoistd = start_hoistd();
    let name = format!("{}/{repo}:1", registry.host());
    let denied = format!(
        "pull access denied for {}/{repo}, repository does not exist or may require 'docker login'",
        registry.host()
    );

    // No credentials, then wrong ones: 404 with moby's words, never a 401 (the CLI would
    // prompt for a Docker Hub login).
    let anonymous = DockerCli::new(&hoistd.socket());
    let wrong = DockerCli::new(&hoistd.socket()).with_auth(&registry.host(), USER, "nope");
    for cli in [&anonymous, &wrong] {
        let out = cli.run(&["pull", &name]);
        assert!(!out.success(), "{out}");
        assert!(
            out.stderr
                .starts_with(&format!("Error response from daemon: {denied}")),
            "{out}"
        );
    }
    let raw = hoistd.request(
        "POST",
        &format!(
            "/v1.50/images/create?fromImage={}%2F{}&tag=1",
            registry.host(),
            repo.replace('/', "%2F")
        ),
        &[],
        b"",
    );
    assert_eq!(raw.status, 404, "{}", String::from_utf8_lossy(&raw.body));
    let message: serde_json::Value = serde_json::from_slice(&raw.body).expect("JSON error");
    assert!(
        message["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with(&denied),
        "{message}"
    );

    let cli = DockerCli::new(&hoistd.socket()).with_auth(&registry.host(), USER, PASSWORD);
    let out = cli.run(&["pull", &name]);
    out.assert_success("docker pull with credentials");
    assert!(
        out.stdout.contains(&format!("Digest: {}", image.digest())),
        "{}",
        out.stdout
    );
    assert_eq!(inspect(&cli, &name, "{{.Id}}"), image.digest());
}

#[test]
fn docker_hub_pulls_go_to_the_mirror_first_and_fall_back_to_the_origin() {
    let mirror = TestRegistry::start(Default::default());
    let origin = TestRegistry::start(Default::default());
    let (mirror_proxy, origin_proxy) = (
        FaultProxy::in_front_of(&mirror),
        FaultProxy::in_front_of(&origin),
    );
    let hoistd = start_hoistd_with(serde_json::json!({
        "registry-mirrors": [format!("http://{}/", mirror_proxy.host())],
        "docker-hub-pull-origin": origin_proxy.host(),
    }));
    let cli = DockerCli::new(&hoistd.socket());
    // Docker Hub names: `name` is docker.io/library/<name>.
    let (mirrored, origin_only) = (unique_repo("mirrored"), unique_repo("originonly"));
    let (x, y) = (small_image(Flavor::Oci, 81), small_image(Flavor::Oci, 82));
    skopeo::push_image(&x, &mirror.host(), &format!("library/{mirrored}"), "1");
    skopeo::push_image(&y, &origin.host(), &format!("library/{origin_only}"), "1");

    let out = cli.run(&["pull", &format!("{mirrored}:1")]);
    out.assert_success("pull through the mirror");
    assert_eq!(
        out.stdout.lines().next(),
        Some(format!("1: Pulling from library/{mirrored}").as_str())
    );
    assert!(
        out.stdout
            .contains(&format!("Status: Downloaded newer image for {mirrored}:1")),
        "{}",
        out.stdout
    );
    assert_eq!(
        out.stdout.lines().last(),
        Some(format!("docker.io/library/{mirrored}:1").as_str())
    );
    assert!(
        origin_proxy.requests().is_empty(),
        "the origin was asked: {:#?}",
        origin_proxy.requests()
    );
    for blob in x.blobs() {
        assert_eq!(blob_gets(&mirror_proxy, &blob.digest), 1);
    }
    assert_eq!(
        inspect(&cli, &format!("{mirrored}:1"), "{{json .RepoDigests}}"),
        format!("[\"{mirrored}@{}\"]", x.digest())
    );

    // The mirror does not have this one: the origin serves it.
    let out = cli.run(&["pull", &format!("{origin_only}:1")]);
    out.assert_success("pull falling back to the origin");
    assert!(
        out.stdout.contains(&format!("Digest: {}", y.digest())),
        "{}",
        out.stdout
    );
    assert!(
        mirror_proxy.requests().iter().any(|r| r
            .path
            .contains(&format!("library/{origin_only}/manifests/1"))),
        "the mirror was not asked first"
    );
    for blob in y.blobs() {
        assert_eq!(blob_gets(&origin_proxy, &blob.digest), 1);
    }
}

#[test]
fn unknown_images_are_404_and_scratch_403_before_any_output() {
    let registry = TestRegistry::shared();
    let image = small_image(Flavor::Oci, 91);
    let repo = unique_repo("pull/errors");
    skopeo::push_image(&image, &registry.host(), &repo, "1");
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let create = |query: &str| {
        let raw = hoistd.request("POST", &format!("/v1.50/images/create?{query}"), &[], b"");
        let message: serde_json::Value = serde_json::from_slice(&raw.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&raw.body)));
        assert_eq!(raw.header("Content-Type"), Some("application/json"));
        (
            raw.status,
            message["message"].as_str().unwrap_or_default().to_owned(),
        )
    };
    let host = registry.host();

    // distribution answers MANIFEST_UNKNOWN for a repository it never saw, and moby words
    // that as for a missing tag (access refusals are "pull access denied": see the auth test).
    let unknown_repo = format!("{host}/{}", unique_repo("pull/nothing"));
    let (status, message) = create(&format!("fromImage={unknown_repo}&tag=1"));
    assert_eq!(status, 404, "{message}");
    assert_eq!(
        message,
        format!("manifest for {unknown_repo}:1 not found: manifest unknown: manifest unknown")
    );
    let (status, message) = create(&format!("fromImage={host}/{repo}&tag=nope"));
    assert_eq!(status, 404, "{message}");
    assert!(
        message.starts_with(&format!("manifest for {host}/{repo}:nope not found")),
        "{message}"
    );
    assert_eq!(
        create("fromImage=scratch&tag=latest"),
        (403, "'scratch' is a reserved name".to_owned())
    );
    let (status, message) = create(&format!("fromImage={host}/{repo}&tag=1&platform=linux"));
    assert_eq!(status, 400, "{message}");
    let (status, _) = create("fromImage=Not%20A%20Name&tag=1");
    assert_eq!(status, 400);

    let out = cli.run(&["pull", &format!("{host}/{repo}:nope")]);
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr.starts_with(&format!(
            "Error response from daemon: manifest for {host}/{repo}:nope not found"
        )),
        "{out}"
    );
    let out = cli.run(&["pull", "scratch"]);
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr
            .contains("Error response from daemon: 'scratch' is a reserved name"),
        "{out}"
    );
}

#[test]
fn docker_py_pulls_by_tag_and_platform() {
    let registry = TestRegistry::shared();
    let index = two_platform_index(Flavor::Oci, 101, false);
    let repo = unique_repo("pull/py");
    skopeo::push_index(&index, &registry.host(), &repo, "1");
    let hoistd = start_hoistd();
    let docker = DockerCli::new(&hoistd.socket());
    let script = format!(
        r#"
import docker, json
client = docker.from_env(version="auto")
repo = "{host}/{repo}"
image = client.images.pull(repo, tag="1", platform="linux/arm64")
stream = list(client.api.pull(repo, tag="1", stream=True, decode=True))
print(json.dumps({{
    "id": image.id,
    "tags": image.tags,
    "digests": image.attrs["RepoDigests"],
    "last": [m.get("status") for m in stream][-2:],
}}))
"#,
        host = registry.host()
    );
    let out = docker.python(&script, &[]);
    out.assert_success("docker-py pull");
    let result: serde_json::Value = serde_json::from_str(out.stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}:\n{out}"));
    let name = format!("{}/{repo}", registry.host());
    assert_eq!(
        result,
        serde_json::json!({
            "id": index.digest(),
            "tags": [format!("{name}:1")],
            "digests": [format!("{name}@{}", index.digest())],
            "last": [
                format!("Digest: {}", index.digest()),
                format!("Status: Image is up to date for {name}:1"),
            ],
        })
    );
}

#[test]
fn a_client_that_goes_away_cancels_the_pull() {
    let registry = TestRegistry::shared();
    let proxy = FaultProxy::in_front_of(registry);
    let image = small_image(Flavor::Oci, 111);
    let repo = unique_repo("pull/cancel");
    skopeo::push_image(&image, &registry.host(), &repo, "1");
    let slow = image.layers[0].blob.digest.clone();
    proxy.add_rule(hoist_testkit::proxy::FaultRule::new(
        "GET",
        &format!("/blobs/{slow}"),
        hoist_testkit::proxy::FaultAction::Delay(std::time::Duration::from_secs(4)),
    ));
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let child = cli.spawn(&["pull", &format!("{}/{repo}:1", proxy.host())]);
    proxy.wait_for(
        "the slow blob's GET",
        std::time::Duration::from_secs(30),
        |requests| requests.iter().any(|r| r.path.ends_with(&slow)),
    );
    child.signal(libc::SIGINT);
    let out = child.wait(std::time::Duration::from_secs(10));
    assert!(!out.success(), "{out}");

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !hoistd
        .log()
        .contains("pull cancelled: the client disconnected")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no cancellation in the log:\n{}",
            hoistd.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Well after the registry would have answered: nothing of the pull was kept.
    std::thread::sleep(std::time::Duration::from_secs(5));
    let images = cli.run(&["images", "-aq"]);
    assert_eq!(images.stdout.trim(), "");
    let all: Vec<String> = image.contents().map(|b| b.digest.clone()).collect();
    assert_eq!(stored_blobs(&hoistd, &all), Vec::<String>::new());
}

#[test]
fn pull_with_token_auth_asks_for_pull_scope_only_and_is_404_without_access() {
    use hoist_testkit::token_server::{TokenServer, TokenServerOptions};
    let tokens = TokenServer::start(TokenServerOptions::default());
    tokens.add_user(USER, PASSWORD, &[("*", &["pull", "push"])]);
    tokens.add_user("outsider", "elsewhere", &[("other/*", &["pull"])]);
    let registry = TestRegistry::start(hoist_testkit::registry::RegistryOptions {
        auth: tokens.registry_auth(),
    });
    let image = small_image(Flavor::Oci, 121);
    let repo = unique_repo("pull/token");
    push_with_credentials(&image, &registry, &repo, "1");
    let hoistd = start_hoistd();
    let name = format!("{}/{repo}:1", registry.host());
    let denied = format!(
        "Error response from daemon: pull access denied for {}/{repo}, repository does not exist or may require 'docker login'",
        registry.host()
    );
    for cli in [
        DockerCli::new(&hoistd.socket()),
        DockerCli::new(&hoistd.socket()).with_auth(&registry.host(), "outsider", "elsewhere"),
    ] {
        let out = cli.run(&["pull", &name]);
        assert!(!out.success(), "{out}");
        assert!(out.stderr.starts_with(&denied), "{out}");
    }

    tokens.reset_requests();
    let cli = DockerCli::new(&hoistd.socket()).with_auth(&registry.host(), USER, PASSWORD);
    let out = cli.run(&["pull", &name]);
    out.assert_success("docker pull with a token");
    assert!(
        out.stdout.contains(&format!("Digest: {}", image.digest())),
        "{}",
        out.stdout
    );
    let scopes: Vec<Vec<String>> = tokens.requests().into_iter().map(|r| r.scopes).collect();
    assert!(!scopes.is_empty(), "no token was asked for");
    for asked in &scopes {
        assert_eq!(asked, &[format!("repository:{repo}:pull")], "{scopes:?}");
    }
}

#[test]
fn pull_all_tags_pulls_every_tag_of_the_repository() {
    let registry = TestRegistry::shared();
    let (one, two) = (small_image(Flavor::Oci, 91), small_image(Flavor::Oci, 92));
    let repo = unique_repo("pull/all-tags");
    skopeo::push_image(&one, &registry.host(), &repo, "b");
    skopeo::push_image(&one, &registry.host(), &repo, "a");
    skopeo::push_image(&two, &registry.host(), &repo, "c");
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let name = format!("{}/{repo}", registry.host());

    let out = cli.run(&["pull", "--all-tags", &name]);
    out.assert_success("docker pull --all-tags");
    let pulling: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.contains(": Pulling from "))
        .collect();
    assert_eq!(
        pulling,
        ["a", "b", "c"].map(|t| format!("{t}: Pulling from {repo}")),
        "{}",
        out.stdout
    );
    let digests: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("Digest: "))
        .collect();
    assert_eq!(
        digests,
        [one.digest(), one.digest(), two.digest()].map(|d| format!("Digest: {d}")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("Status: Downloaded newer image for {name}\n")),
        "the status names the repository: {}",
        out.stdout
    );
    for (tag, image) in [("a", &one), ("b", &one), ("c", &two)] {
        assert_eq!(
            inspect(&cli, &format!("{name}:{tag}"), "{{.Id}}"),
            image.digest()
        );
    }
    // Again: nothing is newer.
    let again = cli.run(&["pull", "--all-tags", &name]);
    again.assert_success("second docker pull --all-tags");
    assert!(
        again
            .stdout
            .contains(&format!("Status: Image is up to date for {name}\n")),
        "{}",
        again.stdout
    );

    // A repository the registry does not know: 404 before any output.
    let missing = cli.run(&[
        "pull",
        "--all-tags",
        &format!("{}/{}", registry.host(), unique_repo("pull/none")),
    ]);
    assert!(!missing.success());
    assert!(
        missing
            .stderr
            .contains("repository does not exist or may require 'docker login'"),
        "{}",
        missing.stderr
    );
}
