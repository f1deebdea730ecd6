//! hoist's use cases: load, save, list, inspect, tag, remove and push images.
//!
//! The engine knows nothing of HTTP servers: the API layer turns requests into calls here and
//! renders the typed results and progress events. Below it, the store keeps content and the
//! registry client talks to registries; neither knows of the other.

mod auth;
mod error;
mod image_content;
mod images;
mod import;
mod load;
mod login;
mod media;
mod names;
mod platform;
mod progress;
mod pull;
mod push;
mod save;
mod system;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hoist_registry::{Registries, RegistryConfig};
use hoist_store::Store;

pub use hoist_store::Descriptor;

pub use auth::{AuthConfig, normalize_server};
pub use error::{EngineError, ErrorKind};
pub use images::{HistoryEntry, ImageDetails, ImageSummary, ListFilters, Removal};
pub use import::{ImportJob, ImportRequest};
pub use load::LoadedImage;
pub use names::ImageView;
pub use platform::Platform;
pub use progress::ProgressBoard;
pub use pull::{PullEvent, PullJob, PullLayerState, PullRequest};
pub use push::{LayerState, PushEvent, PushJob, PushRequest};
pub use save::SavePlan;
pub use system::{RegistrySettings, SystemInfo, kernel_version};

/// Daemon settings the engine needs.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub data_root: PathBuf,
    pub registry: RegistryConfig,
    /// Blob uploads running at once, daemon-wide (dockerd's `max-concurrent-uploads`).
    pub max_concurrent_uploads: usize,
    /// Blob downloads running at once, daemon-wide (dockerd's `max-concurrent-downloads`).
    pub max_concurrent_downloads: usize,
    /// An upload whose byte count does not move for this long is aborted and retried.
    pub upload_stall_timeout: Duration,
    /// Chunk size used after a single PUT of a blob failed mid-body.
    pub fallback_chunk_size: u64,
    pub registry_mirrors: Vec<String>,
    /// `host[:port]` that pulls of Docker Hub images go to after the mirrors, instead of Docker
    /// Hub itself: a stand-in origin for air-gapped sites and tests.
    pub docker_hub_pull_origin: Option<String>,
}

impl EngineConfig {
    pub fn new(data_root: PathBuf) -> EngineConfig {
        EngineConfig {
            data_root,
            registry: RegistryConfig::default(),
            max_concurrent_uploads: 5,
            max_concurrent_downloads: 3,
            upload_stall_timeout: Duration::from_secs(60),
            fallback_chunk_size: 16 * 1024 * 1024,
            registry_mirrors: Vec::new(),
            docker_hub_pull_origin: None,
        }
    }
}

/// The engine. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Engine {
    config: Arc<EngineConfig>,
    store: Store,
    registries: Registries,
    transfers: Arc<push::TransferManager>,
    unsettled_pushes: push::UnsettledPushes,
    downloads: Arc<pull::DownloadManager>,
    retry: push::RetryPolicy,
    host_platform: Platform,
    /// Serialises read-modify-write changes of image names (tag moves, dangling records), which
    /// the store applies atomically but cannot decide for us.
    names_lock: Arc<Mutex<()>>,
}

impl Engine {
    /// Opens the store under `config.data_root` (failing if another daemon holds it).
    pub fn open(config: EngineConfig) -> Result<Engine, EngineError> {
        let store = Store::open(&config.data_root)?;
        let registries = Registries::new(config.registry.clone())?;
        let retry = push::RetryPolicy::default();
        let transfers = Arc::new(push::TransferManager::new(
            config.max_concurrent_uploads,
            push::TransferSettings {
                retry: retry.clone(),
                stall_timeout: config.upload_stall_timeout,
                fallback_chunk_size: config.fallback_chunk_size,
            },
        ));
        let downloads = Arc::new(pull::DownloadManager::new(
            store.clone(),
            config.max_concurrent_downloads,
            retry.clone(),
        ));
        Ok(Engine {
            config: Arc::new(config),
            store,
            registries,
            transfers,
            unsettled_pushes: push::UnsettledPushes::default(),
            downloads,
            retry,
            host_platform: Platform::host(),
            names_lock: Arc::new(Mutex::new(())),
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn host_platform(&self) -> &Platform {
        &self.host_platform
    }

    /// Runs store work off the async runtime's threads.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
    ) -> Result<T, EngineError> {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| EngineError::Internal(format!("background task failed: {e}")))?
    }
}
