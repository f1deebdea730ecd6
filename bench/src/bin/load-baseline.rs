//! The `docker load` baseline: one pass over an image archive that hashes every blob with `sha2`
//! and writes it to disk, durable before it gets its final name, as a store that verifies
//! digests and never shows a blob that is not durable must at least do.
//! With `--verify`, each blob is also decompressed (gzip, zstd) and the result hashed, in the
//! same pass: the least a load that checks layers against their DiffIDs must do.
//!
//! `--sync each` (the default) fsyncs each file before renaming it to its digest; `--sync end`
//! writes every file under a temporary name (starting its writeback with `sync_file_range`),
//! then one `syncfs(2)`, the renames, and one fsync of the directory. Both are correct; which is cheaper depends on the disk and the blob sizes.
//!
//! Usage: load-baseline [--verify] [--sync each|end] ARCHIVE OUTDIR (OUTDIR must not exist; put
//! it on the daemon's disk)

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use flate2::write::MultiGzDecoder;

use anyhow::{Context, Result, bail, ensure};
use sha2::{Digest, Sha256};

fn main() -> Result<()> {
    let usage = "usage: load-baseline [--verify] [--sync each|end] ARCHIVE OUTDIR";
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut verify = false;
    let mut sync_at_end = false;
    while args.first().is_some_and(|a| a.starts_with("--")) {
        match args.remove(0).as_str() {
            "--verify" => verify = true,
            "--sync" if !args.is_empty() => match args.remove(0).as_str() {
                "each" => sync_at_end = false,
                "end" => sync_at_end = true,
                other => bail!("--sync {other}: each or end; {usage}"),
            },
            other => bail!("unknown option {other}; {usage}"),
        }
    }
    let [archive, out] = args.as_slice() else {
        bail!("{usage}");
    };
    let out = PathBuf::from(out);
    ensure!(!out.exists(), "{} exists already", out.display());
    std::fs::create_dir_all(out.join("blobs/sha256"))?;
    let file = std::fs::File::open(archive).with_context(|| format!("open {archive}"))?;
    let mut tar = tar::Archive::new(std::io::BufReader::with_capacity(1 << 20, file));
    let mut buffer = vec![0u8; 1 << 20];
    let (mut blobs, mut bytes) = (0u64, 0u64);
    // With --sync end: (temp, final name) of every file, renamed once all are durable.
    let mut pending: Vec<(PathBuf, PathBuf)> = Vec::new();
    for (n, entry) in tar.entries()?.enumerate() {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path()?.to_string_lossy().into_owned();
        let expected = name.strip_prefix("blobs/sha256/");
        let temp = out.join(format!("ingest-{n}"));
        let mut target = std::fs::File::create(&temp)?;
        let mut hasher = Sha256::new();
        let mut unpacked: Option<Unpacked> = None;
        loop {
            let read = entry.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            let chunk = &buffer[..read];
            hasher.update(chunk);
            target.write_all(chunk)?;
            if verify {
                unpacked
                    .get_or_insert_with(|| Unpacked::for_head(chunk))
                    .write_all(chunk)?;
            }
            bytes += read as u64;
        }
        if sync_at_end {
            // Start writing it back now, so the syncfs waits for the last files only.
            // SAFETY: sync_file_range only reads its integer arguments; `target` is open.
            unsafe {
                libc::sync_file_range(target.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
            }
        } else {
            target.sync_all()?;
        }
        if let Some(unpacked) = unpacked {
            unpacked.finish()?;
        }
        let hex = hex::encode(hasher.finalize());
        let destination = match expected {
            Some(expected) => {
                ensure!(expected == hex, "{name} hashes to sha256:{hex}");
                blobs += 1;
                out.join("blobs/sha256").join(&hex)
            }
            None => out.join(name.replace('/', "_")),
        };
        if sync_at_end {
            pending.push((temp, destination));
        } else {
            std::fs::rename(&temp, destination)?;
        }
    }
    if sync_at_end {
        let dir = std::fs::File::open(&out)?;
        // SAFETY: syncfs only reads its integer argument; `dir` keeps the descriptor open.
        let result = unsafe { libc::syncfs(dir.as_raw_fd()) };
        ensure!(result == 0, "syncfs: {}", std::io::Error::last_os_error());
        for (temp, destination) in &pending {
            std::fs::rename(temp, destination)?;
        }
    }
    std::fs::File::open(out.join("blobs/sha256"))?.sync_all()?;
    println!("{{\"blobs\":{blobs},\"bytes\":{bytes}}}");
    Ok(())
}

/// The decompressed digest of a blob, fed its compressed bytes.
enum Unpacked {
    Gzip(Box<MultiGzDecoder<HashSink>>),
    Zstd(zstd::stream::write::Decoder<'static, HashSink>),
    /// Not compressed: its digest is the blob's own, hashed already.
    Plain,
}

impl Unpacked {
    fn for_head(head: &[u8]) -> Unpacked {
        if head.starts_with(&[0x1f, 0x8b]) {
            Unpacked::Gzip(Box::new(MultiGzDecoder::new(HashSink::default())))
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            zstd::stream::write::Decoder::new(HashSink::default())
                .map_or(Unpacked::Plain, Unpacked::Zstd)
        } else {
            Unpacked::Plain
        }
    }

    fn write_all(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        match self {
            Unpacked::Gzip(decoder) => decoder.write_all(chunk),
            Unpacked::Zstd(decoder) => decoder.write_all(chunk),
            Unpacked::Plain => Ok(()),
        }
    }

    fn finish(self) -> std::io::Result<()> {
        let sink = match self {
            Unpacked::Gzip(decoder) => decoder.finish()?,
            Unpacked::Zstd(mut decoder) => {
                decoder.flush()?;
                decoder.into_inner()
            }
            Unpacked::Plain => return Ok(()),
        };
        std::hint::black_box(sink.0.finalize());
        Ok(())
    }
}

#[derive(Default)]
struct HashSink(Sha256);

impl Write for HashSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
