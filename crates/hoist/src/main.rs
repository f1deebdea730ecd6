//! hoistd: the daemon binary. Flags and config in, listeners up, the engine behind them.

mod allocator;
mod check;
mod cli;
mod config;
mod json_log;
mod labels;
mod listen;
mod log_level;
mod metrics;
mod reload;
mod shutdown;
mod tls;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use hoist_engine::Engine;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use config::{LogFormat, Settings};
use log_level::{LogLevel, log_filter};
use shutdown::{Drained, Request, Signals};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn main() -> ExitCode {
    allocator::tune();
    let cli = cli::Cli::parse();
    if cli.version {
        println!(
            "hoistd version {VERSION}, API {}",
            hoist_api::MAX_API_VERSION
        );
        return ExitCode::SUCCESS;
    }
    if let Some(cli::Command::Check) = cli.command {
        return check::run(cli);
    }
    let settings = match Settings::load(cli.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hoistd: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if cli.validate {
        for key in &settings.unknown_keys {
            eprintln!("hoistd: ignoring unknown configuration key {key}");
        }
        return validate(&settings);
    }
    let log_level = init_logging(&settings);
    for key in &settings.unknown_keys {
        tracing::warn!(%key, "ignoring unknown configuration key");
    }
    for (name, old, new) in settings.overridden_proxy_variables() {
        tracing::warn!(
            name,
            old_value = %old,
            new_value = %new,
            "overriding existing proxy variable with value from configuration"
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hoistd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // With JSON logs, stderr carries only JSON lines: the logged error says it all.
    let plain_stderr = settings.log_format == LogFormat::Text;
    match runtime.block_on(run(cli, settings, log_level)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            if plain_stderr {
                eprintln!("hoistd: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

/// `--validate`, as dockerd's: everything a start reads is checked (the file and flags, hosts,
/// the TLS material), nothing is opened; `configuration OK` on stderr and exit 0, or the error
/// and exit 1.
fn validate(settings: &Settings) -> ExitCode {
    let checked = listen::check_hosts(settings).and_then(|()| {
        if settings.tls_enabled() {
            tls::server_config(settings).map(|_| ())
        } else {
            Ok(())
        }
    });
    match checked {
        Ok(()) => {
            eprintln!("configuration OK");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hoistd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(settings: &Settings) -> LogLevel {
    let level = settings.effective_log_level();
    let from_env = tracing_subscriber::EnvFilter::try_from_env("HOIST_LOG").ok();
    let pinned_by_env = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| log_filter(level));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let lines = match settings.log_format {
        // Colours only for a terminal: a log file or journal full of escape codes is unreadable.
        LogFormat::Text => lines
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        LogFormat::Json => lines
            .with_ansi(false)
            .event_format(json_log::JsonLines)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .init();
    LogLevel::new(handle, pinned_by_env, level)
}

async fn run(cli: cli::Cli, settings: Settings, log_level: LogLevel) -> anyhow::Result<()> {
    let git_commit = option_env!("HOIST_GIT_COMMIT").unwrap_or("");
    let metrics = settings
        .metrics
        .as_ref()
        .map(|_| Arc::new(metrics::Metrics::new(VERSION, git_commit)));
    let observer: Arc<dyn hoist_engine::Observer> = match &metrics {
        Some(metrics) => metrics.clone(),
        None => Arc::new(hoist_engine::NoObserver),
    };
    // Opening the engine takes the data root's lock: a second daemon stops here.
    let engine = Engine::open_observed(settings.engine.clone(), observer).with_context(|| {
        format!(
            "cannot start with data root {}",
            settings.engine.data_root.display()
        )
    })?;
    let pidfile = PidFile::write(&settings.pidfile)?;

    let bound = listen::bind_all(&settings).await?;
    let metrics_server = match &settings.metrics {
        Some(listener) => Some(metrics::bind(listener).await?),
        None => None,
    };
    let details = hoist_api::LiveDetails::new(hoist_api::Details {
        debug: settings.debug,
        labels: settings.labels.clone(),
    });
    let mut app = hoist_api::app(hoist_api::AppState {
        engine: engine.clone(),
        server: hoist_api::ServerInfo {
            version: VERSION.to_owned(),
            git_commit: git_commit.to_owned(),
            min_api_version: settings.min_api_version.clone(),
            details: details.clone(),
        },
    });
    if let Some(metrics) = &metrics {
        app = app.layer(axum::middleware::from_fn_with_state(
            metrics.clone(),
            metrics::record_api_requests,
        ));
    }
    let stopping = listen::Stopping {
        accepting: CancellationToken::new(),
        abort: CancellationToken::new(),
    };
    // The metrics server runs beside the API listeners, not among them: it keeps answering
    // while running requests drain, and stops last.
    let metrics_stop = CancellationToken::new();
    let metrics_task = match (metrics_server, &metrics) {
        (Some(server), Some(metrics)) => {
            let serving = server.serve(metrics.clone(), engine.clone(), metrics_stop.clone());
            Some(tokio::spawn(async move {
                if let Err(e) = serving.await {
                    tracing::error!(error = %format!("{e:#}"), "the metrics server failed");
                }
            }))
        }
        _ => None,
    };
    let mut servers = tokio::task::JoinSet::new();
    let slots = listen::ConnectionSlots::new(&settings.limits);
    for b in bound {
        servers.spawn(listen::serve(
            b,
            app.clone(),
            stopping.clone(),
            settings.limits,
            slots.clone(),
        ));
    }
    // Signals are taken before readiness is told, so that none is missed.
    let mut signals = Signals::new().context("cannot listen for signals")?;
    tracing::info!(version = VERSION, data_root = %settings.engine.data_root.display(), "hoistd started");
    // A service manager waiting for readiness (systemd's Type=notify) learns it now: every
    // socket is bound and served.
    notify(&[sd_notify::NotifyState::Ready]);

    let mut reloader = reload::Reloader::new(cli, settings, engine.clone(), details, log_level);
    loop {
        tokio::select! {
            request = signals.next() => match request {
                Request::Reload => {
                    let mut states = vec![sd_notify::NotifyState::Reloading];
                    states.extend(sd_notify::NotifyState::monotonic_usec_now().ok());
                    notify(&states);
                    reloader.reload();
                    notify(&[sd_notify::NotifyState::Ready]);
                }
                Request::Stop(name) => {
                    tracing::info!("{name} received, shutting down");
                    break;
                }
            },
            Some(result) = servers.join_next() => {
                stopping.accepting.cancel();
                stopping.abort.cancel();
                result.context("server task")??;
            }
        }
    }
    notify(&[sd_notify::NotifyState::Stopping]);
    // Listeners stop accepting and remove the unix sockets they created; kept-alive idle
    // connections close, running requests go on.
    stopping.accepting.cancel();
    engine.end_event_streams();
    let timeout = reloader.current().shutdown_timeout;
    match timeout {
        Some(timeout) => tracing::info!(
            "waiting up to {} s for running requests (shutdown-timeout)",
            timeout.as_secs()
        ),
        None => tracing::info!("waiting for running requests (shutdown-timeout is negative)"),
    }
    match shutdown::drain(&mut servers, &engine, &stopping, timeout, &mut signals).await {
        Drained::Done => {}
        Drained::Interrupted(name) => {
            // The store is crash-safe: what is half-written is in ingest/ or under a lease,
            // both cleaned at the next start.
            tracing::warn!("{name} received again: exiting now");
            for socket in listen::created_sockets(reloader.current()) {
                let _ = std::fs::remove_file(socket);
            }
            drop(pidfile);
            std::process::exit(0);
        }
    }
    metrics_stop.cancel();
    if let Some(task) = metrics_task
        && tokio::time::timeout(METRICS_STOP_GRACE, task)
            .await
            .is_err()
    {
        tracing::warn!("the metrics server did not stop in time");
    }
    drop(pidfile);
    tracing::info!("hoistd stopped");
    Ok(())
}

/// How long the metrics server gets to close its connections once everything else stopped.
const METRICS_STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Tells the service manager (systemd's `Type=notify`) about a state change; a no-op without one.
fn notify(states: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "telling the service manager about a state change failed");
    }
}

/// The pid file, removed when the daemon stops.
struct PidFile(std::path::PathBuf);

impl PidFile {
    /// Refuses, as dockerd does, when the file names another live process: a daemon that then
    /// failed to start would otherwise delete a running daemon's pid file on its way out.
    fn write(path: &std::path::Path) -> anyhow::Result<PidFile> {
        if let Some(holder) = live_holder(path) {
            anyhow::bail!(
                "process with PID {holder} is still running: ensure hoistd is not running or delete {}",
                path.display()
            );
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(path, format!("{}\n", std::process::id()))
            .with_context(|| format!("cannot write pid file {}", path.display()))?;
        Ok(PidFile(path.to_owned()))
    }
}

/// The pid in an existing pid file, if that process is alive and is not us.
fn live_holder(path: &std::path::Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    if pid == std::process::id() || pid == 0 {
        return None;
    }
    let pid_t = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: kill with signal 0 only checks that the process exists; it sends nothing.
    let alive = unsafe { libc::kill(pid_t, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    alive.then_some(pid)
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
