//! Running hoistd as a service: SIGHUP reloads the configuration while pushes run, certs.d is
//! read afresh for each push, `--validate` checks a configuration, SIGTERM drains running
//! pushes for up to `shutdown-timeout` and then cancels them cleanly, a second SIGTERM exits at
//! once, and `proxies` from daemon.json carry registry traffic, ahead of the environment.
//!
//! Everything runs against real `docker-registry` instances through the docker CLI; the fault
//! proxy slows uploads down (so that a push is surely running when the signal comes) and acts
//! as the forward HTTP proxy hoistd is configured with.

mod push_support;

use std::process::Command;
use std::time::{Duration, Instant};

use hoist_testkit::archive::ArchiveFormat;
use hoist_testkit::docker::{CliChild, CliOutput, DockerCli};
use hoist_testkit::hoistd::{Hoistd, HoistdOptions};
use hoist_testkit::image::{Flavor, Image, ImageBuilder, LayerSpec};
use hoist_testkit::proxy::{FaultAction, FaultProxy, FaultRule};
use hoist_testkit::registry::{RegistryOptions, RegistryTls, TestRegistry};
use hoist_testkit::tls::TestCa;
use push_support::*;
use serde_json::json;

const LOOPBACK: &[&str] = &["127.0.0.1", "localhost"];

fn small_image(seed: u64) -> Image {
    ImageBuilder::new(Flavor::Docker)
        .seed(seed)
        .layers([LayerSpec::single(20_000), LayerSpec::single(3_000)])
        .build()
}

/// An image with one layer of `size` random bytes, the blob a slowed proxy holds back.
fn big_image(seed: u64, size: u64) -> Image {
    ImageBuilder::new(Flavor::Docker)
        .seed(seed)
        .layers([LayerSpec::single(size)])
        .build()
}

fn write_config(daemon: &Hoistd, config: &serde_json::Value) {
    std::fs::write(
        daemon.config_file(),
        serde_json::to_vec_pretty(config).expect("serialize daemon.json"),
    )
    .expect("write daemon.json");
}

/// How many times `needle` is in the daemon's log.
fn log_count(daemon: &Hoistd, needle: &str) -> usize {
    daemon.log().matches(needle).count()
}

