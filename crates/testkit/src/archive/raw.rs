//! A tar written entry by entry with names taken as raw bytes.
//!
//! The `tar` crate's path helpers (`Builder::append_path`, `append_data`, `Header::set_path`)
//! normalise names and refuse `..` and absolute paths — rightly for normal use, but negative tests
//! need exactly those names. So headers here are filled by hand: the name bytes go straight into
//! the ustar `name`/`prefix` fields, the link target into `linkname`, then the checksum is set.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// How the finished tar is compressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ArchiveCompression {
    #[default]
    None,
    Gzip,
    Zstd,
}

/// Where to cut a written archive.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Truncation {
    /// Keep this many bytes of the file (after compression).
    Bytes(u64),
    /// Keep this fraction of the file's length (after compression).
    Fraction(f64),
}

/// Where a file entry's content comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawData {
    Bytes(Vec<u8>),
    /// Streamed from this file (big layers never go through memory).
    File(PathBuf),
}

impl RawData {
    fn size(&self) -> u64 {
        match self {
            RawData::Bytes(bytes) => bytes.len() as u64,
            RawData::File(path) => std::fs::metadata(path)
                .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
                .len(),
        }
    }

    /// The content, read whole (for edits of small entries).
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            RawData::Bytes(bytes) => bytes.clone(),
            RawData::File(path) => {
                std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawKind {
    File(RawData),
    Dir,
    Symlink(Vec<u8>),
    Hardlink(Vec<u8>),
}

/// One tar entry; `name` is written byte for byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawEntry {
    pub name: Vec<u8>,
    pub kind: RawKind,
}

impl RawEntry {
    pub fn name_str(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

/// A tar archive described entry by entry, for valid archives and deliberately broken ones.
#[derive(Clone, Debug, Default)]
pub struct RawArchive {
    pub entries: Vec<RawEntry>,
    pub compression: ArchiveCompression,
    /// Cut the written file (after compression).
    pub truncate: Option<Truncation>,
}

impl RawArchive {
    pub fn new() -> RawArchive {
        RawArchive::default()
    }

    pub fn file(mut self, name: impl AsRef<[u8]>, content: impl Into<Vec<u8>>) -> RawArchive {
        self.push(name, RawKind::File(RawData::Bytes(content.into())));
        self
    }

    pub fn file_from(mut self, name: impl AsRef<[u8]>, path: &Path) -> RawArchive {
        self.push(name, RawKind::File(RawData::File(path.to_owned())));
        self
    }

    pub fn dir(mut self, name: impl AsRef<[u8]>) -> RawArchive {
        self.push(name, RawKind::Dir);
        self
    }

    pub fn symlink(mut self, name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> RawArchive {
        self.push(name, RawKind::Symlink(target.as_ref().to_vec()));
        self
    }

    pub fn hardlink(mut self, name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> RawArchive {
        self.push(name, RawKind::Hardlink(target.as_ref().to_vec()));
        self
    }

    pub fn compression(mut self, compression: ArchiveCompression) -> RawArchive {
        self.compression = compression;
        self
    }

    pub fn truncate(mut self, truncation: Truncation) -> RawArchive {
        self.truncate = Some(truncation);
        self
    }

    /// Where the data of each file entry starts in the uncompressed tar, and its size: every
    /// header here is one 512-byte block (no long-name extensions) and data is padded to 512.
    pub fn data_offsets(&self) -> Vec<(String, u64, u64)> {
        let mut offset = 0u64;
        let mut out = Vec::new();
        for entry in &self.entries {
            offset += 512;
            if let RawKind::File(data) = &entry.kind {
                let size = data.size();
                out.push((entry.name_str(), offset, size));
                offset += size.div_ceil(512) * 512;
            }
        }
        out
    }

    pub fn push(&mut self, name: impl AsRef<[u8]>, kind: RawKind) {
        self.entries.push(RawEntry {
            name: name.as_ref().to_vec(),
            kind,
        });
    }

    pub fn find(&self, name: &str) -> Option<&RawEntry> {
        self.entries.iter().find(|e| e.name == name.as_bytes())
    }

    pub fn find_mut(&mut self, name: &str) -> Option<&mut RawEntry> {
        self.entries.iter_mut().find(|e| e.name == name.as_bytes())
    }

    /// Removes the entry named `name`; panics when there is none (a test asked for a breakage
    /// that would not happen).
    pub fn remove(&mut self, name: &str) -> RawEntry {
        let at = self
            .entries
            .iter()
            .position(|e| e.name == name.as_bytes())
            .unwrap_or_else(|| panic!("no entry {name:?} in the archive"));
        self.entries.remove(at)
    }

    /// Replaces the content of the file entry `name`.
    pub fn replace(&mut self, name: &str, content: impl Into<Vec<u8>>) {
        let entry = self
            .find_mut(name)
            .unwrap_or_else(|| panic!("no entry {name:?} in the archive"));
        entry.kind = RawKind::File(RawData::Bytes(content.into()));
    }

    /// Names of all entries, in order.
    pub fn names(&self) -> Vec<String> {
        self.entries.iter().map(RawEntry::name_str).collect()
    }

    /// Writes the archive to `path`.
    pub fn write(&self, path: &Path) {
        let file = std::fs::File::create(path)
            .unwrap_or_else(|e| panic!("create archive {}: {e}", path.display()));
        let sink = io::BufWriter::with_capacity(1 << 20, file);
        let sink = match self.compression {
            ArchiveCompression::None => self.write_tar(sink),
            ArchiveCompression::Gzip => {
                let gz = flate2::write::GzEncoder::new(sink, flate2::Compression::fast());
                self.write_tar(gz).finish().expect("finish gzip archive")
            }
            ArchiveCompression::Zstd => {
                let zst = zstd::Encoder::new(sink, 1).expect("start zstd archive");
                self.write_tar(zst).finish().expect("finish zstd archive")
            }
        };
        let file = sink.into_inner().expect("flush archive");
        match self.truncate {
            Some(Truncation::Bytes(len)) => file.set_len(len).expect("truncate archive"),
            Some(Truncation::Fraction(fraction)) => {
                let len = file.metadata().expect("stat archive").len();
                file.set_len((len as f64 * fraction) as u64)
                    .expect("truncate archive");
            }
            None => {}
        }
        file.sync_all().expect("sync archive");
    }

    /// The archive in memory (for small archives).
    pub fn to_bytes(&self) -> Vec<u8> {
        let file = tempfile::NamedTempFile::new().expect("temp file for archive bytes");
        self.write(file.path());
        std::fs::read(file.path()).expect("read archive bytes back")
    }

    fn write_tar<W: Write>(&self, out: W) -> W {
        let mut builder = tar::Builder::new(out);
        for entry in &self.entries {
            append_raw(&mut builder, entry)
                .unwrap_or_else(|e| panic!("write archive entry {:?}: {e}", entry.name_str()));
        }
        builder.into_inner().expect("finish tar")
    }
}

fn append_raw<W: Write>(builder: &mut tar::Builder<W>, entry: &RawEntry) -> io::Result<()> {
    // Fixed metadata: archives built twice from the same images are byte-identical.
    const MTIME: u64 = 1_700_000_000;
    let mut header = tar::Header::new_ustar();
    header.set_mtime(MTIME);
    header.set_uid(0);
    header.set_gid(0);
    write_name(&mut header, &entry.name);
    let (size, mut reader): (u64, Box<dyn Read>) = match &entry.kind {
        RawKind::File(data) => {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(0o644);
            let reader: Box<dyn Read> = match data {
                RawData::Bytes(bytes) => Box::new(io::Cursor::new(bytes.clone())),
                RawData::File(path) => Box::new(std::fs::File::open(path)?),
            };
            (data.size(), reader)
        }
        RawKind::Dir => {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            (0, Box::new(io::empty()))
        }
        RawKind::Symlink(target) | RawKind::Hardlink(target) => {
            let kind = if matches!(entry.kind, RawKind::Symlink(_)) {
                tar::EntryType::Symlink
            } else {
                tar::EntryType::Link
            };
            header.set_entry_type(kind);
            header.set_mode(0o777);
            let field = &mut header.as_old_mut().linkname;
            assert!(target.len() <= field.len(), "link target too long");
            field[..target.len()].copy_from_slice(target);
            (0, Box::new(io::empty()))
        }
    };
    header.set_size(size);
    header.set_cksum();
    builder.append(&header, &mut reader)
}

/// Puts `name` in the ustar `name` field, spilling a leading part into `prefix` (split at a `/`)
/// when it is longer than 100 bytes, as ustar allows.
fn write_name(header: &mut tar::Header, name: &[u8]) {
    let ustar = header.as_ustar_mut().expect("ustar header");
    if name.len() <= ustar.name.len() {
        ustar.name[..name.len()].copy_from_slice(name);
        return;
    }
    let split = name
        .iter()
        .enumerate()
        .filter(|(i, b)| **b == b'/' && *i <= ustar.prefix.len() && name.len() - i - 1 <= 100)
        .map(|(i, _)| i)
        .next()
        .unwrap_or_else(|| panic!("entry name too long for ustar: {name:?}"));
    ustar.prefix[..split].copy_from_slice(&name[..split]);
    let rest = &name[split + 1..];
    ustar.name[..rest.len()].copy_from_slice(rest);
}
