//! `POST /auth`: `docker login`.

use axum::Json;
use axum::extract::State;
use bytes::Bytes;
use hoist_engine::AuthConfig;
use serde_json::json;

use crate::AppState;
use crate::error::ApiError;

/// Answers as moby does: 200 `{"Status":"Login Succeeded","IdentityToken":"…"}` (an empty
/// `IdentityToken` when the registry gave none), 401 with the registry's message when the
/// credentials are refused.
pub async fn login(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let auth: AuthConfig = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid auth configuration: {e}")))?;
    let outcome = state.engine.login(&auth).await?;
    Ok(Json(json!({
        "Status": "Login Succeeded",
        "IdentityToken": outcome.identity_token.unwrap_or_default(),
    })))
}
