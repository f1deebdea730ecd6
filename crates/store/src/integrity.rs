//! Checking that stored bytes still hash to their name. Blobs are verified when written, but a
//! disk can rot and a file can be altered behind the store's back; whatever hands a blob on
//! (`docker save`, `hoistd check`) reads it through here so that damage is reported, not copied.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use hoist_reference::Digest;
use sha2::{Digest as _, Sha256};

use crate::blob::open_blob_file;
use crate::error::StoreError;
use crate::store::Store;

/// Large reads keep hashing a few GiB bound by the disk and sha256, not by syscalls.
const HASH_CHUNK: usize = 1 << 20;

/// A stored blob being read out. Reading to the end fails with [`StoreError::CorruptBlob`]
/// (inside the `io::Error`; see [`StoreError::from_io`]) when the bytes read do not hash to the
/// blob's digest, so a consumer never takes damaged content for whole.
pub struct VerifiedBlob {
    file: File,
    digest: Digest,
    size: u64,
    hasher: Sha256,
    /// The end was reached and the digest matched: later reads just report the end again.
    verified: bool,
}

impl Store {
    /// Opens a blob to stream it out, verified as it is read. `NotFound` if absent.
    pub fn open_verified_blob(&self, digest: &Digest) -> Result<VerifiedBlob, StoreError> {
        let (file, size, _) = open_blob_file(&self.inner.layout, digest)?;
        Ok(VerifiedBlob {
            file,
            digest: digest.clone(),
            size,
            hasher: Sha256::new(),
            verified: false,
        })
    }
}

impl VerifiedBlob {
    /// The blob's size on disk when it was opened.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Read for VerifiedBlob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        if n > 0 || buf.is_empty() || self.verified {
            self.hasher.update(&buf[..n]);
            return Ok(n);
        }
        let actual = Digest::sha256_from_bytes(&self.hasher.finalize_reset().into());
        if actual != self.digest {
            return Err(StoreError::CorruptBlob {
                digest: self.digest.clone(),
                actual,
            }
            .into_io());
        }
        self.verified = true;
        Ok(0)
    }
}

/// The sha256 digest of a file's content and its length.
pub(crate) fn hash_file(path: &Path) -> io::Result<(Digest, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; HASH_CHUNK];
    let mut total = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((Digest::sha256_from_bytes(&hasher.finalize().into()), total))
}
