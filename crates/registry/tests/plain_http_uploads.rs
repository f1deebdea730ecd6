//! Large blob bodies to a plain-HTTP registry on another host go out with sendfile on
//! connections of their own; these tests ask for that with their registries on 127.0.0.1
//! too (`test_config`). What must hold whichever way the bytes are sent: the registry's
//! answers are read however they are framed, a refusal sent before the body is read is
//! reported as the refusal, and connections are kept alive between uploads.

mod common;

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::*;
use hoist_registry::{
    Access, Credentials, Progress, Registries, RegistryConfig, RegistryError, UploadMode,
};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REPO: &str = "team/app";

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// One request as the server saw it: which connection (numbered in accept order) carried it.
#[derive(Clone, Debug)]
struct Seen {
    connection: usize,
    method: String,
}

/// A hyper server on 127.0.0.1; `answer` gets each request (body unread) and its connection.
async fn serve<F, Fut>(answer: F) -> (String, Arc<Mutex<Vec<Seen>>>)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Body>> + Send + 'static,
{
    serve_at(Ipv4Addr::LOCALHOST.into(), answer).await
}

/// [`serve`] at `ip`, one of this host's addresses.
async fn serve_at<F, Fut>(ip: IpAddr, answer: F) -> (String, Arc<Mutex<Vec<Seen>>>)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Body>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = seen.clone();
    let connections = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let connection = connections.fetch_add(1, Ordering::SeqCst);
            let (log, answer) = (log.clone(), answer.clone());
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                log.lock().unwrap().push(Seen {
                    connection,
                    method: request.method().to_string(),
                });
                let response = answer(request);
                async move { Ok::<_, Infallible>(response.await) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), service),
            );
        }
    });
    (host, seen)
}

fn full(status: u16, headers: &[(&str, &str)], body: &'static str) -> Response<Body> {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(Full::new(Bytes::from_static(body.as_bytes())).boxed())
        .unwrap()
}

/// A server that accepts the POST, then answers the PUT as soon as its head arrives with a
/// chunked 413 and resets the connection, as a registry or proxy refusing a body may.
async fn refusing_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut received = Vec::new();
                let mut buffer = vec![0u8; 64 * 1024];
                loop {
                    let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match socket.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            // A TLS hello: the client is finding out that this is plain HTTP.
                            Ok(_) if buffer[0] == 0x16 && received.is_empty() => return,
                            Ok(n) => received.extend_from_slice(&buffer[..n]),
                        }
                        continue;
                    };
                    if received.starts_with(b"POST") {
                        received.drain(..end + 4);
                        let reply = "HTTP/1.1 202 Accepted\r\nLocation: /upload/1\r\n\
                                     Content-Length: 0\r\n\r\n";
                        if socket.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    let reply = "HTTP/1.1 413 Payload Too Large\r\n\
                                 Content-Type: application/json\r\n\
                                 Transfer-Encoding: chunked\r\n\r\n\
                                 22\r\n{\"errors\":[{\"code\":\"SIZE_INVALID\",\r\n\
                                 2f\r\n\"message\":\"blob too large for this registry\"}]}\r\n\
                                 0\r\n\r\n";
                    let _ = socket.write_all(reply.as_bytes()).await;
                    let _ = socket.flush().await;
                    // Closing with unread bytes makes the kernel send a reset.
                    return;
                }
            });
        }
    });
    host
}

#[tokio::test]
async fn a_refusal_sent_before_the_body_is_read_is_the_error_even_when_chunked() {
    let host = refusing_server().await;
    let repo = registries().repository(&host, REPO, Access::PullPush, Credentials::Anonymous);
    let dir = tempfile::tempdir().unwrap();
    let blob = blob_file(dir.path(), &pseudo_random(16 * 1024 * 1024, 21));
    for _ in 0..10 {
        let session = repo.start_upload().await.unwrap();
        let error = repo
            .upload_blob(session, &blob, UploadMode::Monolithic, &Progress::default())
            .await
            .unwrap_err();
        assert_eq!(error.status(), Some(413), "{error:?}");
        assert!(matches!(error, RegistryError::Response(_)), "{error:?}");
        assert_eq!(
            error.to_string(),
            "size invalid: blob too large for this registry"
        );
        assert!(!error.body_interrupted());
    }
}

