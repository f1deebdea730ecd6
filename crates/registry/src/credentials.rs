//! Credentials for one registry, as the Engine API hands them over.

use std::fmt;

use sha2::{Digest as _, Sha256};

#[derive(Clone, Default)]
pub enum Credentials {
    #[default]
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken`), exchanged at the token server.
    IdentityToken(String),
    /// A ready bearer token (`registrytoken`), sent as is.
    RegistryToken(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credentials::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
            Credentials::RegistryToken(_) => f.write_str("RegistryToken(<redacted>)"),
        }
    }
}

impl Credentials {
    /// Distinguishes credentials in cache keys without keeping the secret itself there.
    pub(crate) fn fingerprint(&self) -> String {
        let mut hash = Sha256::new();
        match self {
            Credentials::Anonymous => return "anonymous".to_owned(),
            Credentials::Basic { username, password } => {
                hash.update(b"basic\0");
                hash.update(username.as_bytes());
                hash.update(b"\0");
                hash.update(password.as_bytes());
            }
            Credentials::IdentityToken(token) => {
                hash.update(b"identity\0");
                hash.update(token.as_bytes());
            }
            Credentials::RegistryToken(token) => {
                hash.update(b"registry\0");
                hash.update(token.as_bytes());
            }
        }
        let out: [u8; 32] = hash.finalize().into();
        hoist_reference::Digest::sha256_from_bytes(&out)
            .hex()
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let shown = format!(
            "{:?} {:?} {:?}",
            Credentials::Basic {
                username: "alice".into(),
                password: "hunter2".into()
            },
            Credentials::IdentityToken("refresh-secret".into()),
            Credentials::RegistryToken("bearer-secret".into()),
        );
        assert!(shown.contains("alice"));
        for secret in ["hunter2", "refresh-secret", "bearer-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn fingerprints_differ_by_secret() {
        let a = Credentials::Basic {
            username: "u".into(),
            password: "a".into(),
        };
        let b = Credentials::Basic {
            username: "u".into(),
            password: "b".into(),
        };
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint(), a.clone().fingerprint());
        assert_eq!(a.fingerprint().len(), 64);
    }
}
