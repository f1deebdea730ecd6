//! Checking a layer as its bytes stream past: it must decompress (gzip, zstd or plain) to a
//! well-formed tar, read entry by entry to its end, and its DiffID (the sha256 of the
//! uncompressed bytes) comes out of the same pass. An uncompressed layer's DiffID is the digest
//! of the very bytes fed, which every feeder computes anyway (it stores them by digest): the
//! check does not hash them a second time, which for a 1 GiB plain layer is 0.6 CPU-s.
//!
//! The copy that feeds a [`LayerCheck`] hands it each chunk through a bounded channel; a thread of
//! the blocking pool decompresses, walks and hashes in parallel, so a layer costs one pass over
//! its bytes and memory bounded by the channel. A layer known to be small is kept and checked on
//! the caller's thread when it ends: for a few KiB, starting a thread and handing it the bytes
//! costs more than the check.

use std::io::{self, BufReader, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use hoist_oci::compression::{self, Compression};
use hoist_reference::Digest;
use sha2::{Digest as _, Sha256};

/// Chunks in flight between the copy and the checking thread.
const CHANNEL_CHUNKS: usize = 8;
/// Bytes gathered before they go to the checking thread: feeders pass what they read, often a
/// few dozen KiB of a request body at a time, and a thread wakeup per such piece (a futex round
/// trip each side, ~25,000 per GiB) cost more than checking it.
const CHUNK_BYTES: usize = 256 * 1024;
/// Read buffer of the decompressors.
const DECODE_BUFFER_BYTES: usize = 256 * 1024;
/// Layers up to this size are checked on the caller's thread, from memory.
const INLINE_UP_TO: u64 = 256 * 1024;

/// What the check of a stored layer found: its DiffID, or why its content is not a usable layer.
pub(crate) type Unpacked = Result<Digest, NotALayer>;

/// A layer's DiffID as the check found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DiffId {
    /// The layer is an uncompressed tar: its DiffID is the digest of the bytes fed.
    OfContent,
    /// The digest of the decompressed tar.
    Decompressed(Digest),
}

impl DiffId {
    /// The DiffID, given the digest of the bytes that were fed to the check.
    pub fn given_content(self, content: &Digest) -> Digest {
        match self {
            DiffId::OfContent => content.clone(),
            DiffId::Decompressed(digest) => digest,
        }
    }
}

/// Why content does not unpack.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NotALayer {
    /// Its compressed stream is corrupt, or in a compression hoist does not read.
    #[error("{0}")]
    Compression(String),
    /// It decompresses, but not to a whole tar.
    #[error("{0}")]
    Tar(String),
}

/// A check in progress; feed it the layer's bytes as they are, then [`LayerCheck::finish`].
pub(crate) enum LayerCheck {
    /// On a thread of its own, fed through a channel.
    Threaded {
        chunks: Option<SyncSender<Vec<u8>>>,
        /// Fed bytes not yet sent, fewer than [`CHUNK_BYTES`].
        gathered: Vec<u8>,
        outcome: Receiver<Result<DiffId, NotALayer>>,
    },
    /// A small layer, kept to be checked at the end.
    Inline(Vec<u8>),
}

impl LayerCheck {
    /// Starts the check of a layer of `size` bytes: [`LayerCheck::start`], or for a small one
    /// nothing until [`LayerCheck::finish`].
    pub fn for_size(size: u64) -> LayerCheck {
        if size <= INLINE_UP_TO {
            // Bounded: `size` is at most INLINE_UP_TO.
            LayerCheck::Inline(Vec::with_capacity(size as usize))
        } else {
            LayerCheck::start()
        }
    }

