//! The image use cases that only touch the local store: list, inspect, history, tag, remove.

mod history;
mod inspect;
mod list;
mod remove;
mod tag;

pub use history::HistoryEntry;
pub use inspect::ImageDetails;
pub use list::{ImageSummary, ListFilters};
pub use remove::Removal;

/// Seconds since the Unix epoch of an RFC 3339 time, as image configs write them.
fn parse_rfc3339(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp())
}
