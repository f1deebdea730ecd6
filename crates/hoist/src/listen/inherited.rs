//! Sockets inherited from the service manager (`LISTEN_FDS` and `LISTEN_PID`, systemd's socket
//! activation), for `-H fd://` (all of them) and `-H fd://N` (descriptor N), as dockerd takes
//! them.

use std::os::fd::RawFd;

use anyhow::{Context, bail};

/// The first inherited descriptor (systemd's `SD_LISTEN_FDS_START`).
const FIRST_INHERITED_FD: RawFd = 3;

pub(super) enum InheritedSocket {
    Unix(tokio::net::UnixListener),
    Tcp(tokio::net::TcpListener),
}

/// The inherited sockets not yet taken.
pub(super) struct InheritedSockets(listenfd::ListenFd);

impl InheritedSockets {
    pub(super) fn from_env() -> InheritedSockets {
        InheritedSockets(listenfd::ListenFd::from_env())
    }

    /// Descriptor `fd`, or every socket not taken yet when `None`.
    pub(super) fn take(&mut self, fd: Option<RawFd>) -> anyhow::Result<Vec<InheritedSocket>> {
        let inherited = self.0.len();
        if inherited == 0 {
            bail!(
                "no sockets found via socket activation: make sure the service was started by systemd"
            );
        }
        let Some(fd) = fd else {
            let mut sockets = Vec::new();
            for index in 0..inherited {
                if let Some(socket) = self.take_index(index)? {
                    sockets.push(socket);
                }
            }
            return Ok(sockets);
        };
        let index = usize::try_from(fd - FIRST_INHERITED_FD)
            .ok()
            .filter(|index| *index < inherited);
        match index {
            Some(index) => match self.take_index(index)? {
                Some(socket) => Ok(vec![socket]),
                None => bail!("socket fd://{fd} is named twice"),
            },
            None => bail!(
                "too large fd value: fd://{fd}: only descriptors {FIRST_INHERITED_FD} to {} were inherited",
                FIRST_INHERITED_FD + inherited as RawFd - 1
            ),
        }
    }

    /// The socket at `index`, a unix or a TCP stream listener; None once taken.
    fn take_index(&mut self, index: usize) -> anyhow::Result<Option<InheritedSocket>> {
        let fd = FIRST_INHERITED_FD + index as RawFd;
        let what = || format!("inherited socket fd://{fd}");
        if let Ok(Some(listener)) = self.0.take_unix_listener(index) {
            listener.set_nonblocking(true).with_context(what)?;
            let listener = tokio::net::UnixListener::from_std(listener).with_context(what)?;
            return Ok(Some(InheritedSocket::Unix(listener)));
        }
        match self.0.take_tcp_listener(index) {
            Ok(Some(listener)) => {
                listener.set_nonblocking(true).with_context(what)?;
                let listener = tokio::net::TcpListener::from_std(listener).with_context(what)?;
                Ok(Some(InheritedSocket::Tcp(listener)))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(e)
                .with_context(|| format!("{}: neither a unix nor a TCP stream listener", what())),
        }
    }
}
