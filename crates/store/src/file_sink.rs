//! The bytes of a blob's temp file, written in order: gathered into a buffer so small writes
//! (tar entries, HTTP frames) cost one syscall per MiB, the first [`LARGE_FROM`] bytes through
//! the page cache with their writeback started as they pile up, and everything after straight
//! to the disk (`O_DIRECT`) by a thread of the blob's own while the caller fills the next buffer.
//!
//! A blob is written once and must be durable before anyone reads it. Through the page cache
//! that costs a copy into fresh cache pages and then their writeback (delayed allocation, I/O
//! set up page by page) for pages nothing is about to read; a direct write hands the buffer to
//! the disk and costs neither, only the copy into the buffer. A direct write returns once the
//! disk has the bytes, so the blob's thread does the waiting and the caller goes on hashing.
//! Blobs under [`LARGE_FROM`] (most layers of a many-layer load, configs, manifests) stay in the
//! page cache: they are made durable in batches by one `syncfs`, where a disk write each would
//! cost more than it saves.
//!
//! Direct writes are used where the filesystem reports the alignment they need (`statx`'s
//! `STATX_DIOALIGN`, Linux 6.1) and the buffer meets it: local disk filesystems. The others
//! (tmpfs, network and FUSE filesystems, older kernels) keep the page cache, which there is the
//! file itself or what makes writes fast. Where `O_DIRECT` is refused all the same (when it is
//! switched on, or a write for its alignment) the rest of the file goes through the page cache.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use tempfile::NamedTempFile;

/// The size of each write to the file.
const BUFFER_SIZE: usize = 1024 * 1024;

/// Bytes accepted but perhaps not yet in the file: the buffer being filled and the one being
/// written.
pub(crate) const UNWRITTEN_MAX: usize = 2 * BUFFER_SIZE;

/// Where a blob starts to count as large: its bytes from here on go straight to the disk, and
/// the buffered bytes before it have their writeback started every this many bytes, so the
/// final fsync waits for the last few MiB instead of the whole blob.
pub(crate) const LARGE_FROM: u64 = 8 * 1024 * 1024;

/// The alignment `O_DIRECT` asks of a write's memory, file offset and length: at most the
/// largest logical block size of a disk. Every full buffer is a multiple of it.
const DIRECT_ALIGN: usize = 4096;

/// The sequential writer of one temp file.
pub(crate) struct FileSink {
    file: NamedTempFile,
    buffer: AlignedBuffer,
    /// Bytes handed to the file (or to the direct writer).
    in_file: u64,
    /// Bytes of the file whose writeback has been started.
    writeback_started: u64,
    mode: Mode,
}

enum Mode {
    /// Through the page cache; switches to `Direct` at [`LARGE_FROM`].
    Buffered,
    /// Full buffers go to the direct writer.
    Direct(DirectWriter),
    /// Through the page cache for good: the filesystem does not take direct writes, or the
    /// file is in its last piece.
    BufferedOnly,
}

impl FileSink {
    pub(crate) fn new(file: NamedTempFile) -> FileSink {
        FileSink {
            file,
            buffer: AlignedBuffer::new(),
            in_file: 0,
            writeback_started: 0,
            mode: Mode::Buffered,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.file.path()
    }

    /// Accepts a prefix of `data` (all of it unless the buffer fills first); hands the buffer
    /// on first when it is full. Nothing is accepted when that fails.
    pub(crate) fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buffer.is_full() {
            self.hand_on_buffer()?;
        }
        Ok(self.buffer.fill_from(data))
    }

    /// Writes what is buffered, waits for the direct writer, and hands back the file with every
    /// byte in it (in the page cache or on the disk); the caller syncs it.
    pub(crate) fn finish(mut self) -> io::Result<NamedTempFile> {
        if let Mode::Direct(direct) = std::mem::replace(&mut self.mode, Mode::BufferedOnly) {
            direct.finish()?;
            // The last piece is seldom a whole number of blocks.
            set_direct(self.file.as_file(), false)?;
        }
        self.file
            .as_file()
            .write_all_at(self.buffer.bytes(), self.in_file)?;
        Ok(self.file)
    }

