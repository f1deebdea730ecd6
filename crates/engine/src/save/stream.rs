//! The archive as the response body takes it: a stream of byte chunks produced on the blocking
//! pool and handed over through a short queue, so that reading and checking the next chunks
//! overlaps with the socket taking this one.
//!
//! Tar headers, padding and the small metadata files are framed by the `tar` crate into one
//! buffer that goes out ahead of the next blob chunk; blob contents are read straight into
//! chunk buffers that the response hands back once written, so each byte is copied once out of
//! the page cache and once into the socket, and no buffer is allocated per chunk.
//!
//! Each blob is checked as it is read ([`VerifiedBlob`]) and its last chunk is handed over only
//! once the whole blob matched: a blob damaged on disk never arrives whole, and the
//! stream ends with the error there, before the archive's end.

use std::io::{self, Read};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use hoist_reference::Digest;
use hoist_store::{Store, VerifiedBlob};
use tokio::sync::mpsc;

use crate::EngineError;

/// How much of a blob one read takes and one chunk of the response carries: a GiB is a
/// thousand reads and checksum calls rather than the hundred thousand of an 8 KiB copy loop, and
/// the chunk is still in the CPU's cache when it is checked right after the read.
const CHUNK: usize = 1 << 20;

/// Chunks read ahead of the socket. The disk and the check work on these while the socket takes
/// the current one; more would only hold memory, since the socket is the slower side.
const AHEAD: usize = 4;

/// Runs `produce` on the blocking pool with an [`ArchiveWriter`] and streams what it writes.
/// The stream ends after the archive's last byte when `produce` succeeded; otherwise with its
/// error (or the producer's panic) as the last item, before the archive's end. Dropping the
/// stream makes the producer's next write fail, which ends it.
pub(super) fn spawn_archive<F>(
    produce: F,
) -> impl Stream<Item = Result<Bytes, EngineError>> + Send + 'static
where
    F: FnOnce(&mut ArchiveWriter) -> Result<(), EngineError> + Send + 'static,
{
    let (sender, mut receiver) = mpsc::channel(AHEAD);
    let producer = tokio::task::spawn_blocking(move || {
        let mut archive = ArchiveWriter::new(sender);
        produce(&mut archive)?;
        archive.finish()
    });
    let chunks = futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx)).map(Ok);
    // The queue closes when the producer returns (it owns the sender): its outcome follows.
    let outcome = futures_util::stream::once(async move {
        match producer.await {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(Err(error)),
            Err(error) => Some(Err(EngineError::Internal(format!(
                "the archive writer stopped: {error}"
            )))),
        }
    })
    .filter_map(std::future::ready);
    chunks.chain(outcome)
}

/// Writes tar entries into the stream of [`spawn_archive`].
pub(super) struct ArchiveWriter {
    sender: mpsc::Sender<Bytes>,
    /// Frames headers, padding and small files into its buffer, which goes out ahead of the
    /// next blob chunk (or at the end).
    framing: tar::Builder<Vec<u8>>,
    buffers: ChunkBuffers,
}

impl ArchiveWriter {
    fn new(sender: mpsc::Sender<Bytes>) -> ArchiveWriter {
        ArchiveWriter {
            sender,
            framing: tar::Builder::new(Vec::new()),
            buffers: ChunkBuffers::default(),
        }
    }

    pub fn directory(&mut self, path: &str) -> Result<(), EngineError> {
        let mut header = tar::Header::new_ustar();
        header.set_size(0);
        header.set_mode(0o755);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Directory);
        self.framing
            .append_data(&mut header, path, io::empty())
            .map_err(framing_error)
    }

    /// A small file, held in memory.
    pub fn file(&mut self, path: &str, bytes: &[u8]) -> Result<(), EngineError> {
        self.framing
            .append_data(&mut file_header(bytes.len() as u64), path, bytes)
            .map_err(framing_error)
    }

    /// The stored blob `digest` under `path`, verified as it is read; its last chunk goes out
    /// only once the whole blob proved to be `digest`.
    pub fn blob(&mut self, store: &Store, digest: &Digest, path: &str) -> Result<(), EngineError> {
        let mut blob = store.open_verified_blob(digest)?;
        let size = blob.size();
        // With an empty reader the builder writes the header (after a long-name entry when the
        // path needs one) and nothing else: the contents follow as chunks.
        self.framing
            .append_data(&mut file_header(size), path, io::empty())
            .map_err(framing_error)?;
        let read_error = |e: io::Error| EngineError::io(format!("reading blob {digest}"), e);
        let mut left = size;
        while left > 0 {
            let mut chunk = self.buffers.take();
            let len = usize::try_from(left).map_or(CHUNK, |left| left.min(CHUNK));
            blob.read_exact(&mut chunk.buffer[..len])
                .map_err(read_error)?;
            chunk.len = len;
            left -= len as u64;
            if left == 0 {
                verify_end(&mut blob, digest).map_err(read_error)?;
            }
            self.flush_framing()?;
            self.send(Bytes::from_owner(chunk))?;
        }
        self.pad(size);
        Ok(())
    }

    /// The end-of-archive blocks and whatever framing is still held.
    fn finish(mut self) -> Result<(), EngineError> {
        self.framing.finish().map_err(framing_error)?;
        self.flush_framing()
    }

    /// Zeros after `size` bytes of contents, up to the next 512-byte block.
    fn pad(&mut self, size: u64) {
        let block = 512;
        let partial = (size % block) as usize;
        if partial > 0 {
            let framing = self.framing.get_mut();
            framing.resize(framing.len() + 512 - partial, 0);
        }
    }

    fn flush_framing(&mut self) -> Result<(), EngineError> {
        let framing = std::mem::take(self.framing.get_mut());
        if framing.is_empty() {
            return Ok(());
        }
        self.send(Bytes::from(framing))
    }

    fn send(&self, bytes: Bytes) -> Result<(), EngineError> {
        self.sender
            .blocking_send(bytes)
            .map_err(|_| EngineError::Internal("the client stopped reading the archive".to_owned()))
    }
}

/// After the last of a blob's bytes: the read that reaches the end, which is where
/// [`VerifiedBlob`] decides whether the bytes are the blob (an error if not), and which must
/// find nothing more.
fn verify_end(blob: &mut VerifiedBlob, digest: &Digest) -> io::Result<()> {
    match blob.read(&mut [0u8; 1])? {
        0 => Ok(()),
        _ => Err(io::Error::other(format!(
            "blob {digest} grew while it was being saved"
        ))),
    }
}

fn file_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header
}

fn framing_error(error: io::Error) -> EngineError {
    EngineError::io("writing the image archive", error)
}

/// Chunk buffers come back here when the response has written them, so that a save allocates
/// (and the kernel zeroes) only the few that are in flight at once.
#[derive(Clone, Default)]
struct ChunkBuffers(Arc<Mutex<Vec<Vec<u8>>>>);

impl ChunkBuffers {
    fn take(&self) -> Chunk {
        let buffer = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_else(|| vec![0; CHUNK]);
        Chunk {
            buffer,
            len: 0,
            home: self.clone(),
        }
    }
}

/// The first `len` bytes of a buffer, returned to its [`ChunkBuffers`] when dropped.
struct Chunk {
    buffer: Vec<u8>,
    len: usize,
    home: ChunkBuffers,
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        &self.buffer[..self.len]
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.buffer);
        self.home
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(buffer);
    }
}
