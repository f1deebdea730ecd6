//! Request bodies read from blob files.
//!
//! The bytes are handed to hyper as read-only memory maps instead of being read into buffers:
//! profiling a 1 GiB push showed a third of hoistd's CPU in the read path (the kernel's copy into
//! our buffer, tokio's second copy between its own buffer and ours, and a trip to the blocking
//! pool per 512 KiB read). Only the copy into the socket remains.
//!
//! Files are mapped a window at a time, on the blocking pool with the pages pre-faulted, so a
//! cold disk never stalls the async workers; each window is unmapped once hyper has written it,
//! which keeps the file's pages out of the daemon's resident memory.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::TryStreamExt;

use crate::RegistryError;
use crate::upload::{Progress, ReadFailure};

/// How much of a file is mapped at once. Measured on a 1 GiB push: 4 MiB windows cost about
/// 30% less CPU than 512 KiB reads did, and five uploads' windows keep well under 64 MiB of
/// resident memory (2 MiB saved less CPU; buffered reads of the same size saved none).
const WINDOW: u64 = 4 * 1024 * 1024;

/// What hyper is handed at a time: a zero-copy slice of the current window. Small enough that
/// progress (counted as hyper takes each slice) moves smoothly.
const SLICE: usize = 256 * 1024;

/// `len` bytes of the file at `path` from `offset`: a request body, whichever way it is sent.
pub(crate) struct FileRange<'a> {
    pub(crate) path: &'a Path,
    pub(crate) offset: u64,
    pub(crate) len: u64,
    /// Grows as the bytes are taken for sending.
    pub(crate) progress: &'a Progress,
    /// Where a failed read of the file is kept, since hyper reports it only as a body error.
    pub(crate) read_failure: &'a ReadFailure,
}

/// The range as a reqwest body. `progress` grows as hyper takes each slice, which socket
/// backpressure keeps close to what was sent. The file must not change while the body is in
/// use (see [`crate::BlobSource`]).
pub(crate) async fn file_body(range: &FileRange<'_>) -> Result<reqwest::Body, RegistryError> {
    let FileRange {
        path,
        offset,
        len,
        progress,
        read_failure,
    } = *range;
    let local = |source| RegistryError::LocalIo {
        path: path.to_owned(),
        source,
    };
    let file = Arc::new(
        tokio::fs::File::open(path)
            .await
            .map_err(local)?
            .into_std()
            .await,
    );
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

fn map(file: &File, offset: u64, len: u64) -> std::io::Result<Bytes> {
    let len = usize::try_from(len).map_err(std::io::Error::other)?;
    // SAFETY: mapping a file is unsound only if the file changes while mapped. Blob files are
    // immutable by contract (`BlobSource`): hoist's store writes each once through a temporary
    // file renamed into place, read-only, and removes it by unlinking, which leaves existing
    // mappings intact.
    let mapping = unsafe {
        memmap2::MmapOptions::new()
            .offset(offset)
            .len(len)
            .populate()
            .map(file)?
    };
    Ok(Bytes::from_owner(mapping))
}
