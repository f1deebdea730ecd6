//! A pulled multi-platform image pushes whole: `docker pull` keeps the index and one platform's
//! content, and `docker push` elsewhere fetches the rest from where the index was pulled (a
//! mount on the same registry, otherwise relayed from the origin to the target). Sources are
//! seeded by skopeo from generated OCI layouts; targets are checked by reading manifests and
//! blobs back (and with `skopeo inspect --raw`) against the generator's digests and bytes.

mod push_support;

use std::time::{Duration, Instant};

use hoist_testkit::docker::DockerCli;
use hoist_testkit::image::{
    Compression, Flavor, Image, ImageBuilder, ImageIndex, IndexBuilder, LayerSpec, Platform,
};
use hoist_testkit::proxy::{FaultAction, FaultProxy, FaultRule};
use hoist_testkit::registry::{RegistryOptions, TestRegistry};
use hoist_testkit::skopeo;
use hoist_testkit::token_server::{TokenServer, TokenServerOptions};
use push_support::*;
use serde_json::json;

const HOST_PLATFORM: &str = "linux/amd64";

fn platform_image(seed: u64, platform: &str, layers: &[LayerSpec]) -> Image {
    ImageBuilder::new(Flavor::Oci)
        .seed(seed)
        .platform(Platform::parse(platform))
        .layers(layers.to_vec())
        .build()
}

/// linux/amd64, linux/arm64 and linux/s390x, each with BuildKit-style attestation manifests.
fn three_platform_images(seed: u64) -> Vec<Image> {
    let layers = [LayerSpec::single(60_000), LayerSpec::single(4_000)];
    ["linux/amd64", "linux/arm64", "linux/s390x"]
        .iter()
        .enumerate()
        .map(|(i, p)| platform_image(seed * 10 + i as u64, p, &layers))
        .collect()
}

fn index_of(images: &[Image]) -> ImageIndex {
    let mut builder = IndexBuilder::new(Flavor::Oci);
    for image in images {
        builder = builder.image(image.clone());
    }
    builder.with_attestations().build()
}

/// Every image of `index` other than the host platform's and its attestation.
fn not_pulled(index: &ImageIndex) -> Vec<&Image> {
    let host = index.image_for(HOST_PLATFORM).digest().to_owned();
    index
        .images
        .iter()
        .zip(&index.attestations)
        .filter(|(image, _)| image.digest() != host)
        .flat_map(|(image, attestation)| [image, attestation])
        .collect()
}

/// The raw index `skopeo inspect --raw` reads from `reference` (`host/repo:tag`).
fn skopeo_raw(reference: &str, creds: Option<&str>) -> Vec<u8> {
    let target = format!("docker://{reference}");
    let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
    if let Some(creds) = creds {
        args.extend(["--creds", creds]);
    }
    args.push(&target);
    let out = skopeo::skopeo(&args);
    out.assert_success("skopeo inspect --raw");
    out.stdout.into_bytes()
}

fn pull_and_tag(cli: &DockerCli, source: &str, target: &str) {
    cli.run(&["pull", source]).assert_success("docker pull");
    cli.run(&["tag", source, target])
        .assert_success("docker tag");
}

fn assert_pushed_whole(stdout: &str, tag: &str, index: &ImageIndex) {
    let line = format!("{tag}: digest: {} size: {}", index.digest(), index.size());
    assert!(stdout.contains(&line), "expected {line:?} in:\n{stdout}");
    assert!(
        !stdout.contains("instead of the image index"),
        "no fallback: {stdout}"
    );
}

/// The fallback's one status line, and that the target got the host platform's manifest only.
fn assert_fell_back(stdout: &str, index: &ImageIndex, why: &str) -> String {
    let notes: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("instead of the image index"))
        .collect();
    assert_eq!(notes.len(), 1, "one fallback line in:\n{stdout}");
    let host = index.image_for(HOST_PLATFORM);
    assert!(
        notes[0].contains(&format!(
            "Pushing the {HOST_PLATFORM} manifest {}",
            host.digest()
        )),
        "{}",
        notes[0]
    );
    eprintln!("fallback line: {}", notes[0]);
    assert!(notes[0].contains(why), "{why:?} in {:?}", notes[0]);
    assert!(
        stdout.contains(&format!("digest: {} size: {}", host.digest(), host.size())),
        "{stdout}"
    );
    notes[0].to_owned()
}

