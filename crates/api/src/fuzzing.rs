//! Entry point for fuzzing the `X-Registry-Auth` header, which any client may send: it takes
//! arbitrary text, runs the production decoder and asserts what must hold for any input. The
//! unit tests below run it as a property test; the target in `fuzz/` runs it under libFuzzer.

use hoist_engine::{AuthConfig, normalize_server};

use crate::registry_auth::decode_registry_auth;

/// The header decodes to credentials (anonymous when undecodable) that can be asked for.
pub fn registry_auth(input: &str) -> AuthConfig {
    let config = decode_registry_auth(input);
    let _ = config.credentials_for(&normalize_server(&config.serveraddress));
    let _ = config.credentials_for("docker.io");
    config
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn any_header_decodes_or_is_anonymous(input in any::<String>()) {
            registry_auth(&input);
        }

        #[test]
        fn base64_like_headers_decode_or_are_anonymous(input in "[a-zA-Z0-9+/_=-]{0,80}") {
            registry_auth(&input);
        }

        #[test]
        fn every_encoding_of_credentials_decodes_to_them(
            username in "[a-zA-Z0-9?>~ ]{0,16}",
            server in "[a-z0-9.:/]{0,20}",
            alphabet in 0..3usize,
        ) {
            let json = serde_json::json!({"username": username, "serveraddress": server}).to_string();
            let header = [&URL_SAFE, &URL_SAFE_NO_PAD, &STANDARD][alphabet].encode(json);
            let config = registry_auth(&header);
            prop_assert_eq!(config.username, username);
            prop_assert_eq!(config.serveraddress, server);
        }
    }
}
