//! Removing chosen blobs that an image index may still list: content its owner no longer wants
//! (one platform of a multi-platform image), which garbage collection alone would keep.

use std::collections::HashSet;
use std::fs;
use std::io;

use hoist_reference::Digest;
use tracing::warn;

use crate::error::{IoContext, StoreError};
use crate::gc::{Node, Scope};
use crate::store::Store;

/// What [`Store::remove_blobs`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlobRemoval {
    /// The blobs removed, in the order asked; absent ones are not listed.
    pub blobs: Vec<Digest>,
    /// Image records dropped because their target was removed.
    pub records: Vec<String>,
}

impl Store {
    /// Removes the blobs `digests`, drops the image records whose target is one of them (a record
    /// never points at a missing blob), then collects what only they reached. An index listing a
    /// removed blob stays: it is partial from then on, as after a single-platform pull.
    ///
    /// Changes nothing and fails with [`StoreError::InUse`] when a live lease reaches one of them.
    pub fn remove_blobs(&self, digests: &[Digest]) -> Result<BlobRemoval, StoreError> {
        let inner = &self.inner;
        let mut state = inner.state();
        let leased = inner.closure(
            state
                .leases
                .values()
                .flatten()
                .cloned()
                .map(Node::Untyped)
                .collect(),
        )?;
        if let Some(busy) = digests.iter().find(|d| leased.contains(*d)) {
            return Err(StoreError::InUse(busy.clone()));
        }
        let wanted: HashSet<&Digest> = digests.iter().collect();
        // What may become garbage, computed while the blobs can still be read.
        let candidates = inner.closure(digests.iter().cloned().map(Node::Untyped).collect())?;

        let mut removal = BlobRemoval::default();
        let doomed: Vec<String> = inner
            .meta
            .images()?
            .into_iter()
            .filter(|record| wanted.contains(&record.target.digest))
            .map(|record| record.name)
            .collect();
        if !doomed.is_empty() {
            // Records first, in one transaction: a crash after this leaves blobs that the next
            // open collects, never a record without its target.
            let write = inner.meta.write()?;
            for name in &doomed {
                write.delete_image(name)?;
            }
            write.commit()?;
            removal.records = doomed;
        }
        for digest in digests {
            let path = inner.layout.blob_path(digest);
            match fs::remove_file(&path) {
                Ok(()) => removal.blobs.push(digest.clone()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).context(|| format!("removing {}", path.display())),
            }
            inner.children.forget(digest);
        }
        // The removal is done; failing the call now would claim otherwise.
        if let Err(e) = inner.collect(&mut state, Scope::Only(candidates)) {
            warn!(error = %e, "garbage collection after removing blobs failed");
        }
        Ok(removal)
    }
}
