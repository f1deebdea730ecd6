//! Where things live under the data root (drawn in the crate docs), and the directory-level
//! durability primitives.
//!
//! Every temp file lives in `ingest/`, on the same filesystem as its destination so the final
//! `rename` is atomic, and in one place so a restart can remove all leftovers of a crash.

use std::fs::{self, DirBuilder, File};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use hoist_reference::Digest;

use crate::error::{IoContext, StoreError};

#[derive(Debug)]
pub(crate) struct Layout {
    pub root: PathBuf,
    pub blobs: PathBuf,
    pub sha256_blobs: PathBuf,
    pub ingest: PathBuf,
    pub database: PathBuf,
    /// Where earlier versions kept metadata; migrated into `database` on open.
    pub legacy_metadata: PathBuf,
    pub lock: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        let blobs = root.join("blobs");
        Layout {
            root: root.to_owned(),
            sha256_blobs: blobs.join("sha256"),
            blobs,
            ingest: root.join("ingest"),
            database: root.join("meta.db"),
            legacy_metadata: root.join("meta.json"),
            lock: root.join("hoistd.lock"),
        }
    }

    /// Blobs are addressed by algorithm and hex, so a digest of another algorithm simply names a
    /// file that never exists (we only write sha256).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.algorithm()).join(digest.hex())
    }

    /// Creates missing directories, private to the daemon's user: image content may be secret.
    pub fn create(&self) -> Result<(), StoreError> {
        let mut builder = DirBuilder::new();
        builder.recursive(true).mode(0o700);
        for dir in [&self.root, &self.sha256_blobs, &self.ingest] {
            builder
                .create(dir)
                .context(|| format!("creating directory {}", dir.display()))?;
        }
        // Make the new directory entries themselves durable before anything relies on them.
        sync_dir(&self.blobs)?;
        sync_dir(&self.root)
    }

    /// Removes everything in `ingest/`: with the lock held, nothing there can belong to a live
    /// writer, so it is debris of a process that died mid-write.
    pub fn wipe_ingest(&self) -> Result<usize, StoreError> {
        let entries =
            fs::read_dir(&self.ingest).context(|| format!("listing {}", self.ingest.display()))?;
        let mut removed = 0;
        for entry in entries {
            let entry = entry.context(|| format!("listing {}", self.ingest.display()))?;
            let path = entry.path();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            let result = if is_dir {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            result.context(|| format!("removing leftover {}", path.display()))?;
            removed += 1;
        }
        Ok(removed)
    }
}

/// Makes renames and unlinks inside `dir` durable; `rename(2)` alone only orders them.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .context(|| format!("syncing directory {}", dir.display()))
}
