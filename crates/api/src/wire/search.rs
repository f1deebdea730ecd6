//! The `GET /images/search` answer.

use hoist_engine::SearchResult;
use serde::Serialize;

/// moby's `registry.SearchResult`, in its field order.
#[derive(Debug, Serialize)]
pub struct SearchItem {
    pub star_count: i64,
    pub is_official: bool,
    pub name: String,
    /// Deprecated in moby and always false.
    pub is_automated: bool,
    pub description: String,
}

impl From<SearchResult> for SearchItem {
    fn from(r: SearchResult) -> SearchItem {
        SearchItem {
            star_count: r.star_count,
            is_official: r.is_official,
            name: r.name,
            is_automated: false,
            description: r.description,
        }
    }
}
