//! The daemon harness, exercised with a stand-in daemon (`fixtures/fake_hoistd.py`) that takes
//! dockerd's flags: hoist itself is tested with this harness in its own crates.

use std::path::PathBuf;

use hoist_testkit::hoistd::{Hoistd, HoistdOptions};
use hoist_testkit::process::require_program;

fn fake_daemon() -> PathBuf {
    require_program("python3", "the fake daemon fixture is a python3 script");
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake_hoistd.py")
}

#[test]
fn start_passes_dockerd_flags_config_and_env_and_waits_for_ping() {
    let daemon = Hoistd::start(
        &fake_daemon(),
        HoistdOptions {
            config: serde_json::json!({"max-concurrent-uploads": 3}),
            env: vec![("FAKE_MARK".into(), "42".into())],
            ..Default::default()
        },
    );
    let info = daemon.request("GET", "/fake/info", &[], b"").json();
    assert_eq!(
        info["args"]["host"],
        format!("unix://{}", daemon.socket().display())
    );
    assert_eq!(
        info["args"]["data_root"],
        daemon.data_root().display().to_string()
    );
    assert_eq!(info["args"]["log_level"], "debug");
    assert_eq!(
        info["config"],
        serde_json::json!({"max-concurrent-uploads": 3})
    );
    assert_eq!(info["env"]["FAKE_MARK"], "42");
    assert!(daemon.data_root().is_dir());
    let pid: u32 = std::fs::read_to_string(daemon.pidfile())
        .expect("pidfile written")
        .trim()
        .parse()
        .expect("pid in pidfile");
    assert_eq!(pid, daemon.pid());
    assert!(daemon.log().contains("fake hoistd starting"));
}

#[test]
fn raw_requests_show_status_headers_and_bodies_exactly() {
    let daemon = Hoistd::start(&fake_daemon(), HoistdOptions::default());
    let ping = daemon.request("GET", "/_ping", &[], b"");
    assert_eq!(ping.status, 200);
    assert_eq!(ping.body, b"OK");
    assert_eq!(ping.header("api-version"), Some("1.50"));
    let head = daemon.request("HEAD", "/_ping", &[], b"");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("Content-Length"), Some("2"));

    let echo = daemon.request(
        "POST",
        "/v1.50/fake/echo",
        &[("Content-Type", "application/x-tar")],
        b"hello body",
    );
    assert_eq!(echo.status, 201);
    assert_eq!(echo.body, b"hello body");
    assert_eq!(echo.header("x-received-length"), Some("10"));
    assert_eq!(echo.header_all("X-Dup"), ["a", "b"]);

    let missing = daemon.request("GET", "/nope", &[], b"");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("content-type"), Some("application/json"));
    assert_eq!(missing.json()["message"], "page not found: /nope");

    let stream = daemon.request("GET", "/fake/chunked", &[], b"");
    assert_eq!(
        stream.json_lines(),
        [
            serde_json::json!({"status": "one"}),
            serde_json::json!({"status": "two"})
        ]
    );
}

#[test]
fn stop_restart_kill_and_process_metrics() {
    let mut daemon = Hoistd::start(&fake_daemon(), HoistdOptions::default());
    assert!(daemon.peak_rss_kib() > 1000, "python uses some memory");
    assert!(daemon.rss_kib() <= daemon.peak_rss_kib());
    assert!(daemon.open_fds() >= 3);
    let first_pid = daemon.pid();
    let status = daemon.stop();
    assert!(status.success(), "fake exits 0 on SIGTERM: {status}");
    assert!(!daemon.is_running());
    assert!(daemon.log().contains("SIGTERM received"));

    daemon.restart();
    assert_ne!(daemon.pid(), first_pid);
    assert_eq!(daemon.request("GET", "/_ping", &[], b"").status, 200);

    daemon.kill9();
    assert!(!daemon.is_running());
    assert!(daemon.try_request("GET", "/_ping", &[], b"").is_err());
    // After SIGKILL the stale socket file remains; the fake removes it on start, as hoistd must.
    daemon.restart();
    assert_eq!(daemon.request("GET", "/_ping", &[], b"").status, 200);
}

#[test]
fn a_daemon_that_exits_at_start_is_reported_with_its_log() {
    let failure = match Hoistd::try_start(
        &fake_daemon(),
        HoistdOptions {
            args: vec!["--fail-start".into()],
            ..Default::default()
        },
    ) {
        Ok(_) => panic!("the fake was told to fail"),
        Err(failure) => failure,
    };
    assert_eq!(failure.status.and_then(|s| s.code()), Some(3));
    assert!(failure.log.contains("refusing to start"), "{}", failure.log);
}

#[test]
#[should_panic(expected = "refusing to start")]
fn start_panics_with_the_log_when_the_daemon_dies() {
    Hoistd::start(
        &fake_daemon(),
        HoistdOptions {
            args: vec!["--fail-start".into()],
            ..Default::default()
        },
    );
}