    fn hand_on_buffer(&mut self) -> io::Result<()> {
        if matches!(self.mode, Mode::Buffered) && self.in_file >= LARGE_FROM {
            self.start_writeback();
            self.mode = match takes_direct_writes(self.file.as_file()) {
                false => Mode::BufferedOnly,
                true => match DirectWriter::start(self.file.as_file()) {
                    Ok(direct) => Mode::Direct(direct),
                    Err(e) => {
                        tracing::debug!(error = %e, "blob written through the page cache: O_DIRECT refused");
                        Mode::BufferedOnly
                    }
                },
            };
        }
        let len = self.buffer.len() as u64;
        match &mut self.mode {
            Mode::Direct(direct) => {
                let full = std::mem::replace(&mut self.buffer, direct.take_free()?);
                direct.write(full, self.in_file)?;
                self.in_file += len;
            }
            Mode::Buffered | Mode::BufferedOnly => {
                self.file
                    .as_file()
                    .write_all_at(self.buffer.bytes(), self.in_file)?;
                self.in_file += len;
                self.buffer.clear();
                if self.in_file - self.writeback_started >= LARGE_FROM {
                    self.start_writeback();
                }
            }
        }
        Ok(())
    }

    /// Starts writing the file's bytes so far to disk, without waiting.
    fn start_writeback(&mut self) {
        start_writeback(
            self.file.as_file(),
            self.writeback_started,
            self.in_file - self.writeback_started,
        );
        self.writeback_started = self.in_file;
    }
}

/// A buffer whose bytes start at an address aligned for `O_DIRECT`, filled without being zeroed
/// first (only the padding before the aligned start is).
struct AlignedBuffer {
    /// Its capacity never changes, so the aligned region never moves.
    vec: Vec<u8>,
    start: usize,
}

impl AlignedBuffer {
    fn new() -> AlignedBuffer {
        let mut vec: Vec<u8> = Vec::with_capacity(BUFFER_SIZE + DIRECT_ALIGN);
        let start = vec.as_ptr().align_offset(DIRECT_ALIGN);
        vec.resize(start, 0);
        AlignedBuffer { vec, start }
    }

    fn len(&self) -> usize {
        self.vec.len() - self.start
    }

    fn is_full(&self) -> bool {
        self.len() == BUFFER_SIZE
    }

    fn bytes(&self) -> &[u8] {
        &self.vec[self.start..]
    }

    /// Copies in as much of `data` as fits; returns how much.
    fn fill_from(&mut self, data: &[u8]) -> usize {
        let take = (BUFFER_SIZE - self.len()).min(data.len());
        self.vec.extend_from_slice(&data[..take]);
        take
    }

    fn clear(&mut self) {
        self.vec.truncate(self.start);
    }
}

