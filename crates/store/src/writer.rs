//! Writing a blob: into a temp file in `ingest/` while hashing, then fsync, verify, and rename
//! into `blobs/`. A blob is visible under its digest only once it is complete and durable.

use std::fmt;
use std::fs::Permissions;
use std::io::{self, BufWriter, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use hoist_reference::Digest;
use sha2::{Digest as _, Sha256};
use tempfile::NamedTempFile;

use crate::error::{IoContext, StoreError};
use crate::layout::sync_dir;
use crate::lease::{Lease, LeaseHandle};
use crate::store::Store;

/// Callers often write in small chunks (tar entries, HTTP frames); batching them saves syscalls.
const BUFFER_SIZE: usize = 256 * 1024;

/// Written data is handed to the disk every this many bytes instead of all at the final fsync.
const WRITEBACK_STEP: u64 = 8 * 1024 * 1024;

/// Free space is checked at a blob's first write and then at least every this many bytes (sooner
/// when less than that is left above the reserve): the reserve stays intact, a blob that fits
/// is written however full the disk, and a check costs nothing next to the writes.
const SPACE_CHECK_STEP: u64 = 4 * 1024 * 1024;

/// An in-progress blob. Implements [`std::io::Write`]; finish with [`BlobWriter::commit`].
/// Dropping it without committing removes its temp file.
pub struct BlobWriter {
    file: BufWriter<NamedTempFile>,
    hasher: Sha256,
    written: u64,
    /// Bytes of the file whose writeback has been started.
    writeback_started: u64,
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
            file: BufWriter::with_capacity(BUFFER_SIZE, temp),
            hasher: Sha256::new(),
            written: 0,
            writeback_started: 0,
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
        let BlobWriter {
            file,
            hasher,
            written,
            lease,
            ..
        } = self;
        let temp = file
            .into_inner()
            .map_err(|e| e.into_error())
            .context(|| "flushing a blob temp file".to_owned())?;
        let temp_path = temp.path().to_owned();
        temp.as_file()
            .sync_all()
            .context(|| format!("syncing {}", temp_path.display()))?;

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

        let inner = &lease.inner;
        // Protect before the blob becomes visible: see the GC module.
        inner.add_to_lease(lease.id, actual.clone());
        let dest = inner.layout.blob_path(&actual);
        // Renaming over an existing copy is harmless: readers keep the file they opened, and the
        // bytes are the same by construction.
        temp.persist(&dest)
            .map_err(|e| e.error)
            .context(|| format!("renaming {} to {}", temp_path.display(), dest.display()))?;
        sync_dir(&inner.layout.sha256_blobs)?;
        Ok((actual, written))
    }
}

impl Write for BlobWriter {
    /// Fails with [`StoreError::NoSpace`] (inside the `io::Error`; see [`StoreError::from_io`])
    /// when the data root's free space would fall under the store's reserve.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written + buf.len() as u64 > self.next_space_check {
            // What this write and the buffer may put on the disk must fit above the reserve;
            // the next check comes after a step, or sooner when the disk is nearly full.
            let needed = (buf.len() + BUFFER_SIZE) as u64;
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
        self.written += n as u64;
        self.start_writeback();
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl BlobWriter {
    /// Starts writing what reached the file to disk, without waiting, once a step's worth has
    /// piled up. The final fsync then waits for the last few MiB instead of the whole blob, so a
    /// large blob's disk writes overlap with receiving and hashing it (`docker load`, pull).
    fn start_writeback(&mut self) {
        let in_file = self.written - self.file.buffer().len() as u64;
        if in_file - self.writeback_started < WRITEBACK_STEP {
            return;
        }
        let fd = self.file.get_ref().as_file().as_raw_fd();
        let (offset, len) = (self.writeback_started, in_file - self.writeback_started);
        // SAFETY: sync_file_range only reads its integer arguments; `fd` is open for the call.
        // Its result is advisory: a failure here surfaces at the fsync in `commit`.
        let _ = unsafe {
            libc::sync_file_range(
                fd,
                offset as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
        self.writeback_started = in_file;
    }
}

impl fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobWriter")
            .field("temp", &self.file.get_ref().path())
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}
