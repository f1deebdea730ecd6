//! The engine: the daemon-wide state every use case works with.
//!
//! The use cases (`images`, `load`, `save`, `import`, `pull`, `push`, `login`, `system`) add
//! their methods to [`Engine`] in their own modules; this one only builds it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hoist_registry::{Registries, RegistryConfig};
use hoist_store::{FreeSpaceReserve, Store, StoreOptions};
use tokio_util::sync::CancellationToken;

use crate::blocking;
use crate::downloads::Downloads;
use crate::error::EngineError;
use crate::events::Events;
use crate::observe::{NoObserver, Observer, ObserverHandle, RetryCause};
use crate::platform::Platform;
use crate::retry::RetryPolicy;
use crate::uploads::{UnsettledPushes, UploadSettings, Uploads};

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
    /// Free space blob writes leave on the data root's filesystem (daemon.json `min-free-space`).
    pub min_free_space: FreeSpaceReserve,
    /// A push of an index only partly here fetches the rest from the registry the index was
    /// pulled from (daemon.json `push-complete-from-origin`).
    pub push_complete_from_origin: bool,
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
            min_free_space: FreeSpaceReserve::Default,
            push_complete_from_origin: true,
        }
    }
}

impl EngineConfig {
    /// Checks the registry settings (insecure registries, proxies) as opening would.
    pub fn check_registry_settings(&self) -> Result<(), EngineError> {
        Ok(Registries::check(&self.registry)?)
    }
}

/// The engine. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Engine {
    /// Replaced as a whole by [`Engine::reconfigure`]; readers take a snapshot.
    config: Arc<RwLock<Arc<EngineConfig>>>,
    pub(crate) store: Store,
    pub(crate) registries: Registries,
    pub(crate) uploads: Arc<Uploads>,
    pub(crate) unsettled_pushes: UnsettledPushes,
    /// Blob homes a push waits to have recorded (see `provenance`).
    pub(crate) pending_sources: crate::source_queue::SourceQueue,
    pub(crate) downloads: Arc<Downloads>,
    pub(crate) retry: RetryPolicy,
    pub(crate) host_platform: Platform,
    /// Serialises read-modify-write changes of image names (tag moves, dangling records), which
    /// the store applies atomically but cannot decide for us.
    pub(crate) names_lock: Arc<Mutex<()>>,
    /// Set while an image prune runs: a second one is refused, as in moby.
    pub(crate) prune_running: Arc<std::sync::atomic::AtomicBool>,
    pub(crate) events: Events,
    /// Told of transfers, retries and finished operations (the daemon's metrics).
    pub(crate) observer: ObserverHandle,
    /// Fired by [`Engine::stop_transfers`].
    stop: CancellationToken,
}

/// What a configuration reload may change while the engine runs (dockerd's live-reloadable
/// registry and transfer settings, and proxies).
#[derive(Clone, Debug)]
pub struct LiveSettings {
    /// `insecure_registries`, `insecure_loopback` and `proxies` are taken from it.
    pub registry: hoist_registry::RegistryConfig,
    pub registry_mirrors: Vec<String>,
    pub max_concurrent_uploads: usize,
    pub max_concurrent_downloads: usize,
}

impl Engine {
    /// Opens the store under `config.data_root` (failing if another daemon holds it).
    pub fn open(config: EngineConfig) -> Result<Engine, EngineError> {
        Engine::open_observed(config, Arc::new(NoObserver))
    }

    /// As [`Engine::open`], telling `observer` what the engine does.
    pub fn open_observed(
        config: EngineConfig,
        observer: Arc<dyn Observer>,
    ) -> Result<Engine, EngineError> {
        let store = Store::open_with(
            &config.data_root,
            &StoreOptions {
                min_free_space: config.min_free_space,
            },
        )?;
        let registries = Registries::new(config.registry.clone())?;
        let observer = ObserverHandle::new(observer);
        let renewals = observer.clone();
        registries.on_token_renewal(move |host| renewals.retried(host, RetryCause::TokenRenewal));
        let retry = RetryPolicy {
            observer: observer.clone(),
            ..RetryPolicy::default()
        };
        let stop = CancellationToken::new();
        let uploads = Arc::new(Uploads::new(
            config.max_concurrent_uploads,
            UploadSettings {
                retry: retry.clone(),
                stall_timeout: config.upload_stall_timeout,
                fallback_chunk_size: config.fallback_chunk_size,
            },
            stop.clone(),
        ));
        let downloads = Arc::new(Downloads::new(
            store.clone(),
            config.max_concurrent_downloads,
            retry.clone(),
            stop.clone(),
        ));
        Ok(Engine {
            config: Arc::new(RwLock::new(Arc::new(config))),
            store,
            registries,
            uploads,
            unsettled_pushes: UnsettledPushes::default(),
            pending_sources: Default::default(),
            downloads,
            retry,
            host_platform: Platform::host(),
            names_lock: Arc::new(Mutex::new(())),
            prune_running: Arc::default(),
            events: Events::new(),
            observer,
            stop,
        })
    }

    /// The settings in force now.
    pub fn config(&self) -> Arc<EngineConfig> {
        self.config
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Applies a reloaded configuration. Pushes and pulls under way keep the registry settings
    /// they started with and their transfers are not interrupted: lowering a concurrency limit
    /// retires slots as transfers end. Invalid registry settings (an insecure-registry entry,
    /// a proxy URL) change nothing and are returned.
    pub fn reconfigure(&self, live: LiveSettings) -> Result<(), EngineError> {
        self.registries.reconfigure(&live.registry)?;
        self.uploads.resize(live.max_concurrent_uploads);
        self.downloads.resize(live.max_concurrent_downloads);
        let mut config = self
            .config
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut next = EngineConfig::clone(&config);
        next.registry.insecure_registries = live.registry.insecure_registries;
        next.registry.insecure_loopback = live.registry.insecure_loopback;
        next.registry.proxies = live.registry.proxies;
        next.registry_mirrors = live.registry_mirrors;
        next.max_concurrent_uploads = live.max_concurrent_uploads;
        next.max_concurrent_downloads = live.max_concurrent_downloads;
        *config = Arc::new(next);
        Ok(())
    }

    /// Ends every upload and download at once with [`EngineError::ShuttingDown`] (the daemon's
    /// shutdown timeout ran out). Nothing half-written stays: a download's temporary file goes
    /// with it, and the upload sessions left open are cancelled (see
    /// [`Engine::wait_session_cleanups`]).
    pub fn stop_transfers(&self) {
        self.stop.cancel();
    }

    /// Waits, for at most `timeout`, until the upload sessions of stopped uploads are cancelled.
    pub async fn wait_session_cleanups(&self, timeout: Duration) {
        self.uploads.wait_session_cleanups(timeout).await;
    }

    pub fn host_platform(&self) -> &Platform {
        &self.host_platform
    }

    /// Runs store work off the async runtime's threads.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
    ) -> Result<T, EngineError> {
        blocking::run(work).await
    }
}
