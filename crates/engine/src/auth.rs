//! Registry credentials as Docker clients send them (the JSON inside `X-Registry-Auth`), and which
//! of them apply to a given registry.

use base64::Engine as _;
use hoist_registry::Credentials;
use serde::Deserialize;

/// Docker's `AuthConfig`. Every field is optional on the wire.
#[derive(Clone, Default, Deserialize)]
pub struct AuthConfig {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    /// base64 of `user:password`, as config.json stores it.
    #[serde(default)]
    pub auth: String,
    #[serde(default)]
    pub serveraddress: String,
    #[serde(default)]
    pub identitytoken: String,
    #[serde(default)]
    pub registrytoken: String,
}

impl std::fmt::Debug for AuthConfig {
    // Secrets never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .field("serveraddress", &self.serveraddress)
            .field("has_password", &!self.password.is_empty())
            .field("has_auth", &!self.auth.is_empty())
            .field("has_identitytoken", &!self.identitytoken.is_empty())
            .field("has_registrytoken", &!self.registrytoken.is_empty())
            .finish()
    }
}

impl AuthConfig {
    /// The credentials to present to `registry` (a reference domain such as `docker.io` or
    /// `127.0.0.1:5000`). Credentials meant for another server are never used: when
    /// `serveraddress` names a different registry the push goes anonymously, as in moby.
    /// An empty `serveraddress` (docker-py) means the image's own registry.
    pub fn credentials_for(&self, registry: &str) -> Credentials {
        if !self.serveraddress.is_empty() && normalize_server(&self.serveraddress) != registry {
            return Credentials::Anonymous;
        }
        if !self.registrytoken.is_empty() {
            return Credentials::RegistryToken(self.registrytoken.clone());
        }
        if !self.identitytoken.is_empty() {
            return Credentials::IdentityToken(self.identitytoken.clone());
        }
        let (mut username, mut password) = (self.username.clone(), self.password.clone());
        if username.is_empty()
            && password.is_empty()
            && let Some((u, p)) = decode_basic(&self.auth)
        {
            (username, password) = (u, p);
        }
        if username.is_empty() && password.is_empty() {
            Credentials::Anonymous
        } else {
            Credentials::Basic { username, password }
        }
    }
}

fn decode_basic(auth: &str) -> Option<(String, String)> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

/// The registry domain a Docker `serveraddress` names: scheme and path dropped, and Docker Hub's
/// many spellings (`https://index.docker.io/v1/`, `index.docker.io`, `registry-1.docker.io`)
/// folded into `docker.io`, the domain references use.
pub fn normalize_server(address: &str) -> String {
    let trimmed = address
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = trimmed.split('/').next().unwrap_or_default().to_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" | "docker.io" => {
            "docker.io".to_owned()
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(json: &str) -> AuthConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn hub_spellings_fold() {
        for s in [
            "https://index.docker.io/v1/",
            "docker.io",
            "index.docker.io",
            "registry-1.docker.io",
        ] {
            assert_eq!(normalize_server(s), "docker.io", "{s}");
        }
        assert_eq!(normalize_server("myreg:5000"), "myreg:5000");
        assert_eq!(normalize_server("https://myreg:5000/v2/"), "myreg:5000");
    }

    #[test]
    fn precedence_and_scope() {
        let c = cfg(
            r#"{"username":"u","password":"p","identitytoken":"id","registrytoken":"rt","serveraddress":"r:1"}"#,
        );
        assert!(matches!(c.credentials_for("r:1"), Credentials::RegistryToken(t) if t == "rt"));
        let c =
            cfg(r#"{"username":"u","password":"p","identitytoken":"id","serveraddress":"r:1"}"#);
        assert!(matches!(c.credentials_for("r:1"), Credentials::IdentityToken(t) if t == "id"));
        let c = cfg(r#"{"username":"u","password":"p","serveraddress":"r:1"}"#);
        assert!(
            matches!(c.credentials_for("r:1"), Credentials::Basic { username, password } if username == "u" && password == "p")
        );
        // Never sent to another registry.
        assert!(matches!(
            c.credentials_for("other:1"),
            Credentials::Anonymous
        ));
        // docker-py: no serveraddress means the image's registry.
        let c = cfg(r#"{"username":"u","password":"p"}"#);
        assert!(matches!(
            c.credentials_for("anything:5"),
            Credentials::Basic { .. }
        ));
        // config.json style `auth`.
        let c = cfg(r#"{"auth":"YWxpY2U6czNjcjN0","serveraddress":"https://index.docker.io/v1/"}"#);
        assert!(
            matches!(c.credentials_for("docker.io"), Credentials::Basic { username, password } if username == "alice" && password == "s3cr3t")
        );
        assert!(matches!(
            cfg("{}").credentials_for("x"),
            Credentials::Anonymous
        ));
    }
}
