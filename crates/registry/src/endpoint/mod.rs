//! Reaching registry hosts: for each host (or token server) one HTTP client with its certs.d
//! material, insecure-registry settings and proxy rules, and the scheme that worked for it.
//! Shared by every repository handle, so connection pools and learned schemes are reused.

mod handshake;
mod insecure;
mod proxy;
pub(crate) mod tls;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::Mutex as AsyncMutex;
use url::Url;

use crate::config::{ConfigError, ProxyConfig, RegistryConfig};
use handshake::HandshakeProbe;
use insecure::{InsecureRules, is_docker_hub};
pub(crate) use proxy::ProxyRules;
use tls::{CertsDir, CertsFingerprint};

/// Docker Hub's reference domain is not where its registry API lives.
const DOCKER_HUB_REGISTRY: &str = "registry-1.docker.io";

pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Enough for the engine's per-host upload concurrency, small enough not to hoard sockets.
const POOL_MAX_IDLE_PER_HOST: usize = 8;

/// The host a reference domain's registry API lives on (`docker.io` → Docker Hub's).
pub(crate) fn api_host(domain: &str) -> String {
    if is_docker_hub(&domain.to_ascii_lowercase()) {
        DOCKER_HUB_REGISTRY.to_owned()
    } else {
        domain.to_owned()
    }
}

/// The domain an image name gives for the API host `host`: the inverse of [`api_host`], so that
/// what is reported per registry reads as in image names (`docker.io`).
pub(crate) fn name_domain(host: &str) -> &str {
    if host.eq_ignore_ascii_case(DOCKER_HUB_REGISTRY) {
        "docker.io"
    } else {
        host
    }
}

/// Every host's [`Endpoint`], each built on first use and built again when what it was built
/// from changed: the insecure-registry and proxy rules (a reload) or the host's certs.d
/// directory. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Endpoints {
    inner: Arc<Inner>,
}

struct Inner {
    certs_dir: PathBuf,
    user_agent: String,
    rules: RwLock<Arc<Rules>>,
    endpoints: Mutex<HashMap<String, Slot>>,
}

/// Where one host's endpoint is kept; locked while it is checked or built, so that a host's
/// endpoint is built once however many requests ask at the same moment.
type Slot = Arc<AsyncMutex<Option<Arc<Endpoint>>>>;

/// The settings a reload replaces, numbered so that endpoints built under older ones are known.
struct Rules {
    insecure: InsecureRules,
    proxy: Arc<ProxyRules>,
    generation: u64,
    /// What they were built from, so that a reload changing none of it keeps the endpoints.
    source: RulesSource,
}

#[derive(PartialEq, Eq)]
struct RulesSource {
    insecure_registries: Vec<String>,
    insecure_loopback: bool,
    proxies: ProxyConfig,
}

impl RulesSource {
    fn of(config: &RegistryConfig) -> RulesSource {
        RulesSource {
            insecure_registries: config.insecure_registries.clone(),
            insecure_loopback: config.insecure_loopback,
            proxies: config.proxies.clone(),
        }
    }
}

/// One registry (or token server) host and how to reach it.
pub(crate) struct Endpoint {
    /// `host` or `host:port`, as in URLs and certs.d directory names.
    pub(crate) host: String,
    pub(crate) insecure: bool,
    pub(crate) client: reqwest::Client,
    /// The proxy rules its client follows.
    pub(crate) proxy: Arc<ProxyRules>,
    scheme: AtomicU8,
    /// For an insecure host reached without a proxy: a handshake on its own, so that a port
    /// that never answers TLS is found out quickly.
    handshake: Option<HandshakeProbe>,
    /// The rules' generation and the state of the certs.d directories it was built from.
    built_from: (u64, CertsFingerprint),
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

    /// True when this insecure host's HTTPS port accepts connections but lets the TLS
    /// handshake time out, so plain HTTP is the only hope. False for secure hosts, proxied
    /// ones, and every other outcome.
    pub(crate) async fn https_never_answers(&self) -> bool {
        match &self.handshake {
            Some(probe) => probe.handshake_times_out(&self.host).await,
            None => false,
        }
    }

