//! Labels on blobs: opaque key/value pairs the engine attaches to content (for example where a
//! layer was seen, for cross-repository mounts). They live and die with their blob.

use std::collections::{BTreeMap, btree_map};

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
        let inner = &self.inner;
        // Held throughout, so a GC cannot remove a blob between the check and the write.
        let _state = inner.state();
        let write = inner.meta.write()?;
        let mut changed: BTreeMap<Digest, BTreeMap<String, String>> = BTreeMap::new();
        for (digest, key, value) in changes {
            if value.is_some() && !inner.layout.blob_path(&digest).is_file() {
                return Err(StoreError::NotFound(digest));
            }
            let labels = match changed.entry(digest) {
                btree_map::Entry::Occupied(entry) => entry.into_mut(),
                btree_map::Entry::Vacant(entry) => {
                    let current = write.labels(entry.key())?;
                    entry.insert(current)
                }
            };
            match value {
                Some(value) => labels.insert(key, value),
                None => labels.remove(&key),
            };
        }
        let mut dirty = false;
        for (digest, labels) in &changed {
            if *labels != write.labels(digest)? {
                write.set_labels(digest.as_str(), labels)?;
                dirty = true;
            }
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
