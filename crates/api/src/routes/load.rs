//! `POST /images/load`: images from a `docker save` or OCI layout archive.

use axum::body::Body;
use axum::extract::{Extension, State};
use axum::response::Response;
use hoist_engine::{LoadedImage, Platform};

use crate::error::ApiError;
use crate::jsonmessage::JsonMessage;
use crate::params::Params;
use crate::routes::{json_stream_response, request_body_reader};
use crate::state::AppState;
use crate::version::ApiVersion;

/// `platform` selects one platform of a multi-platform archive since API 1.48, as in moby.
const PLATFORM_SINCE: &str = "1.48";

/// `POST /images/load`. Only a bad `platform` is refused with a status; as in moby, every
/// failure of the load itself is reported in a 200 stream.
///
/// No status line is sent before the load has produced its first line, which is once the
/// archive is read and its images are stored: moby writes its headers only with its first
/// output, and clients (containers/image's `docker-daemon:`) take the headers as the end of the
/// load and close the connection. The request body is read to its end whatever happens, so the
/// client never sees its upload cut off before it reads our answer.
pub async fn load(
    State(state): State<AppState>,
    Extension(version): Extension<ApiVersion>,
    params: Params,
    body: Body,
) -> Result<Response, ApiError> {
    let reader = request_body_reader(body);
    let platform = requested_platform(&params, &version)?;
    let lines = match state.engine.load(reader, platform).await {
        Ok(images) => images.iter().map(loaded_line).collect(),
        Err(e) => vec![JsonMessage::error(e.to_string())],
    };
    Ok(json_stream_response(futures_util::stream::iter(lines)))
}

/// moby's check of `platform`: at most one, JSON as for push and save; ignored before 1.48.
fn requested_platform(params: &Params, version: &ApiVersion) -> Result<Option<Platform>, ApiError> {
    if !version.at_least(PLATFORM_SINCE) {
        return Ok(None);
    }
    let given = params.all("platform");
    if given.len() > 1 {
        return Err(ApiError::BadRequest(
            "multiple platform parameters not supported".into(),
        ));
    }
    match given.first().filter(|p| !p.is_empty()) {
        Some(json) => Ok(Some(Platform::from_json(json)?)),
        None => Ok(None),
    }
}

fn loaded_line(image: &LoadedImage) -> JsonMessage {
    match &image.name {
        Some(name) => JsonMessage::stream(format!("Loaded image: {name}\n")),
        None => JsonMessage::stream(format!("Loaded image ID: {}\n", image.id)),
    }
}
