//! `GET /images/json`: the image list and moby's filter syntax.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use hoist_engine::ListFilters;
use serde_json::Value;

use crate::error::ApiError;
use crate::params::Params;
use crate::state::AppState;
use crate::version::ApiVersion;
use crate::wire::images::Summary;

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
        .map(|image| Summary::new(image, &version).with_placeholder_names(&version))
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
