//! daemon.json and flags merged into the daemon's settings, as dockerd merges them: a setting
//! given both ways is an error, unknown keys are warned about, defaults depend on whether we run
//! as root. Settings the engine takes start from the engine's own defaults.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use hoist_engine::{EngineConfig, ProxyConfig};
use hoist_store::FreeSpaceReserve;
use serde::Deserialize;

use crate::cli::Cli;
use crate::labels;

#[derive(Debug)]
pub struct Settings {
    pub hosts: Vec<String>,
    pub log_level: String,
    pub log_format: LogFormat,
    /// Where Prometheus metrics are served; none when off.
    pub metrics: Option<MetricsListener>,
    pub debug: bool,
    pub pidfile: PathBuf,
    /// Some(true) or Some(false) when given; None when left to the default.
    pub tls: Option<bool>,
    pub tlsverify: bool,
    pub tlscacert: PathBuf,
    pub tlscert: PathBuf,
    pub tlskey: PathBuf,
    /// The data root and everything the engine and its registry client are opened with.
    pub engine: EngineConfig,
    /// Bounds of the API listeners.
    pub limits: Limits,
    /// The group of the API's unix sockets.
    pub group: SocketGroup,
    /// The oldest API version served: `DOCKER_MIN_API_VERSION`, else hoist-api's default.
    pub min_api_version: String,
    /// `--label` / `labels`: shown by `/info`, without duplicates.
    pub labels: Vec<String>,
    /// Unknown keys of the config file, for a warning once logging is up.
    pub unknown_keys: Vec<String>,
    /// How long running requests get to finish when the daemon stops; `None` waits without
    /// limit (a negative `shutdown-timeout`, as dockerd).
    pub shutdown_timeout: Option<Duration>,
    /// The configuration file read (or that would have been read, when absent).
    pub config_path: PathBuf,
}

/// dockerd's default `shutdown-timeout`, seconds.
const DEFAULT_SHUTDOWN_TIMEOUT: i64 = 15;

/// daemon.json. The first keys are dockerd's and may also be given as flags; the others are
/// hoist's own and exist only here.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct FileConfig {
    hosts: Option<Vec<String>>,
    data_root: Option<PathBuf>,
    log_level: Option<String>,
    log_format: Option<String>,
    metrics_addr: Option<String>,
    metrics_allow_remote: Option<bool>,
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
    labels: Option<Vec<String>>,
    insecure_loopback: Option<bool>,
    certs_dir: Option<PathBuf>,
    /// Seconds.
    upload_stall_timeout: Option<u64>,
    upload_chunk_size: Option<HashMap<String, u64>>,
    upload_fallback_chunk_size: Option<u64>,
    docker_hub_pull_origin: Option<String>,
    api_limits: Option<LimitsFile>,
    group: Option<String>,
    /// Bytes; 0 turns the check off.
    min_free_space: Option<u64>,
    push_complete_from_origin: Option<bool>,
    /// Seconds; negative waits without limit.
    shutdown_timeout: Option<i64>,
    proxies: Option<ProxiesFile>,
    /// Every other key: reported, not rejected, so that a daemon.json shared with dockerd works.
    #[serde(flatten)]
    unknown: BTreeMap<String, serde_json::Value>,
}

/// daemon.json's `proxies`, as dockerd's.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct ProxiesFile {
    http_proxy: Option<String>,
    https_proxy: Option<String>,
    no_proxy: Option<String>,
}

/// daemon.json's `api-limits`: durations in seconds.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct LimitsFile {
    header_read_timeout: Option<u64>,
    body_idle_timeout: Option<u64>,
    tls_handshake_timeout: Option<u64>,
    max_connections: Option<usize>,
}

impl LimitsFile {
    fn apply(self, limits: &mut Limits) -> anyhow::Result<()> {
        let seconds = |key: &str, value: Option<u64>| -> anyhow::Result<Option<Duration>> {
            match value {
                Some(0) => bail!("api-limits: {key} must be at least 1 second"),
                other => Ok(other.map(Duration::from_secs)),
            }
        };
        set(
            &mut limits.header_read_timeout,
            seconds("header-read-timeout", self.header_read_timeout)?,
        );
        set(
            &mut limits.body_idle_timeout,
            seconds("body-idle-timeout", self.body_idle_timeout)?,
        );
        set(
            &mut limits.tls_handshake_timeout,
            seconds("tls-handshake-timeout", self.tls_handshake_timeout)?,
        );
        if self.max_connections == Some(0) {
            bail!("api-limits: max-connections must be at least 1");
        }
        set(&mut limits.max_connections, self.max_connections);
        Ok(())
    }
}

