//! Reading blobs, and storing small ones built in memory.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::PathBuf;

use hoist_reference::Digest;
use sha2::{Digest as _, Sha256};

use crate::error::{IoContext, StoreError};
use crate::layout::Layout;
use crate::lease::Lease;
use crate::store::Store;

impl Store {
    /// `root/blobs/sha256/<hex>`. The file exists only once the blob is completely written.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.inner.layout.blob_path(digest)
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    pub fn blob_size(&self, digest: &Digest) -> Option<u64> {
        fs::metadata(self.blob_path(digest))
            .ok()
            .filter(|meta| meta.is_file())
            .map(|meta| meta.len())
    }

    /// The bytes of every stored blob, added up: one directory read and one `stat` per blob,
    /// cheap enough to run on every metrics scrape. A blob removed meanwhile counts as nothing.
    pub fn blob_bytes(&self) -> Result<u64, StoreError> {
        let dir = &self.inner.layout.sha256_blobs;
        let entries = fs::read_dir(dir).context(|| format!("reading {}", dir.display()))?;
        let mut total = 0;
        for entry in entries.flatten() {
            if let Ok(meta) = entry.metadata()
                && meta.is_file()
            {
                total += meta.len();
            }
        }
        Ok(total)
    }

    /// Reads a whole blob. Fails with `NotFound` if absent and `TooLarge` above `limit` bytes.
    pub fn read_blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>, StoreError> {
        read_blob_limited(&self.inner.layout, digest, limit)
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File, StoreError> {
        open_blob_file(&self.inner.layout, digest).map(|(file, _, _)| file)
    }

    /// Stores a small blob built in memory (a manifest, a config) under `lease`.
    pub fn put_blob(&self, lease: &Lease, bytes: &[u8]) -> Result<(Digest, u64), StoreError> {
        self.check_lease(lease)?;
        let digest = Digest::sha256_from_bytes(&Sha256::digest(bytes).into());
        // Already stored: protecting it first, then checking, means no GC can slip in between.
        lease.protect(&digest);
        if self.has_blob(&digest) {
            return Ok((digest, bytes.len() as u64));
        }
        let mut writer = self.blob_writer(lease)?;
        writer
            .write_all(bytes)
            .context(|| format!("writing blob {digest}"))?;
        writer.commit(Some(&digest))
    }
}

/// Opens a blob for reading, with its size. `NotFound` if absent.
pub(crate) fn open_blob_file(
    layout: &Layout,
    digest: &Digest,
) -> Result<(File, u64, PathBuf), StoreError> {
    let path = layout.blob_path(digest);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(StoreError::NotFound(digest.clone()));
        }
        Err(e) => return Err(e).context(|| format!("opening {}", path.display())),
    };
    let size = file
        .metadata()
        .context(|| format!("reading metadata of {}", path.display()))?
        .len();
    Ok((file, size, path))
}

/// Reads a whole blob, refusing more than `limit` bytes (checked again while reading, so a file
/// that is not what its size said cannot make us allocate without bound).
pub(crate) fn read_blob_limited(
    layout: &Layout,
    digest: &Digest,
    limit: u64,
) -> Result<Vec<u8>, StoreError> {
    let (file, size, path) = open_blob_file(layout, digest)?;
    let too_large = |size| StoreError::TooLarge {
        digest: digest.clone(),
        size,
        limit,
    };
    if size > limit {
        return Err(too_large(size));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}
