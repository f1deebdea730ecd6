//! TLS for registry hosts: Docker's `certs.d` layout, insecure registries, and a verifier that
//! accepts what Go (and so dockerd) accepts.
//!
//! The rustls configuration is built here rather than by reqwest so that certificate checks are
//! ours to explain and to extend: a self-signed CA certificate used as the server's own
//! certificate (what `openssl req -x509` makes) is accepted when that very certificate is in the
//! host's certs.d directory, as Go accepts a leaf that is itself a trusted root.

mod certs_dir;
mod diagnosis;
mod verifier;

use std::sync::Once;

pub(crate) use certs_dir::{CertsDir, CertsFingerprint};
pub(crate) use diagnosis::{explain, failure_in};

/// reqwest is built without a bundled crypto provider; hoist uses ring. Installing it as the
/// process default is idempotent here and harmless if someone else installed one first.
pub(crate) fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
