//! `POST /images/{name}/tag`: pointing a name at an image.

use hoist_reference::Reference;
use hoist_store::{Descriptor, ImageChange};

use crate::events::Action;
use crate::names;
use crate::{Engine, EngineError};

impl Engine {
    /// `docker tag`: points `repo[:tag]` at the image `source` names. A tag moved away from an
    /// image that then has no name left makes that image dangling instead of losing it.
    pub async fn tag_image(
        &self,
        source: &str,
        repo: &str,
        tag: Option<&str>,
    ) -> Result<(), EngineError> {
        let engine = self.clone();
        let (source, repo, tag) = (source.to_owned(), repo.to_owned(), tag.map(str::to_owned));
        self.blocking(move || engine.tag_blocking(&source, &repo, tag.as_deref()))
            .await
    }

    fn tag_blocking(&self, source: &str, repo: &str, tag: Option<&str>) -> Result<(), EngineError> {
        let target = Reference::parse_normalized(repo)?;
        // moby's wording (`httputils.RepoTagReference`, shared with import).
        if target.digest().is_some() {
            return Err(EngineError::InvalidArgument(
                "cannot import digest reference".into(),
            ));
        }
        let target = match tag {
            Some(t) if !t.is_empty() => target.with_tag(t)?,
            _ => target.tag_name_only(),
        };
        // `sha256:abc` would read as a digest, not as repository `sha256` with tag `abc`.
        if target.familiar_name() == "sha256" {
            return Err(EngineError::InvalidArgument(
                "refusing to create an ambiguous tag using digest algorithm as name".into(),
            ));
        }
        let (view, _) = names::resolve(&self.store, source)?;
        let _guard = self
            .names_lock
            .lock()
            .map_err(|_| EngineError::Internal("names lock poisoned".into()))?;
        let changes =
            self.retarget_changes(&[(names::tag_record_name(&target), view.target.clone())]);
        self.store.apply(changes)?;
        self.log_image_event(Action::Tag, view.id().as_str(), &target.familiar_string());
        Ok(())
    }

    /// The store changes that point each name at its target, plus a dangling record for every
    /// image that would otherwise lose its last name. The caller holds `names_lock`.
    pub(crate) fn retarget_changes(
        &self,
        names_and_targets: &[(String, Descriptor)],
    ) -> Vec<ImageChange> {
        let records = self.store.images();
        let mut changes: Vec<ImageChange> = names_and_targets
            .iter()
            .map(|(name, target)| ImageChange::Put {
                name: name.clone(),
                target: target.clone(),
            })
            .collect();
        let new_names: std::collections::BTreeSet<&str> =
            names_and_targets.iter().map(|(n, _)| n.as_str()).collect();
        let mut orphaned = Vec::new();
        for record in &records {
            let Some((_, new_target)) = names_and_targets.iter().find(|(n, _)| *n == record.name)
            else {
                continue;
            };
            if new_target.digest == record.target.digest {
                continue;
            }
            let keeps_a_name = records.iter().any(|r| {
                r.target.digest == record.target.digest && !new_names.contains(r.name.as_str())
            }) || names_and_targets
                .iter()
                .any(|(_, t)| t.digest == record.target.digest);
            if !keeps_a_name
                && !orphaned
                    .iter()
                    .any(|d: &Descriptor| d.digest == record.target.digest)
            {
                orphaned.push(record.target.clone());
            }
        }
        for target in orphaned {
            changes.push(ImageChange::Put {
                name: names::dangling_record_name(&target.digest),
                target,
            });
        }
        // An image that gets a name is no longer dangling (moby's TagImage deletes the record).
        let mut named_targets: Vec<&Descriptor> = Vec::new();
        for (name, target) in names_and_targets {
            if name.starts_with(names::DANGLING_PREFIX)
                || named_targets.iter().any(|t| t.digest == target.digest)
            {
                continue;
            }
            named_targets.push(target);
            let dangling = names::dangling_record_name(&target.digest);
            if records.iter().any(|r| r.name == dangling) {
                changes.push(ImageChange::Delete { name: dangling });
            }
        }
        changes
    }
}
