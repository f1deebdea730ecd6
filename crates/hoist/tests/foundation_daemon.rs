//! hoistd as a daemon: one per data root, clean shutdown on SIGTERM and SIGINT, the unix
//! socket's mode, the TCP safety rule, TLS with client certificates, daemon.json handling and
//! `--version`.

mod foundation_support;

use std::net::TcpStream;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use foundation_support::*;
use hoist_testkit::docker::{CliOutput, DockerCli};
use hoist_testkit::hoistd::{Hoistd, HoistdOptions, RawResponse};
use hoist_testkit::process::{free_port, run_with_timeout};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Runs hoistd directly (not through the harness) to completion.
fn run_hoistd(args: &[&str]) -> CliOutput {
    let mut cmd = Command::new(hoistd_bin());
    cmd.args(args);
    run_with_timeout(cmd, None, TIMEOUT)
}

fn tcp_request(port: u16, path: &str) -> std::io::Result<RawResponse> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    hoist_testkit::http1::exchange(stream, "GET", path, &[], b"")
}

/// `docker <args>` against `host` (a `tcp://` address) instead of the daemon's unix socket.
fn docker_at(docker: &DockerCli, host: &str, args: &[&str]) -> CliOutput {
    let mut cmd = docker.command(args);
    cmd.env("DOCKER_HOST", host);
    run_with_timeout(cmd, None, TIMEOUT)
}

fn refused_start(opts: HoistdOptions) -> hoist_testkit::hoistd::StartFailure {
    match Hoistd::try_start(hoistd_bin(), opts) {
        Ok(daemon) => panic!(
            "hoistd started although it should refuse; log:\n{}",
            daemon.log()
        ),
        Err(failure) => failure,
    }
}

