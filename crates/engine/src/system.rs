//! What `GET /info` reports: the machine, the daemon and its registry settings, in the shape the
//! docker CLI prints without complaint.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{Engine, EngineError, names};

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SystemInfo {
    #[serde(rename = "ID")]
    pub id: String,
    pub containers: u32,
    pub containers_running: u32,
    pub containers_paused: u32,
    pub containers_stopped: u32,
    pub images: usize,
    pub driver: String,
    pub driver_status: Vec<[String; 2]>,
    pub plugins: Plugins,
    pub memory_limit: bool,
    pub swap_limit: bool,
    pub cpu_cfs_period: bool,
    pub cpu_cfs_quota: bool,
    #[serde(rename = "CPUShares")]
    pub cpu_shares: bool,
    #[serde(rename = "CPUSet")]
    pub cpu_set: bool,
    pub pids_limit: bool,
    #[serde(rename = "IPv4Forwarding")]
    pub ipv4_forwarding: bool,
    pub debug: bool,
    pub n_fd: usize,
    pub n_goroutines: usize,
    pub system_time: String,
    pub logging_driver: String,
    pub cgroup_driver: String,
    pub cgroup_version: String,
    pub n_events_listener: u32,
    pub kernel_version: String,
    pub operating_system: String,
    #[serde(rename = "OSVersion")]
    pub os_version: String,
    #[serde(rename = "OSType")]
    pub os_type: String,
    pub architecture: String,
    pub index_server_address: String,
    pub registry_config: RegistryConfigInfo,
    #[serde(rename = "NCPU")]
    pub ncpu: usize,
    pub mem_total: u64,
    pub docker_root_dir: String,
    pub http_proxy: String,
    pub https_proxy: String,
    pub no_proxy: String,
    pub name: String,
    pub labels: Vec<String>,
    pub experimental_build: bool,
    pub server_version: String,
    pub runtimes: BTreeMap<String, serde_json::Value>,
    pub default_runtime: String,
    pub swarm: Swarm,
    pub live_restore_enabled: bool,
    pub isolation: String,
    pub init_binary: String,
    pub containerd_commit: Commit,
    pub runc_commit: Commit,
    pub init_commit: Commit,
    pub security_options: Vec<String>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Plugins {
    pub volume: Vec<String>,
    pub network: Vec<String>,
    pub authorization: Option<Vec<String>>,
    pub log: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegistryConfigInfo {
    #[serde(rename = "InsecureRegistryCIDRs")]
    pub insecure_registry_cidrs: Vec<String>,
    pub index_configs: BTreeMap<String, IndexInfo>,
    pub mirrors: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct IndexInfo {
    pub name: String,
    pub mirrors: Vec<String>,
    pub secure: bool,
    pub official: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Swarm {
    pub node_id: String,
    pub node_addr: String,
    pub local_node_state: String,
    pub control_available: bool,
    pub error: String,
    pub remote_managers: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Commit {
    #[serde(rename = "ID")]
    pub id: String,
}

impl Engine {
    /// `server_version` is the daemon's version; `debug` whether it logs at debug level.
    pub async fn system_info(
        &self,
        server_version: &str,
        debug: bool,
    ) -> Result<SystemInfo, EngineError> {
        let engine = self.clone();
        let server_version = server_version.to_owned();
        self.blocking(move || Ok(engine.system_info_blocking(server_version, debug)))
            .await
    }

    fn system_info_blocking(&self, server_version: String, debug: bool) -> SystemInfo {
        let registry = &self.config.registry;
        let mut cidrs: Vec<String> = Vec::new();
        let mut index_configs = BTreeMap::new();
        index_configs.insert(
            "docker.io".to_owned(),
            IndexInfo {
                name: "docker.io".into(),
                mirrors: self.config.registry_mirrors.clone(),
                secure: true,
                official: true,
            },
        );
        for entry in &registry.insecure_registries {
            if entry.parse::<ipnet::IpNet>().is_ok() {
                cidrs.push(entry.clone());
            } else {
                index_configs.insert(
                    entry.clone(),
                    IndexInfo {
                        name: entry.clone(),
                        mirrors: Vec::new(),
                        secure: false,
                        official: false,
                    },
                );
            }
        }
        // dockerd appends the loopback ranges after the configured ones, in this order.
        if registry.insecure_loopback {
            cidrs.extend(["::1/128".to_owned(), "127.0.0.0/8".to_owned()]);
        }
        let env = |k: &str| {
            std::env::var(k)
                .or_else(|_| std::env::var(k.to_lowercase()))
                .unwrap_or_default()
        };
        SystemInfo {
            id: self.daemon_id(),
            containers: 0,
            containers_running: 0,
            containers_paused: 0,
            containers_stopped: 0,
            images: names::all_images(&self.store).len(),
            driver: "hoist".into(),
            driver_status: vec![[
                "Content store".into(),
                self.store.root().display().to_string(),
            ]],
            plugins: Plugins {
                volume: Vec::new(),
                network: Vec::new(),
                authorization: None,
                log: Vec::new(),
            },
            memory_limit: false,
            swap_limit: false,
            cpu_cfs_period: false,
            cpu_cfs_quota: false,
            cpu_shares: false,
            cpu_set: false,
            pids_limit: false,
            ipv4_forwarding: false,
            debug,
            n_fd: std::fs::read_dir("/proc/self/fd")
                .map(|d| d.count())
                .unwrap_or(0),
            n_goroutines: 0,
            system_time: crate::images::rfc3339(std::time::SystemTime::now()),
            logging_driver: "none".into(),
            cgroup_driver: "none".into(),
            cgroup_version: String::new(),
            n_events_listener: 0,
            kernel_version: read_trimmed("/proc/sys/kernel/osrelease"),
            operating_system: os_release("PRETTY_NAME").unwrap_or_else(|| "Linux".into()),
            os_version: os_release("VERSION_ID").unwrap_or_default(),
            os_type: std::env::consts::OS.into(),
            architecture: std::env::consts::ARCH.into(),
            index_server_address: "https://index.docker.io/v1/".into(),
            registry_config: RegistryConfigInfo {
                insecure_registry_cidrs: cidrs,
                index_configs,
                mirrors: self.config.registry_mirrors.clone(),
            },
            ncpu: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            mem_total: mem_total(),
            docker_root_dir: self.config.data_root.display().to_string(),
            http_proxy: redact_proxy(&env("HTTP_PROXY")),
            https_proxy: redact_proxy(&env("HTTPS_PROXY")),
            no_proxy: env("NO_PROXY"),
            name: read_trimmed("/proc/sys/kernel/hostname"),
            labels: Vec::new(),
            experimental_build: false,
            server_version,
            runtimes: BTreeMap::new(),
            default_runtime: String::new(),
            swarm: Swarm {
                node_id: String::new(),
                node_addr: String::new(),
                local_node_state: "inactive".into(),
                control_available: false,
                error: String::new(),
                remote_managers: None,
            },
            live_restore_enabled: false,
            isolation: String::new(),
            init_binary: String::new(),
            containerd_commit: Commit { id: String::new() },
            runc_commit: Commit { id: String::new() },
            init_commit: Commit { id: String::new() },
            security_options: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// A stable identity for this daemon, kept beside the store as dockerd keeps `engine-id`.
    fn daemon_id(&self) -> String {
        let path = self.config.data_root.join("engine-id");
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

/// Proxy URLs may carry credentials; `docker info` must not show them.
fn redact_proxy(url: &str) -> String {
    match url
        .split_once("://")
        .and_then(|(scheme, rest)| rest.split_once('@').map(|(_, host)| (scheme, host)))
    {
        Some((scheme, host)) => format!("{scheme}://xxxxx:xxxxx@{host}"),
        None => url.to_owned(),
    }
}
