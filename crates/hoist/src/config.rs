//! daemon.json and flags merged into the daemon's settings, as dockerd merges them: a setting
//! given both ways is an error, unknown keys are warned about, defaults depend on whether we run
//! as root.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::cli::Cli;

/// The daemon.json keys hoist understands. Kept as raw JSON values first so that unknown keys can
/// be reported instead of rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct FileConfig {
    hosts: Option<Vec<String>>,
    data_root: Option<PathBuf>,
    log_level: Option<String>,
    debug: Option<bool>,
    pidfile: Option<PathBuf>,
    tls: Option<bool>,
    tlsverify: Option<bool>,
    tlscacert: Option<PathBuf>,
    tlscert: Option<PathBuf>,
    tlskey: Option<PathBuf>,
    insecure_registries: Option<Vec<String>>,
    registry_mirrors: Option<Vec<String>>,
    max_concurrent_uploads: Option<usize>,
    max_concurrent_downloads: Option<usize>,
    // hoist's own keys
    insecure_loopback: Option<bool>,
    certs_dir: Option<PathBuf>,
    upload_stall_timeout: Option<u64>,
    upload_chunk_size: Option<HashMap<String, u64>>,
    upload_fallback_chunk_size: Option<u64>,
    docker_hub_pull_origin: Option<String>,
}

const KNOWN_KEYS: &[&str] = &[
    "hosts",
    "data-root",
    "log-level",
    "debug",
    "pidfile",
    "tls",
    "tlsverify",
    "tlscacert",
    "tlscert",
    "tlskey",
    "insecure-registries",
    "registry-mirrors",
    "max-concurrent-uploads",
    "max-concurrent-downloads",
    "insecure-loopback",
    "certs-dir",
    "upload-stall-timeout",
    "upload-chunk-size",
    "upload-fallback-chunk-size",
    "docker-hub-pull-origin",
];

#[derive(Debug)]
pub struct Settings {
    pub hosts: Vec<String>,
    pub data_root: PathBuf,
    pub log_level: String,
    pub debug: bool,
    pub pidfile: PathBuf,
    /// Some(true) or Some(false) when given; None when left to the default.
    pub tls: Option<bool>,
    pub tlsverify: bool,
    pub tlscacert: PathBuf,
    pub tlscert: PathBuf,
    pub tlskey: PathBuf,
    pub insecure_registries: Vec<String>,
    pub registry_mirrors: Vec<String>,
    pub max_concurrent_uploads: usize,
    pub max_concurrent_downloads: usize,
    pub insecure_loopback: bool,
    pub certs_dir: PathBuf,
    pub upload_stall_timeout: Duration,
    pub upload_chunk_size: HashMap<String, u64>,
    pub upload_fallback_chunk_size: u64,
    /// Where pulls of Docker Hub images go after the mirrors, instead of Docker Hub.
    pub docker_hub_pull_origin: Option<String>,
    /// Unknown keys of the config file, for a warning once logging is up.
    pub unknown_keys: Vec<String>,
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

fn xdg(var: &str, fallback: &str) -> PathBuf {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(fallback))
}

fn runtime_dir() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

