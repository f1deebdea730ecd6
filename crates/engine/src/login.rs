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
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_'));
    if !valid {
        return Err(EngineError::InvalidArgument(format!(
            "unable to parse server address: {server_address:?}"
        )));
    }
    Ok(domain)
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
        ] {
            assert_eq!(login_domain(given).unwrap(), domain, "{given}");
        }
        for bad in ["https://", "bad host:5000", "reg?x:5000"] {
            assert!(
                matches!(login_domain(bad), Err(EngineError::InvalidArgument(_))),
                "{bad}"
            );
        }
    }
}
