//! Certificate verifiers: the system roots plus certs.d CAs with Go's trusted-leaf rule, and the
//! accept-anything verifier of insecure registries. Refusals are explained in words.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

/// Why a registry's certificate was refused, in words, with what to do about it. It travels
/// inside rustls's error so that the transport error can show it.
#[derive(Debug)]
pub(super) struct CertificateRejected {
    reason: String,
    /// The certs.d directory for the host, where its CA would go.
    dir: PathBuf,
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
pub(super) struct CertsDirVerifier {
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
    pub(super) fn new(
        system: rustls_platform_verifier::Verifier,
        pinned: Vec<CertificateDer<'static>>,
        dir: PathBuf,
    ) -> CertsDirVerifier {
        CertsDirVerifier {
            system,
            pinned,
            dir,
        }
    }

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
pub(super) struct AcceptAnyCertificate {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl AcceptAnyCertificate {
    pub(super) fn new(provider: Arc<rustls::crypto::CryptoProvider>) -> AcceptAnyCertificate {
        AcceptAnyCertificate { provider }
    }
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

    // The certificate is not trusted, but the peer must still prove it holds its key, as Go's
    // InsecureSkipVerify still checks the handshake signature.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
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
