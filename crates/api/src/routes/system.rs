//! `/_ping`, `/version`, `/info`.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use hoist_engine::kernel_version;

use crate::error::ApiError;
use crate::state::AppState;
use crate::version::ApiVersion;
use crate::wire::system::{self, Info};

fn ping_headers(response: &mut Response) {
    let h = response.headers_mut();
    h.insert("Builder-Version", HeaderValue::from_static("2"));
    h.insert("Swarm", HeaderValue::from_static("inactive"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
}

pub async fn ping() -> Response {
    let mut response = "OK".into_response();
    ping_headers(&mut response);
    response
}

pub async fn ping_head() -> Response {
    let mut response = ().into_response();
    ping_headers(&mut response);
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}

pub async fn version(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(system::version(&state.server, kernel_version()))
}

pub async fn info(
    State(state): State<AppState>,
    Extension(version): Extension<ApiVersion>,
) -> Result<Json<Info>, ApiError> {
    let info = state.engine.system_info().await?;
    Ok(Json(Info::new(info, &state.server, &version)))
}