impl FileConfig {
    /// A missing file is an empty one unless it was named on the command line.
    fn read(path: &Path, explicit: bool) -> anyhow::Result<FileConfig> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Ok(FileConfig::default());
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("unable to read the configuration file {}", path.display())
                });
            }
        };
        if text.trim().is_empty() {
            return Ok(FileConfig::default());
        }
        let invalid = || {
            format!(
                "unable to configure the daemon with file {}",
                path.display()
            )
        };
        // Read as a JSON object first: a key given twice takes its last value, and type errors
        // name the value, not a position in the file.
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&text).with_context(invalid)?;
        FileConfig::deserialize(serde_json::Value::Object(object)).with_context(invalid)
    }
}

/// The rule for settings that are both a flag and a daemon.json key: either may give it, giving
/// it both ways is an error. Every such setting is collected so that one message names them all.
#[derive(Default)]
struct Merge {
    given_both_ways: Vec<&'static str>,
}

impl Merge {
    fn pick<T>(&mut self, key: &'static str, flag: Option<T>, file: Option<T>) -> Option<T> {
        if flag.is_some() && file.is_some() {
            self.given_both_ways.push(key);
        }
        flag.or(file)
    }

    fn finish(self, config_path: &Path) -> anyhow::Result<()> {
        if self.given_both_ways.is_empty() {
            return Ok(());
        }
        bail!(
            "the following directives are specified both as a flag and in the configuration file: {} (from flag and file {})",
            self.given_both_ways.join(", "),
            config_path.display()
        )
    }
}

/// A repeatable flag is given when it has at least one value.
fn repeated<T>(values: Vec<T>) -> Option<Vec<T>> {
    (!values.is_empty()).then_some(values)
}

/// Replaces a default with the value given, if one was.
fn set<T>(setting: &mut T, given: Option<T>) {
    if let Some(value) = given {
        *setting = value;
    }
}

impl Settings {
    pub fn load(cli: Cli) -> anyhow::Result<Settings> {
        let paths = DefaultPaths::for_user(is_root());
        let config_path = cli.config_file.as_deref().unwrap_or(&paths.config_file);
        let file = FileConfig::read(config_path, cli.config_file.is_some())?;

        let mut merge = Merge::default();
        let hosts = merge.pick("hosts", repeated(cli.hosts), file.hosts);
        let data_root = merge.pick("data-root", cli.data_root, file.data_root);
        let log_level = merge.pick("log-level", cli.log_level, file.log_level);
        let log_format = merge.pick("log-format", cli.log_format, file.log_format);
        let metrics_addr = merge.pick("metrics-addr", cli.metrics_addr, file.metrics_addr);
        let metrics_allow_remote = merge.pick(
            "metrics-allow-remote",
            cli.metrics_allow_remote,
            file.metrics_allow_remote,
        );
        let debug = merge.pick("debug", cli.debug.then_some(true), file.debug);
        let pidfile = merge.pick("pidfile", cli.pidfile, file.pidfile);
        let group = merge.pick("group", cli.group, file.group);
        let tls = merge.pick("tls", cli.tls, file.tls);
        let tlsverify = merge.pick("tlsverify", cli.tlsverify, file.tlsverify);
        let tlscacert = merge.pick("tlscacert", cli.tlscacert, file.tlscacert);
        let tlscert = merge.pick("tlscert", cli.tlscert, file.tlscert);
        let tlskey = merge.pick("tlskey", cli.tlskey, file.tlskey);
        let insecure_registries = merge.pick(
            "insecure-registries",
            repeated(cli.insecure_registries),
            file.insecure_registries,
        );
        let registry_mirrors = merge.pick(
            "registry-mirrors",
            repeated(cli.registry_mirrors),
            file.registry_mirrors,
        );
        let uploads = merge.pick(
            "max-concurrent-uploads",
            cli.max_concurrent_uploads,
            file.max_concurrent_uploads,
        );
        let downloads = merge.pick(
            "max-concurrent-downloads",
            cli.max_concurrent_downloads,
            file.max_concurrent_downloads,
        );
        let labels = merge.pick("labels", repeated(cli.labels), file.labels);
        let shutdown_timeout = merge.pick(
            "shutdown-timeout",
            cli.shutdown_timeout,
            file.shutdown_timeout,
        );
        let proxies = file.proxies.unwrap_or_default();
        let http_proxy = merge.pick("http-proxy", cli.http_proxy, proxies.http_proxy);
        let https_proxy = merge.pick("https-proxy", cli.https_proxy, proxies.https_proxy);
        let no_proxy = merge.pick("no-proxy", cli.no_proxy, proxies.no_proxy);
        merge.finish(config_path)?;
        let labels = labels.unwrap_or_default();
        for label in &labels {
            labels::check(label).map_err(|e| {
                anyhow::anyhow!(
                    "unable to configure the daemon with file {}: merged configuration validation from file and command line flags failed: {e}",
                    config_path.display()
                )
            })?;
        }
        let labels = labels::conflict_free(labels)?;
        let min_api_version = min_api_version_from_env()?;

        let debug = debug.unwrap_or(false);
        let log_level = log_level.unwrap_or_else(|| "info".into());
        if !matches!(
            log_level.as_str(),
            "debug" | "info" | "warn" | "error" | "fatal" | "trace"
        ) {
            bail!("unable to parse logging level: {log_level}");
        }
        let log_format = match log_format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => bail!("unknown log format: {other} (use text or json)"),
        };
        // dockerd's empty metrics-addr is "off", as is leaving it out.
        let metrics = metrics_addr
            .filter(|addr| !addr.is_empty())
            .map(|addr| MetricsListener {
                addr,
                allow_remote: metrics_allow_remote.unwrap_or(false),
            });

