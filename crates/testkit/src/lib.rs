//! Test support for hoist, independent of hoist's own crates so that tests check hoist against
//! separate truth: the real `docker-registry` (CNCF distribution), an image generator that
//! computes its own digests, and a proxy that observes or disturbs registry traffic.

pub mod archive;
pub mod docker;
pub mod hoistd;
pub mod http1;
pub mod image;
pub mod process;
pub mod proxy;
pub mod registry;
pub mod skopeo;

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
