//! The Docker Engine API over HTTP: routes at `/v1.NN/…` and bare, version checks, JSON message
//! streams, the answers' wire types, and the single mapping from engine errors to statuses.

#![forbid(unsafe_code)]

mod error;
mod filter_args;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod jsonmessage;
mod params;
mod registry_auth;
mod route;
mod routes;
mod state;
mod timestamp;
mod version;
mod wire;

use axum::Router;
use axum::routing::{get, post};

pub use error::ApiError;
pub use route::ApiRoute;
pub use state::{AppState, Details, LiveDetails, ServerInfo};
pub use version::{MAX_API_VERSION, MIN_API_VERSION, check_min_api_version};

/// The whole API as one service. The version layer runs before routing, so routes are written
/// without the `/v1.NN` prefix.
pub fn app(state: AppState) -> Router {
    let routes = Router::new()
        .route(
            "/_ping",
            get(routes::system::ping).head(routes::system::ping_head),
        )
        .route("/version", get(routes::system::version))
        .route("/auth", post(routes::auth::login))
        .route("/info", get(routes::system::info))
        .route("/events", get(routes::events::events))
        .route("/images/json", get(routes::list::list))
        .route("/images/prune", post(routes::prune::images))
        .route("/containers/prune", post(routes::prune::containers))
        .route("/networks/prune", post(routes::prune::networks))
        .route("/volumes/prune", post(routes::prune::volumes))
        .route("/build/prune", post(routes::prune::build_cache))
        .route("/system/df", get(routes::disk_usage::disk_usage))
        .route("/images/load", post(routes::load::load))
        .route(
            "/images/create",
            post(routes::create::create).delete(routes::create::delete_named_create),
        )
        .route("/images/get", get(routes::save::save_many))
        .route(
            "/images/",
            axum::routing::delete(routes::images::delete_unnamed),
        )
        // Beside the catch-all below (static paths win): moby reads `DELETE /images/search`
        // as removing the image named `search`.
        .route(
            "/images/search",
            get(routes::search::search).delete(routes::images::delete_named_search),
        )
        .route(
            "/images/{*rest}",
            post(routes::images::post_by_name)
                .get(routes::images::get_by_name)
                .delete(routes::images::delete),
        )
        .route("/distribution/{*rest}", get(routes::distribution::inspect))
        .fallback(error::page_not_found)
        .method_not_allowed_fallback(error::page_not_found)
        .layer(axum::middleware::from_fn(error::json_errors))
        .layer(axum::middleware::from_fn(route::tag))
        .with_state(state.clone());
    let versioned = axum::middleware::from_fn_with_state(state, version::version_layer);
    Router::new().fallback_service(tower::Layer::layer(&versioned, routes))
}
