//! `GET /events`: the daemon's events, replayed and then streamed, one JSON object per line.

use std::num::IntErrorKind;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use hoist_engine::{EventFilter, EventQuery};

use crate::error::ApiError;
use crate::filter_args::FilterArgs;
use crate::params::Params;
use crate::state::AppState;
use crate::wire::events::Message;

/// `GET /events?since=&until=&filters=`. Errors in the query come before the stream; after
/// that, the stream ends at `until` (at once after the replay when `until` is past), when the
/// client goes, or when the client reads too slowly to keep up.
pub async fn events(State(state): State<AppState>, params: Params) -> Result<Response, ApiError> {
    let since_text = params.get("since").unwrap_or_default();
    let until_text = params.get("until").unwrap_or_default();
    let since = parse_timestamp(since_text)?;
    let until = parse_timestamp(until_text)?;
    if let (Some(since), Some(until)) = (since, until)
        && until < since
    {
        return Err(ApiError::BadRequest(format!(
            "`since` time ({since_text}) cannot be after `until` time ({until_text})"
        )));
    }
    let filter = EventFilter::new(FilterArgs::parse(params.get("filters"))?.into_fields());
    let events = state.engine.events(EventQuery {
        since,
        until,
        filter,
    });
    let lines =
        events.map(|event| Ok::<_, std::convert::Infallible>(Message::new(&event).to_line()));
    let mut response = Body::from_stream(lines).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// moby's `ParseTimestamps`: `seconds[.fraction]` since the Unix epoch (clients turn durations
/// and dates into this form), as nanoseconds; None when empty. A value that is not a number
/// fails as moby's does, with Go's `strconv` message and a 500.
fn parse_timestamp(text: &str) -> Result<Option<i128>, ApiError> {
    if text.is_empty() {
        return Ok(None);
    }
    let (seconds, fraction) = match text.split_once('.') {
        Some((s, f)) => (s, Some(f)),
        None => (text, None),
    };
    let seconds = parse_int(seconds)?;
    let nanos = match fraction {
        None => 0,
        Some(digits) => {
            let value = parse_int(digits)?;
            // Scaled to nanoseconds as moby does, in floating point: `.5` is 500ms and digits
            // past the ninth are cut off.
            let scale = 10f64.powi(9 - i32::try_from(digits.len()).unwrap_or(i32::MAX));
            (value as f64 * scale) as i64
        }
    };
    Ok(Some(
        i128::from(seconds) * 1_000_000_000 + i128::from(nanos),
    ))
}

/// Go's `strconv.ParseInt(text, 10, 64)`, with its error message.
fn parse_int(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>().map_err(|e| {
        let reason = match e.kind() {
            IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => "value out of range",
            _ => "invalid syntax",
        };
        ApiError::Internal(format!("strconv.ParseInt: parsing {text:?}: {reason}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_read_as_moby_reads_them() {
        assert_eq!(parse_timestamp("").unwrap(), None);
        assert_eq!(parse_timestamp("10").unwrap(), Some(10_000_000_000));
        assert_eq!(parse_timestamp("10.5").unwrap(), Some(10_500_000_000));
        assert_eq!(
            parse_timestamp("10.000000001").unwrap(),
            Some(10_000_000_001)
        );
        assert_eq!(
            parse_timestamp("10.1234567891").unwrap(),
            Some(10_123_456_789)
        );
        assert_eq!(parse_timestamp("-1").unwrap(), Some(-1_000_000_000));
        let message = |text| parse_timestamp(text).unwrap_err().to_string();
        assert_eq!(
            message("1m"),
            "strconv.ParseInt: parsing \"1m\": invalid syntax"
        );
        assert_eq!(
            message("2026-01-01"),
            "strconv.ParseInt: parsing \"2026-01-01\": invalid syntax"
        );
        assert_eq!(
            message("1.x"),
            "strconv.ParseInt: parsing \"x\": invalid syntax"
        );
        assert_eq!(
            message("99999999999999999999"),
            "strconv.ParseInt: parsing \"99999999999999999999\": value out of range"
        );
    }
}
