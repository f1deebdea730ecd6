//! Running under systemd: sockets inherited through socket activation (`-H fd://`, `fd://N`),
//! readiness told to the service manager (`Type=notify`), the unix socket's group (`-G`), and
//! the unit files in contrib/systemd. Socket activation is driven by systemd's own
//! `systemd-socket-activate`, the readiness protocol by a datagram socket standing in for
//! systemd's, and the units are checked by `systemd-analyze verify`.

mod foundation_support;

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use foundation_support::*;
use hoist_testkit::docker::DockerCli;
use hoist_testkit::hoistd::{HoistdOptions, StartFailure};
use hoist_testkit::process::{free_port, require_program, spawn_tied};

/// hoistd started by `systemd-socket-activate` listening on `listen`, with `hoistd_args`; the
/// daemon starts on the first connection. Killed on drop.
struct Activated {
    child: Child,
    _scratch: Scratch,
}

impl Activated {
    fn start(listen: &str, hoistd_args: &[&str], scratch: Scratch) -> Activated {
        let activate = require_program(
            "systemd-socket-activate",
            "install Debian's systemd package",
        );
        std::fs::write(scratch.path("daemon.json"), "{}").expect("write config");
        let mut cmd = Command::new(activate);
        cmd.arg("--listen")
            .arg(listen)
            .arg(hoistd_bin())
            .args(hoistd_args)
            .arg("--data-root")
            .arg(scratch.path("data"))
            .arg("--pidfile")
            .arg(scratch.path("hoistd.pid"))
            .arg("--config-file")
            .arg(scratch.path("daemon.json"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = spawn_tied(cmd).expect("start systemd-socket-activate");
        Activated {
            child,
            _scratch: scratch,
        }
    }
}

impl Drop for Activated {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `path` exists (systemd-socket-activate has bound it).
fn wait_for_path(path: &Path) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !path.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_inherited_unix_socket_serves_the_docker_cli() {
    let scratch = Scratch::new();
    let socket = scratch.path("activated.sock");
    let _daemon = Activated::start(socket.to_str().unwrap(), &["-H", "fd://"], scratch);
    wait_for_path(&socket);
    let docker = DockerCli::new(&socket);
    let out = docker.run(&["version", "--format", "{{.Server.APIVersion}}"]);
    out.assert_success("docker version over an inherited socket");
    assert_eq!(out.stdout.trim(), "1.50");
    docker_ok(&docker, &["images"]);
    // The socket belongs to the service manager: hoistd leaves it where it is.
    assert!(socket.exists());
}

#[test]
fn fd_n_takes_that_inherited_descriptor_and_refuses_others() {
    let scratch = Scratch::new();
    let port = free_port();
    let unix = scratch.path("cli.sock");
    let _daemon = Activated::start(
        &format!("127.0.0.1:{port}"),
        &["-H", "fd://3", "-H", &format!("unix://{}", unix.display())],
        scratch,
    );
    // systemd-socket-activate has bound the port once a connection gets through.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "port {port} never bound"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let docker = DockerCli::new(&unix);
    let out = docker.run(&[
        "-H",
        &format!("tcp://127.0.0.1:{port}"),
        "version",
        "--format",
        "{{.Server.APIVersion}}",
    ]);
    out.assert_success("docker version over the inherited TCP socket");
    assert_eq!(out.stdout.trim(), "1.50");

    // Without inherited sockets, or naming one that was not inherited, hoistd refuses to start.
    for (host, message) in [
        ("fd://", "no sockets found via socket activation"),
        ("fd://7", "no sockets found via socket activation"),
    ] {
        let failure = start_failure(&["-H", host]);
        assert!(failure.contains(message), "{host}: {failure}");
    }
}

fn start_failure(args: &[&str]) -> String {
    match hoist_testkit::hoistd::Hoistd::try_start(
        hoistd_bin(),
        HoistdOptions {
            args: args.iter().map(|a| a.to_string()).collect(),
            ..HoistdOptions::default()
        },
    ) {
        Ok(_) => panic!("hoistd started with {args:?}"),
        Err(StartFailure { log, .. }) => log,
    }
}

#[test]
fn readiness_is_told_to_the_service_manager() {
    let scratch = Scratch::new();
    let notify = scratch.path("notify.sock");
    let manager = UnixDatagram::bind(&notify).expect("bind the notification socket");
    manager
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let daemon = start_daemon_with(HoistdOptions {
        env: vec![("NOTIFY_SOCKET".into(), notify.display().to_string())],
        ..HoistdOptions::default()
    });
    let mut buf = [0u8; 256];
    let n = manager.recv(&mut buf).expect("a readiness notification");
    let message = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(message.lines().any(|l| l == "READY=1"), "{message:?}");
    // Ready means served.
    assert_eq!(daemon.request("GET", "/_ping", &[], b"").status, 200);
}

#[test]
fn the_unix_socket_gets_the_group_asked_for() {
    let daemon = start_daemon_with(HoistdOptions {
        args: vec!["-G".into(), "nogroup".into()],
        ..HoistdOptions::default()
    });
    let meta = std::fs::metadata(daemon.socket()).expect("socket metadata");
    assert_eq!(meta.gid(), 65534, "nogroup's gid");
    assert_eq!(meta.mode() & 0o777, 0o660);
    let failure = start_failure(&["-G", "no-such-group-anywhere"]);
    assert!(
        failure.contains("group no-such-group-anywhere not found"),
        "{failure}"
    );
}

#[test]
fn the_contrib_units_pass_systemd_analyze_verify() {
    let analyze = require_program("systemd-analyze", "install Debian's systemd package");
    let scratch = Scratch::new();
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/systemd");
    for unit in ["hoist.service", "hoist.socket"] {
        // The service's ExecStart must name an existing binary: point it at the one built.
        let text = std::fs::read_to_string(units.join(unit)).expect("read unit");
        let text = text.replace("/usr/local/bin/hoistd", &hoistd_bin().display().to_string());
        std::fs::write(scratch.path(unit), text).expect("write unit");
    }
    let out = Command::new(analyze)
        .arg("verify")
        .arg(scratch.path("hoist.service"))
        .arg(scratch.path("hoist.socket"))
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
}
