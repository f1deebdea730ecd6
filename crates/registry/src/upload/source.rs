//! The local file a blob is uploaded from.

use std::fs::File;
use std::path::{Path, PathBuf};

use hoist_reference::Digest;

use crate::RegistryError;

/// A blob in a local file, to be uploaded. Request bodies are read from a memory map of the
/// file, so it must not change while hoist may read it; only the `unsafe` constructor can vouch
/// for that.
#[derive(Clone, Debug)]
pub struct BlobSource {
    path: PathBuf,
    pub digest: Digest,
    /// The blob's length; an upload checks it against the file before reading any of it.
    pub size: u64,
}

impl BlobSource {
    /// Describes the blob `digest` of `size` bytes held in the file at `path`.
    ///
    /// # Safety
    ///
    /// The file at `path` must never be modified or truncated while the process may read it:
    /// the source, its clones and request bodies made from them (which can outlive the upload
    /// call) map it into memory, and a mapped file that changes is undefined behaviour, one that
    /// shrinks a `SIGBUS`. Replacing the path by a rename or unlinking it is fine: open
    /// descriptors and mappings keep the old file. A content-store blob, written once through a
    /// temporary file and renamed into place, meets this.
    pub unsafe fn new(path: PathBuf, digest: Digest, size: u64) -> BlobSource {
        BlobSource { path, digest, size }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the file, failing unless it holds exactly `size` bytes, so that no read or mapping
    /// of it goes past its end. Blocking: call it on the blocking pool, in the same trip as the
    /// first read, since a trip there costs more than the `open` and `fstat` themselves.
    pub(crate) fn open_checked(&self) -> std::io::Result<File> {
        let file = File::open(&self.path)?;
        self.check_length(&file)?;
        Ok(file)
    }

    /// Fails unless the open `file` holds exactly `size` bytes.
    pub(crate) fn check_length(&self, file: &File) -> std::io::Result<()> {
        let len = file.metadata()?.len();
        if len != self.size {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "file holds {len} bytes but blob {} has {}",
                    self.digest, self.size
                ),
            ));
        }
        Ok(())
    }

    /// [`BlobSource::open_checked`] on the blocking pool.
    pub(crate) async fn open(&self) -> Result<File, RegistryError> {
        let source = self.clone();
        tokio::task::spawn_blocking(move || source.open_checked())
            .await
            .map_err(|e| self.read_error(std::io::Error::other(e)))?
            .map_err(|e| self.read_error(e))
    }

    /// Where reading the file failed, as an error of ours rather than the registry's.
    pub(crate) fn read_error(&self, source: std::io::Error) -> RegistryError {
        RegistryError::LocalIo {
            path: self.path.clone(),
            source,
        }
    }
}