    /// Whether `url` has this host's scheme, host and port: credentials go only there. False
    /// while the scheme is not known yet.
    pub(crate) fn is_origin_of(&self, url: &Url) -> bool {
        let Some(scheme) = self.scheme() else {
            return false;
        };
        let Ok(base) = Url::parse(&format!("{}://{}/", scheme.as_str(), self.host)) else {
            return false;
        };
        url.scheme() == base.scheme()
            && url.host_str().map(str::to_ascii_lowercase)
                == base.host_str().map(str::to_ascii_lowercase)
            && url.port_or_known_default() == base.port_or_known_default()
    }
}

impl Endpoints {
    /// Reads the insecure-registry entries and the proxy settings; nothing is contacted.
    pub(crate) fn new(config: &RegistryConfig) -> Result<Endpoints, ConfigError> {
        tls::install_crypto_provider();
        Ok(Endpoints {
            inner: Arc::new(Inner {
                certs_dir: config.certs_dir.clone(),
                user_agent: config.user_agent.clone(),
                rules: RwLock::new(Arc::new(Rules::new(config, 0)?)),
                endpoints: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Checks the insecure-registry entries and the proxy settings (with the environment's).
    pub(crate) fn check(config: &RegistryConfig) -> Result<(), ConfigError> {
        Rules::new(config, 0).map(|_| ())
    }

    /// Replaces the insecure-registry and proxy rules (a configuration reload). Endpoints in use
    /// keep theirs; each host's next endpoint is built with the new ones. Nothing changes when
    /// the new settings are invalid.
    pub(crate) fn reconfigure(&self, config: &RegistryConfig) -> Result<(), ConfigError> {
        let mut rules = self
            .inner
            .rules
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if rules.source == RulesSource::of(config) {
            return Ok(());
        }
        *rules = Arc::new(Rules::new(config, rules.generation + 1)?);
        Ok(())
    }

    fn rules(&self) -> Arc<Rules> {
        self.inner
            .rules
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Whether `host` (a reference domain) gets unverified TLS and plain-HTTP fallback.
    pub(crate) async fn is_insecure(&self, host: &str) -> bool {
        self.rules().insecure.is_insecure(host).await
    }

    /// The endpoint for registry `host`: the one built before if neither the rules nor the
    /// host's certs.d directory changed since, else a new one (as dockerd reads certs.d each
    /// time it sets up a connection to a registry). Checking costs a directory listing and a
    /// `stat` per file in it.
    pub(crate) async fn registry(&self, host: &str) -> Result<Arc<Endpoint>, ConfigError> {
        let rules = self.rules();
        let certs_dir = &self.inner.certs_dir;
        let built_from = (rules.generation, CertsFingerprint::of(certs_dir, &[host]));
        let cell = self.cell(host);
        let mut slot = cell.lock().await;
        if let Some(endpoint) = slot.as_ref().filter(|e| e.built_from == built_from) {
            return Ok(endpoint.clone());
        }
        let insecure = rules.insecure.is_insecure(host).await;
        let tls = CertsDir::load(certs_dir, host)?;
        let endpoint = self.build(&rules, host, insecure, tls, built_from)?;
        if !insecure {
            endpoint.remember(Scheme::Https);
        }
        replaced(slot.as_deref(), &endpoint);
        tracing::debug!(host, insecure, "registry endpoint ready");
        let endpoint = Arc::new(endpoint);
        *slot = Some(endpoint.clone());
        Ok(endpoint)
    }

    /// The endpoint for the token server `realm_host` of registry `registry_host`. The
    /// registry's settings carry over, as in dockerd (which fetches tokens through the
    /// registry's own transport): an insecure registry's token server is not verified either,
    /// and the registry's certs.d CAs (and client certificate, when the token server's own
    /// directory has none) apply besides the token server's own.
    pub(crate) async fn token_server(
        &self,
        registry_host: &str,
        realm_host: &str,
    ) -> Result<Arc<Endpoint>, ConfigError> {
        if realm_host.eq_ignore_ascii_case(registry_host) {
            return self.registry(registry_host).await;
        }
        let registry = self.registry(registry_host).await?;
        let rules = self.rules();
        let certs_dir = &self.inner.certs_dir;
        let built_from = (
            rules.generation,
            CertsFingerprint::of(certs_dir, &[realm_host, registry_host]),
        );
        let cell = self.cell(&format!("{realm_host} for {registry_host}"));
        let mut slot = cell.lock().await;
        if let Some(endpoint) = slot.as_ref().filter(|e| e.built_from == built_from) {
            return Ok(endpoint.clone());
        }
        let insecure = registry.insecure || rules.insecure.is_insecure(realm_host).await;
        let tls =
            CertsDir::load(certs_dir, realm_host)?.merge(CertsDir::load(certs_dir, registry_host)?);
        let endpoint = self.build(&rules, realm_host, insecure, tls, built_from)?;
        replaced(slot.as_deref(), &endpoint);
        tracing::debug!(
            realm_host,
            registry_host,
            insecure,
            "token server endpoint ready"
        );
        let endpoint = Arc::new(endpoint);
        *slot = Some(endpoint.clone());
        Ok(endpoint)
    }

    fn cell(&self, key: &str) -> Slot {
        let mut endpoints = self
            .inner
            .endpoints
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        endpoints.entry(key.to_owned()).or_default().clone()
    }

    fn build(
        &self,
        rules: &Rules,
        host: &str,
        insecure: bool,
        tls: CertsDir,
        built_from: (u64, CertsFingerprint),
    ) -> Result<Endpoint, ConfigError> {
        let proxy = rules.proxy.clone();
        let tls = tls.client_config(insecure)?;
        let direct = Url::parse(&format!("https://{host}/"))
            .is_ok_and(|url| proxy.proxy_for(&url).is_none());
        let handshake = (insecure && direct)
            .then(|| HandshakeProbe::new(Arc::new(tls.clone()), CONNECT_TIMEOUT));
        let builder = reqwest::Client::builder()
            .user_agent(&self.inner.user_agent)
            // HTTP/1.1 only: HTTP/2 flow control windows throttle large blob uploads.
            .http1_only()
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_keepalive(TCP_KEEPALIVE)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST);
        // The rules decide every proxy, reqwest's own reading of the environment none. Without
        // a proxy configured the per-request check (formatting and parsing each request's URL)
        // is skipped altogether.
        let builder = if proxy.proxies_nothing() {
            builder.no_proxy()
        } else {
            let client_proxy = proxy.clone();
            builder.proxy(reqwest::Proxy::custom(move |url| {
                client_proxy.proxy_for(url)
            }))
        };
        let client = builder
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| ConfigError(format!("building HTTP client for {host}: {e}")))?;
        Ok(Endpoint {
            host: host.to_owned(),
            insecure,
            client,
            proxy,
            scheme: AtomicU8::new(0),
            handshake,
            built_from,
        })
    }
}

impl Rules {
    fn new(config: &RegistryConfig, generation: u64) -> Result<Rules, ConfigError> {
        Ok(Rules {
            insecure: InsecureRules::new(&config.insecure_registries, config.insecure_loopback)?,
            proxy: Arc::new(ProxyRules::new(&config.proxies)?),
            generation,
            source: RulesSource::of(config),
        })
    }
}

/// Carries what `old` learned over to its replacement `new` (the scheme, when the host is as
/// insecure as before) and says why a host's TLS settings were read again.
fn replaced(old: Option<&Endpoint>, new: &Endpoint) {
    let Some(old) = old else {
        return;
    };
    if old.insecure == new.insecure
        && let Some(scheme) = old.scheme()
    {
        new.remember(scheme);
    }
    if old.built_from.1 != new.built_from.1 {
        tracing::info!(host = %new.host, "certs.d changed: the host's TLS settings were read again");
    }
}

#[cfg(test)]
mod tests {
    use super::{api_host, name_domain};

    #[test]
    fn the_name_domain_of_an_api_host_is_what_image_names_say() {
        assert_eq!(name_domain(&api_host("docker.io")), "docker.io");
        assert_eq!(name_domain(&api_host("index.docker.io")), "docker.io");
        assert_eq!(name_domain(&api_host("localhost:5000")), "localhost:5000");
    }
}
