//! Which route served a request, as a template such as `/images/{name}/push`, handed to the
//! daemon's request metrics on the response: never the raw path, which carries image names.

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

/// The route template of the request a response answers, on the response's extensions. A
/// request that matched no route (a 404, or one refused before routing) has none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiRoute(pub String);

/// Puts the matched route's template on the response.
pub(crate) async fn tag(request: Request, next: Next) -> Response {
    let template = request
        .extensions()
        .get::<MatchedPath>()
        .map(|matched| template(matched.as_str(), request.method(), request.uri().path()));
    let mut response = next.run(request).await;
    if let Some(template) = template {
        response.extensions_mut().insert(ApiRoute(template));
    }
    response
}

/// The template of a route, with the catch-all image routes split into the routes moby names
/// (`/images/{name}/push`, `/images/{name}/json`, …) by the path's last segment.
fn template(matched: &str, method: &Method, path: &str) -> String {
    let action = path.rsplit('/').next().unwrap_or_default();
    let known = match (matched, method.as_str(), action) {
        ("/images/{*rest}", "POST", "push" | "tag")
        | ("/images/{*rest}", "GET", "json" | "history" | "get")
        | ("/distribution/{*rest}", "GET", "json") => Some(action),
        _ => None,
    };
    match (matched, known) {
        ("/images/{*rest}", Some(action)) => format!("/images/{{name}}/{action}"),
        ("/images/{*rest}", None) if method == Method::DELETE => "/images/{name}".to_owned(),
        ("/distribution/{*rest}", Some(action)) => format!("/distribution/{{name}}/{action}"),
        _ => matched.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_routes_are_named_as_moby_names_them() {
        let cases = [
            (
                "/images/{*rest}",
                Method::POST,
                "/images/a/b:1/push",
                "/images/{name}/push",
            ),
            (
                "/images/{*rest}",
                Method::POST,
                "/images/a/tag",
                "/images/{name}/tag",
            ),
            (
                "/images/{*rest}",
                Method::GET,
                "/images/x/json",
                "/images/{name}/json",
            ),
            (
                "/images/{*rest}",
                Method::GET,
                "/images/x/get",
                "/images/{name}/get",
            ),
            (
                "/images/{*rest}",
                Method::DELETE,
                "/images/x/json",
                "/images/{name}",
            ),
            (
                "/images/{*rest}",
                Method::GET,
                "/images/x/secret",
                "/images/{*rest}",
            ),
            (
                "/distribution/{*rest}",
                Method::GET,
                "/distribution/r/x/json",
                "/distribution/{name}/json",
            ),
            ("/images/json", Method::GET, "/images/json", "/images/json"),
        ];
        for (matched, method, path, expected) in cases {
            assert_eq!(
                template(matched, &method, path),
                expected,
                "{method} {path}"
            );
        }
    }
}
