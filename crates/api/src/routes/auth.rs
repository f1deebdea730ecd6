//! `POST /auth`: `docker login`.

use axum::Json;
use axum::extract::State;
use bytes::Bytes;
use hoist_engine::AuthConfig;

use crate::error::ApiError;
use crate::state::AppState;
use crate::wire::auth::LoginResponse;

/// Answers as moby does: 200 with `LoginResponse`, 401 with the registry's message when the
/// credentials are refused.
pub async fn login(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<LoginResponse>, ApiError> {
    let auth: AuthConfig = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid auth configuration: {e}")))?;
    let outcome = state.engine.login(&auth).await?;
    Ok(Json(LoginResponse::new(outcome.identity_token)))
}
