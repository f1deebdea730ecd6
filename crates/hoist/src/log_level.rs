//! The log level in force and how a reload changes it.

use crate::config::Settings;

/// Replaces the log filter of the subscriber `init_logging` installed.
pub type FilterHandle =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

/// The log filter for a level: hoist's own logs at `level`, the HTTP and TLS libraries' at
/// info at most (their debug output is a flood).
pub fn log_filter(level: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::new(format!(
        "{level},hyper=info,reqwest=info,h2=info,rustls=info"
    ))
}

/// The log level in force, changed by a reload of `debug`. `HOIST_LOG`, when set, takes a full
/// tracing filter and pins it.
pub struct LogLevel {
    handle: FilterHandle,
    pinned_by_env: bool,
    level: String,
}

impl LogLevel {
    pub fn new(handle: FilterHandle, pinned_by_env: bool, level: &str) -> LogLevel {
        LogLevel {
            handle,
            pinned_by_env,
            level: level.to_owned(),
        }
    }

    pub fn set(&mut self, settings: &Settings) {
        let level = settings.effective_log_level();
        if level == self.level {
            return;
        }
        if self.pinned_by_env {
            tracing::warn!(level, "HOIST_LOG is set: the log filter it gives stays");
            return;
        }
        match self.handle.reload(log_filter(level)) {
            Ok(()) => {
                tracing::info!(level, "log level changed");
                self.level = level.to_owned();
            }
            Err(e) => tracing::warn!(error = %e, "the log level cannot be changed"),
        }
    }
}
