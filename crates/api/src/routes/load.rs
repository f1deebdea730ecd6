//! `POST /images/load`: images from a `docker save` or OCI layout archive.

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use futures_util::StreamExt;
use hoist_engine::LoadedImage;

use crate::jsonmessage::JsonMessage;
use crate::routes::{json_stream_response, request_body_reader};
use crate::state::AppState;

/// `POST /images/load`. As in moby, a failure after the request is accepted is reported in the
/// stream. The request body is always read to its end, even after a failure, so the client
/// never sees its upload cut off before it reads our answer.
pub async fn load(State(state): State<AppState>, body: Body) -> Response {
    let reader = request_body_reader(body);
    let engine = state.engine.clone();
    let messages = futures_util::stream::once(async move {
        match engine.load(reader).await {
            Ok(images) => images.iter().map(loaded_line).collect::<Vec<_>>(),
            Err(e) => vec![JsonMessage::error(e.to_string())],
        }
    })
    .flat_map(futures_util::stream::iter);
    json_stream_response(messages)
}

fn loaded_line(image: &LoadedImage) -> JsonMessage {
    match &image.name {
        Some(name) => JsonMessage::stream(format!("Loaded image: {name}\n")),
        None => JsonMessage::stream(format!("Loaded image ID: {}\n", image.id)),
    }
}
