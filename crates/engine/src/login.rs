//! `docker login` (`POST /auth`): checking credentials against a registry, as dockerd does.

use hoist_registry::LoginOutcome;

use crate::auth::{AuthConfig, normalize_server};
use crate::{Engine, EngineError};

impl Engine {
    /// Checks `auth`'s credentials against the registry its `serveraddress` names (Docker Hub
    /// when empty). Refused credentials are `Unauthorized`, with the registry's message; an
    /// identity token in the outcome is what the client should keep instead of the password.
    pub async fn login(&self, auth: &AuthConfig) -> Result<LoginOutcome, EngineError> {
        let domain = login_domain(&auth.serveraddress)?;
        let credentials = auth.credentials_for(&domain);
        tracing::info!(registry = %domain, username = %auth.username, "checking registry credentials");
        self.registries
            .login(&domain, &credentials)
            .await
            .map_err(|e| {
                if e.is_unauthorized() {
                    EngineError::Unauthorized(e.to_string())
                } else {
                    EngineError::Registry(e.source)
                }
            })
    }
}

/// The registry a `serveraddress` names, in Docker's forms: `https://index.docker.io/v1/`,
/// `host[:port]`, with or without a scheme and path. Empty means Docker Hub.
fn login_domain(server_address: &str) -> Result<String, EngineError> {
    if server_address.trim().is_empty() {
        return Ok("docker.io".to_owned());
    }
    let domain = normalize_server(server_address);
    let valid = !domain.is_empty()
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_'))
        && is_reachable_host(&domain);
    if !valid {
        return Err(EngineError::InvalidArgument(format!(
            "unable to parse server address: {server_address:?}"
        )));
    }
    Ok(domain)
}

/// Whether `domain` (`host[:port]`) can be connected to at all: a host a URL can hold (an IPv6
/// address closed by `]`, a port of at most 65535) and a DNS name within DNS's limits (253
/// characters, labels of 1 to 63), so that a malformed address is the client's error, not ours.
fn is_reachable_host(domain: &str) -> bool {
    let Ok(url) = url::Url::parse(&format!("https://{domain}/")) else {
        return false;
    };
    match url.host() {
        Some(url::Host::Domain(name)) => {
            let name = name.strip_suffix('.').unwrap_or(name);
            name.len() <= 253 && name.split('.').all(|label| (1..=63).contains(&label.len()))
        }
        Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) => true,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_in_dockers_forms() {
        for (given, domain) in [
            ("", "docker.io"),
            ("https://index.docker.io/v1/", "docker.io"),
            ("docker.io", "docker.io"),
            ("registry.example:5000", "registry.example:5000"),
            ("http://127.0.0.1:5000", "127.0.0.1:5000"),
            ("https://Registry.Example/v2/", "registry.example"),
            ("[::1]:5000", "[::1]:5000"),
            ("registry.example.:5000", "registry.example.:5000"),
        ] {
            assert_eq!(login_domain(given).unwrap(), domain, "{given}");
        }
        let long_host = format!("{}.example", "a".repeat(5000));
        let long_label = format!("{}.example", "a".repeat(64));
        for bad in [
            "https://",
            "bad host:5000",
            "reg?x:5000",
            "http://[::1",
            "registry.example:99999",
            long_host.as_str(),
            long_label.as_str(),
            "a..b",
        ] {
            assert!(
                matches!(login_domain(bad), Err(EngineError::InvalidArgument(_))),
                "{bad}"
            );
        }
    }
}
