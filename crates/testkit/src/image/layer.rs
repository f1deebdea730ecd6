//! Layers: a tar of random files, compressed, streamed to disk while both the DiffID (sha256 of
//! the tar) and the blob digest (sha256 of the compressed bytes) are computed.

use std::io::{self, Read, Write};

use rand::{Rng, RngCore, SeedableRng, rngs::StdRng};

use super::blob::{Blob, BlobDir, HashingWriter};
use super::{Flavor, media_type};

/// How a layer's tar is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compression {
    None,
    /// Level 0 stores (fast for big layers), 1–9 compress.
    Gzip {
        level: u32,
    },
    Zstd {
        level: i32,
    },
}

impl Compression {
    /// gzip at level 1: random content does not compress, so spend little time trying.
    pub const GZIP: Compression = Compression::Gzip { level: 1 };
    pub const ZSTD: Compression = Compression::Zstd { level: 1 };

    pub fn oci_media_type(self) -> &'static str {
        match self {
            Compression::None => media_type::OCI_LAYER,
            Compression::Gzip { .. } => media_type::OCI_LAYER_GZIP,
            Compression::Zstd { .. } => media_type::OCI_LAYER_ZSTD,
        }
    }

    /// The honest Docker media type (`diff.tar.zstd` for zstd). Docker-flavoured images built by
    /// [`super::ImageBuilder`] use containerd's import rule instead unless told otherwise; see
    /// [`super::docker_archive_manifest`].
    pub fn docker_media_type(self) -> &'static str {
        match self {
            Compression::None => media_type::DOCKER_LAYER,
            Compression::Gzip { .. } => media_type::DOCKER_LAYER_GZIP,
            Compression::Zstd { .. } => media_type::DOCKER_LAYER_ZSTD,
        }
    }

    pub fn media_type(self, flavor: Flavor) -> &'static str {
        match flavor {
            Flavor::Oci => self.oci_media_type(),
            Flavor::Docker => self.docker_media_type(),
        }
    }
}

/// What to put in one layer: files of random bytes with these sizes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerSpec {
    pub file_sizes: Vec<u64>,
    pub compression: Compression,
}

impl LayerSpec {
    /// One file per size given, gzip level 1.
    pub fn files(sizes: &[u64]) -> LayerSpec {
        LayerSpec {
            file_sizes: sizes.to_vec(),
            compression: Compression::GZIP,
        }
    }

    /// A single file of `size` random bytes, gzip level 1.
    pub fn single(size: u64) -> LayerSpec {
        LayerSpec::files(&[size])
    }

    pub fn compression(mut self, compression: Compression) -> LayerSpec {
        self.compression = compression;
        self
    }
}

/// A generated layer.
#[derive(Clone, Debug)]
pub struct Layer {
    /// The compressed (or not) bytes as they go into registries and archives; `media_type` is the
    /// one of the image holding this layer.
    pub blob: Blob,
    /// `sha256:<hex>` of the uncompressed tar: what the config's `rootfs.diff_ids` lists.
    pub diff_id: String,
    pub uncompressed_size: u64,
    pub compression: Compression,
    /// (path inside the tar, size) of each file.
    pub files: Vec<(String, u64)>,
    /// Keeps the blob's file alive while this layer is.
    _dir: BlobDir,
}

impl Layer {
    pub fn digest(&self) -> &str {
        &self.blob.digest
    }

    pub fn size(&self) -> u64 {
        self.blob.size
    }

    /// A layer whose content is an existing blob, taken as an uncompressed "tar" (attestation
    /// statements): its DiffID is its digest.
    pub(crate) fn from_blob(blob: Blob, compression: Compression, dir: &BlobDir) -> Layer {
        Layer {
            diff_id: blob.digest.clone(),
            uncompressed_size: blob.size,
            blob,
            compression,
            files: Vec::new(),
            _dir: dir.clone(),
        }
    }

    /// The same layer with another media type (reusing a layer in an image of another flavour).
    pub(crate) fn with_media_type(&self, media_type: &str) -> Layer {
        let mut layer = self.clone();
        layer.blob.media_type = media_type.to_owned();
        layer
    }