        let mut engine = EngineConfig::new(data_root.unwrap_or(paths.data_root));
        set(&mut engine.max_concurrent_uploads, uploads);
        set(&mut engine.max_concurrent_downloads, downloads);
        if engine.max_concurrent_uploads == 0 || engine.max_concurrent_downloads == 0 {
            bail!("max-concurrent-uploads and max-concurrent-downloads must be at least 1");
        }
        set(
            &mut engine.upload_stall_timeout,
            file.upload_stall_timeout
                .map(|secs| Duration::from_secs(secs.max(1))),
        );
        set(
            &mut engine.fallback_chunk_size,
            file.upload_fallback_chunk_size,
        );
        set(&mut engine.registry_mirrors, registry_mirrors);
        set(
            &mut engine.docker_hub_pull_origin,
            file.docker_hub_pull_origin
                .filter(|origin| !origin.is_empty())
                .map(Some),
        );
        set(
            &mut engine.min_free_space,
            file.min_free_space.map(FreeSpaceReserve::Bytes),
        );
        set(
            &mut engine.push_complete_from_origin,
            file.push_complete_from_origin,
        );
        let registry = &mut engine.registry;
        set(&mut registry.insecure_registries, insecure_registries);
        set(&mut registry.insecure_loopback, file.insecure_loopback);
        set(&mut registry.certs_dir, file.certs_dir);
        set(&mut registry.chunk_sizes, file.upload_chunk_size);
        registry.proxies = ProxyConfig {
            http_proxy,
            https_proxy,
            no_proxy,
        };
        engine
            .check_registry_settings()
            .with_context(|| format!("invalid configuration file {}", config_path.display()))?;

        let mut limits = Limits::default();
        file.api_limits
            .unwrap_or_default()
            .apply(&mut limits)
            .with_context(|| format!("invalid configuration file {}", config_path.display()))?;

        let cert_dir = std::env::var_os("DOCKER_CERT_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| home().join(".docker"));
        Ok(Settings {
            hosts: hosts.filter(|h| !h.is_empty()).unwrap_or(paths.hosts),
            log_level,
            log_format,
            metrics,
            debug,
            pidfile: pidfile.unwrap_or(paths.pidfile),
            tls,
            tlsverify: tlsverify.unwrap_or(false),
            tlscacert: tlscacert.unwrap_or_else(|| cert_dir.join("ca.pem")),
            tlscert: tlscert.unwrap_or_else(|| cert_dir.join("cert.pem")),
            tlskey: tlskey.unwrap_or_else(|| cert_dir.join("key.pem")),
            engine,
            limits,
            group: SocketGroup::new(group, is_root()),
            min_api_version,
            labels,
            unknown_keys: file.unknown.into_keys().collect(),
            shutdown_timeout: shutdown_timeout_from(shutdown_timeout),
            config_path: config_path.to_owned(),
        })
    }

    /// The level logs are written at: `debug` when debug mode is on (as dockerd's `--debug`
    /// overrides `--log-level`), else the log level; `fatal` logs errors.
    pub fn effective_log_level(&self) -> &str {
        match self.log_level.as_str() {
            _ if self.debug => "debug",
            "fatal" => "error",
            other => other,
        }
    }

    /// Proxy variables of the environment that a configured proxy replaces, with both values
    /// masked: `(variable, environment's, configuration's)`, for dockerd's warning.
    pub fn overridden_proxy_variables(&self) -> Vec<(&'static str, String, String)> {
        let proxies = &self.engine.registry.proxies;
        let mut overridden = Vec::new();
        for (given, names) in [
            (&proxies.http_proxy, ["HTTP_PROXY", "http_proxy"]),
            (&proxies.https_proxy, ["HTTPS_PROXY", "https_proxy"]),
            (&proxies.no_proxy, ["NO_PROXY", "no_proxy"]),
        ] {
            let Some(given) = given.as_deref().filter(|v| !v.is_empty()) else {
                continue;
            };
            for name in names {
                if let Ok(old) = std::env::var(name)
                    && !old.is_empty()
                    && old != given
                {
                    overridden.push((
                        name,
                        hoist_engine::mask_credentials(&old),
                        hoist_engine::mask_credentials(given),
                    ));
                }
            }
        }
        overridden
    }

