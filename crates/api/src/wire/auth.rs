//! The `POST /auth` answer.

use serde::Serialize;

/// `docker login` succeeded. Keys sorted by name.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LoginResponse {
    /// Empty when the registry gave no identity token.
    pub identity_token: String,
    pub status: &'static str,
}

impl LoginResponse {
    pub fn new(identity_token: Option<String>) -> LoginResponse {
        LoginResponse {
            identity_token: identity_token.unwrap_or_default(),
            status: "Login Succeeded",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::sorted::assert_keys_sorted;

    #[test]
    fn keys_are_sorted() {
        assert_keys_sorted(&LoginResponse::new(Some("t".into())));
    }
}
