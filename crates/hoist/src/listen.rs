//! The daemon's sockets: unix (mode 0660), TCP, and TCP with TLS, all serving the same app with
//! the same limits (head and body timeouts, a connection cap, dockerd's head size), all stopping
//! when `shutdown` fires.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::config::Settings;

pub enum Endpoint {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

/// dockerd's default TCP host (`opts.DefaultHTTPHost`) and ports, plain and with TLS.
const DEFAULT_TCP_HOST: &str = "localhost";
const DEFAULT_TCP_PORT: u16 = 2375;
const DEFAULT_TLS_PORT: u16 = 2376;

impl Endpoint {
    /// dockerd's host forms: `unix:///path`, `tcp://host:port`. As dockerd's `ParseTCPAddr`, a
    /// missing host is `localhost` (`tcp://:2375` never means every interface) and a missing
    /// port is 2375, or 2376 with TLS.
    pub fn parse(host: &str, tls: bool) -> anyhow::Result<Endpoint> {
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
        bail!("invalid host {host:?}: only unix:// and tcp:// listeners are supported")
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

fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}

/// Binds every endpoint before serving any, so a bad one fails start-up cleanly.
pub async fn bind_all(settings: &Settings) -> anyhow::Result<Vec<Bound>> {
    let tls = if settings.tls_enabled() {
        Some(crate::tls::server_config(settings)?)
    } else {
        None
    };
    let mut bound = Vec::new();
    for host in &settings.hosts {
        match Endpoint::parse(host, tls.is_some())? {
            Endpoint::Unix(path) => bound.push(Bound::Unix(bind_unix(&path)?, path)),
            Endpoint::Tcp(addr) => {
                if tls.is_none() && !is_loopback(addr.ip()) {
                    if settings.tls == Some(false) {
                        tracing::warn!(
                            "listening on {host} without TLS, as --tls=false asks: anyone who can reach it can use \
                             this daemon, and registry credentials sent to it travel in clear text"
                        );
                    } else {
                        bail!(
                            "refusing to listen on {host} without TLS: registry credentials travel over this socket. \
                             Use --tlsverify with --tlscacert, --tlscert and --tlskey, or pass --tls=false to accept the risk"
                        );
                    }
                }
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {host}"))?;
                match &tls {
                    Some(config) => bound.push(Bound::Tls(
                        listener,
                        tokio_rustls::TlsAcceptor::from(Arc::clone(config)),
                    )),
                    None => bound.push(Bound::Tcp(listener)),
                }
            }
        }
        tracing::info!(%host, "API listening");
    }
    Ok(bound)
}

pub enum Bound {
    Unix(tokio::net::UnixListener, PathBuf),
    Tcp(tokio::net::TcpListener),
    Tls(tokio::net::TcpListener, tokio_rustls::TlsAcceptor),
}

fn bind_unix(path: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    if path.exists() {
        // A socket someone still answers on belongs to a running daemon; a dead one is left over.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("{} is in use by another daemon", path.display());
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    Ok(listener)
}

/// The listener's bounds, so that no client can hold a connection, a request or its temporary
/// files forever. daemon.json's `api-limits` changes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// How long a client may take to send a request's head (request line and headers), and how
    /// long a kept-alive connection may sit idle before the next one: dockerd's
    /// `ReadHeaderTimeout`, 5 minutes.
    pub header_read_timeout: Duration,
    /// How long a request body may go without a byte before the request fails: a `docker load`
    /// whose client went silent must not hold its temporary file and connection forever.
    pub body_idle_timeout: Duration,
    /// How long a TLS client may take to complete its handshake.
    pub tls_handshake_timeout: Duration,
    /// Connections served at once, over all listeners; beyond it, new connections wait in the
    /// kernel's accept queue until one closes.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(5 * 60),
            body_idle_timeout: Duration::from_secs(5 * 60),
            tls_handshake_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// The largest request head (request line and headers): Go's `DefaultMaxHeaderBytes` plus the
/// 4 KiB it allows on top, so that hoist refuses exactly the heads dockerd refuses.
const MAX_HEAD_BYTES: usize = (1 << 20) + 4096;
/// Headers per request. Go counts only bytes; hyper also needs a count, set where no
/// realistic client reaches it.
const MAX_HEADERS: usize = 8192;

/// The daemon-wide connection budget, shared by every listener.
#[derive(Clone)]
pub struct ConnectionSlots(Arc<Semaphore>);

impl ConnectionSlots {
    pub fn new(limits: &Limits) -> ConnectionSlots {
        ConnectionSlots(Arc::new(Semaphore::new(limits.max_connections)))
    }
}

/// A connection's byte stream, whatever the listener.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// Serves until `shutdown` fires, then stops accepting and lets running requests finish: each
/// connection is told to close after its current request.
pub async fn serve(
    bound: Bound,
    app: Router,
    shutdown: CancellationToken,
    limits: Limits,
    slots: ConnectionSlots,
) -> anyhow::Result<()> {
    let app = app.layer(RequestBodyTimeoutLayer::new(limits.body_idle_timeout));
    let connections = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = Arc::clone(&slots.0).acquire_owned() => permit.context("connection slots closed")?,
        };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = bound.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of descriptors or a connection reset before it was accepted: the
                // listener itself is fine. A pause keeps a persistent error from spinning.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let tls = match &bound {
            Bound::Tls(_, acceptor) => Some(acceptor.clone()),
            _ => None,
        };
        let (app, shutdown) = (app.clone(), shutdown.clone());
        connections.spawn(async move {
            let _permit = permit;
            let stream: Box<dyn Stream> = match tls {
                None => stream,
                Some(acceptor) => {
                    match tokio::time::timeout(
                        limits.tls_handshake_timeout,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(tls)) => Box::new(tls),
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = serve_connection(stream, app, shutdown, &limits).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    if let Bound::Unix(_, path) = &bound {
        let _ = std::fs::remove_file(path);
    }
    connections.close();
    connections.wait().await;
    Ok(())
}

impl Bound {
    /// The next connection, as a byte stream (TLS not yet negotiated) and a name for logs.
    async fn accept(&self) -> std::io::Result<(Box<dyn Stream>, String)> {
        match self {
            Bound::Unix(listener, path) => {
                let (stream, _) = listener.accept().await?;
                Ok((Box::new(stream), path.display().to_string()))
            }
            Bound::Tcp(listener) | Bound::Tls(listener, _) => {
                let (stream, peer) = listener.accept().await?;
                Ok((Box::new(stream), peer.to_string()))
            }
        }
    }
}

/// One HTTP/1.1 connection with the listener's limits; on shutdown it finishes the request in
/// progress and closes.
async fn serve_connection(
    stream: Box<dyn Stream>,
    app: Router,
    shutdown: CancellationToken,
    limits: &Limits,
) -> Result<(), hyper::Error> {
    let service = hyper_util::service::TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(MAX_HEAD_BYTES)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS);
    let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => result,
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, tls: bool) -> SocketAddr {
        match Endpoint::parse(host, tls).unwrap() {
            Endpoint::Tcp(addr) => addr,
            Endpoint::Unix(path) => panic!("{host} parsed as unix {}", path.display()),
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
