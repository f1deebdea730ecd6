//! `GET /events`: what happened to images, as moby's events service tells it.
//!
//! Use cases report through [`Events`] (see `event_log` for what they report), a handle on the
//! engine that never waits: an event goes
//! into a bounded history (the last [`HISTORY_LEN`], replayed to subscribers that ask for a
//! time window) and into a bounded buffer per subscriber. A subscriber whose buffer is full is
//! dropped, so its stream ends instead of missing events silently or holding up the operation.

mod filter;
mod hub;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use filter::EventFilter;
pub(crate) use hub::Events;
pub use hub::{EventQuery, EventStream};

/// Events kept for replay (moby's `eventsLimit`).
pub const HISTORY_LEN: usize = 256;
/// Events a subscriber may fall behind by before it is dropped (moby's per-listener buffer).
pub const SUBSCRIBER_BUFFER: usize = 1024;

/// What an event is about: images, and the prunes of the objects hoist has none of (moby
/// reports every container, network and volume prune, whatever it removed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Image,
    Container,
    Network,
    Volume,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Image => "image",
            EventType::Container => "container",
            EventType::Network => "network",
            EventType::Volume => "volume",
        }
    }
}

/// What happened, with moby's action names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Pull,
    Push,
    Tag,
    Untag,
    Delete,
    Load,
    Save,
    Import,
    Prune,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Tag => "tag",
            Action::Untag => "untag",
            Action::Delete => "delete",
            Action::Load => "load",
            Action::Save => "save",
            Action::Import => "import",
            Action::Prune => "prune",
        }
    }
}

/// One event. Shared between the history and every subscriber it is sent to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub event_type: EventType,
    pub action: Action,
    /// The image's ID, or for pull and push the familiar reference moved.
    pub actor_id: String,
    /// `name` and the image's labels; `reclaimed` for prune.
    pub attributes: BTreeMap<String, String>,
    /// When it happened, in nanoseconds since the Unix epoch.
    pub time_nano: i64,
}

pub type SharedEvent = Arc<Event>;
