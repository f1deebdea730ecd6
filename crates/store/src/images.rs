//! Image records: opaque names pointing at a manifest or index.

use std::time::SystemTime;

use tracing::warn;

use crate::descriptor::Descriptor;
use crate::error::StoreError;
use crate::gc::{Node, Scope};
use crate::store::Store;

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
    pub fn image(&self, name: &str) -> Option<ImageRecord> {
        self.inner.state().meta.images.get(name).cloned()
    }

    /// All records, sorted by name.
    pub fn images(&self) -> Vec<ImageRecord> {
        self.inner.state().meta.images.values().cloned().collect()
    }

    /// Applies a batch of changes in order, all or nothing: either every change is persisted (in
    /// one metadata write) or none is.
    ///
    /// A `Put` whose target blob is absent fails with [`StoreError::MissingBlob`]; deleting an
    /// absent name is not an error. Returns, per change, the record as it was just before that
    /// change (`None` = absent). Blobs that a deleted or re-pointed record reached and that
    /// nothing else reaches are collected afterwards.
    pub fn apply(&self, changes: Vec<ImageChange>) -> Result<Vec<Option<ImageRecord>>, StoreError> {
        let inner = &self.inner;
        // Held throughout: the target check and the write must not interleave with a GC.
        let mut state = inner.state();
        let mut images = state.meta.images.clone();
        let now = SystemTime::now();
        let mut previous = Vec::with_capacity(changes.len());
        let mut released = Vec::new();
        let mut changed = false;

        for change in changes {
            match change {
                ImageChange::Put { name, target } => {
                    if !inner.layout.blob_path(&target.digest).is_file() {
                        return Err(StoreError::MissingBlob(target.digest));
                    }
                    let old = images.get(&name).cloned();
                    let created_at = match &old {
                        Some(old) if old.target == target => {
                            previous.push(Some(old.clone()));
                            continue;
                        }
                        Some(old) => {
                            released.push(Node::Typed(old.target.clone()));
                            old.created_at
                        }
                        None => now,
                    };
                    let record = ImageRecord {
                        name: name.clone(),
                        target,
                        created_at,
                        updated_at: now,
                    };
                    images.insert(name, record);
                    previous.push(old);
                    changed = true;
                }
                ImageChange::Delete { name } => {
                    let old = images.remove(&name);
                    if let Some(old) = &old {
                        released.push(Node::Typed(old.target.clone()));
                        changed = true;
                    }
                    previous.push(old);
                }
            }
        }

        if changed {
            let old_images = std::mem::replace(&mut state.meta.images, images);
            if let Err(e) = state.meta.persist(&inner.layout) {
                state.meta.images = old_images;
                return Err(e);
            }
        }
        if !released.is_empty() {
            // The change is durable; failing the call now would claim otherwise.
            let collected = inner
                .closure(released)
                .and_then(|candidates| inner.collect(&mut state, Scope::Only(candidates)));
            if let Err(e) = collected {
                warn!(error = %e, "garbage collection after an image change failed");
            }
        }
        Ok(previous)
    }
}
