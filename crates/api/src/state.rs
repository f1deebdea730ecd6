//! What every handler shares: the engine, and what the daemon says about itself.

use hoist_engine::Engine;

/// What the daemon tells clients about itself.
#[derive(Clone, Debug)]
pub struct ServerInfo {
    pub version: String,
    pub git_commit: String,
    pub debug: bool,
    /// The oldest API version served (`DOCKER_MIN_API_VERSION`, checked by
    /// [`crate::check_min_api_version`]).
    pub min_api_version: String,
    /// The daemon's labels (`--label`, daemon.json `labels`), shown by `/info`.
    pub labels: Vec<String>,
}

#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub server: ServerInfo,
}
