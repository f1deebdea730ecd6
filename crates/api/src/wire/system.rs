//! System answers: `GET /info` and `GET /version`.

use std::collections::BTreeMap;

use hoist_engine::SystemInfo;
use serde::Serialize;
use serde_json::json;

use crate::state::ServerInfo;
use crate::version::{ApiVersion, MAX_API_VERSION};
use crate::wire::time::rfc3339;

/// `GET /info` (moby's `system.Info`), in the shape the docker CLI prints without complaint.
/// hoist runs no containers and has no swarm, plugins or runtimes: those fields say so.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Info {
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
    /// Only for clients older than API 1.25, which expect it (moby's legacy field).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_driver: Option<String>,
    pub warnings: Vec<String>,
}

/// Before API 1.25 moby still sent `ExecutionDriver`; before 1.39 it named an unknown kernel
/// or operating system `<unknown>` rather than leaving it empty.
const EXECUTION_DRIVER_UNTIL: &str = "1.25";
const UNKNOWN_KERNEL_UNTIL: &str = "1.39";

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

impl Info {
    pub fn new(info: SystemInfo, server: &ServerInfo, version: &ApiVersion) -> Info {
        let registries = info.registries;
        let details = server.details.get();
        let mut index_configs = BTreeMap::new();
        index_configs.insert(
            "docker.io".to_owned(),
            IndexInfo {
                name: "docker.io".into(),
                mirrors: registries.mirrors.clone(),
                secure: true,
                official: true,
            },
        );
        for name in registries.insecure_registries {
            index_configs.insert(
                name.clone(),
                IndexInfo {
                    name,
                    mirrors: Vec::new(),
                    secure: false,
                    official: false,
                },
            );
        }
        Info {
            id: info.daemon_id,
            containers: 0,
            containers_running: 0,
            containers_paused: 0,
            containers_stopped: 0,
            images: info.images,
            driver: "hoist".into(),
            driver_status: vec![[
                "Content store".into(),
                info.store_root.display().to_string(),
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
            debug: details.debug,
            n_fd: info.open_files,
            n_goroutines: 0,
            system_time: rfc3339(info.system_time),
            logging_driver: "none".into(),
            cgroup_driver: "none".into(),
            cgroup_version: String::new(),
            n_events_listener: 0,
            kernel_version: unknown_if_empty(info.kernel_version, version),
            operating_system: unknown_if_empty(info.operating_system, version),
            os_version: info.os_version,
            os_type: std::env::consts::OS.into(),
            architecture: std::env::consts::ARCH.into(),
            index_server_address: "https://index.docker.io/v1/".into(),
            registry_config: RegistryConfigInfo {
                insecure_registry_cidrs: registries.insecure_cidrs,
                index_configs,
                mirrors: registries.mirrors,
            },
            ncpu: info.cpus,
            mem_total: info.memory_bytes,
            docker_root_dir: info.data_root.display().to_string(),
            http_proxy: info.http_proxy,
            https_proxy: info.https_proxy,
            no_proxy: info.no_proxy,
            name: info.hostname,
            labels: details.labels.clone(),
            experimental_build: false,
            server_version: server.version.clone(),
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
            execution_driver: (!version.at_least(EXECUTION_DRIVER_UNTIL))
                .then(|| "<not supported>".to_owned()),
            warnings: Vec::new(),
        }
    }
}

fn unknown_if_empty(text: String, version: &ApiVersion) -> String {
    if text.is_empty() && !version.at_least(UNKNOWN_KERNEL_UNTIL) {
        "<unknown>".to_owned()
    } else {
        text
    }
}

/// `GET /version` (moby's `types.Version`). The daemon has one component, the engine, whose
/// details repeat the top-level facts.
pub fn version(server: &ServerInfo, kernel_version: String) -> serde_json::Value {
    json!({
        "Platform": {"Name": "hoist"},
        "Components": [{
            "Name": "Engine",
            "Version": server.version,
            "Details": {
                "ApiVersion": MAX_API_VERSION,
                "Arch": go_arch(),
                "BuildTime": "",
                "Experimental": "false",
                "GitCommit": server.git_commit,
                "GoVersion": "",
                "KernelVersion": kernel_version,
                "MinAPIVersion": server.min_api_version,
                "Os": std::env::consts::OS,
            }
        }],
        "Version": server.version,
        "ApiVersion": MAX_API_VERSION,
        "MinAPIVersion": server.min_api_version,
        "GitCommit": server.git_commit,
        "GoVersion": "",
        "Os": std::env::consts::OS,
        "Arch": go_arch(),
        "KernelVersion": kernel_version,
        "BuildTime": "",
    })
}

/// The host architecture as Go's `GOARCH` names it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}
