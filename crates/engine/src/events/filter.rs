//! Which events a subscriber sees: moby's event filters over its `filters.Args`.

use std::collections::{BTreeMap, BTreeSet};

use hoist_reference::Reference;

use super::Event;

/// Filter values by key. A key given without values filters nothing, as in moby.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilter {
    fields: BTreeMap<String, BTreeSet<String>>,
}

/// Kinds of object whose filter matches an event's actor ID or `name` by prefix.
const NAME_FILTERS: [&str; 9] = [
    "daemon",
    "container",
    "plugin",
    "volume",
    "network",
    "node",
    "service",
    "secret",
    "config",
];

impl EventFilter {
    pub fn new(fields: BTreeMap<String, Vec<String>>) -> EventFilter {
        let fields = fields
            .into_iter()
            .map(|(key, values)| (key, values.into_iter().collect()))
            .collect();
        EventFilter { fields }
    }

    /// Every key must match; within a key, any value. Keys moby does not know match everything.
    pub fn includes(&self, event: &Event) -> bool {
        let name = event.attributes.get("name").map(String::as_str);
        self.exact("event", event.action.as_str())
            && self.exact("type", event.event_type.as_str())
            && self.exact("scope", "local")
            && NAME_FILTERS.iter().all(|key| {
                self.prefix(key, &event.actor_id) || name.is_some_and(|n| self.prefix(key, n))
            })
            && self.image(&event.actor_id, name.unwrap_or_default())
            && self.labels(&event.attributes)
    }

    fn values(&self, key: &str) -> Option<&BTreeSet<String>> {
        self.fields.get(key).filter(|values| !values.is_empty())
    }

    fn exact(&self, key: &str, source: &str) -> bool {
        self.values(key)
            .is_none_or(|values| values.contains(source))
    }

    fn prefix(&self, key: &str, source: &str) -> bool {
        self.exact(key, source)
            || self
                .values(key)
                .is_some_and(|values| values.iter().any(|p| source.starts_with(p.as_str())))
    }

    /// An image's ID or name, each also without its tag (`foo:1` matches `image=foo`).
    fn image(&self, id: &str, name: &str) -> bool {
        self.exact("image", id)
            || self.exact("image", name)
            || self.exact("image", &without_tag(id))
            || self.exact("image", &without_tag(name))
    }

    /// Every `label` value, `key` or `key=value`, must be among the attributes.
    fn labels(&self, attributes: &BTreeMap<String, String>) -> bool {
        let Some(values) = self.values("label") else {
            return true;
        };
        values.iter().all(|wanted| match wanted.split_once('=') {
            Some((key, value)) => attributes.get(key).is_some_and(|have| have == value),
            None => attributes.contains_key(wanted.as_str()),
        })
    }
}

/// The familiar repository name of a reference; what does not parse as one, unchanged.
fn without_tag(text: &str) -> String {
    Reference::parse_normalized(text)
        .map(|r| r.familiar_name())
        .unwrap_or_else(|_| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Action, EventType};

    fn filter(pairs: &[(&str, &str)]) -> EventFilter {
        let mut fields: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in pairs {
            fields
                .entry((*k).to_owned())
                .or_default()
                .push((*v).to_owned());
        }
        EventFilter::new(fields)
    }

    fn event(action: Action, id: &str, attributes: &[(&str, &str)]) -> Event {
        Event {
            event_type: EventType::Image,
            action,
            actor_id: id.to_owned(),
            attributes: attributes
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            time_nano: 1,
        }
    }

    #[test]
    fn filters_match_as_moby_matches_them() {
        let pulled = event(
            Action::Pull,
            "localhost:5000/app:1",
            &[("name", "localhost:5000/app"), ("maintainer", "me")],
        );
        let tagged = event(Action::Tag, "sha256:ab", &[("name", "app:1")]);
        assert!(filter(&[]).includes(&pulled));
        assert!(filter(&[("type", "image"), ("event", "pull")]).includes(&pulled));
        assert!(filter(&[("event", "push"), ("event", "pull")]).includes(&pulled));
        assert!(!filter(&[("event", "tag")]).includes(&pulled));
        assert!(!filter(&[("type", "container")]).includes(&pulled));
        assert!(filter(&[("image", "localhost:5000/app")]).includes(&pulled));
        assert!(filter(&[("image", "localhost:5000/app:1")]).includes(&pulled));
        assert!(filter(&[("image", "app")]).includes(&tagged));
        assert!(filter(&[("image", "sha256:ab")]).includes(&tagged));
        assert!(!filter(&[("image", "other")]).includes(&tagged));
        assert!(filter(&[("label", "maintainer")]).includes(&pulled));
        assert!(filter(&[("label", "maintainer=me")]).includes(&pulled));
        assert!(!filter(&[("label", "maintainer=you")]).includes(&pulled));
        assert!(!filter(&[("label", "maintainer"), ("label", "x")]).includes(&pulled));
        assert!(!filter(&[("label", "maintainer")]).includes(&tagged));
        // Other kinds' filters match by prefix of the ID or name, even for image events.
        assert!(filter(&[("container", "sha256:a")]).includes(&tagged));
        assert!(!filter(&[("container", "web")]).includes(&tagged));
        assert!(filter(&[("scope", "local")]).includes(&tagged));
        assert!(!filter(&[("scope", "swarm")]).includes(&tagged));
        assert!(filter(&[("unknown", "x")]).includes(&tagged));
    }

    #[test]
    fn a_key_without_values_filters_nothing() {
        let fields = BTreeMap::from([("type".to_owned(), Vec::new())]);
        let tagged = event(Action::Tag, "sha256:ab", &[("name", "app:1")]);
        assert!(EventFilter::new(fields).includes(&tagged));
    }
}
