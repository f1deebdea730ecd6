//! `DELETE /images/{name}`: removing names and images.

use hoist_reference::Digest;
use hoist_store::ImageChange;

use crate::names::{self, Lookup};
use crate::{Engine, EngineError};

/// What removing an image did, one name or image at a time.
#[derive(Debug, PartialEq, Eq)]
pub enum Removal {
    /// A familiar name that no longer points at the image.
    Untagged(String),
    /// The image itself, gone with its last name.
    Deleted(Digest),
}

impl Engine {
    /// `docker rmi`. `noprune` is accepted and ignored: hoist has no parent images to keep.
    pub async fn remove_image(&self, name: &str, force: bool) -> Result<Vec<Removal>, EngineError> {
        let engine = self.clone();
        let name = name.to_owned();
        self.blocking(move || engine.remove_blocking(&name, force))
            .await
    }

    /// As moby's containerd store (`ImageDelete`): a name that covers only some of the image's
    /// names removes just those ("Untagged"); otherwise the image goes with every name. By ID, an
    /// image with several names that are not one reference needs `force`.
    fn remove_blocking(&self, input: &str, force: bool) -> Result<Vec<Removal>, EngineError> {
        let _guard = self
            .names_lock
            .lock()
            .map_err(|_| EngineError::Internal("names lock poisoned".into()))?;
        let (view, lookup) = names::resolve(&self.store, input)?;
        // Every record naming the image, in containerd's listing order (by name).
        let mut all: Vec<String> = self
            .store
            .images()
            .into_iter()
            .filter(|r| r.target.digest == *view.id())
            .map(|r| r.name)
            .collect();
        all.sort();
        let named = match &lookup {
            Lookup::Name(r) | Lookup::Digest(r) => Some(r),
            Lookup::Id => None,
        };
        let same = names::same_references(named, &all);
        if let Lookup::Digest(reference) = &lookup
            && same.is_empty()
        {
            return Err(EngineError::NoSuchImage(reference.familiar_string()));
        }
        let untagged = |name: &str| Removal::Untagged(names::familiar_record_name(name));
        if named.is_some() && same.len() != all.len() {
            let responses: Vec<Removal> = same.iter().map(|n| untagged(n)).collect();
            let changes = same
                .iter()
                .map(|n| ImageChange::Delete {
                    name: (*n).to_owned(),
                })
                .collect();
            self.store.apply(changes)?;
            self.log_removals(view.id(), &responses);
            return Ok(responses);
        }
        if named.is_none() && same.len() != all.len() && all.len() > 1 && !force {
            return Err(EngineError::Conflict(format!(
                "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                view.id().short_id()
            )));
        }
        let mut responses: Vec<Removal> = all
            .iter()
            .filter(|n| !matches!(names::classify(n), names::RecordName::Dangling))
            .map(|n| untagged(n))
            .collect();
        responses.push(Removal::Deleted(view.id().clone()));
        let changes = all
            .into_iter()
            .map(|name| ImageChange::Delete { name })
            .collect();
        self.store.apply(changes)?;
        self.log_removals(view.id(), &responses);
        Ok(responses)
    }
}
