//! The API listener's bounds: a client that stops mid-head, mid-body or mid-handshake is cut
//! off, connections beyond the cap wait, heads as large as dockerd accepts are served, and every
//! error the HTTP layer produces itself is moby's JSON. The daemon runs with short limits from
//! daemon.json's `api-limits`; every wait below is on an outcome (a closed connection, an
//! answer), bounded only so that a broken daemon fails the test instead of hanging it.

mod foundation_support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use foundation_support::*;
use hoist_testkit::docker::DockerCli;
use hoist_testkit::hoistd::HoistdOptions;
use hoist_testkit::process::free_port;

/// Long enough that a working daemon always acts first, short enough to fail a broken one.
const OUTCOME_WAIT: Duration = Duration::from_secs(60);

fn daemon_with_limits(limits: serde_json::Value) -> hoist_testkit::hoistd::Hoistd {
    start_daemon_with(HoistdOptions {
        config: serde_json::json!({ "api-limits": limits }),
        ..HoistdOptions::default()
    })
}

fn connect(daemon: &hoist_testkit::hoistd::Hoistd) -> UnixStream {
    let stream = UnixStream::connect(daemon.socket()).expect("connect");
    stream.set_read_timeout(Some(OUTCOME_WAIT)).unwrap();
    stream
}

/// Reads until the server closes the connection; panics if it never does.
fn read_to_close(stream: &mut impl Read) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return received,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return received,
            Err(e) => panic!(
                "the daemon kept the connection open ({e}); received so far: {:?}",
                String::from_utf8_lossy(&received)
            ),
        }
    }
}

#[test]
fn a_client_that_stops_sending_its_head_is_disconnected() {
    let daemon = daemon_with_limits(serde_json::json!({ "header-read-timeout": 1 }));
    let mut stream = connect(&daemon);
    stream
        .write_all(b"GET /_ping HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let answer = read_to_close(&mut stream);
    assert!(
        !String::from_utf8_lossy(&answer).contains("200 OK"),
        "a half-sent head was answered: {answer:?}"
    );
    // The daemon still serves everyone else.
    assert_eq!(daemon.request("GET", "/_ping", &[], b"").status, 200);
}

#[test]
fn a_load_whose_client_goes_silent_fails_and_leaves_no_temporary_file() {
    let daemon = daemon_with_limits(serde_json::json!({ "body-idle-timeout": 1 }));
    let mut stream = connect(&daemon);
    // A declared 10 MB archive of which only the start of its first file ever arrives.
    stream
        .write_all(
            b"POST /v1.50/images/load HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\n\
              Content-Length: 10000000\r\n\r\n",
        )
        .unwrap();
    let mut header = tar::Header::new_gnu();
    header
        .set_path(format!("blobs/sha256/{}", "ab".repeat(32)))
        .unwrap();
    header.set_size(5_000_000);
    header.set_cksum();
    stream.write_all(header.as_bytes()).unwrap();
    stream.write_all(&[7u8; 4096]).unwrap();
    let answer = String::from_utf8_lossy(&read_to_close(&mut stream)).into_owned();
    // The cause is the client's silence, not the archive.
    assert!(
        answer.contains("errorDetail")
            && answer.contains("reading the archive from the client")
            && answer.contains("timeout")
            && !answer.contains("invalid archive"),
        "the stalled load did not fail with its cause: {answer}"
    );
    let ingest = daemon.data_root().join("ingest");
    let left: Vec<_> = std::fs::read_dir(&ingest)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "temporary files left behind: {left:?}");
    assert_eq!(daemon.request("GET", "/_ping", &[], b"").status, 200);
}

#[test]
fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let daemon = daemon_with_limits(serde_json::json!({ "max-connections": 2 }));
    let idle: Vec<UnixStream> = (0..2).map(|_| connect(&daemon)).collect();
    let mut waiting = connect(&daemon);
    waiting
        .write_all(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    // At the cap the request is not served: nothing arrives while both slots are held.
    waiting
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut byte = [0u8; 1];
    match waiting.read(&mut byte) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("a connection beyond the cap was served: {other:?}"),
    }
    // A slot frees up, and the waiting request is answered.
    drop(idle);
    waiting.set_read_timeout(Some(OUTCOME_WAIT)).unwrap();
    let answer = String::from_utf8_lossy(&read_to_close(&mut waiting)).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
}

#[test]
fn a_tls_client_that_never_completes_its_handshake_is_disconnected() {
    let scratch = Scratch::new();
    let ca = hoist_testkit::tls::TestCa::new("listener test CA");
    let (cert, key) =
        ca.issue_server(&["127.0.0.1", "localhost"])
            .write(&scratch.path("certs"), "server", "pem");
    let port = free_port();
    let _daemon = start_daemon_with(HoistdOptions {
        config: serde_json::json!({ "api-limits": { "tls-handshake-timeout": 1 } }),
        args: vec![
            "-H".into(),
            format!("tcp://127.0.0.1:{port}"),
            "--tls".into(),
            "--tlscert".into(),
            cert.display().to_string(),
            "--tlskey".into(),
            key.display().to_string(),
        ],
        ..HoistdOptions::default()
    });
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(OUTCOME_WAIT)).unwrap();
    // A ClientHello never comes.
    assert!(read_to_close(&mut stream).is_empty());
}

#[test]
fn heads_dockerd_accepts_are_served_and_larger_ones_refused() {
    let daemon = start_daemon();
    let many: Vec<(String, String)> = (0..300)
        .map(|i| (format!("X-Extra-{i}"), "v".repeat(20)))
        .collect();
    let headers: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    assert_eq!(daemon.request("GET", "/_ping", &headers, b"").status, 200);
    // Over the limit the daemon answers 431 and closes without reading the rest, so the client
    // may see the answer, or a reset while it is still writing: refused either way.
    let huge = "v".repeat(1100 * 1024);
    match daemon.try_request("GET", "/_ping", &[("X-Huge", &huge)], b"") {
        Ok(answer) => assert_eq!(answer.status, 431),
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ),
            "{e}"
        ),
    }
}

#[test]
fn errors_of_the_http_layer_are_json() {
    let daemon = start_daemon();
    // axum refuses a request body beyond its 2 MiB buffer before any handler runs, once it has
    // read past the limit; the rest of the declared body is never sent.
    let mut stream = connect(&daemon);
    stream
        .write_all(
            b"POST /v1.50/auth HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 3000000\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    stream.write_all(&vec![b' '; (2 << 20) + 1024]).unwrap();
    let answer = String::from_utf8_lossy(&read_to_close(&mut stream)).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").expect("a whole answer");
    assert!(head.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json\r\n"),
        "{answer}"
    );
    let message: serde_json::Value = serde_json::from_str(body.trim()).expect("a JSON body");
    let message = message["message"].as_str().unwrap_or_default();
    assert!(message.contains("length limit"), "{message}");
}

#[test]
fn a_tcp_host_without_an_address_listens_on_localhost() {
    let port = free_port();
    let daemon = start_daemon_with(HoistdOptions {
        args: vec!["-H".into(), format!("tcp://:{port}")],
        ..HoistdOptions::default()
    });
    let out = DockerCli::new(&daemon.socket()).run(&[
        "-H",
        &format!("tcp://127.0.0.1:{port}"),
        "version",
        "--format",
        "{{.Server.APIVersion}}",
    ]);
    out.assert_success("docker -H tcp://127.0.0.1:PORT version");
    assert_eq!(out.stdout.trim(), "1.50");
}
