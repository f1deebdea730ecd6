//! `POST /images/{name}/push`.

use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use hoist_engine::{AuthConfig, LayerState, Platform, PushEvent, PushRequest};

use crate::AppState;
use crate::error::ApiError;
use crate::jsonmessage::JsonMessage;
use crate::params::Params;
use crate::registry_auth::decode_registry_auth;
use crate::routes::progress_response;
use crate::version::ApiVersion;

pub async fn push(
    State(state): State<AppState>,
    Extension(version): Extension<ApiVersion>,
    name: String,
    params: Params,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let auth = match headers
        .get("X-Registry-Auth")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
    {
        Some(header) => decode_registry_auth(header),
        // docker-py sends its credentials (or `{}`) as a JSON body instead.
        None => serde_json::from_slice::<AuthConfig>(&body).unwrap_or_default(),
    };
    let platform = match params.non_empty("platform") {
        Some(json) if version.at_least("1.46") => Some(Platform::from_json(json)?),
        _ => None,
    };
    let job = state.engine.prepare_push(PushRequest {
        name,
        tag: params.get("tag").map(str::to_owned),
        platform,
        auth,
    })?;

    Ok(progress_response(
        "push",
        PushEvent::progress,
        move |board| async move { job.run(&board).await },
        render,
    ))
}

/// The messages one push event becomes on the wire.
fn render(event: PushEvent) -> Vec<JsonMessage> {
    match event {
        PushEvent::Repository(name) => vec![JsonMessage::status(format!(
            "The push refers to repository [{name}]"
        ))],
        PushEvent::Layer { id, state } => {
            let text = match state {
                LayerState::Preparing => "Preparing".to_owned(),
                LayerState::Waiting => "Waiting".to_owned(),
                LayerState::Pushed => "Pushed".to_owned(),
                LayerState::AlreadyExists => "Layer already exists".to_owned(),
                LayerState::MountedFrom(repo) => format!("Mounted from {repo}"),
                LayerState::Retrying { seconds } => {
                    format!(
                        "Retrying in {seconds} second{}",
                        if seconds == 1 { "" } else { "s" }
                    )
                }
            };
            vec![JsonMessage::id_status(&id, text)]
        }
        PushEvent::Progress { id, current, total } => {
            vec![JsonMessage::progress(&id, "Pushing", current, total)]
        }
        PushEvent::Note(text) => vec![JsonMessage::status(text)],
        PushEvent::Pushed { tag, digest, size } => vec![
            JsonMessage::status(format!("{tag}: digest: {digest} size: {size}")),
            // A separate message: the CLI never prints a message that carries aux.
            JsonMessage::aux(
                serde_json::json!({"Tag": tag, "Digest": digest.to_string(), "Size": size}),
            ),
        ],
        PushEvent::ManifestPushedInsteadOfIndex {
            original_index,
            selected_manifest,
        } => vec![JsonMessage::aux(serde_json::json!({
            "manifestPushedInsteadOfIndex": true,
            "originalIndex": original_index,
            "selectedManifest": selected_manifest,
        }))],
    }
}
