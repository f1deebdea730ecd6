//! The engine's side of `GET /events`: subscribing, ending the streams, and the image events the
//! use cases report, as moby's containerd image service words them (who is the actor, which
//! attributes it carries).

use std::collections::BTreeMap;

use hoist_reference::{Digest, Reference};

use crate::events::{Action, EventQuery, EventStream, EventType};
use crate::image_content::describe_target;
use crate::images::Removal;
use crate::{Engine, names};

impl Engine {
    /// `GET /events`: the kept events the query selects, then new ones as they happen.
    pub fn events(&self, query: EventQuery) -> EventStream {
        self.events.subscribe(query)
    }

    /// Ends every event stream (after what it already holds), so that a stopping daemon is not
    /// held up by clients that follow events.
    pub fn end_event_streams(&self) {
        self.events.end_streams();
    }

    /// moby's `LogImageEvent`: `image` is the actor ID and how the image is looked up for its
    /// labels (an image already gone has none); `name` is added when given.
    pub(crate) fn log_image_event(&self, action: Action, image: &str, name: &str) {
        self.publish_image_event(action, image, name, self.image_labels(image));
    }

    /// One event per image an operation touched, named by its ID (load, save). Labels are
    /// looked up once per image, however many names it came with.
    pub(crate) fn log_image_ids<'a>(
        &self,
        action: Action,
        ids: impl IntoIterator<Item = &'a Digest>,
    ) {
        let mut labels: BTreeMap<&Digest, BTreeMap<String, String>> = BTreeMap::new();
        for id in ids {
            let attributes = labels
                .entry(id)
                .or_insert_with(|| self.image_labels(id.as_str()))
                .clone();
            self.publish_image_event(action, id.as_str(), id.as_str(), attributes);
        }
    }

    fn publish_image_event(
        &self,
        action: Action,
        image: &str,
        name: &str,
        mut attributes: BTreeMap<String, String>,
    ) {
        if !name.is_empty() {
            attributes.insert("name".to_owned(), name.to_owned());
        }
        self.events
            .publish(EventType::Image, action, image.to_owned(), attributes);
    }

    /// `docker import`: `tag` when the image is named (as moby's naming of any new image
    /// reports it), then `import` by ID.
    pub(crate) fn log_import(&self, name: Option<&Reference>, id: &Digest) {
        if let Some(name) = name {
            self.log_image_event(Action::Tag, id.as_str(), &name.familiar_string());
        }
        self.log_image_event(Action::Import, id.as_str(), id.as_str());
    }

    /// What `docker rmi` did to image `id`: `untag` per name removed (with only the name, as
    /// moby's), then `delete` when the image went.
    pub(crate) fn log_removals(&self, id: &Digest, removals: &[Removal]) {
        for removal in removals {
            match removal {
                Removal::Untagged(name) => {
                    let attributes = BTreeMap::from([("name".to_owned(), name.clone())]);
                    self.events.publish(
                        EventType::Image,
                        Action::Untag,
                        id.to_string(),
                        attributes,
                    );
                }
                Removal::Deleted(deleted) => {
                    self.log_image_event(Action::Delete, deleted.as_str(), deleted.as_str());
                }
            }
        }
    }

    /// The `prune` event moby emits for every container, network and volume prune: no actor ID,
    /// the bytes freed as `reclaimed`, none here. (moby's containerd image store emits no event
    /// for an image prune.)
    pub fn log_nothing_pruned(&self, of: EventType) {
        let attributes = BTreeMap::from([("reclaimed".to_owned(), "0".to_owned())]);
        self.events
            .publish(of, Action::Prune, String::new(), attributes);
    }

    /// The config labels of the image `image` names, for the platform inspect shows; none
    /// when it cannot be read.
    fn image_labels(&self, image: &str) -> BTreeMap<String, String> {
        let Ok((view, _)) = names::resolve(&self.store, image) else {
            return BTreeMap::new();
        };
        match describe_target(&self.store, &view.target, &self.host_platform) {
            Ok(Some(described)) => described.labels(),
            _ => BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;
    use crate::EngineConfig;
    use crate::events::{EventFilter, SharedEvent};

    #[tokio::test]
    async fn prune_and_removal_events_carry_what_moby_puts_in_them() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(EngineConfig::new(dir.path().to_owned())).unwrap();
        let id = Digest::sha256_from_bytes(&[7; 32]);
        engine.log_nothing_pruned(EventType::Network);
        engine.log_removals(
            &id,
            &[
                Removal::Untagged("app:1".into()),
                Removal::Deleted(id.clone()),
            ],
        );
        let events: Vec<SharedEvent> = engine
            .events(EventQuery {
                since: Some(0),
                until: None,
                filter: EventFilter::default(),
            })
            .take(3)
            .collect()
            .await;
        let shape: Vec<String> = events
            .iter()
            .map(|e| {
                let kind = e.event_type.as_str();
                format!(
                    "{kind} {} {:?} {:?}",
                    e.action.as_str(),
                    e.actor_id,
                    e.attributes
                )
            })
            .collect();
        assert_eq!(
            shape,
            [
                r#"network prune "" {"reclaimed": "0"}"#.to_owned(),
                format!(r#"image untag "{id}" {{"name": "app:1"}}"#),
                format!(r#"image delete "{id}" {{"name": "{id}"}}"#),
            ]
        );
    }
}
