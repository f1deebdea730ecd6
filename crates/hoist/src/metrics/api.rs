//! The API's request counter: a layer around the whole app that counts each answer by the route
//! template the API put on it, the method and the status.

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use hoist_api::ApiRoute;

use super::{ApiRequest, SharedMetrics};

/// The route of a request that matched none (a 404, or a version the API refused first).
const UNMATCHED: &str = "unmatched";

/// Counts the request once its answer's head is ready (a streamed body may go on after).
pub async fn record_api_requests(
    State(metrics): State<SharedMetrics>,
    request: Request,
    next: Next,
) -> Response {
    let method = method_label(request.method());
    let response = next.run(request).await;
    let route = response
        .extensions()
        .get::<ApiRoute>()
        .map_or(UNMATCHED, |route| route.0.as_str())
        .to_owned();
    metrics
        .api_requests
        .get_or_create(&ApiRequest {
            route,
            method,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// Methods a client can invent are bounded to the ones HTTP defines.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}
