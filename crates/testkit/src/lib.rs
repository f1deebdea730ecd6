//! Test support for hoist, independent of hoist's own crates so that tests check hoist against
//! separate truth: the real `docker-registry` (CNCF distribution), an image generator that
//! computes its own digests, and a proxy that observes or disturbs registry traffic.
//!
//! - [`image`]: random-content images (OCI / Docker schema2, indexes, attestations), streamed to
//!   disk, every digest computed here.
//! - [`archive`]: `docker load` archives (legacy, blobs, OCI, both; partial; deliberately broken).
//! - [`registry`]: the real registry on loopback, plus direct HTTP helpers to seed and read it.
//! - [`skopeo`]: an independent client to put generated images into a registry.
//! - [`search_index`]: a stand-in for Docker Hub's v1 search API (no registry here has one).
//! - [`token_server`]: a registry token server (JWTs, scopes, refresh tokens) for token auth.
//! - [`tls`]: test CAs, server and client certificates, self-signed CA-as-leaf certificates.
//! - [`proxy`]: a fault-injecting, observing HTTP proxy in front of a registry.
//! - [`hoistd`]: the daemon under test, with raw HTTP/1.1 requests over its socket ([`http1`]).
//! - [`docker`]: the real docker CLI and docker-py, isolated from the machine's docker setup.
//! - [`process`]: children tied to the test binary, free ports, required programs, timeouts.

pub mod archive;
pub mod docker;
pub mod hoistd;
pub mod http1;
pub mod image;
pub mod process;
pub mod proxy;
pub mod registry;
pub mod search_index;
pub mod skopeo;
pub mod tls;
pub mod token_server;

/// A blocking HTTP client for talking to registries and proxies directly in tests.
///
/// reqwest is built without a bundled crypto provider (hoist uses ring), so install it first.
pub fn http_client() -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .expect("build blocking reqwest client")
}
