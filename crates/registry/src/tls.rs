//! TLS material for one registry host, from Docker's `certs.d` layout.

use std::path::Path;
use std::sync::Once;

use reqwest::{Certificate, ClientBuilder, Identity};

use crate::RegistryError;

/// reqwest is built without a bundled crypto provider; hoist uses ring. Installing it as the
/// process default is idempotent here and harmless if someone else installed one first.
pub(crate) fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Applies `<certs_dir>/<host>/`: every `*.crt` joins the system roots (Docker merges rather
/// than replaces), and a `*.cert` with the `*.key` of the same name is the client identity.
pub(crate) fn apply_certs_dir(
    mut builder: ClientBuilder,
    certs_dir: &Path,
    host: &str,
) -> Result<ClientBuilder, RegistryError> {
    let dir = certs_dir.join(host);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(builder),
        Err(e) => {
            return Err(RegistryError::Config(format!(
                "reading {}: {e}",
                dir.display()
            )));
        }
    };
    let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    // Deterministic order: with several identities, the first by name wins, every time.
    paths.sort();
    let mut roots = Vec::new();
    let mut identity = None;
    for path in &paths {
        match path.extension().and_then(|e| e.to_str()) {
            Some("crt") => {
                let pem = read(path)?;
                let certs = Certificate::from_pem_bundle(&pem).map_err(|e| {
                    RegistryError::Config(format!(
                        "loading CA certificates {}: {e}",
                        path.display()
                    ))
                })?;
                roots.extend(certs);
            }
            Some("cert") => {
                let key_path = path.with_extension("key");
                if !key_path.exists() {
                    return Err(RegistryError::Config(format!(
                        "missing key {} for client certificate {}. CA certificates must use the extension .crt",
                        key_path.display(),
                        path.display()
                    )));
                }
                if identity.is_none() {
                    let mut pem = read(&key_path)?;
                    pem.push(b'\n');
                    pem.extend(read(path)?);
                    identity = Some(Identity::from_pem(&pem).map_err(|e| {
                        RegistryError::Config(format!(
                            "loading client certificate {}: {e}",
                            path.display()
                        ))
                    })?);
                }
            }
            Some("key") => {
                let cert_path = path.with_extension("cert");
                if !cert_path.exists() {
                    return Err(RegistryError::Config(format!(
                        "missing client certificate {} for key {}",
                        cert_path.display(),
                        path.display()
                    )));
                }
            }
            _ => {}
        }
    }
    if !roots.is_empty() {
        builder = builder.tls_certs_merge(roots);
    }
    if let Some(identity) = identity {
        builder = builder.identity(identity);
    }
    Ok(builder)
}

fn read(path: &Path) -> Result<Vec<u8>, RegistryError> {
    std::fs::read(path)
        .map_err(|e| RegistryError::Config(format!("reading {}: {e}", path.display())))
}