/// Blob GETs for `digest` seen by `proxy`.
fn blob_gets(proxy: &FaultProxy, digest: &str) -> usize {
    proxy
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with(&format!("/blobs/{digest}")))
        .count()
}

#[test]
fn same_registry_other_repository_mounts_everything_and_uploads_no_byte() {
    let registry = TestRegistry::shared();
    let proxy = FaultProxy::in_front_of(registry);
    let index = index_of(&three_platform_images(1));
    let (source, target) = (unique_repo("complete/src"), unique_repo("complete/dst"));
    skopeo::push_index(&index, &registry.host(), &source, "1");
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let source_name = format!("{}/{source}:1", proxy.host());
    let target_name = format!("{}/{target}:1", proxy.host());
    pull_and_tag(&cli, &source_name, &target_name);

    proxy.reset_observations();
    let out = cli.run(&["push", &target_name]);
    out.assert_success("docker push");
    assert_pushed_whole(&out.stdout, "1", &index);
    let blob_bytes: u64 = proxy
        .requests()
        .iter()
        .filter(|r| r.path.contains("/blobs/uploads/"))
        .map(|r| r.request_body_bytes)
        .sum();
    assert_eq!(blob_bytes, 0, "every blob mounted: {}", out.stdout);
    for image in not_pulled(&index) {
        for layer in image
            .layers
            .iter()
            .filter(|_| image.platform.os != "unknown")
        {
            let id = layer_id(&layer.blob.digest);
            assert_eq!(
                layer_lines(&out.stdout, id),
                ["Preparing", &format!("Mounted from {source}")],
                "{}",
                out.stdout
            );
        }
    }
    assert_registry_has_index(registry, &target, "1", &index);
    assert_eq!(
        skopeo_raw(&format!("{}/{target}:1", registry.host()), None),
        index.index_bytes()
    );
}

#[test]
fn two_registries_with_token_auth_relay_the_rest_from_the_origin() {
    // The origin serves its repositories to anyone (as a public Docker Hub repository); the
    // target wants a login.
    let origin_tokens = TokenServer::start(TokenServerOptions::default());
    origin_tokens.add_user("", "", &[("public/*", &["pull"])]);
    origin_tokens.add_user("seeder", "seed", &[("*", &["pull", "push"])]);
    let origin = TestRegistry::start(RegistryOptions {
        auth: origin_tokens.registry_auth(),
    });
    let target_tokens = TokenServer::start(TokenServerOptions::default());
    target_tokens.add_user("alice", "secret", &[("*", &["pull", "push"])]);
    let target = TestRegistry::start(RegistryOptions {
        auth: target_tokens.registry_auth(),
    });
    let target_proxy = FaultProxy::in_front_of(&target);

    let index = index_of(&three_platform_images(2));
    let layout = tempfile::tempdir().unwrap();
    let archive = layout.path().join("index.tar");
    hoist_testkit::archive::ArchiveBuilder::new(hoist_testkit::archive::ArchiveFormat::Oci)
        .index(&index, &["public/app:1"])
        .write(&archive);
    skopeo::skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        "seeder:seed",
        &format!("oci-archive:{}:1", archive.display()),
        &format!("docker://{}/public/app:1", origin.host()),
    ])
    .assert_success("skopeo copy --all");

    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket()).with_auth(&target_proxy.host(), "alice", "secret");
    let source_name = format!("{}/public/app:1", origin.host());
    let target_name = format!("{}/mirror/app:1", target_proxy.host());
    pull_and_tag(&cli, &source_name, &target_name);
    let out = cli.run(&["push", &target_name]);
    out.assert_success("docker push");
    assert_pushed_whole(&out.stdout, "1", &index);
    // Relayed layers show as any pushed layer does.
    for image in not_pulled(&index) {
        for layer in image
            .layers
            .iter()
            .filter(|_| image.platform.os != "unknown")
        {
            let lines = layer_lines(&out.stdout, layer_id(&layer.blob.digest));
            assert_eq!(lines.first(), Some(&"Preparing"), "{}", out.stdout);
            assert_eq!(lines.last(), Some(&"Pushed"), "{}", out.stdout);
        }
        for blob in image.blobs() {
            assert_eq!(
                target_proxy.completed_uploads(&blob.digest),
                1,
                "{} uploaded once",
                blob.digest
            );
        }
    }
    let raw = skopeo_raw(
        &format!("{}/mirror/app:1", target.host()),
        Some("alice:secret"),
    );
    assert_eq!(raw, index.index_bytes());
    // Every child and blob, read back with a token of our own and hashed.
    let token = target_tokens.issue("alice", &[("mirror/app", &["pull"])]);
    let get = |path: String| {
        let response = target
            .client()
            .get(format!("{}/v2/mirror/app/{path}", target.url()))
            .header("Accept", hoist_testkit::registry::ALL_MANIFEST_TYPES)
            .bearer_auth(&token)
            .send()
            .expect("GET from the target");
        assert_eq!(response.status(), 200, "{path}");
        response.bytes().expect("body").to_vec()
    };
    for image in index.all_images() {
        assert_eq!(
            get(format!("manifests/{}", image.digest())),
            image.manifest_bytes()
        );
        for blob in image.blobs() {
            let bytes = get(format!("blobs/{}", blob.digest));
            assert_eq!(hoist_testkit::image::sha256_digest(&bytes), blob.digest);
        }
    }
}

