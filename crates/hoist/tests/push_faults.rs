//! Push through a proxy that observes and disturbs the traffic to the real registry: dedupe,
//! the concurrency limit, retries of each transient failure, resumable chunks, stalls, and
//! cancellation when the client goes away.

mod push_support;

use std::time::{Duration, Instant};

use hoist_testkit::archive::ArchiveFormat;
use hoist_testkit::docker::DockerCli;
use hoist_testkit::image::{Flavor, Image, ImageBuilder, LayerSpec};
use hoist_testkit::proxy::{FaultAction, FaultProxy, FaultRule, RequestRecord};
use hoist_testkit::registry::TestRegistry;
use push_support::*;
use serde_json::json;

fn image(seed: u64, sizes: &[u64]) -> Image {
    ImageBuilder::gzip_layers(Flavor::Docker, seed, sizes)
}

/// A blob upload's final PUT (the one carrying `digest=`) for `digest`.
fn is_put_of(r: &RequestRecord, digest: &str) -> bool {
    r.method == "PUT"
        && r.path.contains("/blobs/uploads/")
        && r.path.contains(&digest.replace(':', "%3A"))
        || r.method == "PUT" && r.path.contains("/blobs/uploads/") && r.path.contains(digest)
}

fn puts_of(proxy: &FaultProxy, digest: &str) -> usize {
    proxy
        .requests()
        .iter()
        .filter(|r| is_put_of(r, digest))
        .count()
}

/// Loads `image` as `<proxy>/<repo>:<tag>` and returns the name.
fn load_through(
    cli: &DockerCli,
    proxy: &FaultProxy,
    image: &Image,
    repo: &str,
    tag: &str,
) -> String {
    let name = format!("{}/{repo}:{tag}", proxy.host());
    load_image(cli, image, &[&name], ArchiveFormat::DockerLegacy);
    name
}

/// One push scenario: a proxy in front of the shared registry, a fresh hoistd (with `config`),
/// and a generated image loaded as `<proxy>/<repo>:1`.
struct Scenario {
    registry: &'static TestRegistry,
    proxy: FaultProxy,
    hoistd: hoist_testkit::hoistd::Hoistd,
    cli: DockerCli,
    image: Image,
    repo: String,
    name: String,
}

impl Scenario {
    fn new(prefix: &str, seed: u64, sizes: &[u64], config: serde_json::Value) -> Scenario {
        let registry = TestRegistry::shared();
        let proxy = FaultProxy::in_front_of(registry);
        let hoistd = start_hoistd_with(config);
        let cli = DockerCli::new(&hoistd.socket());
        let image = image(seed, sizes);
        let repo = unique_repo(prefix);
        let name = load_through(&cli, &proxy, &image, &repo, "1");
        Scenario {
            registry,
            proxy,
            hoistd,
            cli,
            image,
            repo,
            name,
        }
    }

    fn push(&self) -> hoist_testkit::process::CliOutput {
        self.cli.run(&["push", &self.name])
    }

    /// The registry holds the image, byte for byte.
    fn assert_pushed(&self) {
        assert_registry_has_image(self.registry, &self.repo, "1", &self.image);
    }

    fn slow_uploads(&self, bytes_per_second: u64) {
        self.proxy.add_rule(FaultRule::new(
            "PUT",
            "/blobs/uploads/",
            FaultAction::SlowBody { bytes_per_second },
        ));
    }

    /// A rule on the final PUT of the upload of `digest` only.
    fn on_put_of(&self, digest: &str, action: FaultAction) -> FaultRule {
        FaultRule::new("PUT", "/blobs/uploads/", action).query(&digest.replace(':', "%3A"))
    }
}

#[test]
fn concurrent_pushes_of_one_image_upload_each_blob_once() {
    let s = Scenario::new("dedupe", 101, &[1_000_000, 600_000, 300_000], json!({}));
    // Slow uploads so that the two pushes overlap.
    s.slow_uploads(2_000_000);
    let first = s.cli.spawn(&["push", &s.name]);
    let second = s.cli.spawn(&["push", &s.name]);
    first
        .wait(Duration::from_secs(60))
        .assert_success("first client");
    second
        .wait(Duration::from_secs(60))
        .assert_success("second client");
    for blob in s.image.blobs() {
        assert_eq!(
            s.proxy.completed_uploads(&blob.digest),
            1,
            "blob {} uploaded once: {:#?}",
            blob.digest,
            s.proxy.upload_counts()
        );
    }
    s.assert_pushed();
}

