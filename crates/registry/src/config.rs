//! What the daemon tells the registry client: insecure registries, certificates, chunking.

use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// dockerd's `insecure-registries`: `host:port` or `host` (matched exactly against the
    /// reference domain), or a CIDR such as `10.0.0.0/8` (the host's addresses are checked).
    pub insecure_registries: Vec<String>,
    /// As in dockerd: 127.0.0.0/8, ::1 and `localhost` are insecure unless this is false.
    pub insecure_loopback: bool,
    /// `<dir>/<host:port>/*.crt` are added to the system roots; `*.cert` with its `*.key` is the
    /// client identity.
    pub certs_dir: PathBuf,
    /// Registry host → chunk size for chunked PATCH uploads to it.
    pub chunk_sizes: HashMap<String, u64>,
    pub user_agent: String,
}

impl Default for RegistryConfig {
    fn default() -> RegistryConfig {
        RegistryConfig {
            insecure_registries: Vec::new(),
            insecure_loopback: true,
            certs_dir: PathBuf::from("/etc/docker/certs.d"),
            chunk_sizes: HashMap::new(),
            user_agent: concat!("hoist/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// What a repository handle will be used for; decides the token scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Pull,
    PullPush,
}

/// A setting hoist cannot use: certs.d contents, proxy variables, insecure-registry entries.
/// It becomes [`crate::RegistryError::Config`] with the same message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ConfigError(pub(crate) String);