#[test]
fn an_origin_that_is_down_falls_back_with_the_reason() {
    let registry = TestRegistry::shared();
    let origin = FaultProxy::in_front_of(registry);
    let index = index_of(&three_platform_images(3));
    let (source, target) = (
        unique_repo("complete/down"),
        unique_repo("complete/down-dst"),
    );
    skopeo::push_index(&index, &registry.host(), &source, "1");
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let origin_host = origin.host();
    let target_name = format!("{}/{target}:1", registry.host());
    pull_and_tag(&cli, &format!("{origin_host}/{source}:1"), &target_name);
    drop(origin);

    let out = cli.run(&["push", &target_name]);
    out.assert_success("docker push");
    let note = assert_fell_back(
        &out.stdout,
        &index,
        &format!("could not be fetched from {origin_host}/{source}: "),
    );
    assert!(note.contains(&origin_host), "{note}");
    assert_registry_has_image(registry, &target, "1", index.image_for(HOST_PLATFORM));
}

#[test]
fn an_origin_that_lost_the_content_falls_back() {
    let registry = TestRegistry::shared();
    let index = index_of(&three_platform_images(4));
    let (source, target) = (
        unique_repo("complete/gone"),
        unique_repo("complete/gone-dst"),
    );
    skopeo::push_index(&index, &registry.host(), &source, "1");
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let target_name = format!("{}/{target}:1", registry.host());
    pull_and_tag(
        &cli,
        &format!("{}/{source}:1", registry.host()),
        &target_name,
    );
    // The origin deletes one of the layers of a platform that was not pulled.
    let gone = &index.image_for("linux/arm64").layers[0].blob.digest;
    let response = registry
        .client()
        .delete(format!("{}/v2/{source}/blobs/{gone}", registry.url()))
        .send()
        .expect("DELETE blob");
    assert_eq!(response.status(), 202, "the registry deleted the blob");

    let out = cli.run(&["push", &target_name]);
    out.assert_success("docker push");
    assert_fell_back(
        &out.stdout,
        &index,
        &format!("it no longer has blob {gone}"),
    );
    assert_registry_has_image(registry, &target, "1", index.image_for(HOST_PLATFORM));
}

#[test]
fn completion_turned_off_falls_back_without_asking_the_origin() {
    let registry = TestRegistry::shared();
    let origin = FaultProxy::in_front_of(registry);
    let index = index_of(&three_platform_images(5));
    let (source, target) = (unique_repo("complete/off"), unique_repo("complete/off-dst"));
    skopeo::push_index(&index, &registry.host(), &source, "1");
    let hoistd = start_hoistd_with(json!({"push-complete-from-origin": false}));
    let cli = DockerCli::new(&hoistd.socket());
    let target_name = format!("{}/{target}:1", registry.host());
    pull_and_tag(&cli, &format!("{}/{source}:1", origin.host()), &target_name);

    origin.reset_observations();
    let out = cli.run(&["push", &target_name]);
    out.assert_success("docker push");
    assert_fell_back(&out.stdout, &index, "push-complete-from-origin");
    assert!(
        origin.requests().is_empty(),
        "no request to the origin: {:?}",
        origin.requests()
    );
    assert_registry_has_image(registry, &target, "1", index.image_for(HOST_PLATFORM));
}

