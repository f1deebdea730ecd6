//! What every handler shares: the engine, and what the daemon says about itself.

use hoist_engine::Engine;

/// What the daemon tells clients about itself.
#[derive(Clone, Debug)]
pub struct ServerInfo {
    pub version: String,
    pub git_commit: String,
    pub debug: bool,
}

#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub server: ServerInfo,
}
