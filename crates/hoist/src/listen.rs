//! The daemon's sockets: unix (mode 0660), TCP, and TCP with TLS, all serving the same app, all
//! stopping when `shutdown` fires.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;

pub enum Endpoint {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl Endpoint {
    /// dockerd's host forms: `unix:///path`, `tcp://host:port`.
    pub fn parse(host: &str) -> anyhow::Result<Endpoint> {
        if let Some(path) = host.strip_prefix("unix://") {
            if path.is_empty() {
                bail!("invalid host {host:?}: a unix socket needs a path");
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        if let Some(addr) = host.strip_prefix("tcp://") {
            let addr = addr.trim_end_matches('/');
            let with_port = if addr
                .rsplit_once(':')
                .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
                && !addr.ends_with(']')
            {
                addr.to_owned()
            } else {
                format!("{addr}:2375")
            };
            use std::net::ToSocketAddrs;
            let resolved = with_port
                .to_socket_addrs()
                .with_context(|| format!("invalid host {host:?}"))?
                .next()
                .with_context(|| format!("invalid host {host:?}: no address"))?;
            return Ok(Endpoint::Tcp(resolved));
        }
        bail!("invalid host {host:?}: only unix:// and tcp:// listeners are supported")
    }
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
        match Endpoint::parse(host)? {
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

/// Serves until `shutdown` fires, then lets running requests finish (each server stops
/// accepting at once).
pub async fn serve(bound: Bound, app: Router, shutdown: CancellationToken) -> anyhow::Result<()> {
    match bound {
        Bound::Unix(listener, path) => {
            let result = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
            let _ = std::fs::remove_file(&path);
            result.context("unix socket server failed")
        }
        Bound::Tcp(listener) => axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .context("TCP server failed"),
        Bound::Tls(listener, acceptor) => serve_tls(listener, acceptor, app, shutdown).await,
    }
}

/// axum::serve has no TLS, so TLS connections are accepted here and handed to hyper.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let tracker = tokio_util::task::TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a TLS connection failed");
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tracker.spawn(async move {
            let tls = match acceptor.accept(stream).await {
                Ok(tls) => tls,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let io = hyper_util::rt::TokioIo::new(tls);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await
            {
                tracing::debug!(%peer, error = %e, "TLS connection ended with an error");
            }
        });
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}
