//! The client factory: one reqwest `Client` per registry host, shared by every repository
//! handle so that connection pools, learned schemes, challenges and tokens are reused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::auth::AuthState;
use crate::config::{Access, RegistryConfig};
use crate::credentials::Credentials;
use crate::insecure::{InsecureRules, is_docker_hub};
use crate::proxy::ProxyRules;
use crate::repository::Repository;
use crate::sendfile_upload::ConnectionPool;
use crate::tls::CertsDir;
use crate::transport::Transport;
use crate::{RegistryError, tls};

/// Docker Hub's reference domain is not where its registry API lives.
const DOCKER_HUB_REGISTRY: &str = "registry-1.docker.io";

pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Enough for the engine's per-host upload concurrency, small enough not to hoard sockets.
const POOL_MAX_IDLE_PER_HOST: usize = 8;

#[derive(Clone)]
pub struct Registries {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) config: RegistryConfig,
    insecure: InsecureRules,
    pub(crate) proxy: Arc<ProxyRules>,
    endpoints: Mutex<HashMap<String, Arc<OnceCell<Arc<Endpoint>>>>>,
    pub(crate) auth: AuthState,
    /// Kept-alive connections of the sendfile upload path.
    pub(crate) upload_connections: ConnectionPool,
}

/// One registry (or token server) host and how to reach it.
pub(crate) struct Endpoint {
    /// `host` or `host:port`, as in URLs and certs.d directory names.
    pub(crate) host: String,
    pub(crate) insecure: bool,
    pub(crate) client: reqwest::Client,
    scheme: AtomicU8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scheme {
    Https = 1,
    Http = 2,
}

impl Scheme {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Scheme::Https => "https",
            Scheme::Http => "http",
        }
    }
}

impl Endpoint {
    /// The scheme that worked for this host, once known. Secure hosts only ever use HTTPS.
    pub(crate) fn scheme(&self) -> Option<Scheme> {
        match self.scheme.load(Ordering::Acquire) {
            1 => Some(Scheme::Https),
            2 => Some(Scheme::Http),
            _ => None,
        }
    }

    pub(crate) fn remember(&self, scheme: Scheme) {
        self.scheme.store(scheme as u8, Ordering::Release);
    }
}

impl std::fmt::Debug for Registries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registries")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl Registries {
    pub fn new(config: RegistryConfig) -> Result<Registries, RegistryError> {
        tls::install_crypto_provider();
        let insecure = InsecureRules::new(&config.insecure_registries, config.insecure_loopback)?;
        let proxy = Arc::new(ProxyRules::from_env()?);
        Ok(Registries {
            shared: Arc::new(Shared {
                config,
                insecure,
                proxy,
                endpoints: Mutex::new(HashMap::new()),
                auth: AuthState::default(),
                upload_connections: ConnectionPool::default(),
            }),
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
        let scopes = vec![match access {
            Access::Pull => format!("repository:{path}:pull"),
            Access::PullPush => format!("repository:{path}:pull,push"),
        }];
        let transport = Transport::new(self.shared.clone(), endpoint_host, credentials, scopes);
        Repository::new(host.to_owned(), path.to_owned(), access, transport)
    }

    /// Whether `host` (a reference domain) gets unverified TLS and plain-HTTP fallback.
    /// Async because a CIDR entry makes dockerd resolve the name, and so do we.
    pub async fn is_insecure(&self, host: &str) -> bool {
        self.shared.insecure.is_insecure(host).await
    }
}

/// The host a reference domain's registry API lives on (`docker.io` → Docker Hub's).
pub(crate) fn api_host(domain: &str) -> String {
    if is_docker_hub(&domain.to_ascii_lowercase()) {
        DOCKER_HUB_REGISTRY.to_owned()
    } else {
        domain.to_owned()
    }
}

impl Shared {
    /// The endpoint for `host`, built once and shared.
    pub(crate) async fn endpoint(&self, host: &str) -> Result<Arc<Endpoint>, RegistryError> {
        let cell = self.endpoint_cell(host);
        cell.get_or_try_init(|| async {
            let insecure = self.insecure.is_insecure(host).await;
            let tls = CertsDir::load(&self.config.certs_dir, host)?;
            let endpoint = self.build_endpoint(host, insecure, tls)?;
            if !insecure {
                endpoint.remember(Scheme::Https);
            }
            tracing::debug!(host, insecure, "registry endpoint ready");
            Ok(Arc::new(endpoint))
        })
        .await
        .cloned()
    }

    /// The endpoint for the token server `realm_host` of registry `registry_host`. The
    /// registry's settings carry over, as in dockerd (which fetches tokens through the
    /// registry's own transport): an insecure registry's token server is not verified either,
    /// and the registry's certs.d CAs (and client certificate, when the token server's own
    /// directory has none) apply besides the token server's own.
    pub(crate) async fn realm_endpoint(
        &self,
        registry_host: &str,
        realm_host: &str,
    ) -> Result<Arc<Endpoint>, RegistryError> {
        if realm_host.eq_ignore_ascii_case(registry_host) {
            return self.endpoint(registry_host).await;
        }
        let registry = self.endpoint(registry_host).await?;
        let cell = self.endpoint_cell(&format!("{realm_host} for {registry_host}"));
        cell.get_or_try_init(|| async {
            let insecure = registry.insecure || self.insecure.is_insecure(realm_host).await;
            let tls = CertsDir::load(&self.config.certs_dir, realm_host)?
                .merge(CertsDir::load(&self.config.certs_dir, registry_host)?);
            let endpoint = self.build_endpoint(realm_host, insecure, tls)?;
            tracing::debug!(
                realm_host,
                registry_host,
                insecure,
                "token server endpoint ready"
            );
            Ok(Arc::new(endpoint))
        })
        .await
        .cloned()
    }

    fn endpoint_cell(&self, key: &str) -> Arc<OnceCell<Arc<Endpoint>>> {
        let mut endpoints = self
            .endpoints
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        endpoints.entry(key.to_owned()).or_default().clone()
    }

    fn build_endpoint(
        &self,
        host: &str,
        insecure: bool,
        tls: CertsDir,
    ) -> Result<Endpoint, RegistryError> {
        let proxy = self.proxy.clone();
        let client = reqwest::Client::builder()
            .user_agent(&self.config.user_agent)
            // HTTP/2 flow control throttles large uploads (buildkit and ggcr measured it).
            .http1_only()
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_keepalive(TCP_KEEPALIVE)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .proxy(reqwest::Proxy::custom(move |url| proxy.proxy_for(url)))
            .tls_backend_preconfigured(tls.client_config(insecure)?)
            .build()
            .map_err(|e| RegistryError::Config(format!("building HTTP client for {host}: {e}")))?;
        Ok(Endpoint {
            host: host.to_owned(),
            insecure,
            client,
            scheme: AtomicU8::new(0),
        })
    }
}
