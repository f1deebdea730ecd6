//! `GET /images/get` and `GET /images/{name}/get`: images as a `docker save` archive.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use tokio_util::io::ReaderStream;

use crate::error::ApiError;
use crate::params::Params;
use crate::state::AppState;

/// `GET /images/get?names=…`.
pub async fn save_many(state: State<AppState>, params: Params) -> Result<Response, ApiError> {
    save(state, params.all("names")).await
}

pub(super) async fn save(
    State(state): State<AppState>,
    names: Vec<String>,
) -> Result<Response, ApiError> {
    let plan = state.engine.prepare_save(&names)?;
    let (writer, reader) = tokio::io::duplex(1 << 20);
    tokio::spawn(async move {
        if let Err(e) = plan.write(writer).await {
            // The tar is cut short, which the client reports as a truncated archive.
            tracing::warn!(error = %e, "saving images failed after the response started");
        }
    });
    let mut response =
        Body::from_stream(ReaderStream::with_capacity(reader, 1 << 18)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    Ok(response)
}
