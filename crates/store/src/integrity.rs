//! Checking that stored bytes are still the blob. Blobs are verified when written, but a disk
//! can rot and a file can be altered behind the store's back; whatever hands a blob on (`docker
//! save`, `hoistd check`) reads it through here so that damage is reported, not copied.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use hoist_reference::Digest;
use sha2::{Digest as _, Sha256};

use crate::blob::open_blob_file;
use crate::checksum::{self, Checksum};
use crate::error::{IoContext, StoreError};
use crate::store::Store;

/// Large reads keep hashing a few GiB bound by the disk and sha256, not by syscalls.
const HASH_CHUNK: usize = 1 << 20;

/// A stored blob being read out. Reading to the end fails with [`StoreError::CorruptBlob`]
/// (inside the `io::Error`; see [`StoreError::from_io`]) when the bytes read do not hash to the
/// blob's digest, so a consumer never takes damaged content for whole. The bytes are checked
/// against the checksum recorded when the blob was written where there is one (`checksum`),
/// by their sha256 otherwise and wherever the checksum disagrees.
pub struct VerifiedBlob {
    file: File,
    digest: Digest,
    size: u64,
    check: Check,
    /// The end was reached and the bytes matched: later reads just report the end again.
    verified: bool,
}

enum Check {
    Checksum { running: Checksum, recorded: u32 },
    Sha256(Sha256),
}

impl Store {
    /// Opens a blob to stream it out, verified as it is read. `NotFound` if absent.
    pub fn open_verified_blob(&self, digest: &Digest) -> Result<VerifiedBlob, StoreError> {
        let (file, size, _) = open_blob_file(&self.inner.layout, digest)?;
        let check = match checksum::recorded(&file) {
            Some(recorded) => Check::Checksum {
                running: Checksum::default(),
                recorded,
            },
            None => Check::Sha256(Sha256::new()),
        };
        Ok(VerifiedBlob {
            file,
            digest: digest.clone(),
            size,
            check,
            verified: false,
        })
    }
}

impl VerifiedBlob {
    /// The blob's size on disk when it was opened.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// At the end of the file: whether what was read is the blob.
    fn check_end(&mut self) -> Result<(), StoreError> {
        let actual = match &mut self.check {
            Check::Checksum { running, recorded } if running.value() == *recorded => return Ok(()),
            // The bytes or the attribute changed: the file's sha256 says which. The bytes read
            // again must also be the ones just read (the same checksum), or the ones read out
            // were not the file's and cannot be vouched for.
            Check::Checksum { running, .. } => {
                let (actual, again) = hash_open_file(&self.file)
                    .context(|| format!("hashing blob {} again", self.digest))?;
                if actual == self.digest && again.value() == running.value() {
                    tracing::warn!(digest = %self.digest, "a blob's checksum attribute is wrong; its bytes are whole");
                    return Ok(());
                }
                if actual == self.digest {
                    return Err(StoreError::Io {
                        context: format!("reading blob {}", self.digest),
                        source: io::Error::other("its bytes changed while they were read"),
                    });
                }
                actual
            }
            Check::Sha256(hasher) => Digest::sha256_from_bytes(&hasher.finalize_reset().into()),
        };
        if actual != self.digest {
            return Err(StoreError::CorruptBlob {
                digest: self.digest.clone(),
                actual,
            });
        }
        Ok(())
    }
}

impl Read for VerifiedBlob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        if n > 0 || buf.is_empty() || self.verified {
            match &mut self.check {
                Check::Checksum { running, .. } => running.update(&buf[..n]),
                Check::Sha256(hasher) => hasher.update(&buf[..n]),
            }
            return Ok(n);
        }
        self.check_end().map_err(StoreError::into_io)?;
        self.verified = true;
        Ok(0)
    }
}

/// The sha256 digest of a file's content and its length.
pub(crate) fn hash_file(path: &Path) -> io::Result<(Digest, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let total = read_all(&mut file, |bytes| hasher.update(bytes))?;
    Ok((Digest::sha256_from_bytes(&hasher.finalize().into()), total))
}

/// The sha256 digest and the checksum of an open file's whole content, whatever its read
/// position.
fn hash_open_file(file: &File) -> io::Result<(Digest, Checksum)> {
    let mut hasher = Sha256::new();
    let mut checksum = Checksum::default();
    let mut from_start = FromStart { file, position: 0 };
    read_all(&mut from_start, |bytes| {
        hasher.update(bytes);
        checksum.update(bytes);
    })?;
    Ok((
        Digest::sha256_from_bytes(&hasher.finalize().into()),
        checksum,
    ))
}

/// Hands everything `reader` yields to `take`, in large reads; the number of bytes.
fn read_all(reader: &mut impl Read, mut take: impl FnMut(&[u8])) -> io::Result<u64> {
    let mut buf = vec![0u8; HASH_CHUNK];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        take(&buf[..n]);
        total += n as u64;
    }
}

/// A file read from its start with positioned reads, leaving its own offset alone.
struct FromStart<'a> {
    file: &'a File,
    position: u64,
}

impl Read for FromStart<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.position)?;
        self.position += n as u64;
        Ok(n)
    }
}
