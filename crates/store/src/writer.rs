//! Writing a blob: into a temp file in `ingest/` while hashing (and checksumming, see
//! `checksum`; how the bytes reach the file, see `file_sink`), then fsync, verify, and rename
//! into `blobs/`. A blob is visible under its digest only once it is complete and durable.
//!
//! Many small blobs (a `docker load` of thousands of layers) are instead staged in a
//! [`StagedBlobs`] batch: each is written and verified, and the batch is made durable with one
//! `syncfs(2)` before any of them is renamed into `blobs/`, rather than with two fsyncs per blob
//! (file and directory), each a journal commit that costs milliseconds.

use std::fmt;
use std::fs::{File, Permissions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use hoist_reference::Digest;
use sha2::{Digest as _, Sha256};
use tempfile::TempPath;

use crate::checksum::{self, Checksum};
use crate::error::{IoContext, StoreError};
use crate::file_sink::{self, FileSink, LARGE_FROM, UNWRITTEN_MAX};
use crate::layout::sync_dir;
use crate::lease::{Lease, LeaseHandle};
use crate::store::Store;

/// Free space is checked at a blob's first write and then at least every this many bytes (sooner
/// when less than that is left above the reserve): the reserve stays intact, a blob that fits
/// is written however full the disk, and a check costs nothing next to the writes.
const SPACE_CHECK_STEP: u64 = 4 * 1024 * 1024;

/// Blobs smaller than this are staged by [`StagedBlobs::add`]; larger ones are committed at once.
/// A small blob never had its writes started early, so its own fsync waits for all of it plus a
/// journal commit, which for small blobs is nearly all latency; a large blob's fsync waits only
/// for its last few MiB and overlaps with the rest of the load.
const STAGE_BELOW: u64 = LARGE_FROM;

/// An in-progress blob. Implements [`std::io::Write`]; finish with [`BlobWriter::commit`].
/// Dropping it without committing removes its temp file.
pub struct BlobWriter {
    file: FileSink,
    hasher: Sha256,
    checksum: Checksum,
    written: u64,
    /// Bytes accepted when free space is next checked.
    next_space_check: u64,
    /// Keeps the lease alive until the blob is committed under it.
    lease: Arc<LeaseHandle>,
}

impl Store {
    pub fn blob_writer(&self, lease: &Lease) -> Result<BlobWriter, StoreError> {
        self.check_lease(lease)?;
        let ingest = &self.inner.layout.ingest;
        let temp = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(ingest)
            .context(|| format!("creating a temp file in {}", ingest.display()))?;
        Ok(BlobWriter {
            file: FileSink::new(temp),
            hasher: Sha256::new(),
            checksum: Checksum::default(),
            written: 0,
            next_space_check: 0,
            lease: lease.handle.clone(),
        })
    }
}

impl BlobWriter {
    /// Bytes accepted so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Makes the blob durable and visible: fsync, verify against `expected` if given, rename to
    /// `blobs/sha256/<hex>`, fsync the directory, and add the digest to the lease.
    ///
    /// On [`StoreError::DigestMismatch`] the temp file is removed and nothing is stored. Committing
    /// content that is already stored succeeds: same digest, same bytes.
    pub fn commit(self, expected: Option<&Digest>) -> Result<(Digest, u64), StoreError> {
        let sealed = self.seal(expected, Sync::File)?;
        let inner = Arc::clone(&sealed.lease.inner);
        let result = (sealed.digest.clone(), sealed.size);
        sealed.publish()?;
        sync_dir(&inner.layout.sha256_blobs)?;
        Ok(result)
    }

    /// Flushes the temp file, syncs it or starts its writeback (`sync`), checks its digest
    /// against `expected` and makes it read-only: everything but the rename.
    fn seal(self, expected: Option<&Digest>, sync: Sync) -> Result<Sealed, StoreError> {
        let BlobWriter {
            file,
            hasher,
            checksum,
            written,
            lease,
            ..
        } = self;
        let temp = file
            .finish()
            .context(|| "writing a blob temp file".to_owned())?;
        let temp_path = temp.path().to_owned();
        // Before the sync, which makes the attribute durable with the bytes.
        checksum::record(temp.as_file(), checksum.value());
        match sync {
            Sync::File => temp
                .as_file()
                .sync_all()
                .context(|| format!("syncing {}", temp_path.display()))?,
            Sync::Later => file_sink::start_writeback(temp.as_file(), 0, written),
        }

        let actual = Digest::sha256_from_bytes(&hasher.finalize().into());
        if let Some(expected) = expected
            && *expected != actual
        {
            // Dropping `temp` removes the file.
            return Err(StoreError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }

        // Committed blobs are immutable; make accidental writes fail loudly.
        temp.as_file()
            .set_permissions(Permissions::from_mode(0o444))
            .context(|| format!("making {} read-only", temp_path.display()))?;
        Ok(Sealed {
            // Closed: a staged batch may hold thousands of blobs, more than the open-file limit.
            temp: temp.into_temp_path(),
            digest: actual,
            size: written,
            lease,
        })
    }
}

/// How a sealed temp file is made durable.
#[derive(Clone, Copy)]
enum Sync {
    /// fsync now.
    File,
    /// Writeback started now; a [`StagedBlobs`] commit waits for it with one `syncfs`.
    Later,
}

/// A blob written, verified and read-only in `ingest/`, not yet under its digest.
struct Sealed {
    temp: TempPath,
    digest: Digest,
    size: u64,
    lease: Arc<LeaseHandle>,
}

impl Sealed {
    /// Renames the durable temp file to its digest, protected by the lease first. The caller
    /// syncs the directory.
    fn publish(self) -> Result<(), StoreError> {
        let inner = &self.lease.inner;
        // Protect before the blob becomes visible: see the GC module.
        inner.add_to_lease(self.lease.id, self.digest.clone());
        let dest = inner.layout.blob_path(&self.digest);
        let temp_path = self.temp.to_path_buf();
        // Renaming over an existing copy is harmless: readers keep the file they opened, and the
        // bytes are the same by construction.
        self.temp
            .persist(&dest)
            .map_err(|e| e.error)
            .context(|| format!("renaming {} to {}", temp_path.display(), dest.display()))
    }
}

/// Blobs written and verified but neither durable nor visible yet, committed together by
/// [`StagedBlobs::commit`]: one `syncfs` of the data root's filesystem, the renames, one fsync
/// of `blobs/sha256`. Until then none of them can be read, so whatever refers to them must be
/// written after the commit. Dropping the batch removes its temp files.
pub struct StagedBlobs {
    staged: Vec<Sealed>,
    lease: Lease,
}

impl Store {
    /// An empty batch of blobs to be committed under `lease`.
    pub fn staged_blobs(&self, lease: &Lease) -> Result<StagedBlobs, StoreError> {
        self.check_lease(lease)?;
        Ok(StagedBlobs {
            staged: Vec::new(),
            lease: lease.clone(),
        })
    }
}

impl StagedBlobs {
    /// Finishes `writer` as [`BlobWriter::commit`] does, except that a blob under 8 MiB is only
    /// staged: verified against `expected` (a mismatch removes it and fails as `commit` does),
    /// its writeback started, and left for [`StagedBlobs::commit`]. Returns its digest and size.
    pub fn add(
        &mut self,
        writer: BlobWriter,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64), StoreError> {
        if !Arc::ptr_eq(&writer.lease.inner, &self.lease.handle.inner) {
            return Err(StoreError::ForeignLease {
                root: writer.lease.inner.layout.root.clone(),
            });
        }
        if writer.written >= STAGE_BELOW {
            return writer.commit(expected);
        }
        let sealed = writer.seal(expected, Sync::Later)?;
        let result = (sealed.digest.clone(), sealed.size);
        self.staged.push(sealed);
        Ok(result)
    }

    /// The lease the batch's blobs are committed under.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// How many blobs wait for the commit.
    pub fn len(&self) -> usize {
        self.staged.len()
    }

    pub fn is_empty(&self) -> bool {
        self.staged.is_empty()
    }

    /// Makes every staged blob durable, then visible under its digest: `syncfs` of the data
    /// root's filesystem, the renames, then an fsync of `blobs/sha256`. A crash before the end
    /// leaves temp files (wiped at the next start) and perhaps durable blobs nothing refers to
    /// (collected then), never a visible blob that is not durable.
    pub fn commit(mut self) -> Result<usize, StoreError> {
        if self.staged.is_empty() {
            return Ok(0);
        }
        let inner = &self.lease.handle.inner;
        sync_filesystem(&inner.layout.ingest)?;
        let count = self.staged.len();
        for sealed in self.staged.drain(..) {
            sealed.publish()?;
        }
        sync_dir(&inner.layout.sha256_blobs)?;
        Ok(count)
    }
}

impl fmt::Debug for StagedBlobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StagedBlobs")
            .field("staged", &self.staged.len())
            .finish_non_exhaustive()
    }
}

