//! `GET /images/json`: the image list and moby's filter syntax.

use axum::Json;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use hoist_engine::{EngineError, ListFilters, ListOptions};

use crate::error::ApiError;
use crate::filter_args::FilterArgs;
use crate::params::Params;
use crate::state::AppState;
use crate::timestamp::parse_filter_time;
use crate::version::ApiVersion;
use crate::wire::images::Summary;

/// The filters the list accepts (moby's `acceptedImageFilterTags`).
const LIST_FILTERS: &[&str] = &[
    "dangling",
    "label",
    "label!",
    "before",
    "since",
    "reference",
    "until",
];
/// `shared-size` is read from this version on.
const SHARED_SIZE_SINCE: &str = "1.42";
/// `manifests` is read from this version on.
const MANIFESTS_SINCE: &str = "1.47";

/// `GET /images/json`.
pub async fn list(
    State(state): State<AppState>,
    Extension(version): Extension<ApiVersion>,
    params: Params,
) -> Result<Response, ApiError> {
    let args = FilterArgs::parse(params.get("filters"))?;
    args.validate(LIST_FILTERS)?;
    let mut filters = image_filters(&args)?;
    if args.contains("dangling") {
        filters.dangling = Some(args.bool_or("dangling", false)?);
    }
    filters.reference = args.get("reference");
    filters.before = args.get("before");
    filters.since = args.get("since");
    if let Some(legacy) = params.non_empty("filter")
        && !version.at_least("1.41")
    {
        filters.reference.push(legacy.to_owned());
    }
    let options = ListOptions {
        filters,
        shared_size: version.at_least(SHARED_SIZE_SINCE) && params.flag("shared-size"),
        manifests: version.at_least(MANIFESTS_SINCE) && params.flag("manifests"),
    };
    let images = state.engine.list_images(options).await?;
    let rows: Vec<Summary> = images
        .into_iter()
        .map(|image| Summary::new(image, &version))
        .collect();
    Ok(Json(rows).into_response())
}

/// The filters list and prune share: `until`, `label` and `label!`.
pub fn image_filters(args: &FilterArgs) -> Result<ListFilters, ApiError> {
    let now = chrono::Local::now();
    let until = args
        .get("until")
        .iter()
        .map(|value| parse_filter_time(value, now))
        .collect::<Result<Vec<_>, String>>()
        // moby passes these errors on untyped: a server error.
        .map_err(|message| ApiError::Engine(EngineError::Internal(message)))?;
    Ok(ListFilters {
        label: args.get("label"),
        label_not: args.get("label!"),
        until,
        ..ListFilters::default()
    })
}
