//! `GET /images/json`: the image list and moby's filter syntax.

use axum::Json;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use hoist_engine::ListFilters;

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
        .map(|image| Summary::new(image, &version))
        .collect();
    Ok(Json(rows).into_response())
}

/// The list's filters: `dangling`, `reference` and `label`.
fn parse_filters(text: Option<&str>) -> Result<ListFilters, ApiError> {
    let mut filters = ListFilters::default();
    for (key, values) in crate::filters::parse(text)? {
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
