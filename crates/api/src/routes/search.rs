//! `GET /images/search`: repositories an index knows, through its v1 search API.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use hoist_engine::{SearchFilters, SearchRequest};

use crate::error::ApiError;
use crate::filter_args::FilterArgs;
use crate::params::Params;
use crate::registry_auth::RegistryAuth;
use crate::state::AppState;
use crate::wire::search::SearchItem;

pub async fn search(
    State(state): State<AppState>,
    params: Params,
    auth: RegistryAuth,
) -> Result<Response, ApiError> {
    let limit = match params.non_empty("limit") {
        None => 0,
        // A negative limit goes to the engine's range check: moby answers it with an empty 200
        // (it wraps a nil error), which a client cannot tell from success.
        Some(text) => match text.parse::<i64>() {
            Ok(n) => n,
            Err(e) => {
                return Err(ApiError::BadRequest(format!(
                    "invalid limit specified: {}",
                    go_atoi_error(text, &e)
                )));
            }
        },
    };
    let filters = search_filters(params.get("filters").unwrap_or_default())?;
    let request = SearchRequest {
        term: params.get("term").unwrap_or_default().to_owned(),
        limit,
        filters,
        auth: auth.or_anonymous(),
    };
    let found = state.engine.search_images(request).await?;
    let items: Vec<SearchItem> = found.into_iter().map(SearchItem::from).collect();
    Ok(Json(items).into_response())
}

/// moby's checks, in its order: known keys, `is-automated` (true matches nothing, so the rest
/// is not looked at), `is-official`, then every `stars` value.
fn search_filters(text: &str) -> Result<SearchFilters, ApiError> {
    let args = FilterArgs::parse(Some(text))?;
    args.validate(&["is-automated", "is-official", "stars"])?;
    let mut filters = SearchFilters {
        is_automated: args.bool_or("is-automated", false)?,
        ..SearchFilters::default()
    };
    if filters.is_automated {
        return Ok(filters);
    }
    if args.contains("is-official") {
        filters.is_official = Some(args.bool_or("is-official", false)?);
    }
    if args.contains("stars") {
        let values = args.get("stars");
        let mut min = 0;
        for value in &values {
            let stars = value.parse::<i64>().map_err(|e| {
                ApiError::BadRequest(format!(
                    "invalid filter 'stars={value}': {}",
                    go_atoi_error(value, &e)
                ))
            })?;
            min = min.max(stars);
        }
        filters.min_stars = Some(min);
    }
    Ok(filters)
}

/// Go's `strconv.Atoi` error text for `text`.
fn go_atoi_error(text: &str, error: &std::num::ParseIntError) -> String {
    let reason = match error.kind() {
        std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
            "value out of range"
        }
        _ => "invalid syntax",
    };
    format!("strconv.Atoi: parsing {text:?}: {reason}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(text: &str) -> String {
        search_filters(text).unwrap_err().to_string()
    }

    #[test]
    fn filters_are_checked_in_mobys_order_and_words() {
        assert_eq!(message("{"), "invalid filter");
        assert_eq!(message(r#"{"label":{"a":true}}"#), "invalid filter 'label'");
        assert_eq!(
            message(r#"{"is-official":{"maybe":true}}"#),
            "invalid filter 'is-official=[maybe]'"
        );
        assert_eq!(
            message(r#"{"stars":["3","x"]}"#),
            "invalid filter 'stars=x': strconv.Atoi: parsing \"x\": invalid syntax"
        );
        // is-automated=true matches nothing; what follows it is not read.
        let f = search_filters(r#"{"is-automated":["true"],"is-official":["maybe"]}"#).unwrap();
        assert!(f.is_automated);
        let f = search_filters(r#"{"is-official":{"0":true},"stars":["2","5"]}"#).unwrap();
        assert_eq!(f.is_official, Some(false));
        assert_eq!(f.min_stars, Some(5));
        assert!(search_filters("").unwrap().min_stars.is_none());
    }
}
