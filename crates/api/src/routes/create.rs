//! `POST /images/create`: pull (`fromImage`) or import (`fromSrc`), as moby's `postImagesCreate`
//! decides between them.

use axum::body::Body;
use axum::extract::{Extension, Path, State};
use axum::response::Response;
use hoist_engine::{
    ImportRequest, Platform, PullEvent, PullLayerState, PullPlatforms, PullRequest,
};

use crate::error::ApiError;
use crate::jsonmessage::JsonMessage;
use crate::params::Params;
use crate::registry_auth::RegistryAuth;
use crate::routes::{json_stream_response, progress_response, request_body_reader};
use crate::state::AppState;
use crate::version::ApiVersion;

pub async fn create(
    State(state): State<AppState>,
    Extension(version): Extension<ApiVersion>,
    params: Params,
    auth: RegistryAuth,
    body: Body,
) -> Result<Response, ApiError> {
    // A plain `os/arch[/variant]` here, unlike push's JSON; ignored before API 1.32, as in moby.
    let platform = params
        .non_empty("platform")
        .filter(|_| version.at_least("1.32"));
    match params.non_empty("fromImage") {
        Some(image) => {
            let request = PullRequest {
                image: image.to_owned(),
                tag: params.non_empty("tag").map(str::to_owned),
                // A pull also takes `all`: every platform of an index.
                platforms: platform
                    .map(PullPlatforms::parse)
                    .transpose()?
                    .unwrap_or_default(),
                auth: auth.or_anonymous(),
            };
            pull(state, request).await
        }
        None => {
            // Taken first: a refused request still reads the upload to its end (see `import`).
            let body = request_body_reader(body);
            let platform = platform.map(Platform::parse_specifier).transpose()?;
            let request = ImportRequest {
                source: params.get("fromSrc").unwrap_or_default().to_owned(),
                repo: params.non_empty("repo").map(str::to_owned),
                tag: params.non_empty("tag").map(str::to_owned),
                message: params.non_empty("message").map(str::to_owned),
                changes: params.all("changes"),
                platform,
            };
            import(state, request, body).await
        }
    }
}

/// `DELETE /images/create` removes the image named `create`: axum matches a path before its
/// method, so without this the pull route would shadow `docker rmi create`.
pub async fn delete_named_create(
    state: State<AppState>,
    version: axum::extract::Extension<crate::version::ApiVersion>,
    params: Params,
) -> Result<Response, ApiError> {
    crate::routes::images::delete(state, version, Path("create".to_owned()), params).await
}

async fn pull(state: AppState, request: PullRequest) -> Result<Response, ApiError> {
    // Resolving happens before the response: its failures keep their status (404 and so on).
    let job = state.engine.prepare_pull(request).await?;

    Ok(progress_response(
        "pull",
        PullEvent::progress,
        move |board| async move { job.run(&board).await },
        |event| vec![render(event)],
    ))
}

/// The message one pull event becomes on the wire (moby's `progress.Message` for lines with no
/// layer, `progress.Update` for layer states).
fn render(event: PullEvent) -> JsonMessage {
    match event {
        PullEvent::PullingFrom { id, repository } => JsonMessage {
            id: Some(id),
            ..JsonMessage::status(format!("Pulling from {repository}"))
        },
        PullEvent::Layer { id, state } => {
            let text = match state {
                PullLayerState::PullingFsLayer => "Pulling fs layer".to_owned(),
                PullLayerState::Waiting => "Waiting".to_owned(),
                PullLayerState::Retrying { seconds } => format!(
                    "Retrying in {seconds} second{}",
                    if seconds == 1 { "" } else { "s" }
                ),
                PullLayerState::VerifyingChecksum => "Verifying Checksum".to_owned(),
                PullLayerState::DownloadComplete => "Download complete".to_owned(),
                PullLayerState::PullComplete => "Pull complete".to_owned(),
                PullLayerState::AlreadyExists => "Already exists".to_owned(),
            };
            JsonMessage::id_status(&id, text)
        }
        PullEvent::Progress { id, current, total } => {
            JsonMessage::progress(&id, "Downloading", current, total)
        }
        PullEvent::Note(text) => JsonMessage::status(text),
        PullEvent::Digest(digest) => JsonMessage::status(format!("Digest: {digest}")),
        PullEvent::Done { reference, newer } => JsonMessage::status(if newer {
            format!("Status: Downloaded newer image for {reference}")
        } else {
            format!("Status: Image is up to date for {reference}")
        }),
    }
}

/// As in moby, nothing is written before the image is stored, so every failure keeps its
/// status. The request body is read to its end whatever happens, so a client still uploading
/// always gets to read the answer.
async fn import(
    state: AppState,
    request: ImportRequest,
    body: impl tokio::io::AsyncRead + Send + Unpin + 'static,
) -> Result<Response, ApiError> {
    let job = state.engine.prepare_import(request)?;
    let id = job.run(body).await?;
    let line = JsonMessage::status(id.to_string());
    Ok(json_stream_response(futures_util::stream::once(async {
        line
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_lines_have_moby_shape() {
        let bytes = |e| render(e).to_bytes();
        assert_eq!(
            &bytes(PullEvent::PullingFrom {
                id: "latest".into(),
                repository: "library/foo".into()
            })[..],
            b"{\"status\":\"Pulling from library/foo\",\"id\":\"latest\"}\r\n"
        );
        assert_eq!(
            &bytes(PullEvent::Layer {
                id: "3f1e2d4c5b6a".into(),
                state: PullLayerState::PullingFsLayer
            })[..],
            b"{\"status\":\"Pulling fs layer\",\"progressDetail\":{},\"id\":\"3f1e2d4c5b6a\"}\r\n"
        );
        assert_eq!(
            &bytes(PullEvent::Done {
                reference: "foo:latest".into(),
                newer: false
            })[..],
            b"{\"status\":\"Status: Image is up to date for foo:latest\"}\r\n"
        );
    }
}
