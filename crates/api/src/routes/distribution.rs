//! `GET /distribution/{name}/json`: what a registry serves under a name.

use axum::Json;
use axum::extract::{Path, State};

use crate::error::ApiError;
use crate::registry_auth::RegistryAuth;
use crate::state::AppState;
use crate::wire::distribution::DistributionInspect;

/// `GET /distribution/{*rest}`: `rest` is `<name>/json`, and names may contain `/`.
pub async fn inspect(
    State(state): State<AppState>,
    Path(rest): Path<String>,
    auth: RegistryAuth,
) -> Result<Json<DistributionInspect>, ApiError> {
    let Some(name) = rest.strip_suffix("/json") else {
        return Err(ApiError::NotFound("page not found".into()));
    };
    let info = state
        .engine
        .inspect_distribution(name, auth.or_anonymous())
        .await?;
    Ok(Json(info.into()))
}
