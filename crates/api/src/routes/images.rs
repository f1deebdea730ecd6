//! Endpoints on one named image: inspect, history, tag, remove; push and save are dispatched
//! from here. Handlers translate HTTP to engine calls and back, nothing else.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::error::ApiError;
use crate::params::Params;
use crate::registry_auth::RegistryAuth;
use crate::routes::push;
use crate::state::AppState;
use crate::version::ApiVersion;
use crate::wire::images::{DeleteItem, HistoryItem, Inspect};

/// Inspect reads `manifests` from this version on.
const INSPECT_MANIFESTS_SINCE: &str = "1.48";

/// `POST /images/{*rest}`: `<name>/push` or `<name>/tag`; names may contain `/`.
pub async fn post_by_name(
    state: State<AppState>,
    version: Extension<ApiVersion>,
    Path(rest): Path<String>,
    params: Params,
    auth: RegistryAuth,
    body: Bytes,
) -> Result<Response, ApiError> {
    match rest.rsplit_once('/') {
        Some((name, "push")) => {
            push::push(state, version, name.to_owned(), params, auth, body).await
        }
        Some((name, "tag")) => tag(state, name, params).await,
        _ => Err(ApiError::NotFound("page not found".into())),
    }
}

/// `GET /images/{*rest}`: `<name>/json`, `<name>/history` or `<name>/get`.
pub async fn get_by_name(
    state: State<AppState>,
    version: Extension<ApiVersion>,
    Path(rest): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    match rest.rsplit_once('/') {
        Some((name, "json")) => inspect(state, version, name, &params).await,
        Some((name, "history")) => history(state, name).await,
        Some((name, "get")) => super::save::save(state, vec![name.to_owned()]).await,
        _ => Err(ApiError::NotFound("page not found".into())),
    }
}

/// `DELETE /images/{name}`.
pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    remove(&state, &name, &params).await
}

/// `DELETE /images/search`: the image named `search` (the search route owns the path).
pub async fn delete_named_search(
    State(state): State<AppState>,
    params: Params,
) -> Result<Response, ApiError> {
    remove(&state, "search", &params).await
}

/// `DELETE /images/` (an empty name): the engine refuses it as moby does, 400.
pub async fn delete_unnamed(
    State(state): State<AppState>,
    params: Params,
) -> Result<Response, ApiError> {
    remove(&state, "", &params).await
}

async fn remove(state: &AppState, name: &str, params: &Params) -> Result<Response, ApiError> {
    let removed = state
        .engine
        .remove_image(name, params.flag("force"))
        .await?;
    let items: Vec<DeleteItem> = removed.into_iter().map(DeleteItem::from).collect();
    Ok(Json(items).into_response())
}

async fn tag(
    State(state): State<AppState>,
    name: &str,
    params: Params,
) -> Result<Response, ApiError> {
    let Some(repo) = params.non_empty("repo") else {
        // moby quirk kept for compatibility: no repo means nothing to do.
        return Ok(StatusCode::OK.into_response());
    };
    state
        .engine
        .tag_image(name, repo, params.non_empty("tag"))
        .await?;
    Ok(StatusCode::CREATED.into_response())
}

async fn inspect(
    State(state): State<AppState>,
    Extension(version): Extension<ApiVersion>,
    name: &str,
    params: &Params,
) -> Result<Response, ApiError> {
    let image = state.engine.inspect_image(name).await?;
    let mut answer = Inspect::new(image, &version);
    if version.at_least(INSPECT_MANIFESTS_SINCE) && params.flag("manifests") {
        let manifests = state.engine.image_manifests(name).await?;
        // moby omits an empty list.
        answer.manifests =
            (!manifests.is_empty()).then(|| manifests.into_iter().map(Into::into).collect());
    }
    Ok(Json(answer).into_response())
}

async fn history(State(state): State<AppState>, name: &str) -> Result<Response, ApiError> {
    let entries = state.engine.image_history(name).await?;
    let items: Vec<HistoryItem> = entries.into_iter().map(HistoryItem::from).collect();
    Ok(Json(items).into_response())
}
