//! Whether an insecure registry's port completes a TLS handshake, decided within dockerd's TLS
//! handshake timeout. An insecure registry is tried over HTTPS first and over plain HTTP when
//! that fails; a port that accepts connections but never answers the handshake would otherwise
//! hold that first contact for the whole connect bound before plain HTTP is tried.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::insecure::host_without_port;

/// dockerd's registry transport `TLSHandshakeTimeout`.
pub(crate) const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS settings an endpoint's HTTPS requests use, for a handshake on its own.
pub(crate) struct HandshakeProbe {
    config: Arc<rustls::ClientConfig>,
    /// The bound on the TCP connection before the handshake, the endpoint's own.
    connect_timeout: Duration,
}

impl HandshakeProbe {
    pub(crate) fn new(
        config: Arc<rustls::ClientConfig>,
        connect_timeout: Duration,
    ) -> HandshakeProbe {
        HandshakeProbe {
            config,
            connect_timeout,
        }
    }

    /// True when `host` (`host[:port]`, 443 by default) accepted a connection and then let the
    /// handshake time out: HTTPS is hopeless there. Every other outcome (done, refused,
    /// unreachable) is false, and left to the request itself to report.
    pub(crate) async fn handshake_times_out(&self, host: &str) -> bool {
        let name = host_without_port(host);
        let port = port_of(host).unwrap_or(443);
        let Ok(server_name) = ServerName::try_from(name.to_owned()) else {
            return false;
        };
        let connecting = TcpStream::connect((name, port));
        let Ok(Ok(stream)) = tokio::time::timeout(self.connect_timeout, connecting).await else {
            return false;
        };
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&self.config));
        let handshake = connector.connect(server_name, stream);
        tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake)
            .await
            .is_err()
    }
}

/// The port of `host:port` or `[v6]:port`.
fn port_of(host: &str) -> Option<u16> {
    let (before, port) = host.rsplit_once(':')?;
    if before.contains(':') && !before.ends_with(']') {
        // A bare IPv6 address has no port.
        return None;
    }
    port.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_read_from_every_host_form() {
        assert_eq!(port_of("reg:5000"), Some(5000));
        assert_eq!(port_of("reg"), None);
        assert_eq!(port_of("[::1]:5000"), Some(5000));
        assert_eq!(port_of("::1"), None);
    }
}