    /// Starts the checking thread: on the blocking pool inside a runtime, else a thread of its own.
    pub fn start() -> LayerCheck {
        let (chunks, input) = sync_channel::<Vec<u8>>(CHANNEL_CHUNKS);
        let (report, outcome) = sync_channel(1);
        let work = move || {
            let found = check(ChannelReader::new(input));
            // The feeder may have given up (a failed load); nobody waits for the outcome then.
            let _ = report.send(found);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(work)),
            Err(_) => drop(std::thread::spawn(work)),
        }
        LayerCheck::Threaded {
            chunks: Some(chunks),
            gathered: Vec::with_capacity(CHUNK_BYTES),
            outcome,
        }
    }

    /// Hands the next bytes of the layer to the check. Once the check has reached its verdict
    /// (content that is not a tar is refused at once) the rest is not needed and is dropped.
    pub fn feed(&mut self, bytes: &[u8]) {
        match self {
            LayerCheck::Threaded {
                chunks, gathered, ..
            } => {
                if chunks.is_none() {
                    return;
                }
                gathered.extend_from_slice(bytes);
                if gathered.len() >= CHUNK_BYTES {
                    let full = std::mem::replace(gathered, Vec::with_capacity(CHUNK_BYTES));
                    send(chunks, full);
                }
            }
            // An archive entry yields at most its declared size, so this stays within the bound.
            LayerCheck::Inline(kept) => kept.extend_from_slice(bytes),
        }
    }

    /// Ends the input and waits for the verdict.
    pub fn finish(self) -> Result<DiffId, NotALayer> {
        match self {
            LayerCheck::Threaded {
                mut chunks,
                gathered,
                outcome,
            } => {
                if !gathered.is_empty() {
                    send(&mut chunks, gathered);
                }
                drop(chunks);
                outcome.recv().unwrap_or_else(|_| {
                    Err(NotALayer::Tar(
                        "the layer check stopped unexpectedly".into(),
                    ))
                })
            }
            LayerCheck::Inline(kept) => check(kept.as_slice()),
        }
    }
}

/// Sends `chunk` to the checking thread; once it has stopped reading, nothing more is sent.
fn send(chunks: &mut Option<SyncSender<Vec<u8>>>, chunk: Vec<u8>) {
    if let Some(sender) = chunks
        && sender.send(chunk).is_err()
    {
        *chunks = None;
    }
}

/// Decompresses `input`, walks its tar entries to the end of the archive, and hashes every
/// decompressed byte, trailing padding included.
fn check(input: impl Read) -> Result<DiffId, NotALayer> {
    let (compression, input) = compression::detect(input)
        .map_err(|e| NotALayer::Compression(format!("reading it failed: {e}")))?;
    let input = BufReader::with_capacity(DECODE_BUFFER_BYTES, input);
    let decoded: Box<dyn Read> = match compression {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(input).map_err(|e| {
                NotALayer::Compression(format!("its zstd stream is unreadable: {e}"))
            })?,
        ),
        Compression::Uncompressed => Box::new(input),
        Compression::Bzip2 | Compression::Xz => {
            return Err(NotALayer::Compression(format!(
                "it is {}-compressed, which hoist does not read",
                if compression == Compression::Xz {
                    "xz"
                } else {
                    "bzip2"
                }
            )));
        }
    };
    let mut archive = tar::Archive::new(HashingReader {
        inner: decoded,
        hash: (compression != Compression::Uncompressed).then(Sha256::new),
        failed: false,
    });
    let walked = walk(&mut archive);
    let mut rest = archive.into_inner();
    walked
        .and_then(|()| io::copy(&mut rest, &mut io::sink()).map(drop))
        .map_err(|e| describe(compression, rest.failed, &e))?;
    Ok(match rest.hash {
        Some(hash) => DiffId::Decompressed(Digest::sha256_from_bytes(&hash.finalize().into())),
        None => DiffId::OfContent,
    })
}

/// Reads every entry's header and content; the tar reader refuses a bad header checksum and an
/// entry cut short. An input that ends on an entry boundary ends the archive, as Go's
/// `archive/tar` (which moby unpacks with) takes it.
fn walk(archive: &mut tar::Archive<impl Read>) -> io::Result<()> {
    for entry in archive.entries()? {
        let mut entry = entry?;
        let declared = entry.size();
        let read = io::copy(&mut entry, &mut io::sink())?;
        if read < declared {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "unexpected EOF inside an entry",
            ));
        }
    }
    Ok(())
}

/// `decoding_failed`: the error came from the decompressor, not from the tar reader.
fn describe(compression: Compression, decoding_failed: bool, error: &io::Error) -> NotALayer {
    let stream = match compression {
        Compression::Gzip => "gzip ",
        Compression::Zstd => "zstd ",
        _ => "",
    };
    if decoding_failed {
        return NotALayer::Compression(format!("its {stream}stream is corrupt: {error}"));
    }
    if error.kind() == io::ErrorKind::UnexpectedEof {
        return NotALayer::Tar(format!("its {stream}tar is truncated: unexpected EOF"));
    }
    // The tar reader quotes the header bytes it could not read: keep the message one line.
    NotALayer::Tar(format!(
        "it is not a well-formed {stream}tar: {}",
        error.to_string().escape_debug()
    ))
}

