//! The prune endpoints. Images are pruned for real; hoist has no containers, networks, volumes
//! or build cache, so those endpoints check their filters as moby does and report that nothing
//! was removed, which lets `docker system prune` run end to end.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use hoist_engine::EventType;
use serde_json::json;

use crate::error::ApiError;
use crate::filter_args::FilterArgs;
use crate::params::Params;
use crate::routes::list::image_filters;
use crate::state::AppState;
use crate::wire::images::PruneAnswer;

/// moby's `imagesAcceptedFilters` of the image prune.
const IMAGE_PRUNE_FILTERS: &[&str] = &["dangling", "label", "label!", "until"];
/// The filters the container and network prunes accept.
const CONTAINER_PRUNE_FILTERS: &[&str] = &["until", "label", "label!"];
/// The filters the volume prune accepts.
const VOLUME_PRUNE_FILTERS: &[&str] = &["label", "label!", "all"];

/// `POST /images/prune`: `dangling` (default true) limits it to dangling images.
pub async fn images(State(state): State<AppState>, params: Params) -> Result<Response, ApiError> {
    let args = FilterArgs::parse(params.get("filters"))?;
    args.validate(IMAGE_PRUNE_FILTERS)?;
    let dangling_only = args.bool_or("dangling", true)?;
    let filters = image_filters(&args)?;
    let report = state.engine.prune_images(filters, dangling_only).await?;
    Ok(Json(PruneAnswer::from(report)).into_response())
}

/// `POST /containers/prune`: no containers, nothing removed.
pub async fn containers(
    State(state): State<AppState>,
    params: Params,
) -> Result<Response, ApiError> {
    let args = FilterArgs::parse(params.get("filters"))?;
    args.validate(CONTAINER_PRUNE_FILTERS)?;
    image_filters(&args)?;
    state.engine.log_nothing_pruned(EventType::Container);
    Ok(Json(json!({"ContainersDeleted": null, "SpaceReclaimed": 0})).into_response())
}

/// `POST /networks/prune`: no networks, nothing removed.
pub async fn networks(State(state): State<AppState>, params: Params) -> Result<Response, ApiError> {
    let args = FilterArgs::parse(params.get("filters"))?;
    args.validate(CONTAINER_PRUNE_FILTERS)?;
    image_filters(&args)?;
    state.engine.log_nothing_pruned(EventType::Network);
    Ok(Json(json!({"NetworksDeleted": null})).into_response())
}

/// `POST /volumes/prune`: no volumes, nothing removed.
pub async fn volumes(State(state): State<AppState>, params: Params) -> Result<Response, ApiError> {
    let args = FilterArgs::parse(params.get("filters"))?;
    args.validate(VOLUME_PRUNE_FILTERS)?;
    state.engine.log_nothing_pruned(EventType::Volume);
    Ok(Json(json!({"VolumesDeleted": null, "SpaceReclaimed": 0})).into_response())
}

/// `POST /build/prune`: no build cache, nothing removed. BuildKit's own filters are many and
/// all select cache records, of which there are none.
pub async fn build_cache(params: Params) -> Result<Response, ApiError> {
    FilterArgs::parse(params.get("filters"))?;
    Ok(Json(json!({"CachesDeleted": null, "SpaceReclaimed": 0})).into_response())
}
