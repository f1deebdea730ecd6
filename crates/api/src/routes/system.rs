//! `/_ping`, `/version`, `/info`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::AppState;
use crate::error::ApiError;
use crate::version::{MAX_API_VERSION, MIN_API_VERSION};

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

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub async fn version(State(state): State<AppState>) -> Json<serde_json::Value> {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let server = &state.server;
    Json(json!({
        "Platform": {"Name": "hoist"},
        "Components": [{
            "Name": "Engine",
            "Version": server.version,
            "Details": {
                "ApiVersion": MAX_API_VERSION,
                "Arch": arch(),
                "BuildTime": "",
                "Experimental": "false",
                "GitCommit": server.git_commit,
                "GoVersion": "",
                "KernelVersion": kernel,
                "MinAPIVersion": MIN_API_VERSION,
                "Os": std::env::consts::OS,
            }
        }],
        "Version": server.version,
        "ApiVersion": MAX_API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": server.git_commit,
        "GoVersion": "",
        "Os": std::env::consts::OS,
        "Arch": arch(),
        "KernelVersion": kernel,
        "BuildTime": "",
    }))
}

pub async fn info(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        state
            .engine
            .system_info(&state.server.version, state.server.debug)
            .await?,
    ))
}