#[test]
fn concurrent_pushes_sharing_blobs_transfer_each_once() {
    let registry = TestRegistry::shared();
    let origin = FaultProxy::in_front_of(registry);
    let target = FaultProxy::in_front_of(registry);
    let images = three_platform_images(6);
    let first = index_of(&images);
    let mut more = images.clone();
    more.push(platform_image(
        69,
        "linux/ppc64le",
        &[LayerSpec::single(8_000)],
    ));
    let second = index_of(&more);
    let source = unique_repo("complete/shared");
    let mirror = unique_repo("complete/shared-dst");
    skopeo::push_index(&first, &registry.host(), &source, "a");
    skopeo::push_index(&second, &registry.host(), &source, "b");
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    for tag in ["a", "b"] {
        pull_and_tag(
            &cli,
            &format!("{}/{source}:{tag}", origin.host()),
            &format!("{}/{mirror}:{tag}", target.host()),
        );
    }
    // Slow the origin's blobs a little, so the two pushes overlap.
    origin.add_rule(FaultRule::new(
        "GET",
        "/blobs/",
        FaultAction::Delay(Duration::from_millis(300)),
    ));
    origin.reset_observations();
    target.reset_observations();
    let a = cli.spawn(&["push", &format!("{}/{mirror}:a", target.host())]);
    let b = cli.spawn(&["push", &format!("{}/{mirror}:b", target.host())]);
    let (a, b) = (
        a.wait(Duration::from_secs(120)),
        b.wait(Duration::from_secs(120)),
    );
    a.assert_success("first push");
    b.assert_success("second push");
    assert_pushed_whole(&a.stdout, "a", &first);
    assert_pushed_whole(&b.stdout, "b", &second);
    for image in not_pulled(&second) {
        for blob in image.blobs() {
            assert_eq!(
                target.completed_uploads(&blob.digest),
                1,
                "{} uploaded once",
                blob.digest
            );
            assert_eq!(
                blob_gets(&origin, &blob.digest),
                1,
                "{} read once",
                blob.digest
            );
        }
    }
    assert_registry_has_index(registry, &mirror, "a", &first);
    assert_registry_has_index(registry, &mirror, "b", &second);
}

#[test]
fn a_client_that_goes_away_mid_completion_cancels_it_and_leaves_nothing() {
    let registry = TestRegistry::shared();
    let origin = FaultProxy::in_front_of(registry);
    let target = FaultProxy::in_front_of(registry);
    let images: Vec<Image> = ["linux/amd64", "linux/arm64"]
        .iter()
        .enumerate()
        .map(|(i, p)| platform_image(70 + i as u64, p, &[LayerSpec::single(3_000_000)]))
        .collect();
    let index = index_of(&images);
    let (source, mirror) = (unique_repo("complete/cut"), unique_repo("complete/cut-dst"));
    skopeo::push_index(&index, &registry.host(), &source, "1");
    let mut hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let target_name = format!("{}/{mirror}:1", target.host());
    pull_and_tag(&cli, &format!("{}/{source}:1", origin.host()), &target_name);
    // The target takes the relayed layer slowly: the push is mid-completion for a while.
    let arm_layer = index.image_for("linux/arm64").layers[0].blob.digest.clone();
    target.add_rule(FaultRule::new(
        "PUT",
        "/blobs/uploads/",
        FaultAction::SlowBody {
            bytes_per_second: 200_000,
        },
    ));

    let mut push = cli.spawn(&["push", &target_name]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while blob_gets(&origin, &arm_layer) == 0 || target.upload_bytes() < 100_000 {
        assert!(Instant::now() < deadline, "the relay never started");
        assert!(push.try_finished().is_none(), "{}", push.stdout_so_far());
        std::thread::sleep(Duration::from_millis(20));
    }
    push.kill();

    // The relay stops: no request stays open at the origin or the target, and every upload
    // session hoistd opened and did not finish is cancelled (`DELETE`). distribution refuses
    // the cancellation of a session that took part of a body (its state token names the old
    // offset), so those are left to its upload purging; the requests are what we control.
    let session_of = |path: &str| {
        path.split("/blobs/uploads/")
            .nth(1)
            .and_then(|rest| rest.split('?').next())
            .filter(|uuid| !uuid.is_empty())
            .map(str::to_owned)
    };
    let unfinished = || {
        let requests = target.requests();
        let opened: Vec<String> = requests
            .iter()
            .filter(|r| r.method == "PUT")
            .filter(|r| r.status != Some(201))
            .filter_map(|r| session_of(&r.path))
            .collect();
        let cancelled: Vec<String> = requests
            .iter()
            .filter(|r| r.method == "DELETE")
            .filter_map(|r| session_of(&r.path))
            .collect();
        (opened, cancelled)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (opened, cancelled) = unfinished();
        let all_cancelled = !opened.is_empty() && opened.iter().all(|s| cancelled.contains(s));
        if all_cancelled && origin.open_requests() == 0 && target.open_requests() == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still open: origin {}, target {}; unfinished sessions {opened:?}, cancelled {cancelled:?}",
            origin.open_requests(),
            target.open_requests(),
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!registry.has_blob(&mirror, &arm_layer), "nothing committed");
    let ingest = hoistd.data_root().join("ingest");
    let left = std::fs::read_dir(&ingest).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "ingest/ is empty");
    assert!(
        !hoistd
            .data_root()
            .join(format!("blobs/{}", arm_layer.replace(':', "/")))
            .exists(),
        "the relayed layer was never stored locally"
    );

    // The store is consistent, and the daemon pushes the image whole afterwards.
    hoistd.stop();
    hoistd.assert_data_root_checks_clean();
    hoistd.restart();
    target.clear_rules();
    let cli = DockerCli::new(&hoistd.socket());
    let out = cli.run(&["push", &target_name]);
    out.assert_success("docker push after the cut");
    assert_pushed_whole(&out.stdout, "1", &index);
    assert_registry_has_index(registry, &mirror, "1", &index);
}