/// A thread writing full buffers with `O_DIRECT` at the offsets it is given, one at a time, and
/// handing each buffer back for refilling.
struct DirectWriter {
    full: SyncSender<(AlignedBuffer, u64)>,
    free: Receiver<AlignedBuffer>,
    /// A buffer not yet handed out: the writer works with two.
    spare: Option<AlignedBuffer>,
    /// Taken when joined.
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl DirectWriter {
    /// Starts the thread, on a descriptor of its own for `file`'s open file, and switches
    /// `O_DIRECT` on for that open file.
    fn start(file: &File) -> io::Result<DirectWriter> {
        let own = file.try_clone()?;
        let (full, full_rx) = sync_channel::<(AlignedBuffer, u64)>(1);
        let (free_tx, free) = sync_channel::<AlignedBuffer>(2);
        let thread = std::thread::Builder::new()
            .name("blob-write".into())
            .spawn(move || {
                for (mut buffer, offset) in full_rx {
                    write_direct(&own, buffer.bytes(), offset)?;
                    buffer.clear();
                    // The caller may have finished and stopped taking buffers back.
                    let _ = free_tx.send(buffer);
                }
                Ok(())
            })?;
        // Last, so that nothing failed after it; if it fails, dropping `full` ends the thread.
        set_direct(file, true)?;
        Ok(DirectWriter {
            full,
            free,
            spare: Some(AlignedBuffer::new()),
            thread: Some(thread),
        })
    }

    /// An empty buffer: the spare, or the one last written once it is.
    fn take_free(&mut self) -> io::Result<AlignedBuffer> {
        if let Some(spare) = self.spare.take() {
            return Ok(spare);
        }
        match self.free.recv() {
            Ok(buffer) => Ok(buffer),
            // The thread dropped its end by stopping on an error.
            Err(_) => Err(join(&mut self.thread).err().unwrap_or_else(stopped)),
        }
    }

    fn write(&mut self, buffer: AlignedBuffer, offset: u64) -> io::Result<()> {
        match self.full.send((buffer, offset)) {
            Ok(()) => Ok(()),
            Err(_) => Err(join(&mut self.thread).err().unwrap_or_else(stopped)),
        }
    }

    /// Waits for every handed buffer to be written; the thread's error if it stopped on one.
    fn finish(self) -> io::Result<()> {
        let DirectWriter {
            full, mut thread, ..
        } = self;
        // The thread ends once it has written what was handed to it.
        drop(full);
        join(&mut thread)
    }
}

/// Waits for the writer thread to end: what it ended with.
fn join(thread: &mut Option<JoinHandle<io::Result<()>>>) -> io::Result<()> {
    match thread.take().map(JoinHandle::join) {
        Some(Ok(result)) => result,
        Some(Err(_)) => Err(io::Error::other("the blob's writer thread panicked")),
        None => Err(stopped()),
    }
}

fn stopped() -> io::Error {
    io::Error::other("the blob's writer thread stopped")
}

/// Writes all of `bytes` at `offset` of a file whose `O_DIRECT` is on; where the filesystem
/// refuses a write for its alignment, switches it off and writes through the page cache.
fn write_direct(file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
    // A short write leaves an unaligned rest, refused the same way.
    match file.write_all_at(bytes, offset) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            tracing::debug!(error = %e, "blob written through the page cache: direct write refused");
            set_direct(file, false)?;
            file.write_all_at(bytes, offset)
        }
        result => result,
    }
}

/// Whether `file`'s filesystem reports direct I/O alignments that every full buffer meets.
fn takes_direct_writes(file: &File) -> bool {
    use rustix::fs::{AtFlags, StatxFlags, statx};
    match statx(file, c"", AtFlags::EMPTY_PATH, StatxFlags::DIOALIGN) {
        Ok(stat) => {
            let align = |a: u32| a != 0 && a as usize <= DIRECT_ALIGN;
            stat.stx_mask & StatxFlags::DIOALIGN.bits() != 0
                && align(stat.stx_dio_mem_align)
                && align(stat.stx_dio_offset_align)
        }
        Err(_) => false,
    }
}

/// Switches `O_DIRECT` on or off for `file`'s open file, shared by every descriptor of it.
fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: F_GETFL only reads the descriptor's flags; `file` keeps it open for the call.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = match on {
        true => flags | libc::O_DIRECT,
        false => flags & !libc::O_DIRECT,
    };
    // SAFETY: F_SETFL only sets the descriptor's status flags from the integer argument; `file`
    // keeps the descriptor open for the call.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Starts writing `len` bytes of `file` from `offset` to disk, without waiting. Advisory: a
