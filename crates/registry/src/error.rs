//! One error type for everything the registry client can fail at.
//!
//! Registry errors display the way distribution's `errcode` package formats them
//! (`denied: requested access to the resource is denied`), because users already know that
//! wording from `docker push`. Classification methods tell the engine what to do next.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use hoist_reference::Digest;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::Deserialize;

use crate::challenge::{BearerError, BearerRefusal};
use crate::config::ConfigError;
use crate::endpoint::tls;
use crate::http_util::{read_bounded, without_query};

/// Error bodies larger than this are not worth reading: no registry sends one.
const MAX_ERROR_BODY: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry (or its token server) answered with an error status.
    #[error("{0}")]
    Response(Box<ResponseError>),

    /// No usable HTTP response: connection, TLS, timeout, or the request body failed mid-way.
    /// The display carries the root cause so a user sees it without walking the source chain.
    #[error("{operation} {host}: {cause}")]
    Transport {
        operation: String,
        host: String,
        cause: String,
        /// The failure happened while a request body was being sent.
        body_interrupted: bool,
        /// A reqwest error, or an I/O error from the sendfile upload path.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The registry reported (or served) content whose digest is not the one asked for.
    #[error("{operation} {host}: digest mismatch: expected {expected}, registry has {actual}")]
    DigestMismatch {
        operation: String,
        host: String,
        expected: Digest,
        actual: String,
    },

    /// A success status, but the response cannot be used (missing Location, oversized manifest…).
    #[error("{operation} {host}: {message}")]
    InvalidResponse {
        operation: String,
        host: String,
        message: String,
    },

    /// Reading the local blob file failed; nothing the registry did.
    #[error("reading {}: {source}", path.display())]
    LocalIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Bad configuration: certs.d contents, proxy variables, insecure-registry entries.
    #[error("{0}")]
    Config(String),
}

/// One entry of a registry's `{"errors":[…]}` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorCode {
    /// The code as the registry sent it, e.g. `DENIED`.
    pub code: String,
    pub message: String,
    pub detail: Option<serde_json::Value>,
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // errcode.ErrorCode.Error(): the code lowercased with underscores as spaces.
        write!(
            f,
            "{}: {}",
            self.code.to_ascii_lowercase().replace('_', " "),
            self.message
        )
    }
}

/// An HTTP response with an error status, decoded.
#[derive(Clone, Debug)]
pub struct ResponseError {
    pub status: u16,
    /// The registry's error codes; synthesised from the status when the body had none and the
    /// status has an obvious meaning (401, 403, 429), as distribution's client does.
    pub errors: Vec<ErrorCode>,
    pub retry_after: Option<Duration>,
    pub operation: String,
    /// Scheme, host and path of the request; the query is left out (it may carry signatures).
    pub url: String,
    /// The request went to an upload session URL, so a 404 means the session is gone.
    pub upload_url: bool,
    /// The start of a non-JSON body (an nginx or CDN page), for the message.
    pub body_excerpt: Option<String>,
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.errors.as_slice() {
            [] => {
                let reason = StatusCode::from_u16(self.status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("");
                write!(
                    f,
                    "unexpected status from {} request to {}: {} {}",
                    self.operation, self.url, self.status, reason
                )?;
                if let Some(body) = &self.body_excerpt {
                    write!(f, ": {body}")?;
                }
                Ok(())
            }
            // errcode.Errors.Error(): one error alone, several as an "errors:" list.
            [one] => write!(f, "{one}"),
            many => {
                f.write_str("errors:\n")?;
                for e in many {
                    writeln!(f, "{e}")?;
                }
                Ok(())
            }
        }
    }
}

