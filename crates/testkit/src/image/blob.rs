//! Content-addressed blobs on disk, hashed while they are written.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::Digest;

/// One blob: its digest, size and media type, and the file holding its bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Blob {
    /// `sha256:<hex>`
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    pub path: PathBuf,
}

impl Blob {
    /// The whole content; for small blobs (manifests, configs, test layers).
    pub fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.path)
            .unwrap_or_else(|e| panic!("read blob {} at {}: {e}", self.digest, self.path.display()))
    }

    /// The hex part of the digest, as used in `blobs/sha256/<hex>` paths.
    pub fn hex(&self) -> &str {
        self.digest
            .strip_prefix("sha256:")
            .expect("blob digests are sha256")
    }

    /// `{"mediaType","digest","size"}`, the plain OCI descriptor of this blob.
    pub fn descriptor(&self) -> serde_json::Value {
        serde_json::json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size})
    }
}

/// A temporary directory holding blobs as `blobs/sha256/<hex>`; removed when the last holder
/// (an image, a layer, an index) is dropped.
#[derive(Clone, Debug)]
pub struct BlobDir {
    dir: Arc<tempfile::TempDir>,
}

impl Default for BlobDir {
    fn default() -> Self {
        BlobDir::new()
    }
}

impl BlobDir {
    pub fn new() -> BlobDir {
        let dir = tempfile::Builder::new()
            .prefix("hoist-testkit-blobs-")
            .tempdir()
            .expect("create a temp dir for generated blobs");
        std::fs::create_dir_all(dir.path().join("blobs/sha256")).expect("create blobs/sha256");
        BlobDir { dir: Arc::new(dir) }
    }

    /// The directory containing `blobs/sha256/`.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn blob_path(&self, hex: &str) -> PathBuf {
        self.dir.path().join("blobs/sha256").join(hex)
    }

    /// Stores small content given whole.
    pub fn write_bytes(&self, media_type: &str, bytes: &[u8]) -> Blob {
        let mut writer = self.writer();
        writer.write_all(bytes).expect("write blob bytes");
        writer.finish(media_type)
    }

    /// A writer that hashes what it stores and files it under its digest on `finish`.
    pub fn writer(&self) -> BlobWriter {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let temp = self.dir.path().join(format!(
            "ingest-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let file = std::fs::File::create(&temp)
            .unwrap_or_else(|e| panic!("create {}: {e}", temp.display()));
        BlobWriter {
            inner: HashingWriter::new(BufWriter::with_capacity(1 << 20, file)),
            temp,
            dir: self.clone(),
        }
    }
}

/// Streams a blob to disk while hashing it; see [`BlobDir::writer`].
pub struct BlobWriter {
    inner: HashingWriter<BufWriter<std::fs::File>>,
    temp: PathBuf,
    dir: BlobDir,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl BlobWriter {
    pub fn finish(self, media_type: &str) -> Blob {
        let (digest, size, buffered) = self.inner.finish();
        let file = buffered.into_inner().expect("flush blob file");
        drop(file);
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        let path = self.dir.blob_path(hex);
        std::fs::rename(&self.temp, &path)
            .unwrap_or_else(|e| panic!("rename blob into {}: {e}", path.display()));
        Blob {
            digest,
            size,
            media_type: media_type.to_owned(),
            path,
        }
    }
}

/// Passes writes through while computing their sha256 and counting them.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: sha2::Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: sha2::Sha256::new(),
            written: 0,
        }
    }

    /// (`sha256:<hex>`, bytes written, the inner writer)
    pub(crate) fn finish(self) -> (String, u64, W) {
        let digest = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        (digest, self.written, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
