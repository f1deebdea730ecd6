//! Where to listen: dockerd's `-H` forms.

use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::path::PathBuf;

use anyhow::{Context, bail};

pub enum Endpoint {
    Unix(PathBuf),
    Tcp(SocketAddr),
    /// Sockets inherited from the service manager (`fd://`): all of them, or descriptor N
    /// (`fd://N`).
    Inherited(Option<RawFd>),
}

/// dockerd's default TCP host (`opts.DefaultHTTPHost`) and ports, plain and with TLS.
const DEFAULT_TCP_HOST: &str = "localhost";
const DEFAULT_TCP_PORT: u16 = 2375;
const DEFAULT_TLS_PORT: u16 = 2376;

impl Endpoint {
    /// dockerd's host forms: `unix:///path`, `tcp://host:port`, `fd://` and `fd://N`. As
    /// dockerd's `ParseTCPAddr`, a missing host is `localhost` (`tcp://:2375` never means every
    /// interface) and a missing port is 2375, or 2376 with TLS.
    pub fn parse(host: &str, tls: bool) -> anyhow::Result<Endpoint> {
        if let Some(fd) = host.strip_prefix("fd://") {
            if fd.is_empty() {
                return Ok(Endpoint::Inherited(None));
            }
            let fd = fd
                .parse::<RawFd>()
                .with_context(|| format!("invalid host {host:?}: expected fd:// or fd://N"))?;
            return Ok(Endpoint::Inherited(Some(fd)));
        }
        if let Some(path) = host.strip_prefix("unix://") {
            if path.is_empty() {
                bail!("invalid host {host:?}: a unix socket needs a path");
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        if let Some(addr) = host.strip_prefix("tcp://") {
            let addr = addr.trim_end_matches('/');
            let (name, port) = split_host_port(addr)
                .with_context(|| format!("invalid host {host:?}: expected tcp://host:port"))?;
            let name = if name.is_empty() {
                DEFAULT_TCP_HOST
            } else {
                name
            };
            let port = match port {
                Some(port) => port,
                None if tls => DEFAULT_TLS_PORT,
                None => DEFAULT_TCP_PORT,
            };
            use std::net::ToSocketAddrs;
            let resolved = (name, port)
                .to_socket_addrs()
                .with_context(|| format!("invalid host {host:?}: cannot resolve {name:?}"))?
                .next()
                .with_context(|| format!("invalid host {host:?}: {name:?} has no address"))?;
            return Ok(Endpoint::Tcp(resolved));
        }
        bail!("invalid host {host:?}: only unix://, tcp:// and fd:// listeners are supported")
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`, with either part possibly empty; `None` for
/// a malformed address or port.
fn split_host_port(addr: &str) -> Option<(&str, Option<u16>)> {
    let (name, port) = if let Some(rest) = addr.strip_prefix('[') {
        let (name, after) = rest.split_once(']')?;
        match after {
            "" | ":" => (name, None),
            _ => (name, Some(after.strip_prefix(':')?)),
        }
    } else {
        match addr.split_once(':') {
            Some((_, port)) if port.contains(':') => return None,
            Some((name, "")) => (name, None),
            Some((name, port)) => (name, Some(port)),
            None => (addr, None),
        }
    };
    let port = match port {
        Some(text) => Some(text.parse::<u16>().ok()?),
        None => None,
    };
    Some((name, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, tls: bool) -> SocketAddr {
        match Endpoint::parse(host, tls).unwrap() {
            Endpoint::Tcp(addr) => addr,
            _ => panic!("{host} is not a TCP address"),
        }
    }

    #[test]
    fn tcp_hosts_default_as_dockerd_does() {
        assert_eq!(tcp("tcp://:2380", false).port(), 2380);
        assert!(tcp("tcp://:2380", false).ip().is_loopback());
        assert_eq!(tcp("tcp://127.0.0.1", false).port(), 2375);
        assert_eq!(tcp("tcp://127.0.0.1:", true).port(), 2376);
        assert_eq!(
            tcp("tcp://0.0.0.0:1234/", false),
            "0.0.0.0:1234".parse().unwrap()
        );
        assert_eq!(tcp("tcp://[::1]:99", false), "[::1]:99".parse().unwrap());
        assert_eq!(tcp("tcp://[::1]", true), "[::1]:2376".parse().unwrap());
    }

    #[test]
    fn inherited_sockets_are_all_or_one_descriptor() {
        assert!(matches!(
            Endpoint::parse("fd://", false).unwrap(),
            Endpoint::Inherited(None)
        ));
        assert!(matches!(
            Endpoint::parse("fd://3", false).unwrap(),
            Endpoint::Inherited(Some(3))
        ));
        assert!(Endpoint::parse("fd://three", false).is_err());
    }

    #[test]
    fn malformed_tcp_hosts_are_refused_with_the_form_expected() {
        for bad in [
            "tcp://host:port",
            "tcp://:99999",
            "tcp://::1:80",
            "tcp://[::1",
        ] {
            let e = Endpoint::parse(bad, false).err().unwrap();
            assert!(
                format!("{e:#}").contains("expected tcp://host:port"),
                "{bad}: {e:#}"
            );
        }
    }
}
