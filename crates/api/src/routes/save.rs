//! `GET /images/get` and `GET /images/{name}/get`: images as a `docker save` archive.

use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use crate::error::ApiError;
use crate::params::Params;
use crate::state::AppState;
use crate::version::ApiVersion;

/// moby reads `platform` on save from this version on, and ignores it before.
const SAVE_PLATFORM_SINCE: &str = "1.48";

/// `GET /images/get?names=…`.
pub async fn save_many(
    state: State<AppState>,
    version: Extension<ApiVersion>,
    params: Params,
) -> Result<Response, ApiError> {
    let names = params.all("names");
    save(state, version, names, params).await
}

pub(super) async fn save(
    State(state): State<AppState>,
    Extension(version): Extension<ApiVersion>,
    names: Vec<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let platform = if version.at_least(SAVE_PLATFORM_SINCE) {
        if params.all("platform").len() > 1 {
            return Err(ApiError::BadRequest(
                "multiple platform parameters not supported".into(),
            ));
        }
        params.platform("platform")?
    } else {
        None
    };
    let plan = state.engine.prepare_save(&names, platform.as_ref())?;
    // A failure after the response started cannot change its status: the body ends with an
    // error instead, so the connection is cut before the final chunk and the client sees a
    // truncated transfer (the docker CLI then fails) rather than an archive that merely looks
    // short.
    let body = plan.into_stream().map(|chunk| {
        chunk.map_err(|error| {
            tracing::warn!(%error, "saving images failed after the response started");
            std::io::Error::other(error.to_string())
        })
    });
    let mut response = Body::from_stream(body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    Ok(response)
}