impl RegistryError {
    /// Worth trying again later: the failure is plausibly transient.
    pub fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Response(r) => {
                matches!(r.status, 408 | 429 | 499 | 500..=599)
                    || r.has_code("TOOMANYREQUESTS")
                    || r.has_code("UNAVAILABLE")
            }
            // A TLS failure (bad certificate, plain HTTP where TLS was expected) is the same on
            // every attempt; connection and timeout errors may pass.
            RegistryError::Transport { source, .. } => tls::failure_in(source.as_ref()).is_none(),
            RegistryError::DigestMismatch { .. }
            | RegistryError::InvalidResponse { .. }
            | RegistryError::LocalIo { .. }
            | RegistryError::Config(_) => false,
        }
    }

    /// How long the registry asked us to wait (`Retry-After`, seconds or HTTP date).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RegistryError::Response(r) => r.retry_after,
            _ => None,
        }
    }

    /// The upload session no longer exists: start the blob again with a new session.
    pub fn is_upload_unknown(&self) -> bool {
        match self {
            RegistryError::Response(r) => {
                r.has_code("BLOB_UPLOAD_UNKNOWN") || (r.upload_url && r.status == 404)
            }
            _ => false,
        }
    }

    /// The registry does not know the repository (404 NAME_UNKNOWN).
    pub fn is_name_unknown(&self) -> bool {
        match self {
            RegistryError::Response(r) => r.status == 404 && r.has_code("NAME_UNKNOWN"),
            _ => false,
        }
    }

    pub fn is_unauthorized(&self) -> bool {
        match self {
            RegistryError::Response(r) => r.status == 401 || r.has_code("UNAUTHORIZED"),
            _ => false,
        }
    }

    pub fn is_denied(&self) -> bool {
        match self {
            RegistryError::Response(r) => r.status == 403 || r.has_code("DENIED"),
            _ => false,
        }
    }

    /// The HTTP status, when there was a response.
    pub fn status(&self) -> Option<u16> {
        match self {
            RegistryError::Response(r) => Some(r.status),
            _ => None,
        }
    }

    /// The connection failed while the request body was being sent. A monolithic upload that
    /// fails this way is better retried in chunks.
    pub fn body_interrupted(&self) -> bool {
        matches!(
            self,
            RegistryError::Transport {
                body_interrupted: true,
                ..
            }
        )
    }

    pub fn is_digest_mismatch(&self) -> bool {
        matches!(self, RegistryError::DigestMismatch { .. })
    }

    /// The registry's error codes, if it sent any.
    pub fn error_codes(&self) -> &[ErrorCode] {
        match self {
            RegistryError::Response(r) => &r.errors,
            _ => &[],
        }
    }

    pub(crate) fn transport(
        operation: impl Into<String>,
        host: impl Into<String>,
        source: reqwest::Error,
        body_interrupted: bool,
    ) -> RegistryError {
        RegistryError::Transport {
            operation: operation.into(),
            host: host.into(),
            cause: root_cause(&source),
            body_interrupted,
            source: Box::new(source),
        }
    }

    /// Like [`RegistryError::transport`], for a request sent without reqwest.
    pub(crate) fn transport_io(
        operation: impl Into<String>,
        host: impl Into<String>,
        source: std::io::Error,
        body_interrupted: bool,
    ) -> RegistryError {
        RegistryError::Transport {
            operation: operation.into(),
            host: host.into(),
            cause: source.to_string(),
            body_interrupted,
            source: Box::new(source),
        }
    }

    pub(crate) fn invalid_response(
        operation: impl Into<String>,
        host: impl Into<String>,
        message: impl Into<String>,
    ) -> RegistryError {
        RegistryError::InvalidResponse {
            operation: operation.into(),
            host: host.into(),
            message: message.into(),
        }
    }
}

impl From<ConfigError> for RegistryError {
    fn from(error: ConfigError) -> RegistryError {
        RegistryError::Config(error.0)
    }
}

impl ResponseError {
    fn has_code(&self, code: &str) -> bool {
        self.errors
            .iter()
            .any(|e| e.code.eq_ignore_ascii_case(code))
    }
}

