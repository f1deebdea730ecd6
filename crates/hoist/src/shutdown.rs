//! Signals and stopping: SIGHUP asks for a reload; SIGTERM or SIGINT stop the daemon gracefully,
//! as dockerd does: stop accepting, let running requests (pushes, pulls, loads) finish for up to
//! `shutdown-timeout`, then cancel them cleanly. A second stop signal exits at once.

use std::time::Duration;

use hoist_engine::Engine;
use tokio::signal::unix::{Signal as UnixSignal, SignalKind, signal};
use tokio::task::JoinSet;

use crate::listen::Stopping;

/// What a signal asks for.
pub enum Request {
    Reload,
    /// Stop; the signal's name.
    Stop(&'static str),
}

/// The signals hoistd acts on.
pub struct Signals {
    hangup: UnixSignal,
    terminate: UnixSignal,
    interrupt: UnixSignal,
}

impl Signals {
    pub fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            hangup: signal(SignalKind::hangup())?,
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    pub async fn next(&mut self) -> Request {
        tokio::select! {
            _ = self.hangup.recv() => Request::Reload,
            _ = self.terminate.recv() => Request::Stop("SIGTERM"),
            _ = self.interrupt.recv() => Request::Stop("SIGINT"),
        }
    }
}

/// After the shutdown timeout, how long cancelled pushes and pulls get to tell their clients
/// and end their responses before their connections are dropped.
const CANCEL_GRACE: Duration = Duration::from_secs(3);
/// How long dropped connections and upload-session cancellations get before the process exits.
const ABORT_GRACE: Duration = Duration::from_secs(3);

/// How the wait for running requests ended.
pub enum Drained {
    /// Every request ended, on its own or cancelled.
    Done,
    /// A second stop signal came: exit now.
    Interrupted(&'static str),
}

/// Called once listeners stopped accepting: waits up to `timeout` (`None`: without limit) for
/// the servers' connections to end, then cancels transfers, then drops the connections left.
pub async fn drain(
    servers: &mut JoinSet<anyhow::Result<()>>,
    engine: &Engine,
    stopping: &Stopping,
    timeout: Option<Duration>,
    signals: &mut Signals,
) -> Drained {
    let waited = match timeout {
        Some(timeout) => {
            tokio::select! {
                finished = tokio::time::timeout(timeout, all_ended(servers)) => finished.is_ok(),
                stop = next_stop(signals) => return Drained::Interrupted(stop),
            }
        }
        None => {
            tokio::select! {
                () = all_ended(servers) => true,
                stop = next_stop(signals) => return Drained::Interrupted(stop),
            }
        }
    };
    if waited {
        // Uploads that failed or were dropped during the wait may still be cancelling their
        // sessions at the registry.
        engine.wait_session_cleanups(ABORT_GRACE).await;
        return Drained::Done;
    }
    tracing::warn!(
        "shutdown timeout reached with requests still running: cancelling their transfers"
    );
    engine.stop_transfers();
    tokio::select! {
        _ = tokio::time::timeout(CANCEL_GRACE, all_ended(servers)) => {}
        stop = next_stop(signals) => return Drained::Interrupted(stop),
    }
    // Requests that are not transfers (a load reading its archive) end with their connection;
    // what they wrote is under a lease, so it goes with them.
    stopping.abort.cancel();
    let _ = tokio::time::timeout(ABORT_GRACE, all_ended(servers)).await;
    engine.wait_session_cleanups(ABORT_GRACE).await;
    Drained::Done
}

async fn all_ended(servers: &mut JoinSet<anyhow::Result<()>>) {
    while let Some(result) = servers.join_next().await {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %format!("{e:#}"), "a listener failed while stopping")
            }
            Err(e) => tracing::warn!(error = %e, "a listener task failed while stopping"),
        }
    }
}

/// The next stop signal; reloads asked for meanwhile are refused.
async fn next_stop(signals: &mut Signals) -> &'static str {
    loop {
        match signals.next().await {
            Request::Stop(name) => return name,
            Request::Reload => {
                tracing::warn!("SIGHUP ignored: hoistd is shutting down");
            }
        }
    }
}
