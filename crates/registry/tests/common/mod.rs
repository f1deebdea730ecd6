//! Helpers shared by the integration tests: blob files with digests computed here (not by the
//! crate under test), and a recording fake registry for faults a real one cannot produce.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Request};
use axum::response::Response;
use hoist_reference::Digest;
use hoist_registry::{BlobSource, Registries, RegistryConfig};
use sha2::Digest as _;

pub fn sha256(bytes: &[u8]) -> Digest {
    Digest::parse(&format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(bytes))
    ))
    .unwrap()
}

/// Incompressible, reproducible bytes (xorshift), so tests need no RNG crate.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes `bytes` to a file in `dir` and describes it as a blob.
pub fn blob_file(dir: &Path, bytes: &[u8]) -> BlobSource {
    let digest = sha256(bytes);
    let path = dir.join(digest.hex());
    std::fs::write(&path, bytes).unwrap();
    // SAFETY: the test owns the file in its temporary directory and never writes it again.
    unsafe { BlobSource::new(path, digest, bytes.len() as u64) }
}

/// A config that ignores the machine's certs.d, so tests do not depend on it, and sends large
/// bodies with `sendfile` to the tests' registries on 127.0.0.1 as it would to remote ones.
pub fn test_config() -> RegistryConfig {
    RegistryConfig {
        certs_dir: std::env::temp_dir().join("hoist-registry-tests-no-certs"),
        sendfile_to_this_host: true,
        ..RegistryConfig::default()
    }
}

pub fn registries() -> Registries {
    Registries::new(test_config()).unwrap()
}

/// A unique repository name per test, since tests share one registry process.
pub fn repo_name(test: &str) -> String {
    format!("hoist-test/{test}")
}

#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path and query exactly as received.
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

type Handler = Arc<dyn Fn(&Recorded, SocketAddr) -> Response + Send + Sync>;

/// A plain-HTTP server on 127.0.0.1 that records every request and answers through `handler`,
/// which also gets the server's own address (for absolute Locations and realms).
pub struct FakeRegistry {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Recorded>>>,
}

impl FakeRegistry {
    pub async fn start(
        handler: impl Fn(&Recorded, SocketAddr) -> Response + Send + Sync + 'static,
    ) -> FakeRegistry {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let handler: Handler = Arc::new(handler);
        let app_log = log.clone();
        let app = axum::Router::new().fallback(move |request: Request<axum::body::Body>| {
            let log = app_log.clone();
            let handler = handler.clone();
            async move {
                let (parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, 64 << 20)
                    .await
                    .unwrap_or_default();
                let recorded = Recorded {
                    method: parts.method.to_string(),
                    uri: parts
                        .uri
                        .path_and_query()
                        .map(|p| p.as_str().to_owned())
                        .unwrap_or_default(),
                    headers: parts.headers,
                    body,
                };
                log.lock().unwrap().push(recorded.clone());
                handler(&recorded, addr)
            }
        });
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeRegistry { addr, log }
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().unwrap().clone()
    }
}

pub fn respond(
    status: u16,
    headers: &[(&str, String)],
    body: impl Into<axum::body::Body>,
) -> Response {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, value.as_str());
    }
    builder.body(body.into()).unwrap()
}

pub fn empty(status: u16, headers: &[(&str, String)]) -> Response {
    respond(status, headers, axum::body::Body::empty())
}
