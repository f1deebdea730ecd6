//! Request bodies read from blob files, for registries the sendfile path does not serve.
//!
//! Large ranges are handed to hyper as read-only memory maps instead of being read into
//! buffers, so the only copy left is the one into the socket (over TLS, the one into rustls's
//! records). Files are mapped a window at a time, on the blocking pool with the pages
//! pre-faulted, so a cold disk never stalls the async workers; each window is unmapped once
//! hyper has written it, which keeps the file's pages out of the daemon's resident memory.
//!
//! A range of one window or less is read instead: mapping and unmapping a blob (page-table work
//! and a TLB flush on every runtime thread) cost more than copying its bytes; for larger blobs,
//! reading the windows was no cheaper, over TLS either. It is read on the async worker itself when the kernel can answer from its caches without
//! waiting for the disk (a pushed blob was usually just written or read), since the trip to the
//! blocking pool (two thread wakeups) costs more than the read; otherwise it is opened and read
//! in one trip there. Either way into a buffer that is not zeroed first.

use std::fs::File;
use std::os::fd::AsRawFd;
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
    if len <= WINDOW {
        let bytes = match read_cached(source, offset, len) {
            Some(bytes) => bytes,
            None => {
                let source_file = source.clone();
                tokio::task::spawn_blocking(move || read_range(&source_file, offset, len))
                    .await
                    .map_err(|e| source.read_error(std::io::Error::other(e)))?
                    .map_err(|e| source.read_error(e))?
            }
        };
        // Handed over a slice at a time, counted as hyper takes each, as a window's are.
        let progress = progress.clone();
        let body = futures_util::stream::unfold(bytes, move |mut rest| {
            let progress = progress.clone();
            async move {
                if rest.is_empty() {
                    return None;
                }
                let slice = rest.split_to(rest.len().min(SLICE));
                progress.add(slice.len() as u64);
                Some((Ok::<_, std::io::Error>(slice), rest))
            }
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
    read_exact(&file, offset, len).map(Bytes::from)
}

/// [`read_range`] without blocking: `None` when the kernel would wait for the disk (a path
/// component or page not cached), cannot promise not to (a kernel before 5.12, a filesystem
/// without non-blocking reads), or anything else goes wrong, a length that is not the blob's
/// included; [`read_range`] then does the read and reports what failed.
fn read_cached(source: &BlobSource, offset: u64, len: u64) -> Option<Bytes> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let file = File::from(
        rustix::fs::openat2(
            rustix::fs::CWD,
            source.path(),
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::CACHED,
        )
        .ok()?,
    );
    source.check_length(&file).ok()?;
    let len = usize::try_from(len).ok()?;
    let mut bytes = Vec::with_capacity(len);
    read_into_spare(&file, &mut bytes, offset, len, libc::RWF_NOWAIT).ok()?;
    // Short when only part of the range is cached.
    (bytes.len() == len).then(|| Bytes::from(bytes))
}

/// Reads `len` bytes of `file` from `offset` into a new buffer; an end of file before `len`
/// is an error.
fn read_exact(file: &File, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    let len = usize::try_from(len).map_err(std::io::Error::other)?;
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        match read_into_spare(file, &mut bytes, offset, len, 0) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(bytes)
}

/// One `preadv2(2)` with `flags` of what `bytes` lacks of `len` bytes, into its spare capacity;
/// `bytes` grows by what was read (`offset` is where `bytes` starts in the file). The buffer is
/// not zeroed first: zeroing a window costs as much as a tenth of a small blob's push.
fn read_into_spare(
    file: &File,
    bytes: &mut Vec<u8>,
    offset: u64,
    len: usize,
    flags: libc::c_int,
) -> std::io::Result<usize> {
    let at = libc::off_t::try_from(offset + bytes.len() as u64).map_err(std::io::Error::other)?;
    let wanted = len.saturating_sub(bytes.len());
    let spare = bytes.spare_capacity_mut();
    let iov = libc::iovec {
        iov_base: spare.as_mut_ptr().cast(),
        iov_len: spare.len().min(wanted),
    };
    // SAFETY: the descriptor is open (borrowed from `file`), and the one iovec covers the
    // vector's spare capacity, which the vector owns and nothing else refers to; the kernel
    // writes at most `iov_len` bytes there.
    let read = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, at, flags) };
    let read = usize::try_from(read).map_err(|_| std::io::Error::last_os_error())?;
    // SAFETY: the kernel initialised the `read` bytes after the vector's length, within its
    // capacity.
    unsafe { bytes.set_len(bytes.len() + read) };
    Ok(read)
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

#[cfg(test)]
mod tests {
    use super::*;
    use hoist_reference::Digest;

    fn source(path: &std::path::Path, size: u64) -> BlobSource {
        let digest = Digest::parse(&format!("sha256:{}", "a".repeat(64))).unwrap();
        // SAFETY: the test's own file, not modified while the source is used.
        #[allow(unsafe_code)]
        unsafe {
            BlobSource::new(path.to_owned(), digest, size)
        }
    }

    /// A file of `len` patterned bytes in a new directory (kept alive by the first value).
    fn patterned_file(len: u32) -> (tempfile::TempDir, std::path::PathBuf, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        (dir, path, bytes)
    }

    #[test]
    fn a_cached_range_is_read_without_the_blocking_pool() {
        let (_dir, path, bytes) = patterned_file(4096);
        let blob = source(&path, bytes.len() as u64);
        // Just written, so in the page cache: the kernel answers without waiting.
        assert_eq!(read_cached(&blob, 0, 4096).as_deref(), Some(&bytes[..]));
        assert_eq!(
            read_cached(&blob, 100, 50).as_deref(),
            Some(&bytes[100..150])
        );
    }

    #[test]
    fn a_read_gives_exactly_the_range_and_an_early_end_of_file_is_an_error() {
        let (_dir, path, bytes) = patterned_file(3_000_000);
        let file = File::open(&path).unwrap();
        assert_eq!(read_exact(&file, 0, 3_000_000).unwrap(), bytes);
        assert_eq!(
            read_exact(&file, 1_000_001, 65_536).unwrap(),
            &bytes[1_000_001..1_065_537]
        );
        assert_eq!(read_exact(&file, 5, 0).unwrap(), Vec::<u8>::new());
        let error = read_exact(&file, 2_999_990, 11).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn what_the_cached_read_cannot_vouch_for_is_left_to_the_blocking_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        std::fs::write(&path, [1u8; 100]).unwrap();
        // A file whose length is not the blob's, a range past its end, a missing file.
        assert_eq!(read_cached(&source(&path, 99), 0, 99), None);
        assert_eq!(read_cached(&source(&path, 100), 90, 20), None);
        assert_eq!(
            read_cached(&source(&dir.path().join("gone"), 100), 0, 100),
            None
        );
        // Which reports the length.
        let error = read_range(&source(&path, 99), 0, 99).unwrap_err();
        assert!(
            error.to_string().contains("file holds 100 bytes"),
            "{error}"
        );
    }
}
