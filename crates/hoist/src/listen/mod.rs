//! The daemon's sockets: unix (mode 0660, group as `-G` says), TCP, TCP with TLS, and sockets
//! inherited from systemd (`fd://`), all serving the same app with the same bounds, all stopping
//! together (`Stopping`).

mod endpoint;
mod group;
mod inherited;
mod serve;

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::config::{Settings, SocketGroup};
use endpoint::Endpoint;
use inherited::{InheritedSocket, InheritedSockets};
pub use serve::{ConnectionSlots, Stopping, serve};

/// Binds every endpoint before serving any, so a bad one fails start-up cleanly.
pub async fn bind_all(settings: &Settings) -> anyhow::Result<Vec<Bound>> {
    let tls = if settings.tls_enabled() {
        Some(crate::tls::server_config(settings)?)
    } else {
        None
    };
    let tcp = TcpBinding { settings, tls };
    let mut inherited = InheritedSockets::from_env();
    let mut bound = Vec::new();
    for host in &settings.hosts {
        match Endpoint::parse(host, tcp.tls.is_some())? {
            Endpoint::Unix(path) => {
                let listener = bind_unix(&path, &settings.group)?;
                bound.push(Bound::Unix(listener, Some(path)));
            }
            Endpoint::Tcp(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {host}"))?;
                bound.push(tcp.bound(host, listener)?);
            }
            Endpoint::Inherited(which) => {
                for socket in inherited.take(which)? {
                    bound.push(match socket {
                        InheritedSocket::Unix(listener) => Bound::Unix(listener, None),
                        InheritedSocket::Tcp(listener) => tcp.bound(host, listener)?,
                    });
                }
            }
        }
        tracing::info!(%host, "API listening");
    }
    Ok(bound)
}

/// Checks every `-H` form without binding anything (`--validate`).
pub fn check_hosts(settings: &Settings) -> anyhow::Result<()> {
    for host in &settings.hosts {
        Endpoint::parse(host, settings.tls_enabled())?;
    }
    Ok(())
}

/// The unix sockets hoistd creates for its hosts (not those inherited from systemd), for an
/// exit that cannot wait for the listeners to remove them.
pub fn created_sockets(settings: &Settings) -> Vec<PathBuf> {
    settings
        .hosts
        .iter()
        .filter_map(|host| match Endpoint::parse(host, settings.tls_enabled()) {
            Ok(Endpoint::Unix(path)) => Some(path),
            _ => None,
        })
        .collect()
}

/// A bound socket, ready to serve.
pub enum Bound {
    /// With the path of a socket hoistd created (removed when it stops); none for one it
    /// inherited.
    Unix(tokio::net::UnixListener, Option<PathBuf>),
    Tcp(tokio::net::TcpListener),
    Tls(tokio::net::TcpListener, tokio_rustls::TlsAcceptor),
}

/// What every TCP listener, bound or inherited, is served with.
struct TcpBinding<'a> {
    settings: &'a Settings,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl TcpBinding<'_> {
    /// Registry credentials travel over the API: a listener others can reach needs TLS, unless
    /// `--tls=false` says the risk is accepted.
    fn bound(&self, host: &str, listener: tokio::net::TcpListener) -> anyhow::Result<Bound> {
        let addr = listener
            .local_addr()
            .with_context(|| format!("the address of {host}"))?;
        if self.tls.is_none() && !is_loopback(addr.ip()) {
            if self.settings.tls == Some(false) {
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
        Ok(match &self.tls {
            Some(config) => Bound::Tls(
                listener,
                tokio_rustls::TlsAcceptor::from(Arc::clone(config)),
            ),
            None => Bound::Tcp(listener),
        })
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

fn bind_unix(path: &Path, group: &SocketGroup) -> anyhow::Result<tokio::net::UnixListener> {
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
    group.apply(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    Ok(listener)
}
