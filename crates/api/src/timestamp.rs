//! Times in filters as moby reads them (`api/types/time`): a Go duration back from now (`10m`,
//! `1h30m`), an RFC 3339 date or time with or without zone and fraction (local time when no
//! zone is given), or Unix seconds with an optional fraction.

use std::time::SystemTime;

use chrono::{DateTime, FixedOffset, Local, NaiveDate, NaiveDateTime, TimeZone};

/// The instant `value` names, `now` being the reference for durations and the local zone.
/// Errors are worded as moby's.
pub fn parse_filter_time(value: &str, now: DateTime<Local>) -> Result<SystemTime, String> {
    let (seconds, nanos) = if value != "0"
        && let Some(d) = go_duration(value)
    {
        // moby keeps whole seconds here.
        let back = chrono::Duration::nanoseconds(d);
        ((now - back).timestamp(), 0)
    } else {
        match parse_time(value, *now.offset()) {
            Some(t) => (t.timestamp(), t.timestamp_subsec_nanos()),
            None if value.contains('-') => {
                return Err(format!("parsing time {value:?}: cannot parse {value:?}"));
            }
            None => unix_timestamp(value)
                .ok_or_else(|| format!("failed to parse value as time or duration: {value:?}"))?,
        }
    };
    chrono::DateTime::from_timestamp(seconds, nanos)
        .map(SystemTime::from)
        .ok_or_else(|| format!("failed to parse value as time or duration: {value:?}"))
}

/// The layouts moby tries, chosen by the shape of the value.
fn parse_time(value: &str, local: FixedOffset) -> Option<DateTime<FixedOffset>> {
    let in_location = !value.contains(['z', 'Z', '+']) && value.matches('-').count() != 3;
    // Else a zone: `Z` or `±hh:mm` at the end.
    let (body, zone) = if in_location {
        (value, local)
    } else {
        split_zone(value)?
    };
    zone.from_local_datetime(&date_time(body)?).single()
}

/// A date, or a date and time to the hour, minute, second or fraction.
fn date_time(text: &str) -> Option<NaiveDateTime> {
    if text.contains('T') {
        return ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H"]
            .iter()
            .find_map(|f| naive_parse(text, f));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()?
        .and_hms_opt(0, 0, 0)
}

fn naive_parse(text: &str, format: &str) -> Option<NaiveDateTime> {
    if format.ends_with("%H") {
        // chrono needs minutes; Go's layout `15` takes the hour alone.
        return NaiveDateTime::parse_from_str(&format!("{text}:00"), "%Y-%m-%dT%H:%M").ok();
    }
    NaiveDateTime::parse_from_str(text, format).ok()
}

fn split_zone(value: &str) -> Option<(&str, FixedOffset)> {
    if let Some(body) = value.strip_suffix(['Z', 'z']) {
        return Some((body, FixedOffset::east_opt(0)?));
    }
    let at = value.len().checked_sub(6)?;
    let (body, zone) = value.split_at_checked(at)?;
    let sign = match zone.as_bytes()[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, m) = zone[1..].split_once(':')?;
    let seconds = h.parse::<i32>().ok()? * 3600 + m.parse::<i32>().ok()? * 60;
    Some((body, FixedOffset::east_opt(sign * seconds)?))
}

/// `seconds[.fraction]`, the fraction scaled to nanoseconds by its digit count, as moby does.
fn unix_timestamp(value: &str) -> Option<(i64, u32)> {
    let (s, fraction) = match value.split_once('.') {
        Some((s, f)) => (s, Some(f)),
        None => (value, None),
    };
    let seconds = s.parse::<i64>().ok()?;
    let Some(fraction) = fraction else {
        return Some((seconds, 0));
    };
    let digits = fraction.parse::<i64>().ok()?;
    let scale = 10f64.powi(9 - fraction.len() as i32);
    Some((seconds, (digits as f64 * scale) as u32))
}

/// Go's `time.ParseDuration`, in nanoseconds: `[-+]?(\d*(\.\d*)?unit)+`, units ns, us, µs, ms,
/// s, m, h.
fn go_duration(text: &str) -> Option<i64> {
    let (negative, mut rest) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_end];
        if number.is_empty() || number == "." {
            return None;
        }
        let value: f64 = number.parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += value * unit;
    }
    if total > i64::MAX as f64 {
        return None;
    }
    Some(if negative {
        -(total as i64)
    } else {
        total as i64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix(value: &str) -> f64 {
        let now = Local.timestamp_opt(1_700_000_000, 0).unwrap();
        parse_filter_time(value, now)
            .unwrap()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    }

    #[test]
    fn durations_count_back_from_now() {
        assert_eq!(unix("10m"), 1_700_000_000.0 - 600.0);
        assert_eq!(unix("1h30m"), 1_700_000_000.0 - 5400.0);
        assert_eq!(unix("1.5s"), 1_700_000_000.0 - 2.0);
        assert_eq!(go_duration("-2m"), Some(-120_000_000_000));
        assert_eq!(go_duration("10"), None);
        assert_eq!(go_duration("m"), None);
    }

    #[test]
    fn rfc3339_variants_and_unix_seconds() {
        assert_eq!(unix("2023-11-14T22:13:20Z"), 1_700_000_000.0);
        assert_eq!(unix("2023-11-14T23:13:20+01:00"), 1_700_000_000.0);
        assert_eq!(unix("2023-11-14T22:13:20.5Z"), 1_700_000_000.5);
        assert_eq!(unix("2023-11-14T22Z"), 1_699_999_200.0);
        assert_eq!(unix("2023-11-14Z"), 1_699_920_000.0);
        assert_eq!(unix("1700000000"), 1_700_000_000.0);
        assert_eq!(unix("1700000000.25"), 1_700_000_000.25);
        assert_eq!(unix("0"), 0.0);
        let now = Local.timestamp_opt(1_700_000_000, 0).unwrap();
        assert!(parse_filter_time("2023-13-01", now).is_err());
        assert_eq!(
            parse_filter_time("soon", now).unwrap_err(),
            "failed to parse value as time or duration: \"soon\""
        );
    }
}