/// Sends SIGHUP and waits until the daemon logged the reload's outcome (applied or refused).
fn reload(daemon: &Hoistd) {
    let outcomes = |daemon: &Hoistd| {
        log_count(daemon, "configuration reload complete")
            + log_count(daemon, "configuration not reloaded")
    };
    let before = outcomes(daemon);
    daemon.signal(libc::SIGHUP);
    wait_until("the reload to be logged", || outcomes(daemon) > before);
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until an upload body is flowing through `proxy` (a PUT or PATCH not answered yet).
fn wait_for_upload_in_flight(proxy: &FaultProxy) {
    proxy.wait_for("an upload in flight", Duration::from_secs(60), |requests| {
        requests.iter().any(|r| {
            (r.method == "PUT" || r.method == "PATCH")
                && r.ended.is_none()
                && r.request_body_bytes > 0
        })
    });
}

fn push(cli: &DockerCli, name: &str, image: &Image) -> CliOutput {
    load_image(cli, image, &[name], ArchiveFormat::DockerLegacy);
    cli.run(&["push", name])
}

fn start_push(cli: &DockerCli, name: &str, image: &Image) -> CliChild {
    load_image(cli, image, &[name], ArchiveFormat::DockerLegacy);
    cli.spawn(&["push", name])
}

fn info_field(cli: &DockerCli, template: &str) -> String {
    let out = cli.run(&["info", "--format", template]);
    out.assert_success("docker info");
    out.stdout.trim().to_owned()
}

fn assert_cleaned_up(daemon: &Hoistd) {
    assert!(!daemon.socket().exists(), "the unix socket was removed");
    assert!(!daemon.pidfile().exists(), "the pid file was removed");
}

// ---- reload ----

#[test]
fn sighup_during_a_push_applies_the_new_settings_and_the_push_completes() {
    let registry = TestRegistry::shared();
    let slow = FaultProxy::in_front_of(registry);
    let added = FaultProxy::in_front_of(registry);
    // Loopback registries are secure here, so that only the insecure-registries list lets hoistd
    // reach the plain-HTTP proxies.
    let before = json!({
        "insecure-loopback": false,
        "insecure-registries": [slow.host()],
        "labels": ["tier=one"],
        "max-concurrent-uploads": 5,
    });
    let daemon = start_hoistd_with(before);
    let cli = DockerCli::new(&daemon.socket());
    assert_eq!(info_field(&cli, "{{json .Labels}}"), r#"["tier=one"]"#);

    // Not insecure yet: HTTPS to a plain-HTTP port fails.
    let repo_added = unique_repo("reload/added");
    let refused = push(
        &cli,
        &format!("{}/{repo_added}:1", added.host()),
        &small_image(1),
    );
    assert_eq!(refused.status.code(), Some(1), "{refused}");
    assert!(refused.stderr.contains(&added.host()), "{refused}");

    slow.add_rule(FaultRule::new(
        "PUT",
        "/blobs/uploads/",
        FaultAction::SlowBody {
            bytes_per_second: 1 << 20,
        },
    ));
    let repo_slow = unique_repo("reload/slow");
    let big = big_image(2, 4 << 20);
    let running = start_push(&cli, &format!("{}/{repo_slow}:1", slow.host()), &big);
    wait_for_upload_in_flight(&slow);

    write_config(
        &daemon,
        &json!({
            "insecure-loopback": false,
            "insecure-registries": [slow.host(), added.host()],
            "labels": ["tier=two", "extra=x"],
            "max-concurrent-uploads": 1,
            "debug": true,
            "shutdown-timeout": 40,
        }),
    );
    reload(&daemon);
    let log = daemon.log();
    for key in [
        "insecure-registries changed",
        "labels changed",
        "max-concurrent-uploads changed",
        "debug changed",
        "shutdown-timeout changed",
    ] {
        assert!(log.contains(key), "{key:?} not logged:\n{log}");
    }
    assert!(
        running_is_alive(&running),
        "the push was still running during the reload"
    );

    let finished = running.wait(Duration::from_secs(120));
    finished.assert_success("the push that ran during the reload");
    assert_registry_has_image(registry, &repo_slow, "1", &big);

    let image = small_image(3);
    push(&cli, &format!("{}/{repo_added}:1", added.host()), &image)
        .assert_success("push to the registry made insecure by the reload");
    assert_registry_has_image(registry, &repo_added, "1", &image);
    assert_eq!(
        info_field(&cli, "{{json .Labels}}"),
        r#"["tier=two","extra=x"]"#
    );
    assert_eq!(info_field(&cli, "{{.Debug}}"), "true");
    assert!(
        info_field(&cli, "{{json .RegistryConfig.IndexConfigs}}").contains(&added.host()),
        "docker info shows the new insecure registry"
    );
}

fn running_is_alive(child: &CliChild) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    unsafe { libc::kill(child.pid() as libc::pid_t, 0) == 0 }
}

#[test]
fn an_invalid_file_on_sighup_is_refused_and_the_old_settings_stay() {
    let registry = TestRegistry::shared();
    let proxy = FaultProxy::in_front_of(registry);
    let daemon = start_hoistd_with(json!({
        "insecure-loopback": false,
        "insecure-registries": [proxy.host()],
        "labels": ["kept=yes"],
    }));
    let cli = DockerCli::new(&daemon.socket());

    for (broken, why) in [
        ("{\"labels\": [\"kept=no\"", "EOF while parsing"),
        (
            r#"{"labels": ["kept=no"], "insecure-registries": ["http://bad:5000"]}"#,
            "should not contain '://'",
        ),
        (
            r#"{"proxies": {"http-proxy": "socks5://p:1080"}}"#,
            "proxy scheme socks5 is not supported",
        ),
        (r#"{"labels": ["com.docker.x=1"]}"#, "reserved"),
    ] {
        std::fs::write(daemon.config_file(), broken).expect("write daemon.json");
        let refused = log_count(&daemon, "configuration not reloaded");
        reload(&daemon);
        assert_eq!(
            log_count(&daemon, "configuration not reloaded"),
            refused + 1,
            "{broken} was refused"
        );
        let log = daemon.log();
        let line = log
            .lines()
            .rfind(|l| l.contains("configuration not reloaded"))
            .expect("refusal line");
        assert!(line.contains(why), "{why:?} not in {line:?}");
        assert!(
            line.contains(&daemon.config_file().display().to_string()),
            "the refusal names the file: {line}"
        );
    }

    // The running settings stay: the proxy is still insecure, the labels unchanged.
    let repo = unique_repo("reload/kept");
    let image = small_image(4);
    push(&cli, &format!("{}/{repo}:1", proxy.host()), &image)
        .assert_success("push with the settings from before the invalid file");
    assert_registry_has_image(registry, &repo, "1", &image);
    assert_eq!(info_field(&cli, "{{json .Labels}}"), r#"["kept=yes"]"#);
}

#[test]
fn settings_only_a_restart_applies_are_reported_and_kept() {
    let daemon = start_hoistd_with(json!({"upload-stall-timeout": 60}));
    write_config(
        &daemon,
        &json!({"upload-stall-timeout": 30, "min-free-space": 0, "labels": ["a=b"]}),
    );
    reload(&daemon);
    let log = daemon.log();
    for key in ["upload-stall-timeout", "min-free-space"] {
        assert!(
            log.contains(&format!("{key} changed in")) && log.contains("only a restart applies it"),
            "{key} reported as needing a restart:\n{log}"
        );
    }
    assert!(log.contains("labels changed"), "{log}");
    assert_eq!(
        info_field(&DockerCli::new(&daemon.socket()), "{{json .Labels}}"),
        r#"["a=b"]"#
    );
}

#[test]
fn raising_max_concurrent_uploads_mid_push_starts_the_queued_uploads() {
    let registry = TestRegistry::shared();
    let proxy = FaultProxy::in_front_of(registry);
    proxy.add_rule(FaultRule::new(
        "PUT",
        "/blobs/uploads/",
        FaultAction::SlowBody {
            bytes_per_second: 256 << 10,
        },
    ));
    let daemon = start_hoistd_with(json!({"max-concurrent-uploads": 1}));
    let cli = DockerCli::new(&daemon.socket());
    let image = ImageBuilder::new(Flavor::Docker)
        .seed(30)
        .layers((0..4).map(|i| LayerSpec::single(300_000 + i * 1000)))
        .build();
    let repo = unique_repo("reload/uploads");
    let running = start_push(&cli, &format!("{}/{repo}:1", proxy.host()), &image);
    wait_for_upload_in_flight(&proxy);
    assert_eq!(proxy.max_uploads_in_flight(), 1, "one upload at a time");

    write_config(&daemon, &json!({"max-concurrent-uploads": 4}));
    reload(&daemon);
    running
        .wait(Duration::from_secs(120))
        .assert_success("the push during which the limit was raised");
    assert_registry_has_image(registry, &repo, "1", &image);
    assert!(
        proxy.max_uploads_in_flight() >= 2,
        "the queued uploads started once the limit was raised: {} at most",
        proxy.max_uploads_in_flight()
    );
}

#[test]
fn debug_changes_the_log_level_live() {
    let registry = TestRegistry::shared();
    let daemon = Hoistd::start(
        hoistd_bin(),
        HoistdOptions {
            args: vec!["--log-level".into(), "info".into()],
            ..HoistdOptions::default()
        },
    );
    let cli = DockerCli::new(&daemon.socket());
    // Each push to the registry logs its responses at debug level.
    let debug_lines = || log_count(&daemon, "registry response");
    let push_one = |seed: u64| {
        let repo = unique_repo("reload/debug");
        push(
            &cli,
            &format!("{}/{repo}:1", registry.host()),
            &small_image(seed),
        )
        .assert_success("push");
    };
    push_one(20);
    assert_eq!(debug_lines(), 0, "info level: no debug lines");

    write_config(&daemon, &json!({"debug": true}));
    reload(&daemon);
    assert!(daemon.log().contains("log level changed"));
    push_one(21);
    let at_debug = debug_lines();
    assert!(at_debug > 0, "debug lines once debug is on");
    assert_eq!(info_field(&cli, "{{.Debug}}"), "true");

    write_config(&daemon, &json!({"debug": false}));
    reload(&daemon);
    push_one(22);
    assert_eq!(debug_lines(), at_debug, "back to info: no more debug lines");
    assert_eq!(info_field(&cli, "{{.Debug}}"), "false");
}

// ---- certs.d ----

#[test]
fn a_corrected_ca_in_certs_d_applies_to_the_next_push_without_a_restart() {
    let ca = TestCa::new("hoist reload registry CA");
    let wrong = TestCa::new("a CA that signed nothing here");
    let registry = TestRegistry::start_with_tls(
        RegistryOptions::default(),
        RegistryTls::server(ca.issue_server(LOOPBACK)),
    );
    let host = registry.host();
    let certs = tempfile::tempdir().expect("certs.d");
    let dir = certs.path().join(&host);
    std::fs::create_dir_all(&dir).expect("host dir");
    std::fs::write(dir.join("ca.crt"), wrong.cert_pem()).expect("wrong ca.crt");
    let daemon = start_hoistd_with(json!({"insecure-loopback": false, "certs-dir": certs.path()}));
    let cli = DockerCli::new(&daemon.socket());
    let repo = unique_repo("certs/fixed");
    let name = format!("{host}/{repo}:1");
    let image = small_image(5);

    let failed = push(&cli, &name, &image);
    assert_eq!(failed.status.code(), Some(1), "{failed}");
    assert!(
        failed
            .stderr
            .contains("certificate signed by unknown authority"),
        "{failed}"
    );

    std::fs::write(dir.join("ca.crt"), ca.cert_pem()).expect("right ca.crt");
    cli.run(&["push", &name])
        .assert_success("push after ca.crt was corrected");
    assert_registry_has_image(&registry, &repo, "1", &image);
    assert!(
        daemon.log().contains("certs.d changed"),
        "the re-read is logged"
    );
}

#[test]
fn a_client_certificate_added_to_certs_d_applies_to_the_next_push() {
    let ca = TestCa::new("hoist reload mTLS CA");
    let client_ca = TestCa::new("hoist reload client CA");
    let registry = TestRegistry::start_with_tls(
        RegistryOptions::default(),
        RegistryTls::mutual(ca.issue_server(LOOPBACK), &client_ca),
    );
    let host = registry.host();
    let certs = tempfile::tempdir().expect("certs.d");
    let dir = certs.path().join(&host);
    std::fs::create_dir_all(&dir).expect("host dir");
    std::fs::write(dir.join("ca.crt"), ca.cert_pem()).expect("ca.crt");
    let daemon = start_hoistd_with(json!({"insecure-loopback": false, "certs-dir": certs.path()}));
    let cli = DockerCli::new(&daemon.socket());
    let repo = unique_repo("certs/client");
    let name = format!("{host}/{repo}:1");
    let image = small_image(6);

    let failed = push(&cli, &name, &image);
    assert_eq!(failed.status.code(), Some(1), "{failed}");
    assert!(failed.stderr.contains("client.cert"), "{failed}");

    let identity = client_ca.issue_client("hoist");
    identity.write(&dir, "client", "cert");
    cli.run(&["push", &name])
        .assert_success("push after client.cert was added");
    assert_registry_has_image(&registry, &repo, "1", &image);
}

// ---- --validate ----

fn validate(config: &str, extra: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("daemon.json");
    std::fs::write(&path, config).expect("write daemon.json");
    let data_root = dir.path().join("never-created");
    let out = Command::new(hoistd_bin())
        .arg("--validate")
        .arg("--config-file")
        .arg(&path)
        .arg("--data-root")
        .arg(&data_root)
        .args(extra)
        .output()
        .expect("run hoistd --validate");
    assert!(!data_root.exists(), "--validate opened nothing");
    out
}

#[test]
fn validate_accepts_a_good_configuration_and_prints_configuration_ok() {
    let out = validate(
        r#"{"labels": ["a=b"], "shutdown-timeout": 30, "insecure-registries": ["10.0.0.0/8"],
            "proxies": {"http-proxy": "http://u:p@proxy:3128", "no-proxy": "corp"},
            "hosts": ["unix:///tmp/x.sock", "tcp://127.0.0.1:2375"]}"#,
        &["--max-concurrent-uploads", "3"],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "configuration OK\n");
    assert!(out.stdout.is_empty());
}

#[test]
fn validate_refuses_a_bad_configuration_with_the_reason() {
    for (config, extra, why) in [
        (
            r#"{"labels": ["#,
            &[][..],
            "unable to configure the daemon with file",
        ),
        (r#"{"shutdown-timeout": "soon"}"#, &[][..], "invalid type"),
        (
            r#"{"shutdown-timeout": 5}"#,
            &["--shutdown-timeout", "9"][..],
            "specified both as a flag and in the configuration file: shutdown-timeout",
        ),
        (
            r#"{"proxies": {"https-proxy": "ftp://p:21"}}"#,
            &[][..],
            "proxy scheme ftp is not supported",
        ),
        (
            r#"{"proxies": {"http-proxy": "http://p:1"}}"#,
            &["--http-proxy", "http://q:2"][..],
            "http-proxy",
        ),
        (r#"{"hosts": ["udp://x"]}"#, &[][..], "invalid host"),
        (
            r#"{"tlsverify": true, "tlscert": "/nonexistent/cert.pem"}"#,
            &[][..],
            "/nonexistent/cert.pem",
        ),
    ] {
        let out = validate(config, extra);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{config}: {stderr}");
        assert!(stderr.contains(why), "{config}: {why:?} not in {stderr}");
        assert!(!stderr.contains("configuration OK"), "{stderr}");
    }
}

// ---- shutdown ----

fn slowed_daemon(shutdown_timeout: i64, bytes_per_second: u64) -> (FaultProxy, Hoistd) {
    let proxy = FaultProxy::in_front_of(TestRegistry::shared());
    proxy.add_rule(FaultRule::new(
        "PUT",
        "/blobs/uploads/",
        FaultAction::SlowBody { bytes_per_second },
    ));
    proxy.add_rule(FaultRule::new(
        "PATCH",
        "/blobs/uploads/",
        FaultAction::SlowBody { bytes_per_second },
    ));
    let daemon = start_hoistd_with(json!({"shutdown-timeout": shutdown_timeout}));
    (proxy, daemon)
}

#[test]
fn sigterm_lets_a_running_push_finish_within_the_shutdown_timeout() {
    let (proxy, mut daemon) = slowed_daemon(120, 2 << 20);
    let cli = DockerCli::new(&daemon.socket());
    let repo = unique_repo("shutdown/finishes");
    let image = big_image(7, 8 << 20);
    let running = start_push(&cli, &format!("{}/{repo}:1", proxy.host()), &image);
    wait_for_upload_in_flight(&proxy);

    daemon.signal(libc::SIGTERM);
    // It stops accepting at once (the socket goes) but keeps running for the push.
    wait_until("the socket to be removed", || !daemon.socket().exists());
    assert!(daemon.is_running(), "hoistd waits for the push");
    assert!(
        DockerCli::new(&daemon.socket())
            .run(&["version"])
            .status
            .code()
            != Some(0),
        "no new client is served"
    );

    let finished = running.wait(Duration::from_secs(120));
    finished.assert_success("the push running when SIGTERM came");
    assert_registry_has_image(TestRegistry::shared(), &repo, "1", &image);
    let status = daemon
        .wait_exit(Duration::from_secs(10))
        .expect("hoistd exits once the push is done");
    assert!(status.success(), "exit status {status}");
    assert_cleaned_up(&daemon);
    daemon.assert_data_root_checks_clean();
}

#[test]
fn sigterm_lets_a_running_pull_finish_and_the_image_is_there_after_a_restart() {
    let registry = TestRegistry::shared();
    let proxy = FaultProxy::in_front_of(registry);
    let repo = unique_repo("shutdown/pull");
    let image = small_image(13);
    registry.push_image(&repo, "1", &image);
    // Every blob download waits a moment in the proxy: the pull is surely running at SIGTERM.
    proxy.add_rule(FaultRule::new(
        "GET",
        "/blobs/sha256:",
        FaultAction::Delay(Duration::from_secs(2)),
    ));
    let mut daemon = start_hoistd_with(json!({"shutdown-timeout": 60}));
    let cli = DockerCli::new(&daemon.socket());
    let name = format!("{}/{repo}:1", proxy.host());
    let running = cli.spawn(&["pull", &name]);
    proxy.wait_for("a blob download", Duration::from_secs(60), |requests| {
        requests
            .iter()
            .any(|r| r.method == "GET" && r.path.contains("/blobs/sha256:") && r.ended.is_none())
    });

    daemon.signal(libc::SIGTERM);
    wait_until("the socket to be removed", || !daemon.socket().exists());
    running
        .wait(Duration::from_secs(60))
        .assert_success("the pull running when SIGTERM came");
    let status = daemon
        .wait_exit(Duration::from_secs(10))
        .expect("hoistd exits once the pull is done");
    assert!(status.success(), "exit status {status}");
    assert_cleaned_up(&daemon);
    daemon.assert_data_root_checks_clean();

    daemon.restart();
    let id =
        DockerCli::new(&daemon.socket()).run(&["image", "inspect", "--format", "{{.Id}}", &name]);
    id.assert_success("inspect the pulled image after the restart");
    assert_eq!(id.stdout.trim(), image.digest());
}

#[test]
fn sigterm_cancels_a_push_still_running_at_the_shutdown_timeout_and_exits_cleanly() {
    let (proxy, mut daemon) = slowed_daemon(1, 256 << 10);
    let cli = DockerCli::new(&daemon.socket());
    let repo = unique_repo("shutdown/cancelled");
    let image = big_image(8, 16 << 20);
    let running = start_push(&cli, &format!("{}/{repo}:1", proxy.host()), &image);
    wait_for_upload_in_flight(&proxy);

    let signalled = Instant::now();
    daemon.signal(libc::SIGTERM);
    let status = daemon
        .wait_exit(Duration::from_secs(20))
        .expect("hoistd exits after the shutdown timeout");
    let took = signalled.elapsed();
    assert!(status.success(), "exit status {status}");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(10),
        "exited {took:?} after SIGTERM with shutdown-timeout 1"
    );
    let cancelled = running.wait(Duration::from_secs(30));
    assert_ne!(cancelled.status.code(), Some(0), "{cancelled}");
    assert!(
        cancelled.stderr.contains("shutting down") || cancelled.stdout.contains("shutting down"),
        "the client is told why: {cancelled}"
    );
    assert!(
        proxy
            .requests()
            .iter()
            .any(|r| r.method == "DELETE" && r.path.contains("/blobs/uploads/")),
        "the upload session was cancelled: {:#?}",
        proxy.requests()
    );
    assert!(
        !TestRegistry::shared().tags(&repo).contains(&"1".to_owned()),
        "nothing was tagged"
    );
    assert_cleaned_up(&daemon);
    daemon.assert_data_root_checks_clean();
    let log = daemon.log();
    assert!(log.contains("shutdown timeout reached"), "{log}");
}

#[test]
fn a_second_sigterm_exits_at_once() {
    let (proxy, mut daemon) = slowed_daemon(120, 256 << 10);
    let cli = DockerCli::new(&daemon.socket());
    let repo = unique_repo("shutdown/second");
    let running = start_push(
        &cli,
        &format!("{}/{repo}:1", proxy.host()),
        &big_image(9, 16 << 20),
    );
    wait_for_upload_in_flight(&proxy);

    daemon.signal(libc::SIGTERM);
    wait_until("the socket to be removed", || !daemon.socket().exists());
    assert!(daemon.is_running(), "the first SIGTERM waits for the push");
    daemon.signal(libc::SIGTERM);
    let status = daemon
        .wait_exit(Duration::from_secs(3))
        .expect("the second SIGTERM exits at once");
    assert!(status.success(), "exit status {status}");
    let _ = running.wait(Duration::from_secs(30));
    assert_cleaned_up(&daemon);
    daemon.assert_data_root_checks_clean();
}

// ---- proxies ----

/// A registry name that resolves nowhere: only a proxy can reach it.
const UNRESOLVABLE: &str = "hoist-proxy-test.invalid:5000";

#[test]
fn proxies_from_daemon_json_carry_registry_traffic_ahead_of_the_environment() {
    let registry = TestRegistry::shared();
    let first = FaultProxy::in_front_of(registry);
    let second = FaultProxy::in_front_of(registry);
    let with_secret = |proxy: &FaultProxy| format!("http://alice:pr0xy-s3cret@{}", proxy.host());
    let daemon = Hoistd::start(
        hoistd_bin(),
        HoistdOptions {
            config: json!({
                "insecure-registries": [UNRESOLVABLE],
                "proxies": {"http-proxy": with_secret(&first)},
            }),
            // A dead proxy in the environment: the configuration's one wins.
            env: vec![("HTTP_PROXY".into(), "http://127.0.0.1:9".into())],
            ..HoistdOptions::default()
        },
    );
    let cli = DockerCli::new(&daemon.socket());
    assert_eq!(
        info_field(&cli, "{{.HTTPProxy}}"),
        format!("http://xxxxx:xxxxx@{}", first.host())
    );

    let repo = unique_repo("proxy/first");
    let image = small_image(10);
    push(&cli, &format!("{UNRESOLVABLE}/{repo}:1"), &image)
        .assert_success("push through the configured proxy");
    assert_registry_has_image(registry, &repo, "1", &image);
    assert!(
        first.requests().iter().any(|r| r.method == "PUT"),
        "the blobs went through the proxy"
    );

    // A reload switches proxies for the next push.
    write_config(
        &daemon,
        &json!({
            "insecure-registries": [UNRESOLVABLE],
            "proxies": {"http-proxy": with_secret(&second)},
        }),
    );
    reload(&daemon);
    assert!(daemon.log().contains("http-proxy changed"));
    let seen_by_first = first.requests().len();
    let repo = unique_repo("proxy/second");
    let image = small_image(11);
    push(&cli, &format!("{UNRESOLVABLE}/{repo}:1"), &image)
        .assert_success("push through the proxy of the reloaded configuration");
    assert_registry_has_image(registry, &repo, "1", &image);
    assert!(second.requests().iter().any(|r| r.method == "PUT"));
    assert_eq!(
        first.requests().len(),
        seen_by_first,
        "the old proxy is unused"
    );

    let log = daemon.log();
    assert!(
        log.contains("overriding existing proxy variable with value from configuration")
            && log.contains("HTTP_PROXY"),
        "the environment's proxy being replaced is logged, as dockerd logs it:\n{log}"
    );
    assert!(!log.contains("pr0xy-s3cret"), "a proxy password was logged");
}

#[test]
fn the_no_proxy_flag_sends_a_registry_around_the_proxy() {
    let proxy = FaultProxy::in_front_of(TestRegistry::shared());
    let daemon = Hoistd::start(
        hoistd_bin(),
        HoistdOptions {
            args: vec![
                "--http-proxy".into(),
                proxy.url(),
                "--no-proxy".into(),
                "hoist-proxy-test.invalid".into(),
            ],
            config: json!({"insecure-registries": [UNRESOLVABLE]}),
            ..HoistdOptions::default()
        },
    );
    let cli = DockerCli::new(&daemon.socket());
    assert_eq!(info_field(&cli, "{{.NoProxy}}"), "hoist-proxy-test.invalid");
    // Not proxied, the name resolves nowhere: the push fails, and the proxy saw nothing.
    let out = push(
        &cli,
        &format!("{UNRESOLVABLE}/{}:1", unique_repo("proxy/bypass")),
        &small_image(12),
    );
    assert_eq!(out.status.code(), Some(1), "{out}");
    assert!(out.stderr.contains(UNRESOLVABLE), "{out}");
    assert!(proxy.requests().is_empty(), "{:#?}", proxy.requests());
}
