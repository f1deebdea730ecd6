//! Image endpoints other than push. Handlers translate HTTP to engine calls and back, nothing else.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use hoist_engine::{ListFilters, LoadedImage};
use serde_json::Value;
use tokio_util::io::ReaderStream;

use crate::error::ApiError;
use crate::jsonmessage::JsonMessage;
use crate::params::Params;
use crate::registry_auth::RegistryAuth;
use crate::routes::{json_stream_response, push, request_body_reader};
use crate::state::AppState;
use crate::version::ApiVersion;
use crate::wire::images::{DeleteItem, HistoryItem, Inspect, Summary};

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
) -> Result<Response, ApiError> {
    match rest.rsplit_once('/') {
        Some((name, "json")) => inspect(state, version, name).await,
        Some((name, "history")) => history(state, name).await,
        Some((name, "get")) => save(state, vec![name.to_owned()]).await,
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
) -> Result<Response, ApiError> {
    let image = state.engine.inspect_image(name).await?;
    Ok(Json(Inspect::new(image, &version)).into_response())
}

async fn history(State(state): State<AppState>, name: &str) -> Result<Response, ApiError> {
    let entries = state.engine.image_history(name).await?;
    let items: Vec<HistoryItem> = entries.into_iter().map(HistoryItem::from).collect();
    Ok(Json(items).into_response())
}

/// `GET /images/json`.
pub async fn list(
    State(state): State<AppState>,
    Extension(version): Extension<ApiVersion>,
    params: Params,
) -> Result<Response, ApiError> {
    let mut filters = parse_filters(params.get("filters"))?;
    if let Some(legacy) = params.non_empty("filter")
        && !version.at_least("1.41")
    {
        filters.reference.push(legacy.to_owned());
    }
    let images = state.engine.list_images(filters).await?;
    let rows: Vec<Summary> = images
        .into_iter()
        .map(|image| Summary::new(image, &version))
        .collect();
    Ok(Json(rows).into_response())
}

/// moby's `filters.FromJSON`: `{"key":{"value":true}}`, or the older `{"key":["value"]}`.
fn parse_filters(text: Option<&str>) -> Result<ListFilters, ApiError> {
    let mut filters = ListFilters::default();
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(filters);
    };
    let raw: BTreeMap<String, Value> = serde_json::from_str(text)
        .map_err(|e| ApiError::BadRequest(format!("invalid filter: {e}")))?;
    for (key, value) in raw {
        let values: Vec<String> = match value {
            Value::Object(map) => map
                .into_iter()
                .filter(|(_, v)| v.as_bool().unwrap_or(false))
                .map(|(k, _)| k)
                .collect(),
            Value::Array(items) => items
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => return Err(ApiError::BadRequest(format!("invalid filter '{key}'"))),
        };
        match key.as_str() {
            "dangling" => {
                for v in values {
                    filters.dangling = Some(match v.as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => {
                            return Err(ApiError::BadRequest(format!(
                                "invalid filter 'dangling={v}'"
                            )));
                        }
                    });
                }
            }
            "reference" => filters.reference.extend(values),
            "label" => filters.label.extend(values),
            _ => return Err(ApiError::BadRequest(format!("invalid filter '{key}'"))),
        }
    }
    Ok(filters)
}

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

/// `GET /images/get?names=…`.
pub async fn save_many(state: State<AppState>, params: Params) -> Result<Response, ApiError> {
    save(state, params.all("names")).await
}

async fn save(State(state): State<AppState>, names: Vec<String>) -> Result<Response, ApiError> {
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
