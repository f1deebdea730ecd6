//! Kept-alive connections of the sendfile upload path, and the hosts it found to be this one.

use std::collections::{HashMap, HashSet};
use std::io::ErrorKind;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::response::recv_now;

/// Idle connections kept per host: the engine's default upload concurrency.
const MAX_IDLE_PER_HOST: usize = 5;
/// The uploads of a push follow one another within milliseconds. A connection idle for longer
/// than this is more likely to be closed by the server (or a load balancer) than reused soon,
/// and it holds a descriptor, so it is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(3);

type IdleConnections = HashMap<String, Vec<(TcpStream, Instant)>>;

/// Kept-alive connections by `host:port`.
#[derive(Default)]
pub(crate) struct ConnectionPool {
    idle: Arc<Mutex<IdleConnections>>,
    /// `host:port`s whose connections ended on this host, for which the path declines.
    this_host: Mutex<HashSet<String>>,
}

impl ConnectionPool {
    pub(super) fn is_this_host(&self, key: &str) -> bool {
        let this_host = self.this_host.lock().unwrap_or_else(|p| p.into_inner());
        this_host.contains(key)
    }

    pub(super) fn found_this_host(&self, key: String) {
        let mut this_host = self.this_host.lock().unwrap_or_else(|p| p.into_inner());
        this_host.insert(key);
    }

    /// The most recently used live connection to `key`, if any.
    pub(super) fn take(&self, key: &str) -> Option<TcpStream> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let connections = idle.get_mut(key)?;
        while let Some((stream, since)) = connections.pop() {
            if since.elapsed() < IDLE_TIMEOUT && is_quiet(&stream) {
                return Some(stream);
            }
        }
        None
    }

    /// Keeps `stream` for reuse, and closes it once it has idled for [`IDLE_TIMEOUT`].
    pub(super) fn put(&self, key: String, stream: TcpStream) {
        {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            let connections = idle.entry(key).or_default();
            if connections.len() >= MAX_IDLE_PER_HOST {
                return;
            }
            connections.push((stream, Instant::now()));
        }
        let idle = Arc::clone(&self.idle);
        tokio::spawn(async move {
            tokio::time::sleep(IDLE_TIMEOUT).await;
            let mut idle = idle.lock().unwrap_or_else(|p| p.into_inner());
            idle.retain(|_, connections| {
                connections.retain(|(_, since)| since.elapsed() < IDLE_TIMEOUT);
                !connections.is_empty()
            });
        });
    }
}

/// An idle connection has nothing to say: any byte, end of stream or error means the server
/// closed it (or broke the protocol), and it must not carry another request.
fn is_quiet(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(recv_now(stream, &mut probe, libc::MSG_PEEK), Err(e) if e.kind() == ErrorKind::WouldBlock)
}
