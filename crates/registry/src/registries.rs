//! The client factory: builds repository handles that share endpoints (connection pools,
//! learned schemes), authentication state (challenges, tokens) and the sendfile connections.

use std::sync::Arc;

use crate::RegistryError;
use crate::auth::Auth;
use crate::config::{Access, RegistryConfig};
use crate::credentials::Credentials;
use crate::endpoint::{Endpoints, api_host};
use crate::repository::{Parts, Repository};
use crate::transport::Transport;
use crate::upload::FileSender;

#[derive(Clone)]
pub struct Registries {
    config: Arc<RegistryConfig>,
    endpoints: Endpoints,
    auth: Auth,
    files: FileSender,
}

impl std::fmt::Debug for Registries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registries")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Registries {
    pub fn new(config: RegistryConfig) -> Result<Registries, RegistryError> {
        let endpoints = Endpoints::new(&config)?;
        let files = FileSender::new(config.user_agent.clone(), config.sendfile_to_this_host);
        Ok(Registries {
            config: Arc::new(config),
            auth: Auth::new(endpoints.clone()),
            endpoints,
            files,
        })
    }

    /// A handle on one repository. `host` is the reference domain (`docker.io` means Docker
    /// Hub's registry host), `path` the repository path such as `library/foo`.
    pub fn repository(
        &self,
        host: &str,
        path: &str,
        access: Access,
        credentials: Credentials,
    ) -> Repository {
        let endpoint_host = api_host(host);
        let sizes = &self.config.chunk_sizes;
        let chunk_size = sizes
            .get(host)
            .or_else(|| sizes.get(&endpoint_host))
            .copied();
        let scopes = vec![match access {
            Access::Pull => format!("repository:{path}:pull"),
            Access::PullPush => format!("repository:{path}:pull,push"),
        }];
        Repository::new(Parts {
            domain: host.to_owned(),
            path: path.to_owned(),
            access,
            chunk_size,
            transport: self.transport(endpoint_host, credentials, scopes),
            files: self.files.clone(),
        })
    }

    /// Sets what is told the registry (its domain as image names give it: `docker.io`, not
    /// the API host) whenever a request is sent again because the registry refused its token
    /// (the one retry after a 401 on a renewable token). Only the first hook set is kept.
    pub fn on_token_renewal(&self, hook: impl Fn(&str) + Send + Sync + 'static) {
        self.auth.set_token_renewal_hook(Box::new(hook));
    }

    /// Checks what [`Registries::new`] would refuse in `config`, without building anything:
    /// insecure-registry entries and proxy URLs (the environment's too).
    pub fn check(config: &RegistryConfig) -> Result<(), RegistryError> {
        Ok(Endpoints::check(config)?)
    }

    /// Applies a reloaded configuration's insecure registries (`insecure_registries`,
    /// `insecure_loopback`) and proxies; the rest of `config` is fixed at start. Operations
    /// under way keep the settings they started with; the next ones use the new settings.
    /// Invalid settings change nothing.
    pub fn reconfigure(&self, config: &RegistryConfig) -> Result<(), RegistryError> {
        Ok(self.endpoints.reconfigure(config)?)
    }

    /// Whether `host` (a reference domain) gets unverified TLS and plain-HTTP fallback.
    /// Async because a CIDR entry makes dockerd resolve the name, and so do we.
    pub async fn is_insecure(&self, host: &str) -> bool {
        self.endpoints.is_insecure(host).await
    }

    /// Requests to the registry API at `host` with `credentials`, asking tokens for `scopes`.
    pub(crate) fn transport(
        &self,
        host: String,
        credentials: Credentials,
        scopes: Vec<String>,
    ) -> Transport {
        Transport::new(
            self.endpoints.clone(),
            self.auth.clone(),
            host,
            credentials,
            scopes,
        )
    }

    /// The authentication state shared by every repository handle.
    pub(crate) fn auth(&self) -> &Auth {
        &self.auth
    }
}
