//! Serving the API on bound sockets, with the listener's bounds: head and body timeouts, a TLS
//! handshake timeout, a connection cap and dockerd's head size.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::timeout::RequestBodyTimeoutLayer;

use super::Bound;
use crate::config::Limits;

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

/// When a listener stops: `accepting` fires to stop accepting and let running requests finish
/// (each connection closes after its current request); `abort` drops the connections still
/// open, which cancels what their requests were doing.
#[derive(Clone)]
pub struct Stopping {
    pub accepting: CancellationToken,
    pub abort: CancellationToken,
}

/// Serves until `stopping.accepting` fires, then stops accepting and returns once every
/// connection has ended (or was dropped by `stopping.abort`).
pub async fn serve(
    bound: Bound,
    app: Router,
    stopping: Stopping,
    limits: Limits,
    slots: ConnectionSlots,
) -> anyhow::Result<()> {
    let shutdown = stopping.accepting.clone();
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
        let (app, stopping) = (app.clone(), stopping.clone());
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
            if let Err(e) = serve_connection(stream, app, stopping, &limits).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    // A socket hoistd created goes with it; an inherited one belongs to the service manager.
    if let Bound::Unix(_, Some(path)) = &bound {
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
                enlarge_send_buffer(&stream);
                let name = match path {
                    Some(path) => path.display().to_string(),
                    None => "an inherited unix socket".to_owned(),
                };
                Ok((Box::new(stream), name))
            }
            Bound::Tcp(listener) | Bound::Tls(listener, _) => {
                let (stream, peer) = listener.accept().await?;
                Ok((Box::new(stream), peer.to_string()))
            }
        }
    }
}

/// The send buffer asked for on a unix socket connection. A bulk response (`docker save`) is
/// written faster than the docker CLI copies it to its file; with the default buffer (208 KiB)
/// the client empties it every few reads and waits for hoistd to be scheduled again, which
/// makes a 1 GiB save about a quarter slower. The kernel doubles the value and caps it at
/// `net.core.wmem_max`; memory is only taken by bytes a client has not read yet (at most
/// 2 MiB a connection, within the connection cap). TCP connections keep the kernel's
/// autotuning, which a fixed size would turn off.
const UNIX_SEND_BUFFER: usize = 1 << 20;

fn enlarge_send_buffer(stream: &tokio::net::UnixStream) {
    if let Err(error) = rustix::net::sockopt::set_socket_send_buffer_size(stream, UNIX_SEND_BUFFER)
    {
        // Advisory: the connection works with the default buffer, only slower for bulk bodies.
        tracing::debug!(%error, "enlarging a connection's send buffer failed");
    }
}

/// One HTTP/1.1 connection with the listener's limits; on shutdown it finishes the request in
/// progress and closes, unless aborted first.
async fn serve_connection(
    stream: Box<dyn Stream>,
    app: Router,
    stopping: Stopping,
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
        _ = stopping.accepting.cancelled() => {
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                result = connection => result,
                // Dropping the connection drops its request's response body, which cancels
                // the push, pull or load behind it.
                _ = stopping.abort.cancelled() => Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unix_connections_get_the_larger_send_buffer() {
        let (ours, _theirs) = tokio::net::UnixStream::pair().unwrap();
        let before = rustix::net::sockopt::socket_send_buffer_size(&ours).unwrap();
        enlarge_send_buffer(&ours);
        let after = rustix::net::sockopt::socket_send_buffer_size(&ours).unwrap();
        // The kernel doubles the request and caps it at twice net.core.wmem_max.
        let wmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/wmem_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(
            after,
            2 * UNIX_SEND_BUFFER.min(wmem_max),
            "before: {before}"
        );
        assert!(
            after > before || before >= 2 * wmem_max,
            "{before} -> {after}"
        );
    }
}
