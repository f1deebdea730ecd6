//! Times as the Engine API writes them.

use std::time::SystemTime;

/// RFC 3339 in UTC with nanoseconds, as Go's `time.RFC3339Nano` writes a `time.Time`.
pub fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
