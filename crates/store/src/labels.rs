//! Labels on blobs: opaque key/value pairs the engine attaches to content (for example where a
//! layer was seen, for cross-repository mounts). They live and die with their blob.

use std::collections::BTreeMap;

use hoist_reference::Digest;
use tracing::warn;

use crate::error::StoreError;
use crate::store::Store;

impl Store {
    /// A blob's labels; none if it has none, or if they cannot be read (logged).
    pub fn blob_labels(&self, digest: &Digest) -> BTreeMap<String, String> {
        self.inner.meta.labels(digest).unwrap_or_else(|e| {
            warn!(%digest, error = %e, "cannot read blob labels");
            BTreeMap::new()
        })
    }

    /// Sets (`Some`) or removes (`None`) labels, all or nothing, in one metadata transaction,
    /// durable when it returns or, for labels that are only hints, `Deferred`.
    ///
    /// Setting a label on an absent blob fails with [`StoreError::NotFound`]: such a label would
    /// never be collected. Removing one from an absent blob is a no-op.
    pub fn set_blob_labels(
        &self,
        changes: Vec<(Digest, String, Option<String>)>,
        durability: Durability,
    ) -> Result<(), StoreError> {
        let mut by_blob: BTreeMap<Digest, Vec<(String, Option<String>)>> = BTreeMap::new();
        for (digest, key, value) in changes {
            by_blob.entry(digest).or_default().push((key, value));
        }
        let digests: Vec<Digest> = by_blob.keys().cloned().collect();
        self.update_blob_labels(
            &digests,
            |digest, labels| {
                for (key, value) in by_blob.remove(digest).unwrap_or_default() {
                    match value {
                        Some(value) => labels.insert(key, value),
                        None => labels.remove(&key),
                    };
                }
            },
            durability,
        )
    }

    /// Changes the labels of each of `digests` with `update`, given the blob's current labels,
    /// all or nothing, in one metadata transaction (no separate read before it), durable as
    /// [`Store::set_blob_labels`]. A blob whose labels `update` leaves as they were is not
    /// written; one it changes must be present ([`StoreError::NotFound`]: an absent blob has no
    /// labels, so only a label set on it changes them).
    pub fn update_blob_labels(
        &self,
        digests: &[Digest],
        mut update: impl FnMut(&Digest, &mut BTreeMap<String, String>),
        durability: Durability,
    ) -> Result<(), StoreError> {
        let inner = &self.inner;
        // Held throughout, so a GC cannot remove a blob between the check and the write.
        let _state = inner.state();
        let write = inner.meta.write()?;
        let mut dirty = false;
        for digest in digests {
            let current = write.labels(digest)?;
            let mut labels = current.clone();
            update(digest, &mut labels);
            if labels == current {
                continue;
            }
            if !inner.layout.blob_path(digest).is_file() {
                return Err(StoreError::NotFound(digest.clone()));
            }
            write.set_labels(digest.as_str(), &labels)?;
            dirty = true;
        }
        if dirty {
            match durability {
                Durability::Immediate => write.commit()?,
                Durability::Deferred => write.commit_deferred()?,
            }
        }
        Ok(())
    }
}

/// When a metadata change reaches the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Before the call returns.
    Immediate,
    /// With the next durable commit of any change, without waiting for the disk now: visible at
    /// once, lost in a crash before that commit. For what costs only an optimisation when lost,
    /// and is written often enough that an fsync each would dominate.
    Deferred,
}
