//! The archive as the response body takes it: a stream of byte chunks produced on the blocking
//! pool and handed over through a short queue, so that reading and checking the next chunks
//! overlaps with the socket taking this one.
//!
//! Every chunk but the last is [`CHUNK`] bytes and starts at a multiple of [`CHUNK`] in the
//! archive, wherever tar's entries begin and end. A client that ends a read at a chunk's end
//! (Go's `net/http`, so the docker CLI, whose `docker save -o` copies 32 KiB at a time) then
//! writes its file at offsets that stay 32 KiB-aligned, which is what lets the page cache give
//! each write one large folio; chunks cut at the entries' boundaries instead leave every later
//! write straddling folios, split into four smaller ones, and cost the docker CLI about 40% more
//! CPU.
//!
//! Tar headers, padding and the small metadata files are framed by the `tar` crate and copied
//! into the chunk being filled; blob contents are read straight into it. Chunk buffers come back
//! once the response has written them, so each byte is copied once out of the page cache and once
//! into the socket, and no buffer is allocated per chunk.
//!
//! Each blob is checked as it is read ([`VerifiedBlob`]) and the chunk holding its last bytes is
//! handed over only once the whole blob matched: a blob damaged on disk never arrives whole, and
//! the stream ends with the error there, before the archive's end.

use std::io::{self, Read};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use hoist_reference::Digest;
use hoist_store::{Store, VerifiedBlob};
use tokio::sync::mpsc;

use crate::EngineError;

/// The size of every chunk of the response but the last: a GiB is a thousand reads and checksum
/// calls rather than the hundred thousand of an 8 KiB copy loop, and a multiple of the 32 KiB
/// that clients copy at a time (see the module's documentation).
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
    /// Frames headers, padding and small files into its buffer, which is moved into `chunk`
    /// before the next blob's contents (or at the end).
    framing: tar::Builder<Vec<u8>>,
    buffers: ChunkBuffers,
    /// The chunk being filled; it goes out once full, or at the end.
    chunk: Chunk,
}

impl ArchiveWriter {
    fn new(sender: mpsc::Sender<Bytes>) -> ArchiveWriter {
        let buffers = ChunkBuffers::default();
        ArchiveWriter {
            sender,
            framing: tar::Builder::new(Vec::new()),
            chunk: buffers.take(),
            buffers,
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

    /// The stored blob `digest` under `path`, verified as it is read; the chunk with its last
    /// bytes goes out only once the whole blob proved to be `digest`.
    pub fn blob(&mut self, store: &Store, digest: &Digest, path: &str) -> Result<(), EngineError> {
        let mut blob = store.open_verified_blob(digest)?;
        let size = blob.size();
        // With an empty reader the builder writes the header (after a long-name entry when the
        // path needs one) and nothing else: the contents follow, read into the chunks.
        self.framing
            .append_data(&mut file_header(size), path, io::empty())
            .map_err(framing_error)?;
        self.put_framing()?;
        let read_error = |e: io::Error| EngineError::io(format!("reading blob {digest}"), e);
        let mut left = size;
        while left > 0 {
            let space = self.chunk.space_mut();
            let len = usize::try_from(left).map_or(space.len(), |left| left.min(space.len()));
            blob.read_exact(&mut space[..len]).map_err(read_error)?;
            left -= len as u64;
            if left == 0 {
                verify_end(&mut blob, digest).map_err(read_error)?;
            }
            self.filled(len)?;
        }
        self.pad(size);
        Ok(())
    }

    /// The end-of-archive blocks and whatever is still held.
    fn finish(mut self) -> Result<(), EngineError> {
        self.framing.finish().map_err(framing_error)?;
        self.put_framing()?;
        send(&self.sender, self.chunk)
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

    /// Moves what the framing holds into the chunks, sending each that fills.
    fn put_framing(&mut self) -> Result<(), EngineError> {
        let mut framing = std::mem::take(self.framing.get_mut());
        let mut rest = framing.as_slice();
        while !rest.is_empty() {
            let space = self.chunk.space_mut();
            let len = rest.len().min(space.len());
            space[..len].copy_from_slice(&rest[..len]);
            rest = &rest[len..];
            self.filled(len)?;
        }
        framing.clear();
        // Back into the builder, so that the next entry's header reuses the allocation.
        *self.framing.get_mut() = framing;
        Ok(())
    }

    /// Counts `len` more bytes of the chunk as filled; a chunk that is now full goes to the
    /// response and the next one is started.
    fn filled(&mut self, len: usize) -> Result<(), EngineError> {
        self.chunk.len += len;
        if self.chunk.len < self.chunk.buffer.len() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.chunk, self.buffers.take());
        send(&self.sender, full)
    }
}

/// Hands `chunk` to the response, unless it is empty.
fn send(sender: &mpsc::Sender<Bytes>, chunk: Chunk) -> Result<(), EngineError> {
    if chunk.len == 0 {
        return Ok(());
    }
    sender
        .blocking_send(Bytes::from_owner(chunk))
        .map_err(|_| EngineError::Internal("the client stopped reading the archive".to_owned()))
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

impl Chunk {
    /// The part of the buffer not filled yet.
    fn space_mut(&mut self) -> &mut [u8] {
        &mut self.buffer[self.len..]
    }
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

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[tokio::test]
    async fn every_chunk_but_the_last_is_whole_wherever_the_entries_end() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let lease = store.lease();
        // Sizes that end entries off any chunk boundary: a blob over a chunk and a half, a small
        // one, a file between them.
        let big: Vec<u8> = (0..CHUNK + CHUNK / 2 + 333)
            .map(|i| (i % 251) as u8)
            .collect();
        let small = vec![9u8; 700];
        let (big_digest, _) = store.put_blob(&lease, &big).unwrap();
        let (small_digest, _) = store.put_blob(&lease, &small).unwrap();

        let archive = {
            let (store, big_digest, small_digest) =
                (store.clone(), big_digest.clone(), small_digest.clone());
            spawn_archive(move |archive| {
                archive.directory("blobs/")?;
                archive.blob(&store, &big_digest, "blobs/big")?;
                archive.file("between.json", b"{\"between\":true}")?;
                archive.blob(&store, &small_digest, "blobs/small")?;
                archive.blob(&store, &big_digest, "blobs/big-again")
            })
        };
        let chunks: Vec<Bytes> = archive.map(Result::unwrap).collect().await;

        let (last, whole) = chunks.split_last().unwrap();
        let sizes: Vec<usize> = chunks.iter().map(Bytes::len).collect();
        assert!(
            whole.iter().all(|c| c.len() == CHUNK),
            "chunk sizes {sizes:?}"
        );
        assert!(
            !last.is_empty() && last.len() <= CHUNK,
            "chunk sizes {sizes:?}"
        );
        let mut entries = Vec::new();
        let bytes = chunks.concat();
        for entry in tar::Archive::new(&bytes[..]).entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            entries.push((entry.path().unwrap().display().to_string(), content));
        }
        let expected: Vec<(String, Vec<u8>)> = vec![
            ("blobs/".into(), vec![]),
            ("blobs/big".into(), big.clone()),
            ("between.json".into(), b"{\"between\":true}".to_vec()),
            ("blobs/small".into(), small),
            ("blobs/big-again".into(), big),
        ];
        assert_eq!(entries, expected);
        drop(lease);
    }
}
