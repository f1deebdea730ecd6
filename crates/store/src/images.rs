//! Image records: opaque names pointing at a manifest or index.

use std::collections::HashSet;
use std::time::SystemTime;

use tracing::warn;

use crate::descriptor::Descriptor;
use crate::error::StoreError;
use crate::gc::{Node, Scope};
use crate::manifest::ManifestKind;
use crate::metadata::MetadataWrite;
use crate::store::{Inner, Store};

/// What a name points at. Names are opaque to the store; the engine decides their form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRecord {
    pub name: String,
    /// A manifest or an index; an index may be partial (some of its manifests absent).
    pub target: Descriptor,
    /// When this name was first created.
    pub created_at: SystemTime,
    /// When it last changed target.
    pub updated_at: SystemTime,
}

/// One step of an [`Store::apply`] batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageChange {
    Put { name: String, target: Descriptor },
    Delete { name: String },
}

impl Store {
    /// The record of `name`; None if there is none, or if it cannot be read (logged).
    pub fn image(&self, name: &str) -> Option<ImageRecord> {
        self.inner.meta.image(name).unwrap_or_else(|e| {
            warn!(image = %name, error = %e, "cannot read an image record");
            None
        })
    }

    /// All records, sorted by name. A record that cannot be read is left out (logged); if the
    /// database cannot be read at all, the list is empty (logged).
    pub fn images(&self) -> Vec<ImageRecord> {
        self.inner.meta.images().unwrap_or_else(|e| {
            warn!(error = %e, "cannot list image records");
            Vec::new()
        })
    }

    /// Applies a batch of changes in order, all or nothing: either every change is committed (in
    /// one metadata transaction) or none is.
    ///
    /// A `Put` whose target blob is absent fails with [`StoreError::MissingBlob`], and one whose
    /// target is a manifest or index that could not be read back (over
    /// [`hoist_oci::limits::MAX_MANIFEST_BYTES`] or malformed, or an index with such a manifest)
    /// with [`StoreError::UnreadableManifest`]; deleting an absent name is not an error. Returns,
    /// per change, the record as it was just before that change (`None` = absent). Blobs that a
    /// deleted or re-pointed record reached and that nothing else reaches are collected
    /// afterwards.
    pub fn apply(&self, changes: Vec<ImageChange>) -> Result<Vec<Option<ImageRecord>>, StoreError> {
        let inner = &self.inner;
        // Before the lock: parsing is cached, and a blob's bytes never change once stored.
        let mut checked = HashSet::new();
        for change in &changes {
            if let ImageChange::Put { name, target } = change
                && checked.insert(&target.digest)
            {
                inner.check_readable(name, target)?;
            }
        }

        // Held throughout: the target check and the write must not interleave with a GC.
        let mut state = inner.state();
        let write = inner.meta.write()?;
        let now = SystemTime::now();
        let mut previous = Vec::with_capacity(changes.len());
        let mut released = Vec::new();
        let mut changed = false;
        let mut present = HashSet::new();

        for change in changes {
            match change {
                ImageChange::Put { name, target } => {
                    if !present.contains(&target.digest) {
                        if !inner.layout.blob_path(&target.digest).is_file() {
                            return Err(StoreError::MissingBlob(target.digest));
                        }
                        present.insert(target.digest.clone());
                    }
                    let old = current(&write, &name)?;
                    let created_at = match &old {
                        Some(old) if old.target == target => {
                            previous.push(Some(old.clone()));
                            continue;
                        }
                        Some(old) => {
                            released.push(old.target.clone());
                            old.created_at
                        }
                        None => now,
                    };
                    write.put_image(&ImageRecord {
                        name,
                        target,
                        created_at,
                        updated_at: now,
                    })?;
                    previous.push(old);
                    changed = true;
                }
                ImageChange::Delete { name } => {
                    let old = current(&write, &name)?;
                    if write.delete_image(&name)? {
                        if let Some(old) = &old {
                            released.push(old.target.clone());
                        }
                        changed = true;
                    }
                    previous.push(old);
                }
            }
        }

        // Only a target left without any name can have made something garbage.
        let mut orphaned = Vec::new();
        for target in released {
            if write.references(&target.digest)? == 0 {
                orphaned.push(Node::Typed(target));
            }
        }
        if changed {
            write.commit()?;
        }
        if !orphaned.is_empty() {
            // The change is durable; failing the call now would claim otherwise.
            let collected = inner
                .closure(orphaned)
                .and_then(|candidates| inner.collect(&mut state, Scope::Only(candidates)));
            if let Err(e) = collected {
                warn!(error = %e, "garbage collection after an image change failed");
            }
        }
        Ok(previous)
    }
}

/// The record `name` has in `write`. One whose value cannot be decoded counts as absent (and is
/// logged), so that it can still be replaced or deleted: that is how a user gets rid of it.
fn current(write: &MetadataWrite<'_>, name: &str) -> Result<Option<ImageRecord>, StoreError> {
    match write.image(name) {
        Err(e @ StoreError::CorruptMetadata { .. }) => {
            warn!(image = %name, error = %e, "replacing an image record that cannot be read");
            Ok(None)
        }
        result => result,
    }
}

/// How deep indexes may nest below a record's target before it is refused.
const MAX_INDEX_DEPTH: usize = 4;

impl Inner {
    /// Whether `target` can be the target of record `name`: present, and, if it is a manifest or
    /// index, readable as one, along with every manifest of an index that is present. Whatever
    /// a record points at is read by listing, inspect, push and GC; content one of them cannot read
    /// is refused here, once, rather than failing all of them later.
    fn check_readable(&self, name: &str, target: &Descriptor) -> Result<(), StoreError> {
        let mut pending = vec![(target.clone(), 0)];
        while let Some((desc, depth)) = pending.pop() {
            let Some(kind) = ManifestKind::of_media_type(&desc.media_type) else {
                continue;
            };
            let unreadable = |reason: String| StoreError::UnreadableManifest {
                name: name.to_owned(),
                digest: desc.digest.clone(),
                reason,
            };
            if depth > MAX_INDEX_DEPTH {
                return Err(unreadable(format!(
                    "nests indexes more than {MAX_INDEX_DEPTH} deep"
                )));
            }
            match self.children.of_kind(&self.layout, &desc.digest, kind) {
                Ok(children) => {
                    if kind == ManifestKind::Index {
                        pending.extend(children.iter().map(|c| (c.clone(), depth + 1)));
                    }
                }
                // The target itself must be present; an index may be partial.
                Err(StoreError::NotFound(_)) if depth == 0 => {
                    return Err(StoreError::MissingBlob(desc.digest));
                }
                Err(StoreError::NotFound(_)) => {}
                Err(StoreError::TooLarge { size, limit, .. }) => {
                    return Err(unreadable(format!(
                        "is {size} bytes, more than the {limit} bytes a manifest may have"
                    )));
                }
                Err(StoreError::InvalidManifest { reason, .. }) => {
                    return Err(unreadable(format!("is malformed: {reason}")));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