/// Describes an error chain without reqwest's and hyper's wrappers ("error sending request
/// for url (…)", "client error (Connect)"), which repeat what the operation and host say; a
/// failed TLS handshake is explained with what to do about it.
fn root_cause(error: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(e) = next {
        let text = e.to_string();
        let wrapper = text.starts_with("client error (") && text.ends_with(')');
        if !wrapper && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    if error.is_timeout() && !parts.iter().any(|p| p.contains("timed out")) {
        parts.push("timed out".to_owned());
    }
    if parts.is_empty() {
        return error.to_string();
    }
    let cause = parts.join(": ");
    match tls::failure_in(error) {
        Some(failure) => tls::explain(failure, cause),
        None => cause,
    }
}

/// Turns an error response into a [`RegistryError`], reading a bounded part of its body.
/// `method` names the request in the message, as containerd does ("HEAD request to …").
pub(crate) async fn from_response(
    response: reqwest::Response,
    method: &str,
    upload_url: bool,
) -> RegistryError {
    let status = response.status().as_u16();
    let url = without_query(response.url());
    let headers = response.headers().clone();
    let body = read_bounded(response, MAX_ERROR_BODY).await;
    RegistryError::Response(Box::new(decode_error(
        status, &headers, &body, method, url, upload_url,
    )))
}

pub(crate) fn decode_error(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    operation: &str,
    url: String,
    upload_url: bool,
) -> ResponseError {
    let challenge = challenge_error(headers);
    let mut body_excerpt = None;
    let mut errors = Vec::new();
    match parse_error_body(body) {
        // distribution pairs the challenge's precise error with a generic "authentication
        // required" body; the challenge says more.
        Some(parsed) if challenge.is_some() => errors.extend(
            parsed
                .into_iter()
                .filter(|e| !e.code.eq_ignore_ascii_case("UNAUTHORIZED")),
        ),
        Some(parsed) => errors.extend(parsed),
        None => body_excerpt = excerpt(body),
    }
    errors.splice(0..0, challenge);
    if errors.is_empty() {
        // distribution's client gives these statuses their code when the body has none
        // (HEAD responses never have one).
        let code = match status {
            401 => Some("UNAUTHORIZED"),
            403 => Some("DENIED"),
            429 => Some("TOOMANYREQUESTS"),
            _ => None,
        };
        if let Some(code) = code {
            errors.push(ErrorCode {
                code: code.to_owned(),
                message: default_message(code).to_owned(),
                detail: None,
            });
            body_excerpt = None;
        }
    }
    ResponseError {
        status,
        errors,
        retry_after: headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after),
        operation: operation.to_owned(),
        url,
        upload_url,
        body_excerpt,
    }
}

/// RFC 6750 errors in a Bearer challenge say more than the bare status.
fn challenge_error(headers: &HeaderMap) -> Option<ErrorCode> {
    let bearer = BearerError::from_headers(headers)?;
    let code = match bearer.refusal {
        BearerRefusal::InvalidToken => "UNAUTHORIZED",
        BearerRefusal::InsufficientScope => "DENIED",
    };
    let message = match (bearer.description, bearer.scope) {
        (Some(description), _) if !description.is_empty() => description,
        // Name what the token lacked: the token server granted less than was asked.
        (_, Some(scope))
            if bearer.refusal == BearerRefusal::InsufficientScope && !scope.is_empty() =>
        {
            format!(
                "{} (insufficient_scope: the token does not grant all of {scope})",
                default_message(code)
            )
        }
        _ => default_message(code).to_owned(),
    };
    Some(ErrorCode {
        code: code.to_owned(),
        message,
        detail: None,
    })
}

/// Parses `{"errors":[…]}`, token servers' `{"details":"…"}` and OAuth2's
/// `{"error":"…","error_description":"…"}`.
pub(crate) fn parse_error_body(body: &[u8]) -> Option<Vec<ErrorCode>> {
    #[derive(Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
        #[serde(default)]
        detail: Option<serde_json::Value>,
    }
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        errors: Vec<Entry>,
        #[serde(default)]
        details: Option<String>,
        #[serde(default)]
        error: Option<serde_json::Value>,
        #[serde(default)]
        error_description: Option<String>,
    }
    let parsed: Body = serde_json::from_slice(body).ok()?;
    if !parsed.errors.is_empty() {
        return Some(
            parsed
                .errors
                .into_iter()
                .map(|e| {
                    let code = if e.code.is_empty() {
                        "UNKNOWN".to_owned()
                    } else {
                        e.code
                    };
                    let message = if e.message.is_empty() {
                        default_message(&code).to_owned()
                    } else {
                        e.message
                    };
                    ErrorCode {
                        code,
                        message,
                        detail: e.detail.filter(|d| !d.is_null()),
                    }
                })
                .collect(),
        );
    }
    if let Some(details) = parsed.details.filter(|d| !d.is_empty()) {
        return Some(vec![ErrorCode {
            code: "UNAUTHORIZED".to_owned(),
            message: details,
            detail: None,
        }]);
    }
    if let Some(serde_json::Value::String(error)) = parsed.error {
        let code = "UNAUTHORIZED";
        let message = parsed
            .error_description
            .filter(|d| !d.is_empty())
            .or((!error.is_empty()).then_some(error))
            .unwrap_or_else(|| default_message(code).to_owned());
        return Some(vec![ErrorCode {
            code: code.to_owned(),
            message,
            detail: None,
        }]);
    }
    None
}

