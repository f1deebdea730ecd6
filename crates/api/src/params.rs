//! Query parameters as moby reads them: repeated keys allowed, booleans in Go's lenient form.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use hoist_engine::{EngineError, Platform};

pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The first `key` value as a JSON OCI platform (moby's `httputils.DecodePlatform`); None
    /// when absent or empty.
    pub fn platform(&self, key: &str) -> Result<Option<Platform>, EngineError> {
        self.non_empty(key).map(Platform::from_json).transpose()
    }

    /// Every `key` value as a JSON OCI platform (moby's `httputils.DecodePlatforms`): an empty
    /// value is an error too.
    pub fn platforms(&self, key: &str) -> Result<Vec<Platform>, EngineError> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| Platform::from_json(v))
            .collect()
    }

    /// moby's `httputils.BoolValue`: absent, empty, `0`, `no`, `false` and `none` are false.
    pub fn flag(&self, key: &str) -> bool {
        self.get(key).is_some_and(|v| {
            !matches!(
                v.trim().to_lowercase().as_str(),
                "" | "0" | "no" | "false" | "none"
            )
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Params, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        Ok(Params(
            url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
        ))
    }
}
