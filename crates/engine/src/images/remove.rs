//! `DELETE /images/{name}`: removing names and images.

use hoist_reference::Digest;
use hoist_store::{ImageChange, StoreError};

use crate::image_content::{best_for, platform_not_provided, present_manifests};
use crate::names::{self, ImageView, Lookup};
use crate::platform::{Matching, Platform};
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
    ///
    /// With `platforms` (`docker rmi --platform`), only those platforms' content goes: see
    /// [`Engine::remove_platforms`].
    pub async fn remove_image(
        &self,
        name: &str,
        force: bool,
        platforms: Vec<Platform>,
    ) -> Result<Vec<Removal>, EngineError> {
        let engine = self.clone();
        let name = name.to_owned();
        self.blocking(move || engine.remove_blocking(&name, force, &platforms))
            .await
    }

    /// As moby's containerd store (`ImageDelete`): a name that covers only some of the image's
    /// names removes just those ("Untagged"); otherwise the image goes with every name. By ID, an
    /// image with several names that are not one reference needs `force`.
    fn remove_blocking(
        &self,
        input: &str,
        force: bool,
        platforms: &[Platform],
    ) -> Result<Vec<Removal>, EngineError> {
        // moby refuses a blank name first (in its router), then platforms without force, before
        // looking the name up.
        if !platforms.is_empty() && !force && !input.trim().is_empty() {
            // moby's words, its odd dash included: clients may match on them.
            return Err(EngineError::InvalidArgument(
                "Content will be removed from all images referencing this variant. Use \u{2014}-force to force delete."
                    .into(),
            ));
        }
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
        if !platforms.is_empty() {
            return self.remove_platforms(&view, &lookup, platforms);
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

    /// moby's `deleteImagePlatforms`: for each platform in turn, the image's manifest for it
    /// (present, matched strictly) leaves the content store, and its config and layers go with
    /// it unless something else uses them. The image keeps its names, its index and its other
    /// platforms; a record whose target is the removed manifest (a single-platform image) goes.
    /// Every platform is resolved before anything is removed, so a failure changes nothing.
    fn remove_platforms(
        &self,
        view: &ImageView,
        lookup: &Lookup,
        platforms: &[Platform],
    ) -> Result<Vec<Removal>, EngineError> {
        let present = present_manifests(&self.store, &view.target)?;
        let mut chosen: Vec<Digest> = Vec::new();
        for wanted in platforms {
            let remaining = present
                .iter()
                .filter(|m| !chosen.contains(&m.entry.descriptor.digest));
            let Some(best) = best_for(remaining, wanted, Matching::Strict) else {
                let missing =
                    platform_not_provided(&names::record_display_name(view, lookup), wanted);
                return Err(EngineError::NotFound(format!(
                    "failed to delete platform {} for image {}: {missing}",
                    wanted.format(),
                    view.id()
                )));
            };
            chosen.push(best.entry.descriptor.digest.clone());
        }
        let removed = self.store.remove_blobs(&chosen).map_err(|e| match e {
            StoreError::InUse(digest) => EngineError::Conflict(format!(
                "unable to delete {digest}: it is in use by an operation in progress"
            )),
            other => other.into(),
        })?;
        Ok(removed.blobs.into_iter().map(Removal::Deleted).collect())
    }
}
