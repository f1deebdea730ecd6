//! hoistd: the daemon binary. Flags and config in, listeners up, the engine behind them.

mod check;
mod cli;
mod config;
mod json_log;
mod labels;
mod listen;
mod metrics;
mod tls;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use hoist_engine::Engine;
use tokio_util::sync::CancellationToken;

use config::{LogFormat, Settings};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn main() -> ExitCode {
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
    let settings = match Settings::load(cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hoistd: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(&settings);
    for key in &settings.unknown_keys {
        tracing::warn!(%key, "ignoring unknown configuration key");
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
    match runtime.block_on(run(settings)) {
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

fn init_logging(settings: &Settings) {
    let level = match settings.log_level.as_str() {
        "fatal" => "error",
        other => other,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOIST_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "{level},hyper=info,reqwest=info,h2=info,rustls=info"
        ))
    });
    let logger = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match settings.log_format {
        // Colours only for a terminal: a log file or journal full of escape codes is unreadable.
        LogFormat::Text => logger
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => logger.event_format(json_log::JsonLines).init(),
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
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
    let mut app = hoist_api::app(hoist_api::AppState {
        engine: engine.clone(),
        server: hoist_api::ServerInfo {
            version: VERSION.to_owned(),
            git_commit: git_commit.to_owned(),
            debug: settings.debug,
            min_api_version: settings.min_api_version.clone(),
            labels: settings.labels.clone(),
        },
    });
    if let Some(metrics) = &metrics {
        app = app.layer(axum::middleware::from_fn_with_state(
            metrics.clone(),
            metrics::record_api_requests,
        ));
    }
    let shutdown = CancellationToken::new();
    let mut servers = tokio::task::JoinSet::new();
    if let (Some(server), Some(metrics)) = (metrics_server, &metrics) {
        servers.spawn(server.serve(metrics.clone(), engine.clone(), shutdown.clone()));
    }
    let slots = listen::ConnectionSlots::new(&settings.limits);
    for b in bound {
        servers.spawn(listen::serve(
            b,
            app.clone(),
            shutdown.clone(),
            settings.limits,
            slots.clone(),
        ));
    }
    tracing::info!(version = VERSION, data_root = %settings.engine.data_root.display(), "hoistd started");
    // A service manager waiting for readiness (systemd's Type=notify) learns it now: every
    // socket is bound and served.
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "telling the service manager hoistd is ready failed");
    }

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, shutting down"),
        _ = sigterm.recv() => tracing::info!("SIGTERM received, shutting down"),
        Some(result) = servers.join_next() => {
            shutdown.cancel();
            result.context("server task")??;
        }
    }
    shutdown.cancel();
    engine.end_event_streams();
    // Give running requests a moment to finish; long pushes are cut when the process exits.
    let drain = async { while servers.join_next().await.is_some() {} };
    if tokio::time::timeout(std::time::Duration::from_secs(10), drain)
        .await
        .is_err()
    {
        tracing::warn!("requests still running after 10 s; exiting anyway");
    }
    drop(pidfile);
    tracing::info!("hoistd stopped");
    Ok(())
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
