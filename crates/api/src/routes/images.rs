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
        Some((name, "history")) => history(state, version, name, &params).await,
        Some((name, "get")) => {
            super::save::save(state, version, vec![name.to_owned()], params).await
        }
        _ => Err(ApiError::NotFound("page not found".into())),
    }
}

/// moby reads `platform` on inspect from this version on, and ignores it before.
const INSPECT_PLATFORM_SINCE: &str = "1.49";
/// moby reads `manifests` on inspect from this version on, and ignores it before.
const INSPECT_MANIFESTS_SINCE: &str = "1.48";
/// moby reads `platform` on history from this version on, and ignores it before.
const HISTORY_PLATFORM_SINCE: &str = "1.48";
/// moby reads `platforms` on delete from this version on, and ignores them before.
const DELETE_PLATFORMS_SINCE: &str = "1.50";

/// `DELETE /images/{name}`.
pub async fn delete(
    State(state): State<AppState>,
    Extension(version): Extension<ApiVersion>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    remove(&state, &version, &name, &params).await
}

/// `DELETE /images/search`: the image named `search` (the search route owns the path).
pub async fn delete_named_search(
    State(state): State<AppState>,
    Extension(version): Extension<ApiVersion>,
    params: Params,
) -> Result<Response, ApiError> {
    remove(&state, &version, "search", &params).await
}

/// `DELETE /images/` (an empty name): the engine refuses it as moby does, 400.
pub async fn delete_unnamed(
    State(state): State<AppState>,
    Extension(version): Extension<ApiVersion>,
    params: Params,
) -> Result<Response, ApiError> {
    remove(&state, &version, "", &params).await
}

async fn remove(
    state: &AppState,
    version: &ApiVersion,
    name: &str,
    params: &Params,
) -> Result<Response, ApiError> {
    let platforms = if version.at_least(DELETE_PLATFORMS_SINCE) {
        params.platforms("platforms")?
    } else {
        Vec::new()
    };
    let removed = state
        .engine
        .remove_image(name, params.flag("force"), platforms)
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
    let platform = match version.at_least(INSPECT_PLATFORM_SINCE) {
        true => params.platform("platform")?,
        false => None,
    };
    let manifests = version.at_least(INSPECT_MANIFESTS_SINCE) && params.flag("manifests");
    // With a platform, asking for every manifest is a contradiction.
    if platform.is_some() && manifests {
        return Err(ApiError::BadRequest(
            "conflicting options: manifests and platform options cannot both be set".into(),
        ));
    }
    let image = state.engine.inspect_image(name, platform).await?;
    let mut answer = Inspect::new(image, &version);
    if manifests {
        let manifests = state.engine.image_manifests(name).await?;
        // moby omits an empty list.
        answer.manifests =
            (!manifests.is_empty()).then(|| manifests.into_iter().map(Into::into).collect());
    }
    Ok(Json(answer).into_response())
}

async fn history(
    State(state): State<AppState>,
    Extension(version): Extension<ApiVersion>,
    name: &str,
    params: &Params,
) -> Result<Response, ApiError> {
    let platform = match version.at_least(HISTORY_PLATFORM_SINCE) {
        true => params.platform("platform")?,
        false => None,
    };
    let entries = state.engine.image_history(name, platform).await?;
    let items: Vec<HistoryItem> = entries.into_iter().map(HistoryItem::from).collect();
    Ok(Json(items).into_response())
}
