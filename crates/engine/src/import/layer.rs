//! Storing the one layer of an imported image, as moby's containerd store does: a gzip or zstd
//! tar is kept as it came, a plain tar is gzip-compressed. On the way through, the layer is
//! checked to unpack to a whole tar, and its DiffID (the digest of the uncompressed tar) taken.

use std::io::{BufReader, Read, Write};

use hoist_oci::compression::{self, Compression};
use hoist_reference::Digest;
use hoist_store::{Descriptor, Lease, Store};
use sha2::{Digest as _, Sha256};

use crate::EngineError;
use crate::layer_check::{LayerCheck, NotALayer};
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
    // The check reads the bytes as they come, compressed or not, and gives the DiffID: for a
    // plain tar that is the digest of the input, hashed here as it passes.
    let mut check = LayerCheck::start();
    let (media_type, writer, plain_digest) = match compression {
        Compression::Gzip | Compression::Zstd => {
            let mut writer = writer;
            copy_chunks(&mut input, |chunk| {
                check.feed(chunk);
                writer
                    .write_all(chunk)
                    .map_err(|e| EngineError::io("writing the imported layer", e))
            })?;
            let media_type = if compression == Compression::Gzip {
                OCI_LAYER_GZIP
            } else {
                OCI_LAYER_ZSTD
            };
            (media_type, writer, None)
        }
        Compression::Bzip2 => return Err(unsupported("bzip2")),
        Compression::Xz => return Err(unsupported("xz")),
        Compression::Uncompressed => {
            let mut encoder = flate2::write::GzEncoder::new(writer, flate2::Compression::default());
            let mut plain = Sha256::new();
            copy_chunks(&mut input, |chunk| {
                check.feed(chunk);
                plain.update(chunk);
                encoder
                    .write_all(chunk)
                    .map_err(|e| EngineError::io("compressing the imported layer", e))
            })?;
            let writer = encoder
                .finish()
                .map_err(|e| EngineError::io("compressing the imported layer", e))?;
            let plain_digest = Digest::sha256_from_bytes(&plain.finalize().into());
            (OCI_LAYER_GZIP, writer, Some(plain_digest))
        }
    };
    // moby unpacks the layer it imports; what does not unpack fails the import.
    let found = check.finish().map_err(|fault| match fault {
        NotALayer::Compression(reason) => {
            EngineError::InvalidArgument(format!("the imported archive is corrupt: {reason}"))
        }
        NotALayer::Tar(reason) => EngineError::Unpack(format!("failed to extract layer: {reason}")),
    })?;
    let (digest, size) = writer.commit(None)?;
    // A compressed input is stored as it came: its digest is that of the bytes the check read.
    let diff_id = found.given_content(plain_digest.as_ref().unwrap_or(&digest));
    Ok(StoredLayer {
        descriptor: Descriptor {
            media_type: media_type.to_owned(),
            digest,
            size,
        },
        diff_id,
    })
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

fn unsupported(kind: &str) -> EngineError {
    EngineError::InvalidArgument(format!(
        "unsupported archive compression: {kind} (import takes a plain, gzip or zstd tar)"
    ))
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

    fn tar_of(content: &[u8]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, "file", content).unwrap();
        builder.into_inner().unwrap()
    }

    fn sha(bytes: &[u8]) -> Digest {
        use sha2::{Digest as _, Sha256};
        Digest::sha256_from_bytes(&Sha256::digest(bytes).into())
    }

    #[test]
    fn plain_tars_are_gzipped_and_compressed_ones_kept() {
        let tar = tar_of(&[7u8; 3000]);
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
        gz.write_all(&tar_of(&[9u8; 5000])).unwrap();
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
        for not_a_tar in [&[0x5au8; 3000][..], &tar_of(&[1u8; 1000])[..700]] {
            let refused = store_layer(&store, &lease, not_a_tar).unwrap_err();
            assert!(matches!(refused, EngineError::Unpack(_)), "{refused}");
        }
    }
}
