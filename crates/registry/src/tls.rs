//! TLS for registry hosts: Docker's `certs.d` layout, insecure registries, and a verifier that
//! accepts what Go (and so dockerd) accepts.
//!
//! The rustls configuration is built here rather than by reqwest so that certificate checks are
//! ours to explain and to extend: a self-signed CA certificate used as the server's own
//! certificate (what `openssl req -x509` makes) is accepted when that very certificate is in the
//! host's certs.d directory, as Go accepts a leaf that is itself a trusted root.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use crate::RegistryError;

/// reqwest is built without a bundled crypto provider; hoist uses ring. Installing it as the
/// process default is idempotent here and harmless if someone else installed one first.
pub(crate) fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
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
    pub(crate) fn load(certs_dir: &Path, host: &str) -> Result<CertsDir, RegistryError> {
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
    pub(crate) fn client_config(
        self,
        insecure: bool,
    ) -> Result<rustls::ClientConfig, RegistryError> {
        let provider = provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| config_error(format!("TLS versions: {e}")))?;
        let verifier: Arc<dyn ServerCertVerifier> = if insecure {
            Arc::new(AcceptAnyCertificate { provider })
        } else {
            let system = rustls_platform_verifier::Verifier::new_with_extra_roots(
                self.roots.clone(),
                provider,
            )
            .map_err(|e| config_error(format!("loading trusted certificates: {e}")))?;
            Arc::new(CertsDirVerifier {
                system,
                pinned: self.roots,
                dir: self.dir,
            })
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
        // HTTP/2 flow control throttles large uploads (buildkit and ggcr measured it).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, RegistryError> {
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

fn config_error(message: String) -> RegistryError {
    RegistryError::Config(message)
}

/// Why a registry's certificate was refused, in words, with what to do about it. It travels
/// inside rustls's error so that the transport error can show it.
#[derive(Debug)]
pub(crate) struct CertificateRejected {
    pub(crate) reason: String,
    /// The certs.d directory for the host, where its CA would go.
    pub(crate) dir: PathBuf,
}

impl fmt::Display for CertificateRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (to trust it, put its CA certificate in {}/ca.crt, or list the registry in insecure-registries)",
            self.reason,
            self.dir.display()
        )
    }
}

impl std::error::Error for CertificateRejected {}

/// The system roots plus certs.d CAs, and Go's rule that a certificate which is itself one of
/// the trusted certs.d certificates needs no chain (rustls otherwise refuses a CA certificate
/// as a server's own with `CaUsedAsEndEntity`).
#[derive(Debug)]
struct CertsDirVerifier {
    system: rustls_platform_verifier::Verifier,
    pinned: Vec<CertificateDer<'static>>,
    dir: PathBuf,
}

impl ServerCertVerifier for CertsDirVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let error = match self.system.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(verified) => return Ok(verified),
            Err(error) => error,
        };
        // webpki checks the validity period before the CA flag, so a certificate refused for
        // the flag alone is in date.
        if is_ca_used_as_end_entity(&error)
            && self
                .pinned
                .iter()
                .any(|pinned| pinned.as_ref() == end_entity.as_ref())
        {
            let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
            return match rustls::client::verify_server_name(&parsed, server_name) {
                Ok(()) => Ok(ServerCertVerified::assertion()),
                Err(name_error) => Err(self.rejected(&name_error)),
            };
        }
        Err(self.rejected(&error))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.system.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.system.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.system.supported_verify_schemes()
    }
}

impl CertsDirVerifier {
    fn rejected(&self, error: &rustls::Error) -> rustls::Error {
        let rustls::Error::InvalidCertificate(certificate_error) = error else {
            return error.clone();
        };
        let rejection = CertificateRejected {
            reason: describe(certificate_error),
            dir: self.dir.clone(),
        };
        rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
            rejection,
        ))))
    }
}

fn is_ca_used_as_end_entity(error: &rustls::Error) -> bool {
    match error {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => matches!(
            other.0.downcast_ref::<webpki::Error>(),
            Some(webpki::Error::CaUsedAsEndEntity)
        ),
        _ => false,
    }
}

/// A certificate error as a person would say it (Go's x509 wording where there is one).
fn describe(error: &CertificateError) -> String {
    match error {
        CertificateError::UnknownIssuer => "certificate signed by unknown authority".to_owned(),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "certificate has expired".to_owned()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "certificate is not valid yet".to_owned()
        }
        CertificateError::NotValidForName => {
            "certificate is not valid for this host name".to_owned()
        }
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => format!(
            "certificate is valid for {}, not {}",
            if presented.is_empty() {
                "no name".to_owned()
            } else {
                presented
                    .iter()
                    .map(|name| plain_name(name))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            server_name_text(expected)
        ),
        CertificateError::Other(other)
            if matches!(
                other.0.downcast_ref::<webpki::Error>(),
                Some(webpki::Error::CaUsedAsEndEntity)
            ) =>
        {
            "the server's certificate is a self-signed CA certificate that is not trusted for this host"
                .to_owned()
        }
        other => format!("invalid certificate: {other:?}"),
    }
}

/// `DnsName("a.example")` → `a.example`, `IpAddress(10.0.0.1)` → `10.0.0.1` (webpki's Debug
/// forms of certificate names).
fn plain_name(presented: &str) -> &str {
    presented
        .strip_prefix("DnsName(\"")
        .and_then(|rest| rest.strip_suffix("\")"))
        .or_else(|| {
            presented
                .strip_prefix("IpAddress(")
                .and_then(|rest| rest.strip_suffix(')'))
        })
        .unwrap_or(presented)
}

fn server_name_text(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(dns) => dns.as_ref().to_owned(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        other => format!("{other:?}"),
    }
}

/// An insecure registry: any certificate, any signature. Plain-HTTP fallback is decided
/// elsewhere; this only lets HTTPS to such a host proceed.
#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_names_read_plainly() {
        assert_eq!(plain_name("DnsName(\"a.example\")"), "a.example");
        assert_eq!(plain_name("IpAddress(10.0.0.1)"), "10.0.0.1");
        assert_eq!(plain_name("DirectoryName"), "DirectoryName");
        let error = CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("127.0.0.1").unwrap(),
            presented: vec!["DnsName(\"registry.example\")".into()],
        };
        assert_eq!(
            describe(&error),
            "certificate is valid for registry.example, not 127.0.0.1"
        );
    }
}
