//! API versions: the `/v1.NN` path prefix, the supported range, and the headers every routed
//! response carries.

use std::cmp::Ordering;
use std::fmt;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// An Engine API version, compared component by component as integers, as moby does (so
/// `1.5 < 1.50`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiVersion(Vec<u32>);

impl ApiVersion {
    pub fn parse(text: &str) -> ApiVersion {
        ApiVersion(text.split('.').map(component).collect())
    }

    pub fn at_least(&self, text: &str) -> bool {
        *self >= ApiVersion::parse(text)
    }
}

/// One component as moby's `versions.compare` reads it with `strconv.Atoi`: a number too large
/// is clamped to the largest (so it is too new, never too old), anything else not a number is 0.
fn component(part: &str) -> u32 {
    match part.parse::<u32>() {
        Ok(n) => n,
        Err(e) if *e.kind() == std::num::IntErrorKind::PosOverflow => u32::MAX,
        Err(_) => 0,
    }
}

impl PartialOrd for ApiVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ApiVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.0.len().max(other.0.len());
        for i in 0..n {
            let (a, b) = (self.0.get(i).unwrap_or(&0), other.0.get(i).unwrap_or(&0));
            match a.cmp(b) {
                Ordering::Equal => {}
                unequal => return unequal,
            }
        }
        Ordering::Equal
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u32::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

pub const MAX_API_VERSION: &str = "1.50";
/// The oldest version served unless `DOCKER_MIN_API_VERSION` says otherwise.
pub const MIN_API_VERSION: &str = "1.24";
/// The oldest version `DOCKER_MIN_API_VERSION` may name. moby 26 raised it to 1.24; hoist keeps
/// dockerd 25's floor so that clients of the older API (skopeo's `docker-daemon:` speaks 1.22)
/// can still be served.
pub const LOWEST_MIN_API_VERSION: &str = "1.12";

/// dockerd's check of a `DOCKER_MIN_API_VERSION` value, with its messages; the version must be
/// within `LOWEST_MIN_API_VERSION..=MAX_API_VERSION`. Non-numeric parts compare as 0, as in
/// moby, so a value that is not a version is too old.
pub fn check_min_api_version(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("value is empty".into());
    }
    if text.starts_with(['v', 'V']) {
        return Err(r#"API version must be provided without "v" prefix"#.into());
    }
    let version = ApiVersion::parse(text);
    if version < ApiVersion::parse(LOWEST_MIN_API_VERSION) {
        return Err(format!(
            "minimum supported API version is {LOWEST_MIN_API_VERSION}: {text}"
        ));
    }
    if version > ApiVersion::parse(MAX_API_VERSION) {
        return Err(format!(
            "maximum supported API version is {MAX_API_VERSION}: {text}"
        ));
    }
    Ok(())
}

/// Splits `/v1.50/images/json` into the version and the route path, as moby's
/// `/v{version:[0-9.]+}` matcher does.
fn split_version(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/v")?;
    let slash = rest.find('/')?;
    let (version, tail) = rest.split_at(slash);
    (!version.is_empty() && version.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
        .then_some((version, tail))
}

/// Runs before routing: strips and checks the version, answers OPTIONS as moby does, and stamps
/// the daemon headers on every response.
pub async fn version_layer(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let mut version = ApiVersion::parse(MAX_API_VERSION);
    if let Some((text, tail)) = split_version(req.uri().path()) {
        let requested = ApiVersion::parse(text);
        let min = &state.server.min_api_version;
        if requested < ApiVersion::parse(min) {
            return stamp(&state, too_old(text, min));
        }
        if requested > ApiVersion::parse(MAX_API_VERSION) {
            return stamp(&state, ApiError::BadRequest(format!(
                "client version {text} is too new. Maximum supported API version is {MAX_API_VERSION}"
            )).into_response());
        }
        let path_and_query = match req.uri().query() {
            Some(q) => format!("{tail}?{q}"),
            None => tail.to_owned(),
        };
        let mut parts = req.uri().clone().into_parts();
        match path_and_query.parse() {
            Ok(pq) => parts.path_and_query = Some(pq),
            Err(_) => {
                return stamp(
                    &state,
                    ApiError::NotFound("page not found".into()).into_response(),
                );
            }
        }
        match Uri::from_parts(parts) {
            Ok(uri) => *req.uri_mut() = uri,
            Err(_) => {
                return stamp(
                    &state,
                    ApiError::NotFound("page not found".into()).into_response(),
                );
            }
        }
        version = requested;
    }
    if req.method() == Method::OPTIONS {
        return stamp(&state, StatusCode::OK.into_response());
    }
    req.extensions_mut().insert(version);
    stamp(&state, next.run(req).await)
}

/// moby answers clients older than it supports in plain text (`http.Error`), not JSON: they
/// predate JSON errors and would print the JSON raw.
fn too_old(version: &str, min: &str) -> Response {
    let message = format!(
        "client version {version} is too old. Minimum supported API version is {min}, please upgrade your client to a newer version\n"
    );
    let mut response = (StatusCode::BAD_REQUEST, message).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        "X-Content-Type-Options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn stamp(state: &AppState, mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert("Api-Version", HeaderValue::from_static(MAX_API_VERSION));
    headers.insert("Ostype", HeaderValue::from_static(std::env::consts::OS));
    if let Ok(v) = HeaderValue::from_str(&format!(
        "hoist/{} ({})",
        state.server.version,
        std::env::consts::OS
    )) {
        headers.insert("Server", v);
    }
    headers.insert("Docker-Experimental", HeaderValue::from_static("false"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert!(ApiVersion::parse("1.5") < ApiVersion::parse("1.50"));
        assert!(ApiVersion::parse("1.41").at_least("1.24"));
        assert!(!ApiVersion::parse("1.45").at_least("1.46"));
        assert_eq!(ApiVersion::parse("1.50").to_string(), "1.50");
        assert!(ApiVersion::parse("1.99999999999999999999") > ApiVersion::parse(MAX_API_VERSION));
        assert_eq!(ApiVersion::parse("1.x"), ApiVersion::parse("1.0"));
    }

    #[test]
    fn min_api_version_is_checked_as_dockerd_checks_it() {
        for ok in ["1.12", "1.22", "1.24", "1.40", "1.50"] {
            assert_eq!(check_min_api_version(ok), Ok(()), "{ok}");
        }
        let err = |text| check_min_api_version(text).unwrap_err();
        assert_eq!(err("1.11"), "minimum supported API version is 1.12: 1.11");
        assert_eq!(err("abc"), "minimum supported API version is 1.12: abc");
        assert_eq!(err("1.51"), "maximum supported API version is 1.50: 1.51");
        assert_eq!(
            err("v1.22"),
            r#"API version must be provided without "v" prefix"#
        );
        assert_eq!(err(""), "value is empty");
    }

    #[test]
    fn prefixes() {
        assert_eq!(
            split_version("/v1.50/images/json"),
            Some(("1.50", "/images/json"))
        );
        assert_eq!(split_version("/v1/_ping"), Some(("1", "/_ping")));
        assert_eq!(split_version("/images/json"), None);
        assert_eq!(split_version("/vx/images"), None);
    }
}
