//! `GET /system/df`: disk usage by images; containers, volumes and build cache are empty.

use axum::Json;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::params::Params;
use crate::state::AppState;
use crate::version::ApiVersion;
use crate::wire::disk_usage::DiskUsageAnswer;
use crate::wire::images::Summary;

/// `type` is read from this version on; before it every section is given.
const TYPES_SINCE: &str = "1.42";

pub async fn disk_usage(
    State(state): State<AppState>,
    Extension(version): Extension<ApiVersion>,
    params: Params,
) -> Result<Response, ApiError> {
    let types = params.all("type");
    let all = types.is_empty() || !version.at_least(TYPES_SINCE);
    let (mut images, mut containers, mut volumes, mut build_cache) = (all, all, all, all);
    if !all {
        for kind in &types {
            match kind.as_str() {
                "image" => images = true,
                "container" => containers = true,
                "volume" => volumes = true,
                "build-cache" => build_cache = true,
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "unknown object type: {other}"
                    )));
                }
            }
        }
    }
    let (layers_size, image_rows) = if images {
        let usage = state.engine.disk_usage().await?;
        let rows = usage
            .images
            .into_iter()
            .map(|image| Summary::for_disk_usage(image, &version))
            .collect();
        (usage.layers_size, Some(rows))
    } else {
        (0, None)
    };
    Ok(Json(DiskUsageAnswer {
        layers_size,
        images: image_rows,
        containers: containers.then_some([]),
        volumes: volumes.then_some([]),
        build_cache: build_cache.then_some([]),
    })
    .into_response())
}