/// failure here surfaces at the sync that makes the file durable.
pub(crate) fn start_writeback(file: &File, offset: u64, len: u64) {
    if len == 0 {
        return;
    }
    // SAFETY: sync_file_range only reads its integer arguments; `file` keeps the descriptor open
    // for the call.
    let _ = unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        )
    };
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// Whether the kernel has `O_DIRECT` on for `file`, from `/proc/self/fdinfo`.
    fn direct_in_kernel(file: &File) -> bool {
        let info =
            std::fs::read_to_string(format!("/proc/self/fdinfo/{}", file.as_raw_fd())).unwrap();
        let flags = info
            .lines()
            .find_map(|line| line.strip_prefix("flags:"))
            .unwrap();
        let flags = i32::from_str_radix(flags.trim(), 8).unwrap();
        flags & libc::O_DIRECT != 0
    }

    fn patterned(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    fn read_back(file: NamedTempFile) -> Vec<u8> {
        let mut bytes = Vec::new();
        File::open(file.path())
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        bytes
    }

    fn write_all(sink: &mut FileSink, bytes: &[u8], chunk: usize) {
        for mut piece in bytes.chunks(chunk) {
            while !piece.is_empty() {
                let n = sink.write(piece).unwrap();
                piece = &piece[n..];
            }
        }
    }

    #[test]
    fn bytes_past_the_large_mark_go_straight_to_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = patterned(LARGE_FROM as usize + 3 * BUFFER_SIZE + 4_321);
        let mut sink = FileSink::new(NamedTempFile::new_in(dir.path()).unwrap());
        assert!(
            takes_direct_writes(sink.file.as_file()),
            "the temp directory must be on a disk filesystem that reports its direct I/O alignment"
        );
        write_all(&mut sink, &bytes, 300_007);
        assert!(matches!(sink.mode, Mode::Direct(_)));
        assert!(direct_in_kernel(sink.file.as_file()));
        let file = sink.finish().unwrap();
        // The last piece, not a whole number of blocks, went through the page cache.
        assert!(!direct_in_kernel(file.as_file()));
        assert_eq!(read_back(file), bytes);
    }

    #[test]
    fn a_file_on_tmpfs_stays_in_the_page_cache() {
        let dir = tempfile::tempdir_in("/dev/shm").unwrap();
        let bytes = patterned(LARGE_FROM as usize + 2 * BUFFER_SIZE + 17);
        let mut sink = FileSink::new(NamedTempFile::new_in(dir.path()).unwrap());
        assert!(!takes_direct_writes(sink.file.as_file()));
        write_all(&mut sink, &bytes, 300_007);
        assert!(matches!(sink.mode, Mode::BufferedOnly));
        assert!(!direct_in_kernel(sink.file.as_file()));
        assert_eq!(read_back(sink.finish().unwrap()), bytes);
    }

    #[test]
    fn a_small_file_stays_in_the_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = patterned(LARGE_FROM as usize);
        let mut sink = FileSink::new(NamedTempFile::new_in(dir.path()).unwrap());
        write_all(&mut sink, &bytes, 65_537);
        assert!(matches!(sink.mode, Mode::Buffered));
        let file = sink.finish().unwrap();
        assert!(!direct_in_kernel(file.as_file()));
        assert_eq!(read_back(file), bytes);
    }

    #[test]
    fn a_direct_write_refused_for_its_alignment_goes_through_the_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let file = NamedTempFile::new_in(dir.path()).unwrap();
        set_direct(file.as_file(), true).unwrap();
        assert!(direct_in_kernel(file.as_file()));
        let bytes = patterned(1_000);
        write_direct(file.as_file(), &bytes, 0).unwrap();
        assert!(!direct_in_kernel(file.as_file()));
        assert_eq!(read_back(file), bytes);
    }

    #[test]
    fn the_writer_threads_own_error_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("read-only");
        std::fs::write(&path, b"").unwrap();
        let read_only = File::open(&path).unwrap();
        let mut direct = DirectWriter::start(&read_only).unwrap();
        let mut buffer = direct.take_free().unwrap();
        assert_eq!(buffer.fill_from(&patterned(BUFFER_SIZE)), BUFFER_SIZE);
        direct.write(buffer, 0).unwrap();
        // Surfaced where the caller next needs the thread: here, for a buffer to fill.
        let Err(error) = direct.take_free() else {
            panic!("a buffer came back from a thread that failed to write it");
        };
        assert_eq!(error.raw_os_error(), Some(libc::EBADF), "{error}");
        assert!(direct.finish().is_err());
    }
}
