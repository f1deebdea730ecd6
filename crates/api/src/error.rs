//! The one place where errors become HTTP statuses and `{"message": …}` bodies.

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hoist_engine::{EngineError, ErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// A failure moby reports as a 500 although the request caused it.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Engine(e) => match e.kind() {
                ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
                ErrorKind::NotFound => StatusCode::NOT_FOUND,
                ErrorKind::Conflict => StatusCode::CONFLICT,
                ErrorKind::Forbidden => StatusCode::FORBIDDEN,
                ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
                ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::debug!(error = %self, %status, "request refused");
        }
        // Exactly `application/json`: the docker client only decodes the message then.
        json_error(status, &self.to_string())
    }
}

/// moby's error body: `{"message": …}` and a newline, `Content-Type: application/json`.
fn json_error(status: StatusCode, message: &str) -> Response {
    let mut body = serde_json::json!({ "message": message }).to_string();
    body.push('\n');
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The longest plain-text error body that is carried over into a JSON message; longer ones are
/// not ours and are replaced by the status's reason.
const MAX_PLAIN_ERROR_BYTES: usize = 64 * 1024;

/// Every error answer is JSON, including the ones the HTTP layers produce on their own (axum's
/// refusal of an over-long body, 413, or of a malformed query or path): clients parse
/// `message` from any status of 400 and above.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), MAX_PLAIN_ERROR_BYTES)
        .await
        .ok()
        .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok())
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty());
    let message = text.unwrap_or_else(|| {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_lowercase()
    });
    json_error(status, &message)
}

/// 404 for unknown routes and wrong methods, as moby answers both.
pub async fn page_not_found() -> ApiError {
    ApiError::NotFound("page not found".into())
}
