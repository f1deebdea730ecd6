//! A host's certs.d directory (`*.crt` CAs, `*.cert`/`*.key` client identity) and the rustls
//! configuration built from it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::verifier::{AcceptAnyCertificate, CertsDirVerifier};
use crate::config::ConfigError;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(super::crypto_provider())
}

/// What a host's certs.d directory holds.
#[derive(Default)]
pub(crate) struct CertsDir {
    /// Where it was read from, for messages.
    dir: PathBuf,
    /// `*.crt`: CA certificates added to the system roots (Docker merges rather than replaces).
    roots: Vec<CertificateDer<'static>>,
    /// The first `*.cert` by name with its `*.key`: the client certificate for mutual TLS.
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

impl CertsDir {
    /// Reads `<certs_dir>/<host>/`; a missing directory is empty.
    pub(crate) fn load(certs_dir: &Path, host: &str) -> Result<CertsDir, ConfigError> {
        let dir = certs_dir.join(host);
        let mut loaded = CertsDir {
            dir: dir.clone(),
            ..CertsDir::default()
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(loaded),
            Err(e) => return Err(config_error(format!("reading {}: {e}", dir.display()))),
        };
        let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        // Deterministic order: with several identities, the first by name wins, every time.
        paths.sort();
        for path in &paths {
            match path.extension().and_then(|e| e.to_str()) {
                Some("crt") => loaded.roots.extend(read_certs(path, "CA certificates")?),
                Some("cert") => {
                    let key_path = path.with_extension("key");
                    if !key_path.exists() {
                        return Err(config_error(format!(
                            "missing key {} for client certificate {}. CA certificates must use the extension .crt",
                            key_path.display(),
                            path.display()
                        )));
                    }
                    if loaded.identity.is_none() {
                        let chain = read_certs(path, "client certificate")?;
                        let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| {
                            config_error(format!("loading key {}: {e}", key_path.display()))
                        })?;
                        loaded.identity = Some((chain, key));
                    }
                }
                Some("key") => {
                    let cert_path = path.with_extension("cert");
                    if !cert_path.exists() {
                        return Err(config_error(format!(
                            "missing client certificate {} for key {}",
                            cert_path.display(),
                            path.display()
                        )));
                    }
                }
                _ => {}
            }
        }
        Ok(loaded)
    }

    /// Adds `other`'s CAs, and its client certificate when this directory has none. A token
    /// server is reached with its registry's TLS material as well as its own, as dockerd does
    /// (it uses the registry's transport for the token request).
    pub(crate) fn merge(mut self, other: CertsDir) -> CertsDir {
        for root in other.roots {
            if !self.roots.contains(&root) {
                self.roots.push(root);
            }
        }
        if self.identity.is_none() {
            self.identity = other.identity;
        }
        self
    }

    /// The rustls configuration for a host: verified against the system roots plus these CAs,
    /// or not verified at all for an insecure registry; HTTP/1.1 only.
    pub(crate) fn client_config(self, insecure: bool) -> Result<rustls::ClientConfig, ConfigError> {
        let provider = provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| config_error(format!("TLS versions: {e}")))?;
        let verifier: Arc<dyn ServerCertVerifier> = if insecure {
            Arc::new(AcceptAnyCertificate::new(provider))
        } else {
            let system = rustls_platform_verifier::Verifier::new_with_extra_roots(
                self.roots.clone(),
                provider,
            )
            .map_err(|e| config_error(format!("loading trusted certificates: {e}")))?;
            Arc::new(CertsDirVerifier::new(system, self.roots, self.dir))
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match self.identity {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| config_error(format!("client certificate: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        // HTTP/1.1 only: HTTP/2 flow control windows throttle large blob uploads.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// What certs.d directories hold, as far as a change to them shows: every file's name, size,
/// modification time and inode. A file edited, replaced, added or removed changes it; reading
/// it costs a directory listing and a `stat` per file, not a parse of any certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CertsFingerprint(Vec<(PathBuf, u64, Option<std::time::SystemTime>, u64)>);

impl CertsFingerprint {
    /// Of `<certs_dir>/<host>/` for each of `hosts`; a missing directory adds nothing.
    pub(crate) fn of(certs_dir: &Path, hosts: &[&str]) -> CertsFingerprint {
        use std::os::unix::fs::MetadataExt;
        let mut files = Vec::new();
        for host in hosts {
            let Ok(entries) = std::fs::read_dir(certs_dir.join(host)) else {
                continue;
            };
            for entry in entries.flatten() {
                // Followed like the reader follows it: a symlink to a renewed file counts.
                if let Ok(meta) = std::fs::metadata(entry.path()) {
                    files.push((entry.path(), meta.len(), meta.modified().ok(), meta.ino()));
                }
            }
        }
        files.sort();
        CertsFingerprint(files)
    }
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| config_error(format!("loading {what} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(config_error(format!(
            "loading {what} {}: no PEM certificate in it",
            path.display()
        )));
    }
    Ok(certs)
}

fn config_error(message: String) -> ConfigError {
    ConfigError(message)
}
