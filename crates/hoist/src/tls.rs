//! TLS for TCP listeners, with dockerd's meaning of --tls and --tlsverify.

use std::sync::Arc;

use anyhow::{Context, bail};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Settings;

pub fn server_config(settings: &Settings) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs = CertificateDer::pem_file_iter(&settings.tlscert)
        .with_context(|| format!("cannot read TLS certificate {}", settings.tlscert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("invalid TLS certificate {}", settings.tlscert.display()))?;
    if certs.is_empty() {
        bail!("no certificate in {}", settings.tlscert.display());
    }
    let key = PrivateKeyDer::from_pem_file(&settings.tlskey)
        .with_context(|| format!("cannot read TLS key {}", settings.tlskey.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = if settings.tlsverify {
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(&settings.tlscacert).with_context(|| {
            format!(
                "cannot read CA certificate {}",
                settings.tlscacert.display()
            )
        })? {
            roots.add(ca.with_context(|| {
                format!("invalid CA certificate {}", settings.tlscacert.display())
            })?)?;
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .context("client certificate verifier")?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .context("TLS certificate and key do not match")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