    /// TLS is on when asked for, or implied by --tlsverify.
    pub fn tls_enabled(&self) -> bool {
        self.tlsverify || self.tls == Some(true)
    }
}

/// How log lines are written (`--log-format`, as dockerd's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// tracing's human-readable lines.
    Text,
    /// One JSON object per line: `time`, `level`, `msg` and the event's fields.
    Json,
}

/// `--metrics-addr`: where the metrics are served, and whether another host may reach them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsListener {
    /// `host:port`, as dockerd takes it.
    pub addr: String,
    /// `--metrics-allow-remote`: a non-loopback address is refused without it.
    pub allow_remote: bool,
}

/// Seconds as dockerd takes them: a negative number waits without limit.
fn shutdown_timeout_from(seconds: Option<i64>) -> Option<Duration> {
    let seconds = seconds.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT);
    u64::try_from(seconds).ok().map(Duration::from_secs)
}

/// `DOCKER_MIN_API_VERSION`, checked as dockerd checks it; unset or empty means the default.
fn min_api_version_from_env() -> anyhow::Result<String> {
    match std::env::var("DOCKER_MIN_API_VERSION") {
        Ok(text) if !text.is_empty() => {
            hoist_api::check_min_api_version(&text)
                .map_err(|e| anyhow::anyhow!("invalid DOCKER_MIN_API_VERSION: {e}"))?;
            Ok(text)
        }
        _ => Ok(hoist_api::MIN_API_VERSION.to_owned()),
    }
}

/// Where hoistd keeps its files when not told: system paths as root, the user's XDG
/// directories otherwise, so that a rootless daemon needs no privileges.
struct DefaultPaths {
    config_file: PathBuf,
    hosts: Vec<String>,
    data_root: PathBuf,
    pidfile: PathBuf,
}

impl DefaultPaths {
    fn for_user(root: bool) -> DefaultPaths {
        if root {
            DefaultPaths {
                config_file: PathBuf::from("/etc/hoist/daemon.json"),
                hosts: vec!["unix:///run/hoist/hoist.sock".to_owned()],
                data_root: PathBuf::from("/var/lib/hoist"),
                pidfile: PathBuf::from("/run/hoist.pid"),
            }
        } else {
            DefaultPaths {
                config_file: xdg("XDG_CONFIG_HOME", ".config").join("hoist/daemon.json"),
                hosts: vec![format!(
                    "unix://{}",
                    runtime_dir().join("hoist.sock").display()
                )],
                data_root: xdg("XDG_DATA_HOME", ".local/share").join("hoist"),
                pidfile: runtime_dir().join("hoist.pid"),
            }
        }
    }
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

/// The listener's bounds, so that no client can hold a connection, a request or its temporary
/// files forever. daemon.json's `api-limits` changes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// How long a client may take to send a request's head (request line and headers), and how
    /// long a kept-alive connection may sit idle before the next one: dockerd's
    /// `ReadHeaderTimeout`, 5 minutes.
    pub header_read_timeout: Duration,
    /// How long a request body may go without a byte before the request fails: a `docker load`
    /// whose client went silent must not hold its temporary file and connection forever.
    pub body_idle_timeout: Duration,
    /// How long a TLS client may take to complete its handshake.
    pub tls_handshake_timeout: Duration,
    /// Connections served at once, over all listeners; beyond it, new connections wait in the
    /// kernel's accept queue until one closes.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(5 * 60),
            body_idle_timeout: Duration::from_secs(5 * 60),
            tls_handshake_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// dockerd's default socket group.
const DEFAULT_GROUP: &str = "docker";

/// The group unix sockets are given, as named by `-G` or the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketGroup {
    pub name: String,
    /// Named on the command line or in the config, not the default.
    pub explicit: bool,
}

impl SocketGroup {
    /// The group named, else dockerd's default for a daemon run as root; a daemon run by a user
    /// keeps its own group, which is all such a user may give.
    pub fn new(named: Option<String>, root: bool) -> SocketGroup {
        match named {
            Some(name) => SocketGroup {
                name,
                explicit: true,
            },
            None => SocketGroup {
                name: if root {
                    DEFAULT_GROUP.to_owned()
                } else {
                    String::new()
                },
                explicit: false,
            },
        }
    }
}