    /// Writes the layer described by `spec` into `dir`. The same `seed` gives the same bytes.
    pub fn generate(dir: &BlobDir, spec: &LayerSpec, seed: u64, media_type: &str) -> Layer {
        let mut rng = StdRng::seed_from_u64(seed);
        // A per-layer directory name keeps files of different layers apart, as real layers are.
        let root = format!("hoist-test/{:016x}", rng.random::<u64>());
        let files: Vec<(String, u64)> = spec
            .file_sizes
            .iter()
            .enumerate()
            .map(|(i, size)| (format!("{root}/file-{i}.bin"), *size))
            .collect();
        let blob_writer = dir.writer();
        let (diff_id, uncompressed_size, blob_writer) = match spec.compression {
            Compression::None => write_tar(HashingWriter::new(blob_writer), &root, &files, rng),
            Compression::Gzip { level } => {
                let encoder =
                    flate2::write::GzEncoder::new(blob_writer, flate2::Compression::new(level));
                let (diff_id, size, encoder) =
                    write_tar(HashingWriter::new(encoder), &root, &files, rng);
                (diff_id, size, encoder.finish().expect("finish gzip layer"))
            }
            Compression::Zstd { level } => {
                let encoder = zstd::Encoder::new(blob_writer, level).expect("start zstd encoder");
                let (diff_id, size, encoder) =
                    write_tar(HashingWriter::new(encoder), &root, &files, rng);
                (diff_id, size, encoder.finish().expect("finish zstd layer"))
            }
        };
        Layer {
            blob: blob_writer.finish(media_type),
            diff_id,
            uncompressed_size,
            compression: spec.compression,
            files,
            _dir: dir.clone(),
        }
    }
}

/// Writes the tar through `out` (which hashes it) and returns (DiffID, tar size, inner writer).
fn write_tar<W: Write>(
    out: HashingWriter<W>,
    root: &str,
    files: &[(String, u64)],
    rng: StdRng,
) -> (String, u64, W) {
    // Fixed metadata so that a seed reproduces the exact bytes.
    const MTIME: u64 = 1_700_000_000;
    let mut builder = tar::Builder::new(out);
    let mut random = RandomReader::new(rng);
    for dir in ["hoist-test/", &format!("{root}/")] {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_mtime(MTIME);
        header.set_size(0);
        builder
            .append_data(&mut header, dir, io::empty())
            .expect("append layer directory");
    }
    for (path, size) in files {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_mtime(MTIME);
        header.set_size(*size);
        random.remaining = *size;
        builder
            .append_data(&mut header, path, &mut random)
            .expect("append layer file");
    }
    let hashing = builder.into_inner().expect("finish layer tar");
    hashing.finish()
}

/// `remaining` pseudo-random bytes, then end of file.
///
/// `StdRng::fill_bytes` is too slow for 1 GiB layers: its generic code is compiled at this
/// crate's opt-level 0. So a 1 MiB block from `StdRng` is drawn once and each output block is
/// that block XORed with a 64-bit LCG stream, which stays fast unoptimised.
/// The result is incompressible and never repeats, which is all layers need.
struct RandomReader {
    base: Vec<u8>,
    block: Vec<u8>,
    position: usize,
    lcg: u64,
    remaining: u64,
}

impl RandomReader {
    const BLOCK: usize = 1 << 20;

    fn new(mut rng: StdRng) -> RandomReader {
        let mut base = vec![0u8; Self::BLOCK];
        rng.fill_bytes(&mut base);
        RandomReader {
            base,
            block: vec![0u8; Self::BLOCK],
            position: Self::BLOCK,
            lcg: rng.next_u64(),
            remaining: 0,
        }
    }

    fn refill(&mut self) {
        self.block.copy_from_slice(&self.base);
        // SAFETY: every bit pattern is a valid u64; unaligned ends (if any) keep base bytes.
        let (_, words, _) = unsafe { self.block.align_to_mut::<u64>() };
        let mut state = self.lcg;
        for word in words.iter_mut() {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *word ^= state;
        }
        self.lcg = state;
        self.position = 0;
    }
}

impl Read for RandomReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        if self.position == self.block.len() {
            self.refill();
        }
        let n = buf
            .len()
            .min(self.block.len() - self.position)
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        buf[..n].copy_from_slice(&self.block[self.position..self.position + n]);
        self.position += n;
        self.remaining -= n as u64;
        Ok(n)
    }
}
