//! What every handler shares: the engine, and what the daemon says about itself.

use std::sync::{Arc, RwLock};

use hoist_engine::Engine;

/// What the daemon tells clients about itself.
#[derive(Clone, Debug)]
pub struct ServerInfo {
    pub version: String,
    pub git_commit: String,
    /// The oldest API version served (`DOCKER_MIN_API_VERSION`, checked by
    /// [`crate::check_min_api_version`]).
    pub min_api_version: String,
    /// What a configuration reload may change.
    pub details: LiveDetails,
}

/// The daemon's settings `/info` shows that a configuration reload changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Details {
    pub debug: bool,
    /// The daemon's labels (`--label`, daemon.json `labels`).
    pub labels: Vec<String>,
}

/// [`Details`] shared between the handlers and whoever reloads them. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct LiveDetails(Arc<RwLock<Arc<Details>>>);

impl LiveDetails {
    pub fn new(details: Details) -> LiveDetails {
        LiveDetails(Arc::new(RwLock::new(Arc::new(details))))
    }

    pub fn get(&self) -> Arc<Details> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn set(&self, details: Details) {
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(details);
    }
}

#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub server: ServerInfo,
}
