//! `GET /events` lines: moby's `events.Message`.

use std::collections::BTreeMap;

use hoist_engine::Event;
use serde::Serialize;

/// One event, fields in moby's order. `status` and `id` repeat the action and actor ID for image
/// events (deprecated, still sent by API 1.50); `from` is for container events only.
#[derive(Serialize)]
pub struct Message<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    status: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    id: &'a str,
    #[serde(rename = "Type")]
    event_type: &'static str,
    #[serde(rename = "Action")]
    action: &'static str,
    #[serde(rename = "Actor")]
    actor: Actor<'a>,
    scope: &'static str,
    time: i64,
    #[serde(rename = "timeNano")]
    time_nano: i64,
}

#[derive(Serialize)]
struct Actor<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    #[serde(rename = "Attributes")]
    attributes: &'a BTreeMap<String, String>,
}

impl<'a> Message<'a> {
    pub fn new(event: &'a Event) -> Message<'a> {
        Message {
            status: event.action.as_str(),
            id: &event.actor_id,
            event_type: event.event_type.as_str(),
            action: event.action.as_str(),
            actor: Actor {
                id: &event.actor_id,
                attributes: &event.attributes,
            },
            // Events of this daemon; swarm's are "swarm".
            scope: "local",
            time: event.time_nano.div_euclid(1_000_000_000),
            time_nano: event.time_nano,
        }
    }

    /// The line as sent: the JSON object and a newline, as Go's `json.Encoder` writes it.
    pub fn to_line(&self) -> Vec<u8> {
        // Strings and a map of strings always serialise.
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }
}

#[cfg(test)]
mod tests {
    use hoist_engine::{Action, EventType};

    use super::*;

    #[test]
    fn an_image_event_is_written_as_moby_writes_it() {
        let event = Event {
            event_type: EventType::Image,
            action: Action::Tag,
            actor_id: "sha256:ab".into(),
            attributes: BTreeMap::from([("name".into(), "app:1".into())]),
            time_nano: 1_700_000_000_123_456_789,
        };
        assert_eq!(
            String::from_utf8(Message::new(&event).to_line()).unwrap(),
            "{\"status\":\"tag\",\"id\":\"sha256:ab\",\"Type\":\"image\",\"Action\":\"tag\",\
             \"Actor\":{\"ID\":\"sha256:ab\",\"Attributes\":{\"name\":\"app:1\"}},\
             \"scope\":\"local\",\"time\":1700000000,\"timeNano\":1700000000123456789}\n"
        );
    }
}
