//! Route handlers, one file per area.

pub mod auth;
pub mod create;
pub mod images;
pub mod push;
pub mod system;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};

use crate::jsonmessage::JsonMessage;

/// A 200 response streaming JSON messages as they come, `Content-Type` exactly
/// `application/json` (the docker CLI renders the stream only then).
pub fn json_stream_response(
    messages: impl Stream<Item = JsonMessage> + Send + 'static,
) -> Response {
    let body = Body::from_stream(messages.map(|m| Ok::<_, std::convert::Infallible>(m.to_bytes())));
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
