//! Storing the one layer of an imported image, as moby's containerd store does: a gzip or zstd
//! tar is kept as it came, a plain tar is gzip-compressed. The layer's DiffID (the digest of
//! the uncompressed tar) is computed on the way through.

use std::io::{BufReader, Read, Write};

use hoist_oci::compression::{self, Compression};
use hoist_reference::Digest;
use hoist_store::{BlobWriter, Descriptor, Lease, Store};
use sha2::{Digest as _, Sha256};

use crate::EngineError;
use crate::media::{OCI_LAYER_GZIP, OCI_LAYER_ZSTD};

const CHUNK: usize = 1 << 20;

/// The stored layer and its DiffID.
#[derive(Debug)]
pub(crate) struct StoredLayer {
    pub descriptor: Descriptor,
    pub diff_id: Digest,
}

pub(crate) fn store_layer(
    store: &Store,
    lease: &Lease,
    input: impl Read,
) -> Result<StoredLayer, EngineError> {
    let (compression, input) = compression::detect(input).map_err(read_error)?;
    let mut input = BufReader::with_capacity(CHUNK, input);
    let writer = store.blob_writer(lease)?;
    let (media_type, writer, diff_id) = match compression {
        Compression::Gzip => {
            let decoder = flate2::write::MultiGzDecoder::new(HashingSink::default());
            let (writer, sink) = copy_verbatim(&mut input, writer, decoder, |d| d.finish())?;
            (OCI_LAYER_GZIP, writer, sink.digest())
        }
        Compression::Zstd => {
            let decoder = zstd::stream::write::Decoder::new(HashingSink::default())
                .map_err(|e| EngineError::io("starting a zstd decoder", e))?;
            let (writer, sink) = copy_verbatim(&mut input, writer, decoder, |mut d| {
                d.flush()?;
                Ok(d.into_inner())
            })?;
            (OCI_LAYER_ZSTD, writer, sink.digest())
        }
        Compression::Bzip2 => return Err(unsupported("bzip2")),
        Compression::Xz => return Err(unsupported("xz")),
        Compression::Uncompressed => {
            let mut encoder = flate2::write::GzEncoder::new(writer, flate2::Compression::default());
            let mut hasher = Sha256::new();
            copy_chunks(&mut input, |chunk| {
                hasher.update(chunk);
                encoder
                    .write_all(chunk)
                    .map_err(|e| EngineError::io("compressing the imported layer", e))
            })?;
            let writer = encoder
                .finish()
                .map_err(|e| EngineError::io("compressing the imported layer", e))?;
            (
                OCI_LAYER_GZIP,
                writer,
                Digest::sha256_from_bytes(&hasher.finalize().into()),
            )
        }
    };
    let (digest, size) = writer.commit(None)?;
    Ok(StoredLayer {
        descriptor: Descriptor {
            media_type: media_type.to_owned(),
            digest,
            size,
        },
        diff_id,
    })
}

/// Stores the compressed bytes as they are while a decoder feeds their uncompressed form to a
/// hash. A stream the decoder refuses is refused.
fn copy_verbatim<D: Write>(
    input: &mut impl Read,
    mut writer: BlobWriter,
    mut decoder: D,
    finish: impl FnOnce(D) -> std::io::Result<HashingSink>,
) -> Result<(BlobWriter, HashingSink), EngineError> {
    copy_chunks(input, |chunk| {
        writer
            .write_all(chunk)
            .map_err(|e| EngineError::io("writing the imported layer", e))?;
        decoder.write_all(chunk).map_err(corrupt)
    })?;
    let sink = finish(decoder).map_err(corrupt)?;
    Ok((writer, sink))
}

fn copy_chunks(
    input: &mut impl Read,
    mut each: impl FnMut(&[u8]) -> Result<(), EngineError>,
) -> Result<(), EngineError> {
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let n = match input.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        };
        each(&buffer[..n])?;
    }
}

/// A `Write` that only hashes.
#[derive(Default)]
struct HashingSink(Sha256);

impl HashingSink {
    fn digest(self) -> Digest {
        Digest::sha256_from_bytes(&self.0.finalize().into())
    }
}

impl Write for HashingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn unsupported(kind: &str) -> EngineError {
    EngineError::InvalidArgument(format!(
        "unsupported archive compression: {kind} (import takes a plain, gzip or zstd tar)"
    ))
}

fn corrupt(e: std::io::Error) -> EngineError {
    EngineError::InvalidArgument(format!("the imported archive is corrupt: {e}"))
}

fn read_error(e: std::io::Error) -> EngineError {
    EngineError::io("reading the imported archive", e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer_of(input: &[u8]) -> (StoredLayer, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let lease = store.lease();
        let layer = store_layer(&store, &lease, input).unwrap();
        let bytes = store.read_blob(&layer.descriptor.digest, 1 << 30).unwrap();
        (layer, bytes)
    }

    fn sha(bytes: &[u8]) -> Digest {
        Digest::sha256_from_bytes(&Sha256::digest(bytes).into())
    }

    #[test]
    fn plain_tars_are_gzipped_and_compressed_ones_kept() {
        let tar = vec![7u8; 3000];
        let (plain, stored) = layer_of(&tar);
        assert_eq!(plain.descriptor.media_type, OCI_LAYER_GZIP);
        assert_eq!(plain.diff_id, sha(&tar));
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&stored[..])
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, tar);

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let (kept, stored) = layer_of(&gz);
        assert_eq!(stored, gz);
        assert_eq!(kept.descriptor.digest, sha(&gz));
        assert_eq!(kept.diff_id, sha(&tar));

        let zst = zstd::encode_all(&tar[..], 3).unwrap();
        let (kept, stored) = layer_of(&zst);
        assert_eq!(stored, zst);
        assert_eq!(kept.descriptor.media_type, OCI_LAYER_ZSTD);
        assert_eq!(kept.diff_id, sha(&tar));
    }

    #[test]
    fn bad_compressed_input_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let lease = store.lease();
        let broken = [0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        assert!(store_layer(&store, &lease, &broken[..]).is_err());
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&[9u8; 5000]).unwrap();
        let gz = gz.finish().unwrap();
        let truncated = &gz[..gz.len() - 6];
        assert!(
            store_layer(&store, &lease, truncated).is_err(),
            "truncated gzip"
        );
        let bz = b"BZh91AY&SY";
        assert!(
            store_layer(&store, &lease, &bz[..])
                .unwrap_err()
                .to_string()
                .contains("bzip2")
        );
    }
}