/// The receiving end of the feed as a reader; it ends when the feeder is done or gone.
struct ChannelReader {
    chunks: Receiver<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
}

impl ChannelReader {
    fn new(chunks: Receiver<Vec<u8>>) -> ChannelReader {
        ChannelReader {
            chunks,
            current: Vec::new(),
            at: 0,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            match self.chunks.recv() {
                Ok(chunk) => {
                    self.current = chunk;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The decompressed stream, hashed (unless it is the content itself) as the tar reader reads
/// it; remembers that it failed, so that a corrupt stream is told from a bad tar.
struct HashingReader<R> {
    inner: R,
    hash: Option<Sha256>,
    failed: bool,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).inspect_err(|e| {
            self.failed |= e.kind() != io::ErrorKind::Interrupted;
        })?;
        if let Some(hash) = &mut self.hash {
            hash.update(&buf[..n]);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn tar_of(files: &[(&str, usize)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, size) in files {
            let mut header = tar::Header::new_ustar();
            header.set_size(*size as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, name, &vec![b'x'; *size][..])
                .unwrap();
        }
        builder.into_inner().unwrap()
    }

    /// The verdict of the threaded check, after asserting that the inline check of a small
    /// layer reaches the same one; the DiffID as a feeder that hashed `bytes` takes it.
    fn checked(bytes: &[u8]) -> Unpacked {
        let run = |mut check: LayerCheck| {
            for chunk in bytes.chunks(1000) {
                check.feed(chunk);
            }
            check.finish()
        };
        let threaded = run(LayerCheck::start());
        let inline = LayerCheck::for_size(bytes.len() as u64);
        assert!(matches!(inline, LayerCheck::Inline(_)));
        assert_eq!(run(inline), threaded, "inline and threaded checks agree");
        threaded.map(|id| id.given_content(&sha(bytes)))
    }

    fn sha(bytes: &[u8]) -> Digest {
        Digest::sha256_from_bytes(&Sha256::digest(bytes).into())
    }

    #[test]
    fn only_compressed_layers_are_hashed_by_the_check() {
        let tar = tar_of(&[("a", 3000)]);
        let mut check = LayerCheck::start();
        check.feed(&tar);
        assert_eq!(check.finish(), Ok(DiffId::OfContent));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let mut check = LayerCheck::start();
        check.feed(&gz.finish().unwrap());
        assert_eq!(check.finish(), Ok(DiffId::Decompressed(sha(&tar))));
    }

    #[test]
    fn plain_gzip_and_zstd_tars_give_their_diff_id() {
        let tar = tar_of(&[("a", 3000), ("b/c", 10)]);
        assert_eq!(checked(&tar), Ok(sha(&tar)));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        assert_eq!(checked(&gz.finish().unwrap()), Ok(sha(&tar)));
        let zst = zstd::encode_all(&tar[..], 3).unwrap();
        assert_eq!(checked(&zst), Ok(sha(&tar)));
        // Go's archive/tar takes an empty stream as an empty archive.
        assert_eq!(checked(b""), Ok(sha(b"")));
    }

    #[test]
    fn content_that_is_not_a_whole_tar_is_refused() {
        let tar = tar_of(&[("a", 3000)]);
        let tar_fault = |bytes: &[u8]| match checked(bytes) {
            Err(NotALayer::Tar(reason)) => reason,
            other => panic!("not refused as a tar: {other:?}"),
        };
        assert!(tar_fault(&tar[..1200]).contains("truncated"));
        assert!(tar_fault(&[0x5au8; 4096]).contains("not a well-formed tar"));
        assert!(tar_fault(br#"{"_type":"https://in-toto.io/Statement/v0.1"}"#).contains("tar"));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&[7u8; 5000]).unwrap();
        let gz = gz.finish().unwrap();
        assert!(tar_fault(&gz).contains("gzip tar"));
        let corrupt = [0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff, 0xa5, 0xa5, 0xa5];
        assert!(matches!(checked(&corrupt), Err(NotALayer::Compression(_))));
    }

    #[test]
    fn a_feeder_that_outlives_the_verdict_is_not_blocked() {
        let mut check = LayerCheck::start();
        for _ in 0..1000 {
            check.feed(&[0x5au8; 4096]);
        }
        assert!(check.finish().is_err());
    }
}