impl Settings {
    pub fn load(cli: Cli) -> anyhow::Result<Settings> {
        let root = is_root();
        let (config_path, explicit) = match &cli.config_file {
            Some(p) => (p.clone(), true),
            None if root => (PathBuf::from("/etc/hoist/daemon.json"), false),
            None => (
                xdg("XDG_CONFIG_HOME", ".config").join("hoist/daemon.json"),
                false,
            ),
        };
        let (file, unknown_keys) = read_config_file(&config_path, explicit)?;

        let mut conflicts = Vec::new();
        let mut both = |name: &str, flag: bool, in_file: bool| {
            if flag && in_file {
                conflicts.push(name.to_owned());
            }
        };
        both("hosts", !cli.hosts.is_empty(), file.hosts.is_some());
        both(
            "data-root",
            cli.data_root.is_some(),
            file.data_root.is_some(),
        );
        both(
            "log-level",
            cli.log_level.is_some(),
            file.log_level.is_some(),
        );
        both("debug", cli.debug, file.debug.is_some());
        both("pidfile", cli.pidfile.is_some(), file.pidfile.is_some());
        both("tls", cli.tls.is_some(), file.tls.is_some());
        both(
            "tlsverify",
            cli.tlsverify.is_some(),
            file.tlsverify.is_some(),
        );
        both(
            "tlscacert",
            cli.tlscacert.is_some(),
            file.tlscacert.is_some(),
        );
        both("tlscert", cli.tlscert.is_some(), file.tlscert.is_some());
        both("tlskey", cli.tlskey.is_some(), file.tlskey.is_some());
        both(
            "insecure-registries",
            !cli.insecure_registries.is_empty(),
            file.insecure_registries.is_some(),
        );
        both(
            "registry-mirrors",
            !cli.registry_mirrors.is_empty(),
            file.registry_mirrors.is_some(),
        );
        both(
            "max-concurrent-uploads",
            cli.max_concurrent_uploads.is_some(),
            file.max_concurrent_uploads.is_some(),
        );
        both(
            "max-concurrent-downloads",
            cli.max_concurrent_downloads.is_some(),
            file.max_concurrent_downloads.is_some(),
        );
        if !conflicts.is_empty() {
            bail!(
                "the following directives are specified both as a flag and in the configuration file: {} (from flag and file {})",
                conflicts.join(", "),
                config_path.display()
            );
        }

        let hosts = if !cli.hosts.is_empty() {
            cli.hosts
        } else {
            file.hosts.unwrap_or_default()
        };
        let hosts = if hosts.is_empty() {
            vec![if root {
                "unix:///run/hoist/hoist.sock".to_owned()
            } else {
                format!("unix://{}", runtime_dir().join("hoist.sock").display())
            }]
        } else {
            hosts
        };
        let data_root = cli.data_root.or(file.data_root).unwrap_or_else(|| {
            if root {
                PathBuf::from("/var/lib/hoist")
            } else {
                xdg("XDG_DATA_HOME", ".local/share").join("hoist")
            }
        });
        let pidfile = cli.pidfile.or(file.pidfile).unwrap_or_else(|| {
            if root {
                PathBuf::from("/run/hoist.pid")
            } else {
                runtime_dir().join("hoist.pid")
            }
        });
        let debug = cli.debug || file.debug.unwrap_or(false);
        let log_level = cli
            .log_level
            .or(file.log_level)
            .unwrap_or_else(|| if debug { "debug".into() } else { "info".into() });
        if !matches!(
            log_level.as_str(),
            "debug" | "info" | "warn" | "error" | "fatal" | "trace"
        ) {
            bail!("unable to parse logging level: {log_level}");
        }
        let cert_dir = std::env::var_os("DOCKER_CERT_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| home().join(".docker"));
        let uploads = cli
            .max_concurrent_uploads
            .or(file.max_concurrent_uploads)
            .unwrap_or(5);
        let downloads = cli
            .max_concurrent_downloads
            .or(file.max_concurrent_downloads)
            .unwrap_or(3);
        if uploads == 0 || downloads == 0 {
            bail!("max-concurrent-uploads and max-concurrent-downloads must be at least 1");
        }
        Ok(Settings {
            hosts,
            data_root,
            log_level,
            debug,
            pidfile,
            tls: cli.tls.or(file.tls),
            tlsverify: cli.tlsverify.or(file.tlsverify).unwrap_or(false),
            tlscacert: cli
                .tlscacert
                .or(file.tlscacert)
                .unwrap_or_else(|| cert_dir.join("ca.pem")),
            tlscert: cli
                .tlscert
                .or(file.tlscert)
                .unwrap_or_else(|| cert_dir.join("cert.pem")),
            tlskey: cli
                .tlskey
                .or(file.tlskey)
                .unwrap_or_else(|| cert_dir.join("key.pem")),
            insecure_registries: if cli.insecure_registries.is_empty() {
                file.insecure_registries.unwrap_or_default()
            } else {
                cli.insecure_registries
            },
            registry_mirrors: if cli.registry_mirrors.is_empty() {
                file.registry_mirrors.unwrap_or_default()
            } else {
                cli.registry_mirrors
            },
            max_concurrent_uploads: uploads,
            max_concurrent_downloads: downloads,
            insecure_loopback: file.insecure_loopback.unwrap_or(true),
            certs_dir: file
                .certs_dir
                .unwrap_or_else(|| PathBuf::from("/etc/docker/certs.d")),
            upload_stall_timeout: Duration::from_secs(
                file.upload_stall_timeout.unwrap_or(60).max(1),
            ),
            upload_chunk_size: file.upload_chunk_size.unwrap_or_default(),
            upload_fallback_chunk_size: file.upload_fallback_chunk_size.unwrap_or(16 * 1024 * 1024),
            docker_hub_pull_origin: file.docker_hub_pull_origin.filter(|o| !o.is_empty()),
            unknown_keys,
        })
    }

    /// TLS is on when asked for, or implied by --tlsverify.
    pub fn tls_enabled(&self) -> bool {
        self.tlsverify || self.tls == Some(true)
    }
}

fn read_config_file(path: &Path, explicit: bool) -> anyhow::Result<(FileConfig, Vec<String>)> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            return Ok((FileConfig::default(), Vec::new()));
        }
        Err(e) => {
            return Err(e).with_context(|| {
                format!("unable to read the configuration file {}", path.display())
            });
        }
    };
    if text.trim().is_empty() {
        return Ok((FileConfig::default(), Vec::new()));
    }
    let raw: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(&text).with_context(|| {
            format!(
                "unable to configure the daemon with file {}",
                path.display()
            )
        })?;
    let unknown: Vec<String> = raw
        .keys()
        .filter(|k| !KNOWN_KEYS.contains(&k.as_str()))
        .cloned()
        .collect();
    let known: serde_json::Map<String, serde_json::Value> = raw
        .into_iter()
        .filter(|(k, _)| KNOWN_KEYS.contains(&k.as_str()))
        .collect();
    let file: FileConfig =
        serde_json::from_value(serde_json::Value::Object(known)).with_context(|| {
            format!(
                "unable to configure the daemon with file {}",
                path.display()
            )
        })?;
    Ok((file, unknown))
}
