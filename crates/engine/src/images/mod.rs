//! The image use cases that only touch the local store: list, inspect, history, tag, remove,
//! and the filters and content summaries that list, prune and disk usage share.

mod filter;
mod history;
mod inspect;
mod list;
mod manifests;
mod remove;
mod tag;

pub use filter::ListFilters;
pub(crate) use filter::RecordFilter;
pub use history::HistoryEntry;
pub use inspect::ImageDetails;
pub use list::{ImageSummary, ListOptions};
pub(crate) use manifests::present_children;
pub use manifests::{ImageData, ManifestKind, ManifestSummary};
pub use remove::Removal;

/// Seconds since the Unix epoch of an RFC 3339 time, as image configs write them.
fn parse_rfc3339(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp())
}
