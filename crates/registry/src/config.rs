//! What the daemon tells the registry client: insecure registries, certificates, chunking.

use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// dockerd's `insecure-registries`: `host:port` or `host` (matched exactly against the
    /// reference domain), or a CIDR such as `10.0.0.0/8` (the host's addresses are checked).
    pub insecure_registries: Vec<String>,
    /// As in dockerd: 127.0.0.0/8, ::1 and `localhost` are insecure unless this is false.
    pub insecure_loopback: bool,
    /// `<dir>/<host:port>/*.crt` are added to the system roots; `*.cert` with its `*.key` is the
    /// client identity.
    pub certs_dir: PathBuf,
    /// Registry host → chunk size for chunked PATCH uploads to it.
    pub chunk_sizes: HashMap<String, u64>,
    pub user_agent: String,
    /// dockerd's `proxies` (`--http-proxy`, `--https-proxy`, `--no-proxy`): each one given
    /// replaces its environment variable; the others still come from the environment.
    pub proxies: ProxyConfig,
    /// Whether large upload bodies go with `sendfile(2)` to a registry on this host too. Off:
    /// such a registry spends more CPU receiving pages handed over by `sendfile` than copying
    /// them costs hoistd. Tests turn it on to run that sender against the registries they
    /// start on 127.0.0.1.
    pub sendfile_to_this_host: bool,
}

/// Proxy settings given to the daemon. Its `Debug` masks credentials in the URLs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ProxyConfig {
    pub http_proxy: Option<String>,
    pub https_proxy: Option<String>,
    pub no_proxy: Option<String>,
}

impl ProxyConfig {
    /// What is in force: each setting given here, else its environment variable (upper case
    /// first, as Go reads them). Empty values count as not given, as in dockerd.
    pub fn effective(&self) -> ProxyConfig {
        self.effective_with(|name| std::env::var(name).ok())
    }

    pub(crate) fn effective_with(&self, env: impl Fn(&str) -> Option<String>) -> ProxyConfig {
        let pick = |given: &Option<String>, upper: &str, lower: &str| {
            given
                .clone()
                .filter(|v| !v.is_empty())
                .or_else(|| env(upper).filter(|v| !v.is_empty()))
                .or_else(|| env(lower).filter(|v| !v.is_empty()))
        };
        ProxyConfig {
            http_proxy: pick(&self.http_proxy, "HTTP_PROXY", "http_proxy"),
            https_proxy: pick(&self.https_proxy, "HTTPS_PROXY", "https_proxy"),
            no_proxy: pick(&self.no_proxy, "NO_PROXY", "no_proxy"),
        }
    }
}

impl std::fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let masked = |v: &Option<String>| v.as_deref().map(mask_credentials);
        f.debug_struct("ProxyConfig")
            .field("http_proxy", &masked(&self.http_proxy))
            .field("https_proxy", &masked(&self.https_proxy))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

/// A proxy URL as it may be shown: user name and password replaced by `xxxxx:xxxxx`, as
/// dockerd's `MaskCredentials` does; also without a scheme (`user:pw@proxy:3128`, which the
/// proxy settings accept and dockerd would show as it is).
pub fn mask_credentials(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}xxxxx:xxxxx@{host}{path}"),
        None => url.to_owned(),
    }
}

impl Default for RegistryConfig {
    fn default() -> RegistryConfig {
        RegistryConfig {
            insecure_registries: Vec::new(),
            insecure_loopback: true,
            certs_dir: PathBuf::from("/etc/docker/certs.d"),
            chunk_sizes: HashMap::new(),
            user_agent: concat!("hoist/", env!("CARGO_PKG_VERSION")).to_owned(),
            proxies: ProxyConfig::default(),
            sendfile_to_this_host: false,
        }
    }
}

/// What a repository handle will be used for; decides the token scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Pull,
    PullPush,
}

/// A setting hoist cannot use: certs.d contents, proxy variables, insecure-registry entries.
/// It becomes [`crate::RegistryError::Config`] with the same message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ConfigError(pub(crate) String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_masked_with_or_without_a_scheme() {
        assert_eq!(
            mask_credentials("http://user:secret@proxy.lan:3128/path"),
            "http://xxxxx:xxxxx@proxy.lan:3128/path"
        );
        assert_eq!(
            mask_credentials("user:secret@proxy.lan:3128"),
            "xxxxx:xxxxx@proxy.lan:3128"
        );
        assert_eq!(
            mask_credentials("http://proxy.lan:3128/a@b"),
            "http://proxy.lan:3128/a@b"
        );
        assert_eq!(mask_credentials("proxy.lan:3128"), "proxy.lan:3128");
    }

    #[test]
    fn proxies_given_replace_their_variable_only() {
        let given = ProxyConfig {
            https_proxy: Some("http://given:1".into()),
            no_proxy: Some(String::new()),
            ..ProxyConfig::default()
        };
        let env = |name: &str| match name {
            "HTTPS_PROXY" => Some("http://env:2".to_owned()),
            "http_proxy" => Some("http://env:3".to_owned()),
            "NO_PROXY" => Some("corp".to_owned()),
            _ => None,
        };
        let effective = given.effective_with(env);
        assert_eq!(effective.https_proxy.as_deref(), Some("http://given:1"));
        assert_eq!(effective.http_proxy.as_deref(), Some("http://env:3"));
        assert_eq!(effective.no_proxy.as_deref(), Some("corp"));
    }

    #[test]
    fn credentials_are_masked() {
        assert_eq!(
            mask_credentials("http://user:p@ss@proxy:3128"),
            "http://xxxxx:xxxxx@proxy:3128"
        );
        assert_eq!(mask_credentials("proxy:3128"), "proxy:3128");
        let shown = format!(
            "{:?}",
            ProxyConfig {
                http_proxy: Some("http://u:secret@p:1".into()),
                ..ProxyConfig::default()
            }
        );
        assert!(!shown.contains("secret"), "{shown}");
    }
}
