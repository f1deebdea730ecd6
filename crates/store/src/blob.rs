//! Reading blobs, and storing small ones built in memory.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::PathBuf;

use hoist_reference::Digest;
use sha2::{Digest as _, Sha256};

use crate::descriptor::Descriptor;
use crate::error::{IoContext, StoreError};
use crate::lease::Lease;
use crate::manifest::{ManifestKind, read_blob_limited};
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

    /// Reads a whole blob. Fails with `NotFound` if absent and `TooLarge` above `limit` bytes.
    pub fn read_blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>, StoreError> {
        read_blob_limited(&self.inner.layout, digest, limit)
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File, StoreError> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::NotFound(digest.clone()),
            _ => StoreError::Io {
                context: format!("opening {}", path.display()),
                source: e,
            },
        })
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

    /// The blobs `desc` references: an index or manifest list its manifests, a manifest its
    /// config then its layers; other media types none. Errors if the blob is absent or is not
    /// valid JSON of its media type.
    pub fn children(&self, desc: &Descriptor) -> Result<Vec<Descriptor>, StoreError> {
        match ManifestKind::of_media_type(&desc.media_type) {
            Some(kind) => {
                let children =
                    self.inner
                        .children
                        .of_kind(&self.inner.layout, &desc.digest, kind)?;
                Ok(children.to_vec())
            }
            None if self.has_blob(&desc.digest) => Ok(Vec::new()),
            None => Err(StoreError::NotFound(desc.digest.clone())),
        }
    }
}
