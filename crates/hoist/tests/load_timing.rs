//! When `POST /images/load` and `POST /images/create?fromSrc=-` answer, and how they report
//! failures: no status line before the archive is read (clients take the headers as the end of
//! the load), load's failures in a 200 stream, import's with their status; and `docker load
//! --platform`, which keeps only that platform's content.

mod foundation_support;

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use foundation_support::*;
use hoist_testkit::archive::{ArchiveBuilder, ArchiveFormat};
use hoist_testkit::docker::DockerCli;
use hoist_testkit::http1::query_escape;
use hoist_testkit::image::{Compression, Flavor, ImageBuilder, IndexBuilder, LayerSpec};

const TAR: (&str, &str) = ("Content-Type", "application/x-tar");

/// Reads what the daemon sent so far on `stream` without waiting for more.
fn pending_bytes(stream: &mut UnixStream) -> Vec<u8> {
    stream.set_nonblocking(true).expect("non-blocking");
    let mut buf = vec![0; 4096];
    let read = match stream.read(&mut buf) {
        Ok(n) => buf[..n].to_vec(),
        Err(e) if e.kind() == ErrorKind::WouldBlock => Vec::new(),
        Err(e) => panic!("reading the connection: {e}"),
    };
    stream.set_nonblocking(false).expect("blocking");
    read
}

#[test]
fn load_sends_no_status_line_before_the_archive_is_read() {
    let daemon = start_daemon();
    let repo = unique_repo("timing");
    // Random content does not compress: the archive is about as large as the layer.
    let image = ImageBuilder::new(Flavor::Docker)
        .layer(LayerSpec::single(24 << 20).compression(Compression::None))
        .build();
    let body = ArchiveBuilder::new(ArchiveFormat::Oci)
        .image(&image, &[&format!("{repo}:1")])
        .to_raw()
        .to_bytes();
    let half = body.len() / 2;

    let mut stream = UnixStream::connect(daemon.socket()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("read timeout");
    write!(
        stream,
        "POST /v1.50/images/load?quiet=1 HTTP/1.1\r\nHost: api.moby.localhost\r\n\
         Content-Type: application/x-tar\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .expect("write request head");
    // Socket buffers hold well under a MiB: once this write returns, the daemon has consumed
    // most of these 12 MiB, long after a handler answering at once would have answered.
    stream
        .write_all(&body[..half])
        .expect("write half the archive");
    let early = pending_bytes(&mut stream);
    assert!(
        early.is_empty(),
        "the daemon answered before the archive was read: {}",
        String::from_utf8_lossy(&early)
    );

    stream.write_all(&body[half..]).expect("write the rest");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read the answer");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.contains(&format!("{{\"stream\":\"Loaded image: {repo}:1\\n\"}}\r\n")),
        "{answer}"
    );
    let inspect = daemon.request("GET", &format!("/images/{repo}:1/json"), &[], b"");
    assert_eq!(inspect.status, 200, "{}", inspect.text());
    assert_eq!(inspect.json()["Id"], image.digest());
}

#[test]
fn load_failures_are_reported_in_a_200_stream() {
    let daemon = start_daemon();
    let image = ImageBuilder::new(Flavor::Oci)
        .layer(LayerSpec::single(256 << 10))
        .build();
    let body = ArchiveBuilder::new(ArchiveFormat::Oci)
        .image(&image, &[&unique_repo("cut")])
        .to_raw()
        .to_bytes();
    let response = daemon.request(
        "POST",
        "/v1.50/images/load",
        &[TAR],
        &body[..body.len() / 2],
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("Content-Type"), Some("application/json"));
    let lines = response.json_lines();
    assert_eq!(lines.len(), 1, "{}", response.text());
    let message = lines[0]["errorDetail"]["message"].as_str().unwrap_or("");
    assert!(message.contains("truncated"), "{}", response.text());
    // Nothing of it became an image.
    let list = daemon.request("GET", "/images/json", &[], b"");
    assert_eq!(list.json(), serde_json::json!([]));
}

#[test]
fn import_failures_before_any_output_keep_their_status() {
    let daemon = start_daemon();
    // A gzip stream that breaks after its header: found only once the body is being read. The
    // whole (large) body is still read, so the client gets to read the answer.
    let mut body = vec![0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff];
    body.extend(std::iter::repeat_n(0xa5u8, 4 << 20));
    let response = daemon.request(
        "POST",
        &format!("/v1.50/images/create?fromSrc=-&repo={}", unique_repo("imp")),
        &[TAR],
        &body,
    );
    assert_eq!(response.status, 400, "{}", response.text());
    assert_eq!(response.header("Content-Type"), Some("application/json"));
    let message = response.json()["message"].as_str().unwrap_or("").to_owned();
    assert!(
        message.starts_with("the imported archive is corrupt"),
        "{message}"
    );
    // A request moby refuses before reading the body: its status too.
    let response = daemon.request(
        "POST",
        "/v1.50/images/create?fromSrc=-&repo=UPPER",
        &[TAR],
        &body,
    );
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(
        response.json()["message"]
            .as_str()
            .is_some_and(|m| m.contains("must be lowercase")),
        "{}",
        response.text()
    );
}

/// `docker load --platform` on an archive of a two-platform index with attestations.
#[test]
fn docker_load_platform_keeps_only_that_platforms_content() {
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let scratch = Scratch::new();
    let repo = unique_repo("platform");
    let index = IndexBuilder::new(Flavor::Oci)
        .platform("linux/amd64", &[LayerSpec::single(64 << 10)])
        .platform("linux/arm64", &[LayerSpec::single(64 << 10)])
        .with_attestations()
        .build();
    let archive = scratch.archive(
        "index.tar",
        &ArchiveBuilder::new(ArchiveFormat::Oci).index(&index, &[&format!("{repo}:multi")]),
    );
    let path = archive.to_str().expect("utf-8 path");

    let out = docker.run(&["load", "--platform", "linux/arm64", "-i", path]);
    out.assert_success("docker load --platform linux/arm64");
    assert_eq!(out.stdout, format!("Loaded image: {repo}:multi\n"));
    let stored = stored_blobs(&daemon.data_root());
    let held = |digest: &str| stored.contains_key(digest.trim_start_matches("sha256:"));
    assert!(held(index.digest()), "the index is kept");
    let arm = index.image_for("linux/arm64");
    for blob in arm.blobs() {
        assert!(held(&blob.digest), "arm64 {} kept", blob.digest);
    }
    let amd = index.image_for("linux/amd64");
    for blob in amd
        .blobs()
        .chain(index.attestations.iter().flat_map(|a| a.blobs()))
    {
        assert!(
            !held(&blob.digest),
            "{} of another platform was kept",
            blob.digest
        );
    }
    let inspected = inspect(&docker, &format!("{repo}:multi"));
    assert_eq!(inspected["Id"], index.digest());
    assert_eq!(inspected["Architecture"], "arm64");

    // A platform the archive lacks: moby's message, and nothing is named.
    let other = format!("{repo}-other");
    let archive = scratch.archive(
        "other.tar",
        &ArchiveBuilder::new(ArchiveFormat::Oci).index(&index, &[&format!("{other}:multi")]),
    );
    let out = docker.run(&[
        "load",
        "--platform",
        "linux/s390x",
        "-i",
        archive.to_str().expect("utf-8 path"),
    ]);
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr.contains(&format!(
            "image {other}:multi was loaded, but doesn't provide the requested platform (linux/s390x)"
        )),
        "{out}"
    );
    let missing = docker.run(&["image", "inspect", &format!("{other}:multi")]);
    assert!(!missing.success(), "{missing}");

    // Before API 1.48 the parameter is ignored, as in moby: everything is loaded.
    let bytes = std::fs::read(&archive).expect("read archive");
    let platform = r#"{"os":"linux","architecture":"arm64"}"#;
    let query = format!("/v1.47/images/load?platform={}", query_escape(platform));
    let response = daemon.request("POST", &query, &[TAR], &bytes);
    assert_eq!(response.status, 200);
    assert_eq!(
        response.text(),
        format!("{{\"stream\":\"Loaded image: {other}:multi\\n\"}}\r\n")
    );
    let stored = stored_blobs(&daemon.data_root());
    for blob in amd.blobs() {
        assert!(
            stored.contains_key(blob.digest.trim_start_matches("sha256:")),
            "amd64 {} loaded",
            blob.digest
        );
    }
    // Two platform parameters, or one that is not JSON: 400 before anything is read.
    for query in [
        format!("platform={0}&platform={0}", query_escape(platform)),
        "platform=linux%2Farm64".to_owned(),
    ] {
        let response = daemon.request(
            "POST",
            &format!("/v1.50/images/load?{query}"),
            &[TAR],
            &bytes,
        );
        assert_eq!(response.status, 400, "{query}: {}", response.text());
        let message = response.json()["message"].as_str().unwrap_or("").to_owned();
        assert!(
            message == "multiple platform parameters not supported"
                || message.starts_with("failed to parse platform"),
            "{message}"
        );
    }
}

