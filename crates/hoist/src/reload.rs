//! SIGHUP: the configuration file is read again (with the same flags) and what dockerd applies
//! live is applied, proxies too; running pushes and pulls carry on with the settings they
//! started with. An invalid file changes nothing. A changed setting that only a restart applies
//! is reported, not applied.

use std::collections::BTreeMap;

use hoist_engine::{Engine, LiveSettings};

use crate::cli::Cli;
use crate::config::Settings;
use crate::log_level::LogLevel;

/// What a reload needs: how the daemon was started, what is in force, and what it changes.
pub struct Reloader {
    cli: Cli,
    current: Settings,
    engine: Engine,
    details: hoist_api::LiveDetails,
    log_level: LogLevel,
}

impl Reloader {
    pub fn new(
        cli: Cli,
        current: Settings,
        engine: Engine,
        details: hoist_api::LiveDetails,
        log_level: LogLevel,
    ) -> Reloader {
        Reloader {
            cli,
            current,
            engine,
            details,
            log_level,
        }
    }

    /// The settings in force.
    pub fn current(&self) -> &Settings {
        &self.current
    }

    /// Reads the configuration again and applies it; logs one line per changed setting. On any
    /// error the settings in force stay as they are.
    pub fn reload(&mut self) {
        let path = self.current.config_path.display().to_string();
        tracing::info!(config_file = %path, "SIGHUP received: reloading the configuration");
        let next = match Settings::load(self.cli.clone()) {
            Ok(next) => next,
            Err(e) => {
                tracing::error!(
                    config_file = %path,
                    "configuration not reloaded, the running settings stay: {e:#}"
                );
                return;
            }
        };
        let live = LiveSettings {
            registry: next.engine.registry.clone(),
            registry_mirrors: next.engine.registry_mirrors.clone(),
            max_concurrent_uploads: next.engine.max_concurrent_uploads,
            max_concurrent_downloads: next.engine.max_concurrent_downloads,
        };
        if let Err(e) = self.engine.reconfigure(live) {
            tracing::error!(
                config_file = %path,
                "configuration not reloaded, the running settings stay: {e}"
            );
            return;
        }
        self.details.set(hoist_api::Details {
            debug: next.debug,
            labels: next.labels.clone(),
        });
        for key in &next.unknown_keys {
            tracing::warn!(%key, "ignoring unknown configuration key");
        }
        let mut changed = 0;
        for ((key, old), (_, new)) in live_keys(&self.current).iter().zip(live_keys(&next)) {
            if *old != new {
                tracing::info!(key = *key, old = %old, new = %new, "configuration reloaded: {key} changed");
                changed += 1;
            }
        }
        for ((key, old), (_, new)) in fixed_keys(&self.current).iter().zip(fixed_keys(&next)) {
            if *old != new {
                tracing::warn!(
                    key = *key,
                    "{key} changed in {path}, but only a restart applies it: the daemon keeps {old}"
                );
            }
        }
        // What a restart applies stays as it was, so the next reload compares against it.
        let current = &mut self.current;
        current.debug = next.debug;
        current.labels = next.labels;
        current.shutdown_timeout = next.shutdown_timeout;
        current.engine = hoist_engine::EngineConfig::clone(&self.engine.config());
        self.log_level.set(current);
        tracing::info!(changed, "configuration reload complete");
    }
}

/// The settings a reload applies, each as it may be logged (proxy credentials masked).
fn live_keys(settings: &Settings) -> Vec<(&'static str, String)> {
    let engine = &settings.engine;
    let registry = &engine.registry;
    let proxy = |value: &Option<String>| {
        value
            .as_deref()
            .map(hoist_engine::mask_credentials)
            .unwrap_or_default()
    };
    vec![
        (
            "insecure-registries",
            format!("{:?}", registry.insecure_registries),
        ),
        ("insecure-loopback", registry.insecure_loopback.to_string()),
        ("registry-mirrors", format!("{:?}", engine.registry_mirrors)),
        (
            "max-concurrent-uploads",
            engine.max_concurrent_uploads.to_string(),
        ),
        (
            "max-concurrent-downloads",
            engine.max_concurrent_downloads.to_string(),
        ),
        ("labels", format!("{:?}", settings.labels)),
        ("debug", settings.debug.to_string()),
        (
            "shutdown-timeout",
            match settings.shutdown_timeout {
                Some(timeout) => format!("{}s", timeout.as_secs()),
                None => "no limit".to_owned(),
            },
        ),
        ("http-proxy", proxy(&registry.proxies.http_proxy)),
        ("https-proxy", proxy(&registry.proxies.https_proxy)),
        (
            "no-proxy",
            registry.proxies.no_proxy.clone().unwrap_or_default(),
        ),
    ]
}

/// The settings only a restart applies.
fn fixed_keys(settings: &Settings) -> Vec<(&'static str, String)> {
    let engine = &settings.engine;
    let chunk_sizes: BTreeMap<_, _> = engine.registry.chunk_sizes.iter().collect();
    vec![
        ("hosts", format!("{:?}", settings.hosts)),
        ("data-root", engine.data_root.display().to_string()),
        ("log-level", settings.log_level.clone()),
        ("pidfile", settings.pidfile.display().to_string()),
        ("group", settings.group.name.clone()),
        ("tls", format!("{:?}", settings.tls)),
        ("tlsverify", settings.tlsverify.to_string()),
        ("tlscacert", settings.tlscacert.display().to_string()),
        ("tlscert", settings.tlscert.display().to_string()),
        ("tlskey", settings.tlskey.display().to_string()),
        ("api-limits", format!("{:?}", settings.limits)),
        ("certs-dir", engine.registry.certs_dir.display().to_string()),
        (
            "upload-stall-timeout",
            format!("{}s", engine.upload_stall_timeout.as_secs()),
        ),
        ("upload-chunk-size", format!("{chunk_sizes:?}")),
        (
            "upload-fallback-chunk-size",
            engine.fallback_chunk_size.to_string(),
        ),
        (
            "docker-hub-pull-origin",
            engine.docker_hub_pull_origin.clone().unwrap_or_default(),
        ),
        ("min-free-space", format!("{:?}", engine.min_free_space)),
        (
            "push-complete-from-origin",
            engine.push_complete_from_origin.to_string(),
        ),
        (
            "metrics-addr",
            settings
                .metrics
                .as_ref()
                .map(|m| m.addr.clone())
                .unwrap_or_default(),
        ),
        (
            "metrics-allow-remote",
            settings
                .metrics
                .as_ref()
                .is_some_and(|m| m.allow_remote)
                .to_string(),
        ),
        ("log-format", format!("{:?}", settings.log_format)),
    ]
}