#[test]
fn a_second_daemon_on_the_same_data_root_refuses_with_a_clear_message() {
    let first = start_daemon();
    let elsewhere = Scratch::new();
    let socket = elsewhere.path("second.sock");
    let pidfile = elsewhere.path("second.pid");
    let config = elsewhere.path("daemon.json");
    std::fs::write(&config, "{}").unwrap();
    let out = run_hoistd(&[
        "-H",
        &format!("unix://{}", socket.display()),
        "--data-root",
        first.data_root().to_str().unwrap(),
        "--pidfile",
        pidfile.to_str().unwrap(),
        "--config-file",
        config.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{out}");
    let expected = format!(
        "data root {} is in use by another hoistd (pid {})",
        first.data_root().display(),
        first.pid()
    );
    assert!(
        out.stderr.contains(&expected),
        "expected {expected:?}:\n{out}"
    );
    assert!(!socket.exists(), "the refused daemon created its socket");
    assert!(!pidfile.exists(), "the refused daemon wrote its pid file");
    // The first daemon is untouched.
    assert_eq!(first.request("GET", "/_ping", &[], b"").status, 200);
    assert_eq!(
        std::fs::read_to_string(first.pidfile()).unwrap().trim(),
        first.pid().to_string()
    );

    // A second daemon on another data root but the first one's socket refuses too.
    let other_root = elsewhere.path("other-root");
    let out = run_hoistd(&[
        "-H",
        &format!("unix://{}", first.socket().display()),
        "--data-root",
        other_root.to_str().unwrap(),
        "--pidfile",
        pidfile.to_str().unwrap(),
        "--config-file",
        config.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{out}");
    assert!(
        out.stderr.contains(&format!(
            "{} is in use by another daemon",
            first.socket().display()
        )),
        "{out}"
    );
    assert!(!pidfile.exists(), "the refused daemon left its pid file");
    assert_eq!(first.request("GET", "/_ping", &[], b"").status, 200);

    // Another data root and socket, but the first one's pid file: refused without touching it.
    let out = run_hoistd(&[
        "-H",
        &format!("unix://{}", socket.display()),
        "--data-root",
        other_root.to_str().unwrap(),
        "--pidfile",
        first.pidfile().to_str().unwrap(),
        "--config-file",
        config.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{out}");
    assert!(
        out.stderr.contains(&format!(
            "process with PID {} is still running",
            first.pid()
        )),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(first.pidfile())
            .expect("first pid file kept")
            .trim(),
        first.pid().to_string()
    );
    assert!(!socket.exists());
}

#[test]
fn sigterm_and_sigint_shut_down_cleanly() {
    for (signal, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")] {
        let mut daemon = start_daemon();
        let pid: u32 = std::fs::read_to_string(daemon.pidfile())
            .expect("pid file written at start")
            .trim()
            .parse()
            .expect("pid file holds a pid");
        assert_eq!(pid, daemon.pid());
        assert!(daemon.socket().exists());
        daemon.signal(signal);
        let status = daemon
            .wait_exit(Duration::from_secs(20))
            .unwrap_or_else(|| panic!("hoistd did not exit on {name}; log:\n{}", daemon.log()));
        assert_eq!(status.code(), Some(0), "{name}; log:\n{}", daemon.log());
        assert!(!daemon.pidfile().exists(), "{name}: pid file left behind");
        assert!(!daemon.socket().exists(), "{name}: socket left behind");
        assert!(
            daemon
                .log()
                .contains(&format!("{name} received, shutting down")),
            "{}",
            daemon.log()
        );
        // The store is released: the daemon starts again on the same data root.
        daemon.restart();
        assert_eq!(daemon.request("GET", "/_ping", &[], b"").status, 200);
    }
}

#[test]
fn the_unix_socket_is_mode_0660() {
    let daemon = start_daemon();
    let meta = std::fs::metadata(daemon.socket()).expect("stat socket");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o660);
}

#[test]
fn tcp_on_a_non_loopback_address_needs_tls_or_an_explicit_tls_false() {
    let port = free_port();
    let host = format!("tcp://0.0.0.0:{port}");
    let failure = refused_start(HoistdOptions {
        args: vec!["-H".into(), host.clone()],
        ..Default::default()
    });
    assert_eq!(failure.status.and_then(|s| s.code()), Some(1), "{failure}");
    assert!(
        failure.log.contains(&format!(
            "refusing to listen on {host} without TLS: registry credentials travel over this socket"
        )),
        "{failure}"
    );
    assert!(tcp_request(port, "/_ping").is_err(), "nothing listens");

    let daemon = start_daemon_with(HoistdOptions {
        args: vec!["-H".into(), host.clone(), "--tls=false".into()],
        ..Default::default()
    });
    let ping = tcp_request(port, "/_ping").expect("the TCP listener answers");
    assert_eq!((ping.status, ping.text().as_str()), (200, "OK"));
    assert!(
        daemon.log().contains(&format!(
            "listening on {host} without TLS, as --tls=false asks"
        )),
        "{}",
        daemon.log()
    );
    // The unix socket the harness asked for is served as well.
    assert_eq!(daemon.request("GET", "/_ping", &[], b"").status, 200);
}

#[test]
fn a_loopback_tcp_listener_serves_the_docker_cli() {
    let port = free_port();
    let host = format!("tcp://127.0.0.1:{port}");
    let daemon = start_daemon_with(HoistdOptions {
        args: vec!["-H".into(), host.clone()],
        ..Default::default()
    });
    let docker = DockerCli::new(&daemon.socket());
    let out = docker_at(
        &docker,
        &host,
        &["version", "--format", "{{.Server.Version}}"],
    );
    out.assert_success("docker version over TCP");
    assert_eq!(out.stdout, format!("{}\n", env!("CARGO_PKG_VERSION")));
    assert_eq!(out.stderr, "");

    let scratch = Scratch::new();
    let image = hoist_testkit::image::ImageBuilder::new(hoist_testkit::image::Flavor::Oci).build();
    let archive = scratch.archive(
        "tcp.tar",
        &hoist_testkit::archive::ArchiveBuilder::new(hoist_testkit::archive::ArchiveFormat::Oci)
            .image(&image, &["over-tcp:1"]),
    );
    let out = docker_at(&docker, &host, &["load", "-i", archive.to_str().unwrap()]);
    out.assert_success("docker load over TCP");
    assert_eq!(out.stdout, "Loaded image: over-tcp:1\n");
    let out = docker_at(
        &docker,
        &host,
        &["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"],
    );
    assert_eq!(
        out.stdout,
        format!("over-tcp:1 {}\n", short_id(image.digest()))
    );
    // -H on the command line works the same.
    let out = docker.run(&["-H", &host, "info", "--format", "{{.Images}}"]);
    out.assert_success("docker -H tcp://… info");
    assert_eq!(out.stdout, "1\n");
}

/// A CA, a server certificate for 127.0.0.1 and localhost, and a client certificate, as PEM
/// files in `dir`; plus a client certificate from another CA.
struct Certs {
    ca: std::path::PathBuf,
    server_cert: std::path::PathBuf,
    server_key: std::path::PathBuf,
    client_cert: std::path::PathBuf,
    client_key: std::path::PathBuf,
    stranger_cert: std::path::PathBuf,
    stranger_key: std::path::PathBuf,
}

fn make_certs(dir: &Path) -> Certs {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_params = |name: &str| {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, name.to_owned());
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params
    };
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).expect("write PEM");
        path
    };
    let issue = |issuer: &Issuer<'_, KeyPair>, sans: &[&str], usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("leaf params");
        params.distinguished_name.push(
            DnType::CommonName,
            sans.first().copied().unwrap_or("client"),
        );
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, issuer).expect("sign leaf");
        (cert.pem(), key.serialize_pem())
    };

    let ca_key = KeyPair::generate().expect("CA key");
    let params = ca_params("hoist test CA");
    let ca_cert = params.self_signed(&ca_key).expect("self-sign CA");
    let issuer = Issuer::new(params, ca_key);
    let (server_cert, server_key) = issue(
        &issuer,
        &["127.0.0.1", "localhost"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) = issue(&issuer, &[], ExtendedKeyUsagePurpose::ClientAuth);
    let stranger_issuer = Issuer::new(
        ca_params("someone else's CA"),
        KeyPair::generate().expect("key"),
    );
    let (stranger_cert, stranger_key) =
        issue(&stranger_issuer, &[], ExtendedKeyUsagePurpose::ClientAuth);
    Certs {
        ca: write("ca.pem", ca_cert.pem()),
        server_cert: write("server-cert.pem", server_cert),
        server_key: write("server-key.pem", server_key),
        client_cert: write("cert.pem", client_cert),
        client_key: write("key.pem", client_key),
        stranger_cert: write("stranger-cert.pem", stranger_cert),
        stranger_key: write("stranger-key.pem", stranger_key),
    }
}

#[test]
fn tlsverify_serves_clients_with_a_certificate_from_the_ca_and_refuses_others() {
    let scratch = Scratch::new();
    let cert_dir = scratch.path("certs");
    std::fs::create_dir(&cert_dir).unwrap();
    let certs = make_certs(&cert_dir);
    let port = free_port();
    // With TLS a non-loopback address is allowed.
    let daemon = start_daemon_with(HoistdOptions {
        args: vec![
            "-H".into(),
            format!("tcp://0.0.0.0:{port}"),
            "--tlsverify".into(),
            "--tlscacert".into(),
            certs.ca.display().to_string(),
            "--tlscert".into(),
            certs.server_cert.display().to_string(),
            "--tlskey".into(),
            certs.server_key.display().to_string(),
        ],
        ..Default::default()
    });
    let docker = DockerCli::new(&daemon.socket());
    let host = format!("tcp://127.0.0.1:{port}");
    let tls_args = |cert: &Path, key: &Path| -> Vec<String> {
        vec![
            "--tlsverify".into(),
            "--tlscacert".into(),
            certs.ca.display().to_string(),
            "--tlscert".into(),
            cert.display().to_string(),
            "--tlskey".into(),
            key.display().to_string(),
            "-H".into(),
            host.clone(),
        ]
    };
    let run = |mut args: Vec<String>, command: &[&str]| -> CliOutput {
        args.extend(command.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker_at(&docker, &host, &args)
    };

    let out = run(
        tls_args(&certs.client_cert, &certs.client_key),
        &[
            "version",
            "--format",
            "{{.Server.Version}} {{.Server.APIVersion}}",
        ],
    );
    out.assert_success("docker --tlsverify version");
    assert_eq!(out.stdout, format!("{} 1.50\n", env!("CARGO_PKG_VERSION")));
    assert_eq!(out.stderr, "");
    let out = run(
        tls_args(&certs.client_cert, &certs.client_key),
        &["images", "-q"],
    );
    out.assert_success("docker --tlsverify images");

    // No client certificate: the handshake is refused.
    let out = run(
        vec![
            "--tlsverify".into(),
            "--tlscacert".into(),
            certs.ca.display().to_string(),
            "-H".into(),
            host.clone(),
        ],
        &["version", "--format", "{{.Server.Version}}"],
    );
    assert!(
        !out.success(),
        "a client without a certificate was served:\n{out}"
    );
    assert_eq!(out.stdout.trim(), "", "{out}");
    assert!(out.stderr.contains("tls: certificate required"), "{out}");
    // A certificate from another CA: refused too.
    let out = run(
        tls_args(&certs.stranger_cert, &certs.stranger_key),
        &["version", "--format", "{{.Server.Version}}"],
    );
    assert!(
        !out.success(),
        "a foreign client certificate was accepted:\n{out}"
    );
    assert_eq!(out.stdout.trim(), "", "{out}");
    // Plain HTTP on the TLS port gets no answer.
    assert!(
        tcp_request(port, "/_ping").map_or(true, |r| r.status != 200),
        "plain HTTP was served on the TLS port"
    );
    // The daemon is still fine.
    assert_eq!(daemon.request("GET", "/_ping", &[], b"").status, 200);
}

#[test]
fn unknown_daemon_json_keys_are_warned_about_and_not_fatal() {
    let daemon = start_daemon_with(HoistdOptions {
        config: serde_json::json!({
            "bip": "10.99.0.1/24",
            "hoist-no-such-key": true,
            "max-concurrent-uploads": 2,
        }),
        ..Default::default()
    });
    assert_eq!(daemon.request("GET", "/_ping", &[], b"").status, 200);
    let log = daemon.log();
    for key in ["bip", "hoist-no-such-key"] {
        assert!(
            log.lines().any(|l| l.contains("WARN")
                && l.contains("ignoring unknown configuration key")
                && l.contains(key)),
            "no warning for {key}:\n{log}"
        );
    }
    assert!(!log.contains("max-concurrent-uploads"), "{log}");
    // A log file is for reading: no terminal colour codes in it.
    assert!(!log.contains('\u{1b}'), "ANSI escapes in the log:\n{log}");
}

#[test]
fn a_setting_given_as_flag_and_in_daemon_json_is_an_error() {
    let failure = refused_start(HoistdOptions {
        config: serde_json::json!({"max-concurrent-uploads": 3}),
        args: vec!["--max-concurrent-uploads".into(), "4".into()],
        ..Default::default()
    });
    assert_eq!(failure.status.and_then(|s| s.code()), Some(1), "{failure}");
    assert!(
        failure.log.contains(
            "the following directives are specified both as a flag and in the configuration file: max-concurrent-uploads"
        ),
        "{failure}"
    );
    // The harness passes --log-level; the same key in the file conflicts too.
    let failure = refused_start(HoistdOptions {
        config: serde_json::json!({"log-level": "warn"}),
        ..Default::default()
    });
    assert!(
        failure
            .log
            .contains("specified both as a flag and in the configuration file: log-level"),
        "{failure}"
    );
    // A malformed file stops the start with the file's name.
    let failure = refused_start(HoistdOptions {
        config: serde_json::json!(["not", "an", "object"]),
        ..Default::default()
    });
    assert_eq!(failure.status.and_then(|s| s.code()), Some(1), "{failure}");
    assert!(
        failure
            .log
            .contains("unable to configure the daemon with file"),
        "{failure}"
    );
}

#[test]
fn version_flag_prints_the_version_and_exits() {
    for flag in ["--version", "-v"] {
        let out = run_hoistd(&[flag]);
        assert_eq!(out.status.code(), Some(0), "{out}");
        assert_eq!(
            out.stdout,
            format!("hoistd version {}, API 1.50\n", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(out.stderr, "");
    }
}

#[test]
fn sigterm_during_a_load_lets_it_finish_or_leaves_nothing() {
    use hoist_testkit::archive::{ArchiveBuilder, ArchiveFormat};
    use hoist_testkit::image::{Compression, Flavor, ImageBuilder, LayerSpec};
    let mut daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let scratch = Scratch::new();
    let image = ImageBuilder::new(Flavor::Oci)
        .layer(LayerSpec::single(48 << 20).compression(Compression::Gzip { level: 0 }))
        .build();
    let archive = scratch.archive(
        "sigterm.tar",
        &ArchiveBuilder::new(ArchiveFormat::Oci).image(&image, &["stopped-mid-load:1"]),
    );
    let loading = docker.spawn(&["load", "-i", archive.to_str().unwrap()]);
    // Stop once the layer is on its way in.
    let ingest = daemon.data_root().join("ingest");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::fs::read_dir(&ingest).map_or(0, |d| d.count()) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the load never started"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    daemon.signal(libc::SIGTERM);
    let status = daemon
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("no exit after SIGTERM; log:\n{}", daemon.log()));
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    let cli = loading.wait(Duration::from_secs(30));
    daemon.restart();
    assert_every_blob_hashes_to_its_name(&daemon.data_root());
    let listed = docker_ok(&docker, &["images", "-q", "--no-trunc"]);
    let stored: std::collections::BTreeSet<String> =
        stored_blobs(&daemon.data_root()).into_keys().collect();
    if cli.success() {
        // A running request is given time to finish: the image is complete.
        assert_eq!(cli.stdout, "Loaded image: stopped-mid-load:1\n");
        assert_eq!(listed, format!("{}\n", image.digest()));
        let expected: std::collections::BTreeSet<String> =
            image.contents().map(|b| b.hex().to_owned()).collect();
        assert_eq!(stored, expected);
    } else {
        assert_eq!(listed, "", "a failed load left an image; CLI said:\n{cli}");
        assert!(stored.is_empty(), "a failed load left blobs: {stored:?}");
    }
}
