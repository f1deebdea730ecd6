//! The docker CLI and docker-py runners, against the stand-in daemon.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use hoist_testkit::docker::DockerCli;
use hoist_testkit::hoistd::{Hoistd, HoistdOptions};

fn fake_daemon() -> Hoistd {
    hoist_testkit::process::require_program(
        "python3",
        "the fake daemon fixture is a python3 script",
    );
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake_hoistd.py");
    Hoistd::start(&bin, HoistdOptions::default())
}

#[test]
fn cli_talks_to_the_given_socket_only() {
    let daemon = fake_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let out = docker.run(&["version", "--format", "{{.Server.Version}}"]);
    out.assert_success("docker version");
    assert_eq!(out.stdout.trim(), "fake-hoistd-1");
    assert!(
        daemon.log().contains("GET /v1.50/version"),
        "{}",
        daemon.log()
    );
}

#[test]
fn auth_goes_into_a_private_config_json() {
    let daemon = fake_daemon();
    let docker = DockerCli::new(&daemon.socket())
        .with_auth("127.0.0.1:5000", "alice", "s3cr3t")
        .with_auth("https://index.docker.io/v1/", "bob", "pw");
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(docker.config_dir().join("config.json")).expect("config.json written"),
    )
    .expect("config.json is JSON");
    let encode = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    assert_eq!(
        config,
        serde_json::json!({"auths": {
            "127.0.0.1:5000": {"auth": encode("alice:s3cr3t")},
            "https://index.docker.io/v1/": {"auth": encode("bob:pw")},
        }})
    );
    assert!(
        !docker
            .config_dir()
            .starts_with(std::env::var("HOME").unwrap_or_default() + "/.docker")
    );
}

#[test]
fn inherited_docker_variables_do_not_leak_into_the_cli() {
    let daemon = fake_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let envs: Vec<(String, Option<String>)> = docker
        .command(&[])
        .get_envs()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.map(|v| v.to_string_lossy().into_owned()),
            )
        })
        .collect();
    let value = |name: &str| {
        envs.iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.clone())
    };
    assert_eq!(
        value("DOCKER_HOST"),
        Some(format!("unix://{}", daemon.socket().display()))
    );
    assert_eq!(value("DOCKER_CLI_HINTS").as_deref(), Some("false"));
    assert_eq!(
        value("DOCKER_CONFIG"),
        Some(docker.config_dir().display().to_string())
    );
    // Whatever DOCKER_* this test runs with (DOCKER_CONTENT_TRUST, DOCKER_CONTEXT, …) is removed.
    for (name, _) in std::env::vars() {
        if name.starts_with("DOCKER_")
            && !["DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CLI_HINTS"].contains(&name.as_str())
        {
            assert_eq!(value(&name), None, "{name} must be removed");
        }
    }
}

#[test]
fn spawned_cli_can_be_waited_for_or_killed() {
    let daemon = fake_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let child = docker.spawn(&["version", "--format", "{{.Server.Version}}"]);
    let out = child.wait(Duration::from_secs(30));
    assert!(out.success(), "{out}");
    assert_eq!(out.stdout.trim(), "fake-hoistd-1");

    // A CLI stuck on a silent daemon is killed when its guard drops.
    let silent = SilentSocket::new();
    let stuck = DockerCli::new(&silent.path).spawn(&["version"]);
    let pid = stuck.pid();
    std::thread::sleep(Duration::from_millis(300));
    drop(stuck);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty(),
        "docker CLI {pid} still exists after drop: {stat}"
    );
}

#[test]
#[should_panic(expected = "did not finish within")]
fn a_hanging_cli_fails_the_test_with_its_output() {
    let silent = SilentSocket::new();
    DockerCli::new(&silent.path)
        .with_timeout(Duration::from_secs(2))
        .run(&["version"]);
}

#[test]
fn docker_py_reaches_the_daemon() {
    let daemon = fake_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let out = docker.python(
        "import docker, os\nc = docker.from_env()\nprint(c.version()['Version'], os.environ['EXTRA'])",
        &[("EXTRA", "yes")],
    );
    out.assert_success("docker-py version");
    assert_eq!(out.stdout.trim(), "fake-hoistd-1 yes");
}

/// A unix socket that accepts connections and never answers.
struct SilentSocket {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl SilentSocket {
    fn new() -> SilentSocket {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("silent.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind silent socket");
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                held.push(stream);
            }
        });
        SilentSocket { _dir: dir, path }
    }
}
