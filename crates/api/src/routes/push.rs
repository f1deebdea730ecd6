//! `POST /images/{name}/push`.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use hoist_engine::{AuthConfig, LayerState, Platform, ProgressBoard, PushEvent, PushRequest};
use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::error::ApiError;
use crate::jsonmessage::JsonMessage;
use crate::params::Params;
use crate::registry_auth::decode_registry_auth;
use crate::routes::json_stream_response;
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

    let board = Arc::new(ProgressBoard::new(PushEvent::progress));
    let cancel = CancellationToken::new();
    // Dropped with the response body when the client goes away, which cancels the push.
    let guard = cancel.clone().drop_guard();
    let (result_tx, result_rx) = tokio::sync::oneshot::channel();
    let worker_board = Arc::clone(&board);
    tokio::spawn(async move {
        let outcome = tokio::select! {
            r = job.run(&worker_board) => r,
            _ = cancel.cancelled() => {
                tracing::info!("push cancelled: the client disconnected");
                return;
            }
        };
        let _ = result_tx.send(outcome);
        worker_board.close();
    });

    let state = (board, result_rx, guard, std::collections::VecDeque::new());
    let stream = futures_util::stream::unfold(Some(state), |state| async move {
        let (board, result_rx, guard, mut pending) = state?;
        loop {
            if let Some(message) = pending.pop_front() {
                return Some((message, Some((board, result_rx, guard, pending))));
            }
            match board.next().await {
                Some(event) => pending.extend(render(event)),
                // The board closes once the push ends; its result decides how the stream ends.
                None => {
                    return match result_rx.await {
                        Ok(Err(e)) => Some((JsonMessage::error(e.to_string()), None)),
                        _ => None,
                    };
                }
            }
        }
    });
    Ok(json_stream_response(stream))
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