#[test]
fn concurrent_pushes_to_other_repositories_upload_each_blob_once_and_mount_it() {
    let s = Scenario::new(
        "shared-a",
        114,
        &[2_000_000, 1_500_000, 1_000_000],
        json!({}),
    );
    // Four more repositories of the same registry, each with a tag of the same image.
    let repos: Vec<String> = (0..4).map(|_| unique_repo("shared-b")).collect();
    let names: Vec<String> = repos
        .iter()
        .map(|repo| {
            let name = format!("{}/{repo}:1", s.proxy.host());
            s.cli
                .run(&["tag", &s.name, &name])
                .assert_success("docker tag");
            name
        })
        .collect();
    // Slow uploads (2 s for the largest) so that every push starts while the first one's
    // layers are still being sent.
    s.slow_uploads(1_000_000);
    let first = s.cli.spawn(&["push", &s.name]);
    wait_for_upload(&s.proxy);
    let others: Vec<_> = names.iter().map(|n| s.cli.spawn(&["push", n])).collect();
    first
        .wait(Duration::from_secs(60))
        .assert_success("the first push");
    let mut mounted_lines = 0;
    for (name, push) in names.iter().zip(others) {
        let out = push.wait(Duration::from_secs(60));
        out.assert_success(&format!("docker push {name}"));
        mounted_lines += out.stdout.matches("Mounted from").count();
    }
    for blob in s.image.blobs() {
        assert_eq!(
            s.proxy.completed_uploads(&blob.digest),
            1,
            "blob {} uploaded once to the registry: uploads {:#?}, mounts {:#?}",
            blob.digest,
            s.proxy.upload_counts(),
            s.proxy.mount_counts()
        );
        assert_eq!(
            s.proxy.mounts(&blob.digest),
            repos.len(),
            "blob {} mounted into every other repository",
            blob.digest
        );
    }
    // The CLI shows layers only (the config is a blob but not a layer line).
    assert_eq!(
        mounted_lines,
        repos.len() * s.image.layers.len(),
        "every layer of every other push reads `Mounted from`"
    );
    s.assert_pushed();
    for repo in &repos {
        assert_registry_has_image(s.registry, repo, "1", &s.image);
    }
}

#[test]
fn a_refused_mount_after_waiting_falls_back_to_an_upload() {
    let s = Scenario::new("shared-refused", 115, &[1_500_000], json!({}));
    let other = format!("{}/{}:1", s.proxy.host(), unique_repo("shared-refused-b"));
    s.cli
        .run(&["tag", &s.name, &other])
        .assert_success("docker tag");
    // The registry refuses every cross-repository mount.
    s.proxy.add_rule(
        FaultRule::new("POST", "/blobs/uploads/", FaultAction::status(403)).query("mount="),
    );
    s.slow_uploads(1_000_000);
    let first = s.cli.spawn(&["push", &s.name]);
    wait_for_upload(&s.proxy);
    let second = s.cli.spawn(&["push", &other]);
    first
        .wait(Duration::from_secs(60))
        .assert_success("the first push");
    let out = second.wait(Duration::from_secs(60));
    out.assert_success("the push that waited");
    assert!(
        !out.stdout.contains("Mounted from"),
        "nothing was mounted: {}",
        out.stdout
    );
    for blob in s.image.blobs() {
        assert_eq!(
            s.proxy.completed_uploads(&blob.digest),
            2,
            "blob {} uploaded by each push once the mount was refused",
            blob.digest
        );
    }
    s.assert_pushed();
    let repo = other
        .split_once('/')
        .and_then(|(_, rest)| rest.rsplit_once(':'))
        .map(|(repo, _)| repo.to_owned())
        .expect("repository of the second name");
    assert_registry_has_image(s.registry, &repo, "1", &s.image);
}

#[test]
fn uploads_respect_the_limit_largest_first_and_show_waiting() {
    let sizes = [300_000, 900_000, 500_000, 700_000, 400_000, 800_000];
    let s = Scenario::new("limit", 102, &sizes, json!({"max-concurrent-uploads": 1}));
    // Hold the first upload until every other blob has had time to queue for the one slot;
    // from then on each grant waits for the previous upload, so the proxy sees grant order.
    s.proxy.add_rule(
        FaultRule::new(
            "PUT",
            "/blobs/uploads/",
            FaultAction::Delay(Duration::from_secs(2)),
        )
        .once(),
    );
    let out = s.push();
    out.assert_success("push");
    assert_eq!(
        s.proxy.max_uploads_in_flight(),
        1,
        "uploads in flight at once"
    );
    assert!(
        out.stdout.lines().any(|l| l.ends_with(": Waiting")),
        "layers over the limit wait:\n{}",
        out.stdout
    );
    let mut puts: Vec<RequestRecord> = s
        .proxy
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.path.contains("/blobs/uploads/"))
        .collect();
    puts.sort_by_key(|r| r.started);
    let waited: Vec<u64> = puts.iter().skip(1).map(|r| r.request_body_bytes).collect();
    let mut sorted = waited.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(waited, sorted, "waiting uploads start largest first");
    assert_eq!(waited.len(), s.image.blobs().count() - 1);
    s.assert_pushed();
}

