//! The registry credentials a client sends with a push or pull: the `X-Registry-Auth` header.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hoist_engine::AuthConfig;

/// The decoded `X-Registry-Auth` header; None when the request has none, or an empty one.
pub struct RegistryAuth(Option<AuthConfig>);

impl RegistryAuth {
    /// The header's credentials; anonymous without them.
    pub fn or_anonymous(self) -> AuthConfig {
        self.0.unwrap_or_default()
    }

    /// The header's credentials, else those of a JSON request body (docker-py sends them, or
    /// `{}`, that way), else anonymous.
    pub fn or_json_body(self, body: &[u8]) -> AuthConfig {
        self.0
            .unwrap_or_else(|| serde_json::from_slice(body).unwrap_or_default())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RegistryAuth {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<RegistryAuth, Self::Rejection> {
        Ok(RegistryAuth(
            parts
                .headers
                .get("X-Registry-Auth")
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .map(decode_registry_auth),
        ))
    }
}

/// The header is base64url JSON. The docker CLI pads it, other clients do not, and some (bollard)
/// use the standard alphabet, so accept all of these. Anything undecodable means anonymous, as
/// in moby: a push never fails because of this header.
pub(crate) fn decode_registry_auth(header: &str) -> AuthConfig {
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let text = header.trim();
    GeneralPurpose::new(&alphabet::URL_SAFE, config)
        .decode(text)
        .or_else(|_| GeneralPurpose::new(&alphabet::STANDARD, config).decode(text))
        .ok()
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(engine: &GeneralPurpose, json: &str) -> String {
        engine.encode(json)
    }

    #[test]
    fn all_variants_decode() {
        // "?>" makes the standard and URL-safe alphabets differ.
        let json = r#"{"username":"u?>","password":"p?>","serveraddress":"r:1"}"#;
        let padded = GeneralPurpose::new(&alphabet::URL_SAFE, GeneralPurposeConfig::new());
        let unpadded = GeneralPurpose::new(
            &alphabet::URL_SAFE,
            GeneralPurposeConfig::new().with_encode_padding(false),
        );
        let standard = GeneralPurpose::new(&alphabet::STANDARD, GeneralPurposeConfig::new());
        for header in [
            enc(&padded, json),
            enc(&unpadded, json),
            enc(&standard, json),
        ] {
            let auth = decode_registry_auth(&header);
            assert_eq!(auth.username, "u?>", "{header}");
            assert_eq!(auth.password, "p?>");
            assert_eq!(auth.serveraddress, "r:1");
        }
    }

    #[test]
    fn garbage_is_anonymous() {
        let auth = decode_registry_auth("%%%not base64");
        assert!(auth.username.is_empty() && auth.password.is_empty());
        let auth = decode_registry_auth("e30=");
        assert!(auth.username.is_empty());
    }
}