/// A docker-archive carries no index: the platform of its image is its config's.
#[test]
fn docker_load_platform_of_a_docker_archive_checks_the_configs_platform() {
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let scratch = Scratch::new();
    let repo = unique_repo("legacy");
    let image = ImageBuilder::new(Flavor::Docker)
        .layer(LayerSpec::single(32 << 10))
        .build();
    let archive = scratch.archive(
        "legacy.tar",
        &ArchiveBuilder::new(ArchiveFormat::DockerLegacy).image(&image, &[&format!("{repo}:1")]),
    );
    let path = archive.to_str().expect("utf-8 path");

    let out = docker.run(&["load", "--platform", "linux/arm64", "-i", path]);
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr.contains(&format!(
            "image {repo}:1 was loaded, but doesn't provide the requested platform (linux/arm64)"
        )),
        "{out}"
    );
    assert!(
        !docker
            .run(&["image", "inspect", &format!("{repo}:1")])
            .success()
    );
    let stored = stored_blobs(&daemon.data_root());
    for blob in image.blobs() {
        assert!(!stored.contains_key(blob.hex()), "{} kept", blob.digest);
    }

    let out = docker.run(&["load", "--platform", "linux/amd64", "-i", path]);
    out.assert_success("docker load --platform linux/amd64");
    assert_eq!(out.stdout, format!("Loaded image: {repo}:1\n"));
    let inspected = inspect(&docker, &format!("{repo}:1"));
    assert_eq!(
        inspected["RootFS"]["Layers"],
        serde_json::json!(image.diff_ids())
    );
}
