//! Command-line flags. Where dockerd has a flag for the same thing, ours has its name and meaning.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Clone, Debug, Parser)]
#[command(
    name = "hoistd",
    about = "A Docker-compatible image daemon: load, tag, list and push images to OCI registries",
    disable_version_flag = true
)]
pub struct Cli {
    /// Daemon socket(s) to listen on: unix:///path, tcp://host:port, fd:// or fd://N (repeatable)
    #[arg(short = 'H', long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,

    /// Group for the unix socket (default "docker" when run as root; "" keeps the daemon's)
    #[arg(short = 'G', long = "group", value_name = "GROUP")]
    pub group: Option<String>,

    /// Root directory of persistent hoist state
    #[arg(long = "data-root", value_name = "PATH", global = true)]
    pub data_root: Option<PathBuf>,

    /// Daemon configuration file (daemon.json format)
    #[arg(long = "config-file", value_name = "PATH", global = true)]
    pub config_file: Option<PathBuf>,

    /// Logging level: debug, info, warn, error or fatal
    #[arg(short = 'l', long = "log-level", value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Log format: text or json (one JSON object per line)
    #[arg(long = "log-format", value_name = "FORMAT")]
    pub log_format: Option<String>,

    /// Serve Prometheus metrics at http://ADDR/metrics (host:port; off when not given)
    #[arg(long = "metrics-addr", value_name = "ADDR")]
    pub metrics_addr: Option<String>,

    /// Allow --metrics-addr on an address other hosts can reach (loopback only otherwise)
    #[arg(long = "metrics-allow-remote", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub metrics_allow_remote: Option<bool>,

    /// Enable debug mode
    #[arg(short = 'D', long = "debug")]
    pub debug: bool,

    /// Path to use for the daemon PID file
    #[arg(short = 'p', long = "pidfile", value_name = "PATH")]
    pub pidfile: Option<PathBuf>,

    /// Use TLS; implied by --tlsverify. --tls=false allows a non-loopback TCP listener without TLS
    #[arg(long = "tls", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub tls: Option<bool>,

    /// Use TLS and verify the remote (clients must present a certificate signed by --tlscacert)
    #[arg(long = "tlsverify", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub tlsverify: Option<bool>,

    /// Trust certs signed only by this CA
    #[arg(long = "tlscacert", value_name = "PATH")]
    pub tlscacert: Option<PathBuf>,

    /// Path to TLS certificate file
    #[arg(long = "tlscert", value_name = "PATH")]
    pub tlscert: Option<PathBuf>,

    /// Path to TLS key file
    #[arg(long = "tlskey", value_name = "PATH")]
    pub tlskey: Option<PathBuf>,

    /// Registry to reach without TLS verification, falling back to plain HTTP (host[:port] or CIDR; repeatable)
    #[arg(long = "insecure-registry", value_name = "REGISTRY")]
    pub insecure_registries: Vec<String>,

    /// Preferred Docker Hub mirror (repeatable)
    #[arg(long = "registry-mirror", value_name = "URL")]
    pub registry_mirrors: Vec<String>,

    /// Maximum concurrent blob uploads, daemon-wide
    #[arg(long = "max-concurrent-uploads", value_name = "N")]
    pub max_concurrent_uploads: Option<usize>,

    /// Set key=value labels to the daemon (repeatable)
    #[arg(long = "label", value_name = "LABEL", value_parser = crate::labels::check)]
    pub labels: Vec<String>,

    /// Maximum concurrent blob downloads, daemon-wide
    #[arg(long = "max-concurrent-downloads", value_name = "N")]
    pub max_concurrent_downloads: Option<usize>,

    /// Seconds running pushes, pulls and loads get to finish when the daemon is stopped; then
    /// they are cancelled (default 15; a negative value waits for them without limit)
    #[arg(
        long = "shutdown-timeout",
        value_name = "SECONDS",
        allow_negative_numbers = true
    )]
    pub shutdown_timeout: Option<i64>,

    /// HTTP proxy for registry requests (replaces HTTP_PROXY)
    #[arg(long = "http-proxy", value_name = "URL")]
    pub http_proxy: Option<String>,

    /// HTTPS proxy for registry requests (replaces HTTPS_PROXY)
    #[arg(long = "https-proxy", value_name = "URL")]
    pub https_proxy: Option<String>,

    /// Hosts registry requests reach without a proxy (replaces NO_PROXY)
    #[arg(long = "no-proxy", value_name = "LIST")]
    pub no_proxy: Option<String>,

    /// Validate the daemon configuration (file and flags) and exit: prints "configuration OK"
    #[arg(long = "validate")]
    pub validate: bool,

    /// Print version information and quit
    #[arg(short = 'v', long = "version")]
    pub version: bool,

    /// Without a command, hoistd runs the daemon
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Clone, Debug, Subcommand)]
pub enum Command {
    /// Verify the data root offline, with no daemon running: every blob hashes to its name, and
    /// every image's content is present and readable. Prints one line per problem; exits 0 when
    /// clean, 1 when problems were found, 2 when the check could not run
    Check,
}
