//! Request bodies read from blob files, for registries the sendfile path does not serve.
//!
//! The bytes are handed to hyper as read-only memory maps instead of being read into buffers,
//! so the only copy left is the one into the socket.
//!
//! Files are mapped a window at a time, on the blocking pool with the pages pre-faulted, so a
//! cold disk never stalls the async workers; each window is unmapped once hyper has written it,
//! which keeps the file's pages out of the daemon's resident memory.
//!
//! A range of one slice or less is read instead, opened and read in one trip to the blocking
//! pool: for a small blob, mapping and unmapping (a TLB flush on every runtime thread) and the
//! separate trips to open and to map cost more than copying its bytes.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::TryStreamExt;

use super::range::{FileRange, Progress};
use super::source::BlobSource;
use crate::RegistryError;

/// How much of a file is mapped at once: large enough that mapping costs little per byte, small
/// enough that the windows of several concurrent uploads stay a few MiB of resident memory.
/// hyper may still hold slices of one window while the next is mapped, so an upload holds up to
/// two; 5 uploads of 1 GiB peaked at 41 MiB of hoistd's resident memory with 2 MiB windows,
/// 50-56 MiB with 4 MiB, for about the same CPU.
const WINDOW: u64 = 2 * 1024 * 1024;

/// What hyper is handed at a time: a zero-copy slice of the current window. Small enough that
/// progress (counted as hyper takes each slice) moves smoothly.
const SLICE: usize = 256 * 1024;

/// The range as a reqwest body. `progress` grows as hyper takes each slice, which socket
/// backpressure keeps close to what was sent.
pub(crate) async fn file_body(range: &FileRange<'_>) -> Result<reqwest::Body, RegistryError> {
    let FileRange {
        source,
        offset,
        len,
        progress,
        read_failure,
    } = *range;
    if len <= SLICE as u64 {
        let source_file = source.clone();
        let bytes = tokio::task::spawn_blocking(move || read_range(&source_file, offset, len))
            .await
            .map_err(|e| source.read_error(std::io::Error::other(e)))?
            .map_err(|e| source.read_error(e))?;
        let progress = progress.clone();
        // Counted as hyper takes it, as a window's slices are.
        let body = futures_util::stream::once(async move {
            progress.add(bytes.len() as u64);
            Ok::<_, std::io::Error>(bytes)
        });
        return Ok(reqwest::Body::wrap_stream(body));
    }
    let file = Arc::new(source.open().await?);
    let windows = Windows {
        file,
        next: offset,
        end: offset + len,
        current: Bytes::new(),
        progress: progress.clone(),
    };
    let read_failure = read_failure.clone();
    let stream = futures_util::stream::try_unfold(windows, next_slice)
        .inspect_err(move |e| read_failure.record(e));
    Ok(reqwest::Body::wrap_stream(stream))
}

/// The file of a [`super::BlobSource`], mapped a window at a time.
struct Windows {
    file: Arc<File>,
    /// Where the next window starts.
    next: u64,
    end: u64,
    /// What is left of the mapped window.
    current: Bytes,
    progress: Progress,
}

async fn next_slice(mut windows: Windows) -> std::io::Result<Option<(Bytes, Windows)>> {
    if windows.current.is_empty() {
        if windows.next >= windows.end {
            return Ok(None);
        }
        let (offset, len) = (windows.next, (windows.end - windows.next).min(WINDOW));
        let file = Arc::clone(&windows.file);
        windows.current = tokio::task::spawn_blocking(move || map(&file, offset, len))
            .await
            .map_err(std::io::Error::other)??;
        windows.next += len;
    }
    let slice = windows.current.split_to(windows.current.len().min(SLICE));
    windows.progress.add(slice.len() as u64);
    Ok(Some((slice, windows)))
}

/// Reads `len` bytes of the source's file from `offset`, within the blob's size.
fn read_range(source: &BlobSource, offset: u64, len: u64) -> std::io::Result<Bytes> {
    let file = source.open_checked()?;
    let mut bytes = vec![0; usize::try_from(len).map_err(std::io::Error::other)?];
    file.read_exact_at(&mut bytes, offset)?;
    Ok(Bytes::from(bytes))
}

/// Maps `len` bytes of a blob source's file from `offset`, within the blob's size.
fn map(file: &File, offset: u64, len: u64) -> std::io::Result<Bytes> {
    let len = usize::try_from(len).map_err(std::io::Error::other)?;
    // SAFETY: a file mapping is sound while the file neither changes nor shrinks. `file` is the
    // file of a `BlobSource`, whose constructor's contract is that it is never modified or
    // truncated while hoist may read it (unlinking or replacing it leaves this mapping intact),
    // and the window lies within the blob's size, which `open_checked` found to be the file's
    // length when it opened it.
    let mapping = unsafe {
        memmap2::MmapOptions::new()
            .offset(offset)
            .len(len)
            .populate()
            .map(file)?
    };
    Ok(Bytes::from_owner(mapping))
}