#[test]
fn relayed_blobs_pass_through_in_bounded_memory_and_are_never_stored() {
    const MIB: u64 = 1024 * 1024;
    // The same bound as a 1 GiB push from the store.
    const PEAK_RSS_LIMIT_KIB: u64 = 64 * 1024;
    let registry = TestRegistry::shared();
    let origin = FaultProxy::in_front_of(registry);
    let big = |seed: u64, platform: &str| {
        ImageBuilder::new(Flavor::Oci)
            .seed(seed)
            .platform(Platform::parse(platform))
            .layer(LayerSpec::single(80 * MIB).compression(Compression::Gzip { level: 0 }))
            .build()
    };
    let images = vec![
        platform_image(80, HOST_PLATFORM, &[LayerSpec::single(10_000)]),
        big(81, "linux/arm64"),
        big(82, "linux/s390x"),
    ];
    let index = index_of(&images);
    let (source, mirror) = (unique_repo("complete/big"), unique_repo("complete/big-dst"));
    skopeo::push_index(&index, &registry.host(), &source, "1");
    let mut hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket()).with_timeout(Duration::from_secs(600));
    let target_name = format!("{}/{mirror}:1", registry.host());
    pull_and_tag(&cli, &format!("{}/{source}:1", origin.host()), &target_name);

    // A fresh process, so the high-water mark measures the push alone.
    hoistd.restart();
    let out = cli.run(&["push", &target_name]);
    out.assert_success("docker push");
    assert_pushed_whole(&out.stdout, "1", &index);
    let peak = hoistd.peak_rss_kib();
    let relayed: u64 = images[1..].iter().map(|i| i.layers[0].blob.size).sum();
    eprintln!("relayed {relayed} bytes of layers; peak RSS {peak} KiB");
    assert!(relayed > 160 * MIB);
    assert!(
        peak < PEAK_RSS_LIMIT_KIB,
        "relaying 160 MiB took {peak} KiB of memory (limit {PEAK_RSS_LIMIT_KIB} KiB)"
    );
    for image in &images[1..] {
        let layer = &image.layers[0].blob.digest;
        assert_eq!(blob_gets(&origin, layer), 1, "read from the origin once");
        let stored = hoistd
            .data_root()
            .join(format!("blobs/{}", layer.replace(':', "/")));
        assert!(!stored.exists(), "{layer} was stored locally");
    }
    let ingest = std::fs::read_dir(hoistd.data_root().join("ingest"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(ingest, 0, "nothing spooled in ingest/");
    assert_registry_has_index(registry, &mirror, "1", &index);
}

#[test]
fn an_origin_that_refuses_anonymous_reads_falls_back_with_its_answer() {
    // The origin serves this repository to its users only; the docker CLI sends the target's
    // credentials with a push, so the origin is asked anonymously and says no.
    let index = index_of(&three_platform_images(9));
    let (_tokens, origin) = private_origin(&index);
    let target = TestRegistry::shared();
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket()).with_auth(&origin.host(), "bob", "pw");
    let mirror = unique_repo("complete/private-dst");
    let target_name = format!("{}/{mirror}:1", target.host());
    pull_and_tag(
        &cli,
        &format!("{}/private/app:1", origin.host()),
        &target_name,
    );

    let out = cli.run(&["push", &target_name]);
    out.assert_success("docker push");
    let note = assert_fell_back(
        &out.stdout,
        &index,
        &format!("could not be fetched from {}/private/app: ", origin.host()),
    );
    assert!(
        note.contains("unauthorized") || note.contains("denied"),
        "the origin's refusal: {note}"
    );
    assert_registry_has_image(target, &mirror, "1", index.image_for(HOST_PLATFORM));
}