#[test]
fn default_limit_runs_five_uploads_in_parallel() {
    let s = Scenario::new("parallel", 103, &[400_000; 8], json!({}));
    // A second per upload: far longer than it takes the others to get their slots, even on a
    // busy machine, so the first uploads are still running when the fifth starts.
    s.slow_uploads(400_000);
    s.push().assert_success("push");
    assert_eq!(s.proxy.max_uploads_in_flight(), 5);
    s.assert_pushed();
}

#[test]
fn transient_503_is_retried_with_a_countdown() {
    let s = Scenario::new("retry503", 104, &[200_000], json!({}));
    let layer = s.image.layers[0].blob.digest.clone();
    s.proxy
        .add_rule(s.on_put_of(&layer, FaultAction::status(503)).once());
    let out = s.push();
    out.assert_success("push after a 503");
    let lines = layer_lines(&out.stdout, layer_id(&layer));
    assert!(
        lines.iter().any(|l| l.starts_with("Retrying in ")),
        "{}",
        out.stdout
    );
    assert_eq!(lines.last(), Some(&"Pushed"), "{}", out.stdout);
    assert_eq!(puts_of(&s.proxy, &layer), 2);
    s.assert_pushed();
}

#[test]
fn too_many_requests_waits_as_long_as_retry_after_says() {
    let s = Scenario::new("retry429", 105, &[5_000_000], json!({}));
    let layer = s.image.layers[0].blob.digest.clone();
    s.proxy.add_rule(
        s.on_put_of(&layer, FaultAction::too_many_requests(3))
            .once(),
    );
    // As a registry or proxy does when it refuses a body (Go's server and nginx linger to read
    // it): answered at once, the unread body's reset can reach hoistd before the answer does.
    s.proxy
        .add_rule(s.on_put_of(&layer, FaultAction::ReadBodyFirst));
    let started = Instant::now();
    let out = s.push();
    out.assert_success("push after a 429");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "waited {:?}",
        started.elapsed()
    );
    let lines = layer_lines(&out.stdout, layer_id(&layer));
    for expected in [
        "Retrying in 3 seconds",
        "Retrying in 2 seconds",
        "Retrying in 1 second",
    ] {
        assert!(
            lines.contains(&expected),
            "missing {expected:?} in:\n{}",
            out.stdout
        );
    }
    s.assert_pushed();
}

