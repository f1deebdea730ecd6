//! What the daemon knows of itself and its host: the machine, the store and its registry
//! settings.

use std::path::PathBuf;
use std::time::SystemTime;

use hoist_registry::mask_credentials;

use crate::{Engine, EngineError, names};

/// What the daemon knows of itself and its host.
#[derive(Debug)]
pub struct SystemInfo {
    /// This daemon's stable identity.
    pub daemon_id: String,
    /// How many images the store holds.
    pub images: usize,
    pub store_root: PathBuf,
    pub data_root: PathBuf,
    /// File descriptors the daemon has open.
    pub open_files: usize,
    pub system_time: SystemTime,
    pub kernel_version: String,
    /// The distribution's `PRETTY_NAME`, `Linux` when it has none.
    pub operating_system: String,
    /// The distribution's `VERSION_ID`.
    pub os_version: String,
    pub hostname: String,
    pub cpus: usize,
    pub memory_bytes: u64,
    /// The daemon's proxy settings, with any credentials in them masked.
    pub http_proxy: String,
    pub https_proxy: String,
    pub no_proxy: String,
    pub registries: RegistrySettings,
}

/// How the daemon reaches registries.
#[derive(Debug)]
pub struct RegistrySettings {
    /// Docker Hub mirrors, in the order they are tried.
    pub mirrors: Vec<String>,
    /// Address ranges whose registries are insecure, the configured ones first.
    pub insecure_cidrs: Vec<String>,
    /// Registries (`host[:port]`) configured as insecure by name.
    pub insecure_registries: Vec<String>,
}

impl Engine {
    pub async fn system_info(&self) -> Result<SystemInfo, EngineError> {
        let engine = self.clone();
        self.blocking(move || Ok(engine.system_info_blocking()))
            .await
    }

    fn system_info_blocking(&self) -> SystemInfo {
        let config = self.config();
        let registry = &config.registry;
        let (mut insecure_cidrs, insecure_registries): (Vec<String>, Vec<String>) = registry
            .insecure_registries
            .iter()
            .cloned()
            .partition(|entry| entry.parse::<ipnet::IpNet>().is_ok());
        // dockerd appends the loopback ranges after the configured ones, in this order.
        if registry.insecure_loopback {
            insecure_cidrs.extend(["::1/128".to_owned(), "127.0.0.0/8".to_owned()]);
        }
        // The proxies in force: the daemon's settings, else the environment.
        let proxies = registry.proxies.effective();
        SystemInfo {
            daemon_id: self.daemon_id(),
            images: names::all_images(&self.store).len(),
            store_root: self.store.root().to_path_buf(),
            data_root: config.data_root.clone(),
            open_files: std::fs::read_dir("/proc/self/fd")
                .map(|d| d.count())
                .unwrap_or(0),
            system_time: SystemTime::now(),
            kernel_version: kernel_version(),
            operating_system: os_release("PRETTY_NAME").unwrap_or_else(|| "Linux".into()),
            os_version: os_release("VERSION_ID").unwrap_or_default(),
            hostname: read_trimmed("/proc/sys/kernel/hostname"),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            memory_bytes: mem_total(),
            http_proxy: proxies
                .http_proxy
                .as_deref()
                .map(mask_credentials)
                .unwrap_or_default(),
            https_proxy: proxies
                .https_proxy
                .as_deref()
                .map(mask_credentials)
                .unwrap_or_default(),
            no_proxy: proxies.no_proxy.unwrap_or_default(),
            registries: RegistrySettings {
                mirrors: config.registry_mirrors.clone(),
                insecure_cidrs,
                insecure_registries,
            },
        }
    }

    /// A stable identity for this daemon, kept beside the store as dockerd keeps `engine-id`.
    fn daemon_id(&self) -> String {
        let path = self.config().data_root.join("engine-id");
        if let Ok(id) = std::fs::read_to_string(&path)
            && !id.trim().is_empty()
        {
            return id.trim().to_owned();
        }
        let id = format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            rand::random::<u32>(),
            rand::random::<u16>(),
            rand::random::<u16>() & 0xfff,
            (rand::random::<u16>() & 0x3fff) | 0x8000,
            rand::random::<u64>() & 0xffff_ffff_ffff
        );
        if let Err(e) = std::fs::write(&path, &id) {
            tracing::warn!(path = %path.display(), error = %e, "cannot persist the daemon ID");
        }
        id
    }
}

/// The host kernel's release (`uname -r`).
pub fn kernel_version() -> String {
    read_trimmed("/proc/sys/kernel/osrelease")
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn os_release(key: &str) -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    text.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix('=')?;
        Some(value.trim_matches('"').to_owned())
    })
}

fn mem_total() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .unwrap_or(0)
}
