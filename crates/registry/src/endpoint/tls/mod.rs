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

/// The cryptography of every registry connection: aws-lc-rs, whose AES-GCM (the cipher a TLS 1.3
/// registry picks on AES hardware) uses VAES with AVX-512 where the CPU has it; ring's stops at
/// AVX2 and sealed records a third slower on the bench machine, where the encryption is a fifth
/// of the daemon's CPU in a TLS push.
pub(crate) fn crypto_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

/// reqwest is built without a bundled crypto provider. Installing hoist's as the process default
/// is idempotent here and harmless if someone else installed one first.
pub(crate) fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = crypto_provider().install_default();
    });
}