#[test]
fn a_put_reset_mid_body_is_resumed_in_chunks() {
    let config = json!({"upload-fallback-chunk-size": 1_048_576});
    let s = Scenario::new("reset", 106, &[4_500_000], config);
    let layer = s.image.layers[0].blob.digest.clone();
    s.proxy.add_rule(
        s.on_put_of(&layer, FaultAction::ResetAfterBodyBytes(256 * 1024))
            .once(),
    );
    s.push().assert_success("push after a reset");
    let requests = s.proxy.requests();
    let patches: Vec<&RequestRecord> = requests.iter().filter(|r| r.method == "PATCH").collect();
    assert!(
        patches.len() >= 4,
        "the retry went in 1 MiB chunks; retries in the daemon log:\n{}\nall requests: {requests:#?}",
        s.hoistd
            .log()
            .lines()
            .filter(|l| l.contains("retrying"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(patches.iter().all(|p| p.request_body_bytes <= 1_048_576));
    s.assert_pushed();
}

#[test]
fn configured_chunked_uploads_respect_oci_chunk_min_length() {
    // The chunk size is configured for the proxy's address, which exists only once it runs.
    let registry = TestRegistry::shared();
    let proxy = FaultProxy::in_front_of(registry);
    let hoistd = start_hoistd_with(json!({"upload-chunk-size": {proxy.host(): 262_144}}));
    let cli = DockerCli::new(&hoistd.socket());
    let image = image(107, &[3_300_000]);
    let repo = unique_repo("chunked");
    let name = load_through(&cli, &proxy, &image, &repo, "1");
    proxy.add_rule(FaultRule::new(
        "POST",
        "/blobs/uploads/",
        FaultAction::add_response_header("OCI-Chunk-Min-Length", "1048576"),
    ));
    cli.run(&["push", &name]).assert_success("chunked push");
    // Chunks of one session share its URL path (the query changes with every chunk).
    let mut sessions: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for r in proxy.requests().into_iter().filter(|r| r.method == "PATCH") {
        let path = r.path.split('?').next().unwrap_or_default().to_owned();
        sessions.entry(path).or_default().push(r.request_body_bytes);
    }
    let layer = &image.layers[0].blob;
    let chunks = sessions
        .values()
        .find(|c| c.iter().sum::<u64>() == layer.size)
        .unwrap_or_else(|| panic!("no session carried the layer: {sessions:?}"));
    assert!(chunks.len() >= 3, "{chunks:?}");
    let (last, rest) = chunks.split_last().expect("chunks");
    assert!(
        rest.iter().all(|&n| n == 1_048_576),
        "chunks must be raised to the registry's minimum: {chunks:?}"
    );
    assert!(*last > 0 && *last <= 1_048_576, "{chunks:?}");
    assert_registry_has_image(registry, &repo, "1", &image);
}

#[test]
fn a_relative_upload_location_is_followed() {
    let s = Scenario::new("relative", 108, &[100_000, 20_000], json!({}));
    s.proxy.add_rule(FaultRule::new(
        "POST",
        "/blobs/uploads/",
        FaultAction::RelativeLocation,
    ));
    s.push().assert_success("push with relative locations");
    s.assert_pushed();
}

#[test]
fn blob_upload_unknown_restarts_the_blob_with_a_new_session() {
    let s = Scenario::new("unknown", 109, &[120_000], json!({}));
    let layer = s.image.layers[0].blob.digest.clone();
    let unknown = br#"{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN","message":"blob upload unknown to registry"}]}"#;
    let reply = FaultAction::respond(404, &[("Content-Type", "application/json")], unknown);
    s.proxy.add_rule(s.on_put_of(&layer, reply).once());
    s.push().assert_success("push after BLOB_UPLOAD_UNKNOWN");
    assert_eq!(puts_of(&s.proxy, &layer), 2);
    s.assert_pushed();
}

#[test]
fn a_denied_upload_fails_at_once_with_the_registry_message() {
    let s = Scenario::new("denied", 110, &[50_000], json!({}));
    let denied =
        br#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#;
    let reply = FaultAction::respond(403, &[("Content-Type", "application/json")], denied);
    s.proxy
        .add_rule(FaultRule::new("PUT", "/blobs/uploads/", reply));
    let started = Instant::now();
    let out = s.push();
    assert!(!out.success());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no retries for DENIED"
    );
    assert_eq!(
        out.stderr.trim(),
        "denied: requested access to the resource is denied"
    );
    for blob in s.image.blobs() {
        assert!(
            puts_of(&s.proxy, &blob.digest) <= 1,
            "retried a DENIED upload of {}",
            blob.digest
        );
    }
    assert!(s.registry.tags(&s.repo).is_empty());
}

#[test]
fn retries_stop_after_five_attempts() {
    let s = Scenario::new("exhausted", 111, &[40_000], json!({}));
    let layer = s.image.layers[0].blob.digest.clone();
    s.proxy
        .add_rule(s.on_put_of(&layer, FaultAction::status(503)));
    let out = s.push();
    assert!(!out.success(), "{}", out.stdout);
    assert_eq!(puts_of(&s.proxy, &layer), 5, "5 attempts in all");
    assert!(
        out.stderr.contains("503"),
        "the last error is shown: {}",
        out.stderr
    );
    assert!(s.registry.tags(&s.repo).is_empty());
}

#[test]
fn a_lost_upload_session_is_retried_with_backoff_and_the_first_cause_reported() {
    let config = json!({"upload-fallback-chunk-size": 1_048_576});
    let s = Scenario::new("lost-session", 113, &[3_000_000], config);
    let layer = s.image.layers[0].blob.digest.clone();
    // The first PUT is cut mid-body; the registry then forgets every session it is sent to, as
    // a registry behind a restarting proxy does.
    s.proxy.add_rule(
        s.on_put_of(&layer, FaultAction::ResetAfterBodyBytes(256 * 1024))
            .once(),
    );
    let unknown = br#"{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN","message":"blob upload unknown to registry"}]}"#;
    s.proxy.add_rule(FaultRule::new(
        "PATCH",
        "/blobs/uploads/",
        FaultAction::respond(404, &[("Content-Type", "application/json")], unknown),
    ));
    // After the chunk: answered at once, the unread chunk's reset can reach hoistd before the
    // answer does, and the last error is then a broken pipe.
    s.proxy.add_rule(FaultRule::new(
        "PATCH",
        "/blobs/uploads/",
        FaultAction::ReadBodyFirst,
    ));
    let path = format!("/v1.50/images/{}/push", s.name);
    let answer = s
        .hoistd
        .request("POST", &path, &[("X-Registry-Auth", "e30=")], b"");
    let lines = answer.json_lines();
    let countdowns: std::collections::BTreeSet<&str> = lines
        .iter()
        .filter_map(|l| l["status"].as_str())
        .filter(|status| status.starts_with("Retrying in"))
        .collect();
    // Four waits of 1, 2, 4 and 8 s (with jitter): a countdown from at least 7 shows the
    // backoff grew on lost sessions too.
    assert!(
        countdowns.contains("Retrying in 7 seconds"),
        "every retry waits, growing: {countdowns:?}"
    );
    let error = lines
        .last()
        .and_then(|l| l["error"].as_str())
        .unwrap_or_else(|| panic!("the push failed in-stream: {lines:#?}"))
        .to_owned();
    assert!(error.contains("blob upload unknown"), "{error}");
    assert!(error.contains("gave up after 5 attempts"), "{error}");
    // The cause is the reset, and how far the first attempt got.
    let first = error
        .split_once("the first failed with: ")
        .map(|(_, first)| first)
        .unwrap_or_else(|| panic!("the first cause is named: {error}"));
    let size = s.image.layers[0].blob.size;
    assert!(
        first.contains("reset") && first.contains(&format!("of {size} bytes")),
        "{error}"
    );
    assert!(s.registry.tags(&s.repo).is_empty());
}

#[test]
fn a_stalled_upload_is_aborted_and_retried() {
    let s = Scenario::new("stall", 112, &[500_000], json!({"upload-stall-timeout": 2}));
    let layer = s.image.layers[0].blob.digest.clone();
    s.proxy
        .add_rule(s.on_put_of(&layer, FaultAction::StallBody).once());
    let started = Instant::now();
    let out = s.push();
    out.assert_success("push after a stall");
    assert!(started.elapsed() >= Duration::from_secs(2));
    let lines = layer_lines(&out.stdout, layer_id(&layer));
    assert!(
        lines.iter().any(|l| l.starts_with("Retrying in ")),
        "{}",
        out.stdout
    );
    s.assert_pushed();
}

/// Waits until an upload body is flowing through the proxy.
fn wait_for_upload(proxy: &FaultProxy) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxy.uploads_in_flight() == 0 || proxy.upload_bytes() < 100_000 {
        assert!(
            Instant::now() < deadline,
            "no upload started: {:#?}",
            proxy.requests()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_image_removed_during_its_push_stays_removed() {
    let s = Scenario::new("rmi-during-push", 114, &[6_000_000, 3_000_000], json!({}));
    s.slow_uploads(4_000_000);
    let layer_files: Vec<std::path::PathBuf> = s
        .image
        .layers
        .iter()
        .map(|l| {
            let hex = &l.blob.digest["sha256:".len()..];
            s.hoistd.data_root().join("blobs/sha256").join(hex)
        })
        .collect();
    assert!(layer_files.iter().all(|p| p.exists()), "{layer_files:?}");
    let push = s.cli.spawn(&["push", &s.name]);
    wait_for_upload(&s.proxy);
    s.cli
        .run(&["rmi", "-f", &s.name])
        .assert_success("docker rmi -f during the push");
    push.wait(Duration::from_secs(120))
        .assert_success("the push of the removed image completes");
    // The push reached the registry whole, yet the image does not come back as `<none>`.
    s.assert_pushed();
    let listed = s.cli.run(&["images", "-a", "--no-trunc", "-q"]);
    listed.assert_success("docker images");
    assert_eq!(listed.stdout.trim(), "", "the removed image came back");
    let deadline = Instant::now() + Duration::from_secs(30);
    for path in &layer_files {
        while path.exists() {
            assert!(
                Instant::now() < deadline,
                "the removed image's layer {} is never freed",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn a_client_that_disconnects_cancels_its_uploads_within_a_second() {
    let mut s = Scenario::new("cancel", 113, &[120_000_000, 80_000_000], json!({}));
    // Throttled so that the push is still running when the client dies, but not so hard that
    // the megabytes already queued in socket buffers (which drain after any close, graceful or
    // not) take seconds to arrive: at 20 MB/s they drain well within the second allowed.
    s.slow_uploads(20_000_000);
    let files_before = s.hoistd.open_non_socket_fds();

    let mut push = s.cli.spawn(&["push", &s.name]);
    wait_for_upload(&s.proxy);
    push.kill();
    let killed = Instant::now();
    while s.proxy.uploads_in_flight() > 0 {
        assert!(
            killed.elapsed() < Duration::from_secs(1),
            "uploads still running {:?} after the client died; hoistd log:\n{}",
            killed.elapsed(),
            s.hoistd.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let bytes = s.proxy.upload_bytes();
    assert!(
        bytes < 150_000_000,
        "the push was cut short, not finished ({bytes} bytes sent)"
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        s.proxy.upload_bytes(),
        bytes,
        "no upload resumed after the cancel"
    );
    assert!(s.registry.tags(&s.repo).is_empty());
    assert!(
        s.hoistd
            .log()
            .contains("push cancelled: the client disconnected")
    );

    // The daemon is healthy and leaked nothing.
    assert!(s.hoistd.is_running());
    s.cli
        .run(&["version"])
        .assert_success("docker version after a cancel");
    // Idle keep-alive connections may stay in the pools, as in any HTTP client; a connection
    // left mid-request would hold a request open at the proxy.
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.hoistd.open_non_socket_fds() > files_before || s.proxy.open_requests() > 0 {
        assert!(
            Instant::now() < deadline,
            "leaked: {} requests open at the proxy; descriptors other than sockets: {} before, \
             now {:?}",
            s.proxy.open_requests(),
            files_before,
            s.hoistd.fd_targets()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // And a new push of the same image works.
    s.proxy.clear_rules();
    s.push().assert_success("push after a cancelled one");
    s.assert_pushed();
}

#[test]
fn a_transfer_shared_with_another_client_goes_on_when_one_leaves() {
    let s = Scenario::new("shared", 114, &[4_000_000, 2_000_000], json!({}));
    s.slow_uploads(2_000_000);
    let mut leaving = s.cli.spawn(&["push", &s.name]);
    let staying = s.cli.spawn(&["push", &s.name]);
    wait_for_upload(&s.proxy);
    leaving.kill();
    staying
        .wait(Duration::from_secs(60))
        .assert_success("the remaining client");
    for blob in s.image.blobs() {
        assert_eq!(
            s.proxy.completed_uploads(&blob.digest),
            1,
            "{}: {:#?}",
            blob.digest,
            s.proxy.upload_counts()
        );
    }
    s.assert_pushed();
}

#[test]
fn a_tls_attempt_on_an_insecure_loopback_registry_falls_back_to_http_quickly() {
    let s = Scenario::new("fallback", 115, &[10_000], json!({}));
    let started = Instant::now();
    s.push().assert_success("push");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        s.proxy.tls_hellos_refused() >= 1,
        "hoist tries HTTPS first, as dockerd does"
    );
    s.assert_pushed();
}

#[test]
fn progress_is_coalesced_to_about_ten_updates_a_second_per_layer() {
    let s = Scenario::new("progress", 116, &[25_000_000, 15_000_000], json!({}));
    s.slow_uploads(10_000_000);
    let started = Instant::now();
    let path = format!("/v1.50/images/{}/{}/push?tag=1", s.proxy.host(), s.repo);
    let r = s
        .hoistd
        .request("POST", &path, &[("X-Registry-Auth", "e30=")], b"");
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(r.status, 200);
    let msgs = messages(&r.body);
    for layer in &s.image.layers {
        let id = layer_id(&layer.blob.digest);
        let pushing: Vec<&serde_json::Value> = msgs
            .iter()
            .filter(|m| m["id"] == id && m["status"] == "Pushing")
            .collect();
        assert!(
            pushing.len() >= 5,
            "progress is reported while {id} uploads: {} updates",
            pushing.len()
        );
        assert!(
            pushing.len() as f64 <= 10.0 * seconds + 5.0,
            "{} updates for {id} in {seconds:.1} s: not coalesced",
            pushing.len()
        );
        let last = pushing.last().expect("updates");
        assert_eq!(last["progressDetail"]["total"], layer.blob.size);
        let bar = last["progress"].as_str().unwrap_or_default();
        assert!(
            bar.starts_with('[') && bar.contains("MB/"),
            "moby's bar text: {bar:?}"
        );
        let mut previous = 0;
        for m in &pushing {
            let current = m["progressDetail"]["current"].as_u64().expect("current");
            assert!(
                current >= previous,
                "progress never goes back within an attempt"
            );
            previous = current;
        }
    }
}

#[test]
fn a_client_that_does_not_read_never_slows_the_upload() {
    use std::io::{Read, Write};
    let s = Scenario::new(
        "slowclient",
        117,
        &[30_000_000, 20_000_000, 10_000_000],
        json!({}),
    );
    // A client that sends the request and then reads nothing until the registry holds the image.
    let mut socket =
        std::os::unix::net::UnixStream::connect(s.hoistd.socket()).expect("connect to hoistd");
    let request = format!(
        "POST /v1.50/images/{}/{}/push?tag=1 HTTP/1.1\r\nHost: hoist\r\nX-Registry-Auth: e30=\r\nContent-Length: 0\r\n\r\n",
        s.proxy.host(),
        s.repo
    );
    socket
        .write_all(request.as_bytes())
        .expect("send the request");
    // Done when the registry has answered the tag's manifest PUT (its tag list may show the
    // tag a moment before the manifest can be read).
    s.proxy.wait_for(
        "the manifest PUT to be answered",
        Duration::from_secs(60),
        |requests| {
            requests.iter().any(|r| {
                r.method == "PUT" && r.path.ends_with("/manifests/1") && r.status == Some(201)
            })
        },
    );
    s.assert_pushed();
    // The client still gets the whole story, ending with the digest line and the aux.
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut response = Vec::new();
    let mut buf = [0u8; 65536];
    while !String::from_utf8_lossy(&response).contains("\"aux\"") {
        let n = socket.read(&mut buf).expect("read the response");
        assert!(
            n > 0,
            "response ended early: {}",
            String::from_utf8_lossy(&response)
        );
        response.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&response);
    assert!(
        text.contains(&format!("1: digest: {}", s.image.digest())),
        "{text}"
    );
}

#[test]
fn an_index_goes_blobs_first_then_child_manifests_then_the_index_by_tag() {
    use hoist_testkit::image::IndexBuilder;
    let registry = TestRegistry::shared();
    let proxy = FaultProxy::in_front_of(registry);
    let hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket());
    let index = IndexBuilder::new(Flavor::Oci)
        .seed(118)
        .platform("linux/amd64", &[LayerSpec::single(30_000)])
        .platform("linux/arm64/v8", &[LayerSpec::single(30_000)])
        .with_attestations()
        .build();
    let repo = unique_repo("order");
    let name = format!("{}/{repo}:1", proxy.host());
    load_index(&cli, &index, &[&name], |b| b);
    cli.run(&["push", &name]).assert_success("push of an index");
    let requests = proxy.requests();
    let last_blob = requests
        .iter()
        .filter(|r| r.method == "PUT" && r.path.contains("/blobs/uploads/"))
        .filter_map(|r| r.ended)
        .max()
        .expect("blob uploads");
    let manifest_puts: Vec<&RequestRecord> = requests
        .iter()
        .filter(|r| r.method == "PUT" && r.path.contains("/manifests/"))
        .collect();
    assert_eq!(
        manifest_puts.len(),
        index.all_images().count() + 1,
        "{manifest_puts:#?}"
    );
    let (root, children) = manifest_puts.split_last().expect("manifest PUTs");
    assert!(
        root.path.ends_with("/manifests/1"),
        "the index goes last, by tag: {manifest_puts:#?}"
    );
    for child in children {
        assert!(
            child.path.contains("/manifests/sha256:"),
            "children go by digest: {}",
            child.path
        );
        assert!(
            child.started >= last_blob,
            "a manifest went before all blobs were in"
        );
        assert!(
            child.ended.expect("answered") <= root.started,
            "the index went before a child"
        );
    }
    assert_registry_has_index(registry, &repo, "1", &index);
}

/// Paths of the `HEAD /v2/<repo>/blobs/<digest>` requests the proxy saw.
fn blob_checks(proxy: &FaultProxy) -> Vec<String> {
    proxy
        .requests()
        .into_iter()
        .filter(|r| r.method == "HEAD" && r.path.contains("/blobs/sha256:"))
        .map(|r| r.path)
        .collect()
}

/// `method` requests the proxy saw whose path (with its query) contains `fragment`.
fn requests_to(proxy: &FaultProxy, method: &str, fragment: &str) -> Vec<String> {
    proxy
        .requests()
        .into_iter()
        .filter(|r| r.method == method && r.path.contains(fragment))
        .map(|r| r.path)
        .collect()
}

/// The push's output says of every layer of `image` that it was already in the registry.
fn assert_every_layer_already_there(image: &Image, stdout: &str) {
    for layer in &image.layers {
        assert_eq!(
            layer_lines(stdout, layer_id(&layer.blob.digest)),
            ["Preparing", "Layer already exists"],
            "{stdout}"
        );
    }
}

#[test]
fn a_repository_without_tags_gets_no_existence_checks_and_a_re_push_checks_the_manifest() {
    let s = Scenario::new("no-checks", 115, &[300_000, 200_000, 100_000], json!({}));
    let out = s.push();
    out.assert_success("first push");
    assert_eq!(requests_to(&s.proxy, "GET", "/tags/list").len(), 1);
    assert_eq!(
        blob_checks(&s.proxy),
        Vec::<String>::new(),
        "nothing to check in a new repository"
    );
    for blob in s.image.blobs() {
        assert_eq!(
            s.proxy.completed_uploads(&blob.digest),
            1,
            "{}",
            blob.digest
        );
    }
    s.assert_pushed();

    // hoistd pushed this manifest there: one look for it stands for the tag list and every blob.
    s.proxy.reset_observations();
    let out = s.push();
    out.assert_success("re-push");
    assert_eq!(
        requests_to(&s.proxy, "HEAD", "/manifests/"),
        [format!("/v2/{}/manifests/{}", s.repo, s.image.digest())]
    );
    assert_eq!(
        requests_to(&s.proxy, "GET", "/tags/list"),
        Vec::<String>::new()
    );
    assert_eq!(blob_checks(&s.proxy), Vec::<String>::new());
    assert_eq!(requests_to(&s.proxy, "PUT", "/manifests/1").len(), 1);
    for blob in s.image.blobs() {
        assert_eq!(
            s.proxy.completed_uploads(&blob.digest),
            0,
            "{}",
            blob.digest
        );
    }
    assert_every_layer_already_there(&s.image, &out.stdout);
    assert!(
        out.stdout
            .contains(&format!("1: digest: {}", s.image.digest())),
        "{}",
        out.stdout
    );

    // A daemon that never pushed there finds the repository tagged: every blob is checked and
    // found.
    let other = start_hoistd_with(json!({}));
    let other_cli = DockerCli::new(&other.socket());
    let name = load_through(&other_cli, &s.proxy, &s.image, &s.repo, "2");
    s.proxy.reset_observations();
    let out = other_cli.run(&["push", &name]);
    out.assert_success("push by another daemon");
    let checked = blob_checks(&s.proxy);
    for blob in s.image.blobs() {
        assert!(
            checked
                .iter()
                .any(|p| p.ends_with(&format!("/blobs/{}", blob.digest))),
            "{} checked: {checked:#?}",
            blob.digest
        );
        assert_eq!(
            s.proxy.completed_uploads(&blob.digest),
            0,
            "{}",
            blob.digest
        );
    }
    assert_every_layer_already_there(&s.image, &out.stdout);
}

#[test]
fn a_push_after_a_failed_one_reuses_what_the_failure_left_behind() {
    // One upload at a time, largest first: the two big layers are in the registry when the
    // smallest one is refused, and the repository still has no tag.
    let s = Scenario::new(
        "after-failure",
        116,
        &[400_000, 300_000, 20_000],
        json!({"max-concurrent-uploads": 1}),
    );
    let smallest = s.image.layers[2].blob.digest.clone();
    let denied = br#"{"errors":[{"code":"DENIED","message":"quota exceeded"}]}"#;
    let reply = FaultAction::respond(403, &[("Content-Type", "application/json")], denied);
    let rule = s.proxy.add_rule(s.on_put_of(&smallest, reply));
    let out = s.push();
    assert!(!out.success(), "{}", out.stdout);
    assert!(s.registry.tags(&s.repo).is_empty());
    let big = [
        &s.image.layers[0].blob.digest,
        &s.image.layers[1].blob.digest,
    ];
    for digest in big {
        assert_eq!(
            s.proxy.completed_uploads(digest),
            1,
            "{digest} uploaded before the failure"
        );
    }

    s.proxy.remove_rule(rule);
    s.proxy.reset_observations();
    let out = s.push();
    out.assert_success("second push");
    for digest in big {
        assert_eq!(s.proxy.completed_uploads(digest), 0, "{digest} sent again");
        assert_eq!(
            layer_lines(&out.stdout, layer_id(digest)),
            ["Preparing", "Layer already exists"],
            "{}",
            out.stdout
        );
    }
    assert_eq!(s.proxy.completed_uploads(&smallest), 1);
    s.assert_pushed();
}