/// The messages distribution registers for its error codes, used when a registry sends a code
/// without a message.
fn default_message(code: &str) -> &'static str {
    match code {
        "BLOB_UNKNOWN" => "blob unknown to registry",
        "BLOB_UPLOAD_INVALID" => "blob upload invalid",
        "BLOB_UPLOAD_UNKNOWN" => "blob upload unknown to registry",
        "DIGEST_INVALID" => "provided digest did not match uploaded content",
        "MANIFEST_BLOB_UNKNOWN" => "blob unknown to registry",
        "MANIFEST_INVALID" => "manifest invalid",
        "MANIFEST_UNKNOWN" => "manifest unknown",
        "MANIFEST_UNVERIFIED" => "manifest failed signature verification",
        "NAME_INVALID" => "invalid repository name",
        "NAME_UNKNOWN" => "repository name not known to registry",
        "SIZE_INVALID" => "provided length did not match content length",
        "TAG_INVALID" => "manifest tag did not match URI",
        "RANGE_INVALID" => "invalid content range",
        "UNAUTHORIZED" => "authentication required",
        "DENIED" => "requested access to the resource is denied",
        "UNSUPPORTED" => "The operation is unsupported.",
        "TOOMANYREQUESTS" => "too many requests",
        "UNAVAILABLE" => "service unavailable",
        _ => "unknown error",
    }
}

fn excerpt(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return None;
    }
    const MAX: usize = 200;
    if text.len() <= MAX {
        return Some(text);
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Some(format!("{}…", &text[..end]))
}

/// `Retry-After` as delay-seconds or an HTTP date.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::WWW_AUTHENTICATE;

    fn decode(status: u16, body: &str) -> ResponseError {
        decode_error(
            status,
            &HeaderMap::new(),
            body.as_bytes(),
            "PUT",
            "http://r/v2/x".into(),
            false,
        )
    }

    #[test]
    fn formats_one_error_like_errcode() {
        let e = decode(
            403,
            r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#,
        );
        assert_eq!(
            e.to_string(),
            "denied: requested access to the resource is denied"
        );
        let e = decode(
            404,
            r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry","detail":{"name":"x"}}]}"#,
        );
        assert_eq!(
            e.to_string(),
            "name unknown: repository name not known to registry"
        );
    }

    #[test]
    fn formats_several_errors_like_errcode_errors() {
        let e = decode(
            400,
            r#"{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":"sha256:aa"},{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":"sha256:bb"}]}"#,
        );
        assert_eq!(
            e.to_string(),
            "errors:\nmanifest blob unknown: blob unknown to registry\nmanifest blob unknown: blob unknown to registry\n"
        );
    }

    #[test]
    fn bodyless_statuses_get_distribution_codes() {
        assert_eq!(
            decode(401, "").to_string(),
            "unauthorized: authentication required"
        );
        assert_eq!(
            decode(403, "").to_string(),
            "denied: requested access to the resource is denied"
        );
        assert_eq!(
            decode(502, "<html>Bad gateway</html>").to_string(),
            "unexpected status from PUT request to http://r/v2/x: 502 Bad Gateway: <html>Bad gateway</html>"
        );
    }

    #[test]
    fn token_server_bodies() {
        assert_eq!(
            decode(401, r#"{"details":"incorrect username or password"}"#).to_string(),
            "unauthorized: incorrect username or password"
        );
        assert_eq!(
            decode(
                400,
                r#"{"error":"invalid_grant","error_description":"bad refresh token"}"#
            )
            .to_string(),
            "unauthorized: bad refresh token"
        );
    }

    #[test]
    fn an_oauth_error_without_any_text_takes_the_registered_message() {
        assert_eq!(
            decode(400, r#"{"error":""}"#).to_string(),
            "unauthorized: authentication required"
        );
    }

    #[test]
    fn empty_message_takes_the_registered_one() {
        assert_eq!(
            decode(404, r#"{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN"}]}"#).to_string(),
            "blob upload unknown: blob upload unknown to registry"
        );
    }

    #[test]
    fn insufficient_scope_challenge_is_denied() {
        let mut headers = HeaderMap::new();
        headers.insert(
            WWW_AUTHENTICATE,
            r#"Bearer realm="https://a/token",service="s",scope="repository:x:push",error="insufficient_scope""#
                .parse()
                .unwrap(),
        );
        let body = br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":[{"Type":"repository","Name":"x","Action":"push"}]}]}"#;
        let e = decode_error(401, &headers, body, "POST", "u".into(), false);
        assert_eq!(
            e.to_string(),
            "denied: requested access to the resource is denied (insufficient_scope: the token does not grant all of repository:x:push)"
        );
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        let later = chrono::Utc::now() + chrono::Duration::seconds(120);
        let header = later.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let got = parse_retry_after(&header).unwrap();
        assert!(got > Duration::from_secs(100) && got <= Duration::from_secs(120));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
