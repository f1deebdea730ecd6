//! `POST /images/{name}/push`.

use axum::extract::{Extension, State};
use axum::response::Response;
use bytes::Bytes;
use hoist_engine::{LayerState, Platform, PushEvent, PushRequest};

use crate::error::ApiError;
use crate::jsonmessage::JsonMessage;
use crate::params::Params;
use crate::registry_auth::RegistryAuth;
use crate::routes::progress_response;
use crate::state::AppState;
use crate::version::ApiVersion;

pub async fn push(
    State(state): State<AppState>,
    Extension(version): Extension<ApiVersion>,
    name: String,
    params: Params,
    auth: RegistryAuth,
    body: Bytes,
) -> Result<Response, ApiError> {
    let platform = match params.non_empty("platform") {
        Some(json) if version.at_least("1.46") => Some(Platform::from_json(json)?),
        _ => None,
    };
    let job = state.engine.prepare_push(PushRequest {
        name,
        tag: params.get("tag").map(str::to_owned),
        platform,
        auth: auth.or_json_body(&body),
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