/// A server that accepts every upload whose body has the digest its PUT names; it records
/// the connections.
async fn accepting_server(ip: IpAddr) -> (String, Arc<Mutex<Vec<Seen>>>) {
    serve_at(ip, |request: Request<Incoming>| async move {
        match request.method().as_str() {
            "POST" => full(202, &[("location", "/upload/1")], ""),
            "PUT" => {
                let digest = request
                    .uri()
                    .query()
                    .unwrap_or_default()
                    .split('&')
                    .find_map(|pair| pair.strip_prefix("digest="))
                    .unwrap_or_default()
                    .replace("%3A", ":");
                let body = request.into_body().collect().await.unwrap().to_bytes();
                if sha256(&body).as_str() != digest {
                    return full(400, &[], r#"{"errors":[{"code":"DIGEST_INVALID"}]}"#);
                }
                let digest: &'static str = Box::leak(digest.into_boxed_str());
                full(201, &[("docker-content-digest", digest)], "")
            }
            _ => full(404, &[], ""),
        }
    })
    .await
}

#[tokio::test]
async fn uploads_one_after_another_share_a_kept_alive_connection() {
    let (host, seen) = accepting_server(Ipv4Addr::LOCALHOST.into()).await;
    let repo = registries().repository(&host, REPO, Access::PullPush, Credentials::Anonymous);
    let dir = tempfile::tempdir().unwrap();
    for seed in 0..3 {
        let blob = blob_file(
            dir.path(),
            &pseudo_random(5 * 1024 * 1024 + seed, 30 + seed as u64),
        );
        let session = repo.start_upload().await.unwrap();
        repo.upload_blob(session, &blob, UploadMode::Monolithic, &Progress::default())
            .await
            .unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    let puts: Vec<usize> = seen
        .iter()
        .filter(|s| s.method == "PUT")
        .map(|s| s.connection)
        .collect();
    assert_eq!(puts.len(), 3, "{seen:?}");
    assert!(puts.iter().all(|c| *c == puts[0]), "{seen:?}");
}

/// Which connections carried the POST and the PUT of one upload of a 5 MiB blob.
async fn upload_connections(config: RegistryConfig, ip: IpAddr) -> (usize, usize) {
    let (host, seen) = accepting_server(ip).await;
    let registries = Registries::new(RegistryConfig {
        insecure_registries: vec![host.clone()],
        ..config
    })
    .unwrap();
    let repo = registries.repository(&host, REPO, Access::PullPush, Credentials::Anonymous);
    let dir = tempfile::tempdir().unwrap();
    let blob = blob_file(dir.path(), &pseudo_random(5 * 1024 * 1024, 60));
    let session = repo.start_upload().await.unwrap();
    repo.upload_blob(session, &blob, UploadMode::Monolithic, &Progress::default())
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    let on = |method: &str| {
        let found: Vec<usize> = seen
            .iter()
            .filter(|s| s.method == method)
            .map(|s| s.connection)
            .collect();
        assert_eq!(found.len(), 1, "{seen:?}");
        found[0]
    };
    (on("POST"), on("PUT"))
}

#[tokio::test]
async fn a_registry_on_this_host_gets_large_bodies_copied_unless_asked_for_sendfile() {
    let loopback = Ipv4Addr::LOCALHOST.into();
    // Copied: reqwest sends the PUT on the connection the POST left idle.
    let (post, put) = upload_connections(copying_to_this_host(), loopback).await;
    assert_eq!(post, put);
    // With sendfile: on a connection of that path's own.
    let (post, put) = upload_connections(test_config(), loopback).await;
    assert_ne!(post, put);
}

#[tokio::test]
async fn a_registry_at_one_of_this_hosts_own_addresses_is_on_this_host() {
    let own = own_address();
    let (post, put) = upload_connections(copying_to_this_host(), own).await;
    assert_eq!(post, put, "{own} is this host: the body is copied");
    let (post, put) = upload_connections(test_config(), own).await;
    assert_ne!(post, put);
}

fn copying_to_this_host() -> RegistryConfig {
    RegistryConfig {
        sendfile_to_this_host: false,
        ..test_config()
    }
}

/// The address this host sends from on its default route (a UDP "connect" sends nothing).
fn own_address() -> IpAddr {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    socket
        .connect("192.0.2.1:9")
        .expect("a route to another host, to learn this host's own address");
    let ip = socket.local_addr().unwrap().ip();
    assert!(!ip.is_loopback() && !ip.is_unspecified(), "{ip}");
    ip
}

#[tokio::test]
async fn chunks_follow_relative_locations_and_commit_the_exact_bytes() {
    let stored: Arc<Mutex<Vec<u8>>> = Arc::default();
    let state = stored.clone();
    let (host, _) = serve(move |request: Request<Incoming>| {
        let stored = state.clone();
        async move {
            let uri = request.uri().to_string();
            let method = request.method().to_string();
            let body = request.into_body().collect().await.unwrap().to_bytes();
            let mut stored = stored.lock().unwrap();
            stored.extend_from_slice(&body);
            // Each answer points at the next step with a relative Location and a query that
            // must come back byte for byte.
            let next = |n: usize| format!("/upload/{n}?_state=a%2Bb");
            let step = uri
                .strip_prefix("/upload/")
                .and_then(|rest| rest.split('?').next())
                .and_then(|n| n.parse::<usize>().ok());
            let location: &'static str = match (method.as_str(), step) {
                ("POST", _) => Box::leak(next(1).into_boxed_str()),
                ("PATCH", Some(n)) if uri == next(n) => Box::leak(next(n + 1).into_boxed_str()),
                ("PUT", Some(_)) if uri.contains("_state=a%2Bb&digest=") => {
                    let digest: &'static str = Box::leak(sha256(&stored).to_string().into());
                    return full(201, &[("docker-content-digest", digest)], "");
                }
                _ => return full(400, &[], r#"{"errors":[{"code":"BLOB_UPLOAD_INVALID"}]}"#),
            };
            let range: &'static str =
                Box::leak(format!("0-{}", stored.len().saturating_sub(1)).into_boxed_str());
            full(202, &[("location", location), ("range", range)], "")
        }
    })
    .await;
    let repo = registries().repository(&host, REPO, Access::PullPush, Credentials::Anonymous);
    let dir = tempfile::tempdir().unwrap();
    let bytes = pseudo_random(9 * 1024 * 1024 + 5, 40);
    let blob = blob_file(dir.path(), &bytes);
    let session = repo.start_upload().await.unwrap();
    let progress = Progress::default();
    let mode = UploadMode::Chunked {
        chunk_size: 4 * 1024 * 1024,
    };
    repo.upload_blob(session, &blob, mode, &progress)
        .await
        .unwrap();
    assert_eq!(*stored.lock().unwrap(), bytes);
    assert_eq!(progress.get(), bytes.len() as u64);
}

#[tokio::test]
async fn a_file_whose_length_is_not_the_blobs_is_refused_before_any_body_goes_out() {
    let (host, seen) = serve(|request: Request<Incoming>| async move {
        match request.method().as_str() {
            "POST" => full(202, &[("location", "/upload/1")], ""),
            _ => full(500, &[], ""),
        }
    })
    .await;
    let repo = registries().repository(&host, REPO, Access::PullPush, Credentials::Anonymous);
    let dir = tempfile::tempdir().unwrap();
    // A small body (read in one trip), a mapped one and a sendfile one; each file one byte
    // longer or shorter than the blob it claims to hold.
    for (len, seed) in [(1000, 50), (300 * 1024, 51), (5 * 1024 * 1024, 52)] {
        let bytes = pseudo_random(len, seed);
        for file_len in [len - 1, len + 1] {
            let good = blob_file(dir.path(), &bytes);
            let mut content = bytes.clone();
            content.resize(file_len, 7);
            std::fs::write(good.path(), &content).unwrap();
            for mode in [
                UploadMode::Monolithic,
                UploadMode::Chunked {
                    chunk_size: 4 * 1024 * 1024,
                },
            ] {
                let session = repo.start_upload().await.unwrap();
                let error = repo
                    .upload_blob(session, &good, mode, &Progress::default())
                    .await
                    .unwrap_err();
                assert!(matches!(error, RegistryError::LocalIo { .. }), "{error:?}");
                assert!(
                    error
                        .to_string()
                        .contains(&format!("file holds {file_len} bytes")),
                    "{error}"
                );
            }
        }
    }
    let methods: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.method.clone())
        .collect();
    assert!(methods.iter().all(|m| m == "POST"), "{methods:?}");
}