#[test]
fn a_blob_the_origin_serves_wrong_never_reaches_the_target() {
    let registry = TestRegistry::shared();
    let origin = FaultProxy::in_front_of(registry);
    let index = index_of(&three_platform_images(10));
    let (source, mirror) = (unique_repo("complete/bad"), unique_repo("complete/bad-dst"));
    skopeo::push_index(&index, &registry.host(), &source, "1");
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let target_name = format!("{}/{mirror}:1", registry.host());
    pull_and_tag(&cli, &format!("{}/{source}:1", origin.host()), &target_name);
    // The origin answers with other bytes of the same length (a corrupt cache, say).
    let layer = &index.image_for("linux/arm64").layers[0].blob;
    let wrong = vec![b'x'; layer.size as usize];
    origin.add_rule(FaultRule::new(
        "GET",
        &format!("/blobs/{}", layer.digest),
        FaultAction::respond(200, &[("Content-Type", "application/octet-stream")], &wrong),
    ));

    let out = cli.run(&["push", &target_name]);
    assert!(!out.success(), "{}", out.stdout);
    assert!(
        out.stderr.contains("digest mismatch") && out.stderr.contains(&layer.digest),
        "{}",
        out.stderr
    );
    assert!(
        !registry.has_blob(&mirror, &layer.digest),
        "never committed"
    );
    assert!(registry.tags(&mirror).is_empty(), "no tag pushed");
}

/// A registry with token auth where only `bob:pw` may read, holding `index` as `private/app:1`.
fn private_origin(index: &ImageIndex) -> (TokenServer, TestRegistry) {
    let tokens = TokenServer::start(TokenServerOptions::default());
    tokens.add_user("bob", "pw", &[("*", &["pull", "push"])]);
    let origin = TestRegistry::start(RegistryOptions {
        auth: tokens.registry_auth(),
    });
    let layout = tempfile::tempdir().unwrap();
    let archive = layout.path().join("index.tar");
    hoist_testkit::archive::ArchiveBuilder::new(hoist_testkit::archive::ArchiveFormat::Oci)
        .index(index, &["private/app:1"])
        .write(&archive);
    skopeo::skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        "bob:pw",
        &format!("oci-archive:{}:1", archive.display()),
        &format!("docker://{}/private/app:1", origin.host()),
    ])
    .assert_success("skopeo copy --all");
    (tokens, origin)
}

#[test]
fn x_registry_auth_naming_the_origin_is_used_to_read_from_it() {
    let index = index_of(&three_platform_images(11));
    let (_tokens, origin) = private_origin(&index);
    // The target takes anonymous pushes; the push's credentials name the origin.
    let target = TestRegistry::shared();
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket()).with_auth(&origin.host(), "bob", "pw");
    let mirror = unique_repo("complete/named-dst");
    let target_name = format!("{}/{mirror}:1", target.host());
    pull_and_tag(
        &cli,
        &format!("{}/private/app:1", origin.host()),
        &target_name,
    );

    let auth = base64url(&json!({
        "username": "bob",
        "password": "pw",
        "serveraddress": origin.host(),
    }));
    let r = hoistd.request(
        "POST",
        &format!("/v1.50/images/{}/{mirror}/push?tag=1", target.host()),
        &[("X-Registry-Auth", auth.as_str())],
        b"",
    );
    assert_eq!(r.status, 200);
    let msgs = messages(&r.body);
    assert!(
        msgs.iter().all(|m| m.get("errorDetail").is_none()),
        "{}",
        r.text()
    );
    let pushed = format!("1: digest: {} size: {}", index.digest(), index.size());
    assert!(
        msgs.iter()
            .any(|m| m["status"].as_str() == Some(pushed.as_str())),
        "{}",
        r.text()
    );
    assert_registry_has_index(target, &mirror, "1", &index);
}