/// `syncfs(2)` of the filesystem holding `dir`: every write to it so far is durable when it
/// returns (Linux reports writeback errors of any file of the filesystem through it).
fn sync_filesystem(dir: &std::path::Path) -> Result<(), StoreError> {
    let handle = File::open(dir).context(|| format!("opening {}", dir.display()))?;
    // SAFETY: syncfs only reads its integer argument; `handle` keeps the descriptor open for the
    // call.
    let result = unsafe { libc::syncfs(handle.as_raw_fd()) };
    if result != 0 {
        return Err(io::Error::last_os_error())
            .context(|| format!("syncing the filesystem of {}", dir.display()));
    }
    Ok(())
}

impl Write for BlobWriter {
    /// Fails with [`StoreError::NoSpace`] (inside the `io::Error`; see [`StoreError::from_io`])
    /// when the data root's free space would fall under the store's reserve.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written + buf.len() as u64 > self.next_space_check {
            // What this write and the bytes not yet in the file may put on the disk must fit
            // above the reserve; the next check comes after a step, or sooner when the disk is
            // nearly full.
            let needed = (buf.len() + UNWRITTEN_MAX) as u64;
            let allowed = self
                .lease
                .inner
                .space
                .allowance(needed)
                .map_err(StoreError::into_io)?;
            let until_next = (allowed - needed).min(SPACE_CHECK_STEP);
            self.next_space_check = self.written + buf.len() as u64 + until_next;
        }
        let n = self.file.write(buf)?;
        // Hash exactly what was accepted, so a short write cannot desynchronise hash and file.
        self.hasher.update(&buf[..n]);
        self.checksum.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    /// Bytes reach the file when the buffer fills and at the commit.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobWriter")
            .field("temp", &self.file.path())
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}
