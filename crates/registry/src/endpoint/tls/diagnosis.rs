//! Why a TLS handshake failed, in words a user can act on: plain HTTP where TLS was expected,
//! an untrusted certificate (where its CA would go), or our own certificate refused.

use super::verifier::CertificateRejected;

/// The first rustls error in `error`'s source chain (`error` itself not included): the request
/// failed in the TLS handshake or the certificate check.
pub(crate) fn failure_in<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut next = error.source();
    while let Some(e) = next {
        if let Some(found) = rustls_error(e) {
            return Some(found);
        }
        next = e.source();
    }
    None
}

/// The rustls error in a chain link; io::Error hides its inner error from `source()`, and
/// hyper-rustls nests io errors.
fn rustls_error<'a>(mut e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    loop {
        if let Some(found) = e.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        e = e.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
}

/// `cause` (the failed request's error chain, in words) explained for a handshake that failed
/// with `failure`.
pub(crate) fn explain(failure: &rustls::Error, cause: String) -> String {
    match failure {
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => format!(
            "TLS handshake failed: {cause} (the registry seems to speak plain HTTP; \
             list it in insecure-registries to allow that)"
        ),
        // Our verifier's own explanation says it all; the chain around it only repeats it.
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))
            if other.0.downcast_ref::<CertificateRejected>().is_some() =>
        {
            format!("TLS handshake failed: {}", other.0)
        }
        rustls::Error::InvalidCertificate(_) => format!(
            "TLS handshake failed: {cause} (add its CA as a .crt file in the certs.d \
             directory for this host, or list it in insecure-registries)"
        ),
        rustls::Error::AlertReceived(
            rustls::AlertDescription::BadCertificate
            | rustls::AlertDescription::CertificateRequired
            | rustls::AlertDescription::UnknownCA
            | rustls::AlertDescription::CertificateUnknown,
        ) => format!(
            "TLS handshake failed: {cause} (the registry refused our side of the handshake; if \
             it requires a client certificate, put one in the certs.d directory for this host \
             as client.cert with its client.key)"
        ),
        _ => format!("TLS handshake failed: {cause}"),
    }
}
