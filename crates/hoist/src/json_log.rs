//! `--log-format json`: one JSON object per line, with dockerd's (logrus's) keys: `time`
//! (RFC 3339, nanoseconds, UTC), `level` (lowercase), `msg`, then the event's fields by name.
//!
//! Written here rather than with tracing-subscriber's JSON formatter: that one names its keys
//! `timestamp`, `level` (uppercase) and `message` and offers no way to rename them, and log
//! pipelines set up for dockerd look for `time`, `level` and `msg`.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Keys every line has; an event field of the same name is written as `fields.<name>`.
const RESERVED: [&str; 4] = ["time", "level", "msg", "target"];

pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = Map::new();
        line.insert(
            "time".into(),
            Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)),
        );
        line.insert(
            "level".into(),
            Value::String(level_name(event.metadata().level()).into()),
        );
        line.insert("msg".into(), Value::String(String::new()));
        let mut fields = Fields(&mut line);
        event.record(&mut fields);
        line.insert(
            "target".into(),
            Value::String(event.metadata().target().into()),
        );
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// logrus's level names.
fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// Collects an event's fields: `message` becomes `msg`, numbers and booleans stay JSON numbers
/// and booleans, everything else is its `Display` (for `%value`) or `Debug` text.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Fields<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        let name = field.name();
        let key = if name == "message" {
            "msg".to_owned()
        } else if RESERVED.contains(&name) {
            format!("fields.{name}")
        } else {
            name.to_owned()
        };
        self.0.insert(key, value);
    }
}

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_owned()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn events_become_one_object_per_line_with_dockerds_keys() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(JsonLines)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(bytes = 42u64, ok = true, registry = %"r:5000", level = "x", "push finished");
            tracing::warn!("line\nbreak \"quoted\"");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["msg"], "push finished");
        assert_eq!(lines[0]["level"], "info");
        assert_eq!(lines[0]["bytes"], 42);
        assert_eq!(lines[0]["ok"], true);
        assert_eq!(lines[0]["registry"], "r:5000");
        assert_eq!(lines[0]["fields.level"], "x");
        assert!(chrono::DateTime::parse_from_rfc3339(lines[0]["time"].as_str().unwrap()).is_ok());
        assert_eq!(lines[1]["level"], "warning");
        assert_eq!(lines[1]["msg"], "line\nbreak \"quoted\"");
    }
}
