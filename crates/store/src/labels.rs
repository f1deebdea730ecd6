//! Labels on blobs: opaque key/value pairs the engine attaches to content (for example where a
//! layer was seen, for cross-repository mounts). They live and die with their blob.

use std::collections::BTreeMap;

use hoist_reference::Digest;

use crate::error::StoreError;
use crate::store::Store;

impl Store {
    pub fn blob_labels(&self, digest: &Digest) -> BTreeMap<String, String> {
        self.inner
            .state()
            .meta
            .labels
            .get(digest)
            .cloned()
            .unwrap_or_default()
    }

    /// Sets (`Some`) or removes (`None`) labels, all or nothing, in one metadata write.
    ///
    /// Setting a label on an absent blob fails with [`StoreError::NotFound`]: such a label would
    /// never be collected. Removing one from an absent blob is a no-op.
    pub fn set_blob_labels(
        &self,
        changes: Vec<(Digest, String, Option<String>)>,
    ) -> Result<(), StoreError> {
        let inner = &self.inner;
        // Held throughout, so a GC cannot remove a blob between the check and the write.
        let mut state = inner.state();
        let mut labels = state.meta.labels.clone();
        for (digest, key, value) in changes {
            match value {
                Some(value) => {
                    if !inner.layout.blob_path(&digest).is_file() {
                        return Err(StoreError::NotFound(digest));
                    }
                    labels.entry(digest).or_default().insert(key, value);
                }
                None => {
                    if let Some(blob_labels) = labels.get_mut(&digest) {
                        blob_labels.remove(&key);
                        if blob_labels.is_empty() {
                            labels.remove(&digest);
                        }
                    }
                }
            }
        }
        if labels == state.meta.labels {
            return Ok(());
        }
        let old_labels = std::mem::replace(&mut state.meta.labels, labels);
        if let Err(e) = state.meta.persist(&inner.layout) {
            state.meta.labels = old_labels;
            return Err(e);
        }
        Ok(())
    }
}
