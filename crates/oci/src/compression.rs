//! Which compression a stream uses, told from its first bytes as containerd's and moby's
//! detection tell it.

use std::io::{self, Chain, Cursor, Read};

/// How a stream is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// None that hoist recognises: read the bytes as they are.
    Uncompressed,
    Gzip,
    /// zstd, possibly starting with a skippable frame (metadata such as a seekable-zstd table).
    Zstd,
    /// Recognised so that it can be refused by name; hoist does not decode it.
    Bzip2,
    /// Recognised so that it can be refused by name; hoist does not decode it.
    Xz,
}

/// A stream whose first bytes were read to detect its compression, yielding them again.
pub type Rewound<R> = Chain<Cursor<Vec<u8>>, R>;

/// Bytes needed to tell every format apart: the longest magic number, xz's, has six.
const HEAD_LEN: u64 = 6;

/// gzip's two identification bytes and its one compression method, deflate (RFC 1952).
const GZIP_MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];
/// A zstd frame's magic number, 0xFD2FB528, little-endian.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// zstd skippable frames have magic numbers 0x184D2A50 to 0x184D2A5F; decoders skip them.
const ZSTD_SKIPPABLE_FRAMES: std::ops::RangeInclusive<u32> = 0x184D_2A50..=0x184D_2A5F;
const BZIP2_MAGIC: [u8; 3] = *b"BZh";
const XZ_MAGIC: [u8; 6] = [0xfd, b'7', b'z', b'X', b'Z', 0x00];

/// Reads the start of `reader`, until it has enough bytes to decide or the stream ends however
/// the reads split it, and says how the stream is compressed. The returned reader yields the
/// whole stream, the bytes read here included.
pub fn detect<R: Read>(mut reader: R) -> io::Result<(Compression, Rewound<R>)> {
    let mut head = Vec::with_capacity(HEAD_LEN as usize);
    reader.by_ref().take(HEAD_LEN).read_to_end(&mut head)?;
    let compression = of_head(&head);
    Ok((compression, Cursor::new(head).chain(reader)))
}

/// The compression that a stream starting with `head` uses; a head too short to match any magic
/// number is uncompressed.
fn of_head(head: &[u8]) -> Compression {
    if head.starts_with(&GZIP_MAGIC) {
        Compression::Gzip
    } else if head.starts_with(&ZSTD_MAGIC) || starts_with_zstd_skippable_frame(head) {
        Compression::Zstd
    } else if head.starts_with(&BZIP2_MAGIC) {
        Compression::Bzip2
    } else if head.starts_with(&XZ_MAGIC) {
        Compression::Xz
    } else {
        Compression::Uncompressed
    }
}

fn starts_with_zstd_skippable_frame(head: &[u8]) -> bool {
    match head.first_chunk::<4>() {
        Some(magic) => ZSTD_SKIPPABLE_FRAMES.contains(&u32::from_le_bytes(*magic)),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// Returns one byte per read, as a slow pipe or socket may.
    struct OneByteAtATime<'a>(&'a [u8]);

    impl Read for OneByteAtATime<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((byte, rest)), Some(slot)) => {
                    *slot = *byte;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    fn detect_slowly(bytes: &[u8]) -> (Compression, Vec<u8>) {
        let (compression, mut rewound) = detect(OneByteAtATime(bytes)).unwrap();
        let mut all = Vec::new();
        rewound.read_to_end(&mut all).unwrap();
        assert_eq!(all, bytes, "the stream is yielded whole");
        (compression, all)
    }

    const TAR: &[u8] = b"a tar, or anything else that is not compressed";

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    /// A skippable frame (the given magic, a length, that many bytes) before a zstd frame.
    fn zstd_after_skippable_frame(magic: u32, bytes: &[u8]) -> Vec<u8> {
        let metadata = b"seek table";
        let mut stream = magic.to_le_bytes().to_vec();
        stream.extend_from_slice(&(metadata.len() as u32).to_le_bytes());
        stream.extend_from_slice(metadata);
        stream.extend(zstd::encode_all(bytes, 3).unwrap());
        stream
    }

    #[test]
    fn detects_gzip_and_zstd_from_one_byte_reads() {
        let (compression, gz) = detect_slowly(&gzip(TAR));
        assert_eq!(compression, Compression::Gzip);
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, TAR);

        let (compression, _) = detect_slowly(&zstd::encode_all(TAR, 3).unwrap());
        assert_eq!(compression, Compression::Zstd);
    }

    #[test]
    fn a_zstd_stream_may_start_with_any_skippable_frame() {
        for magic in [0x184D_2A50, 0x184D_2A5A, 0x184D_2A5F] {
            let stream = zstd_after_skippable_frame(magic, TAR);
            let (compression, rewound) = detect(OneByteAtATime(&stream)).unwrap();
            assert_eq!(compression, Compression::Zstd, "{magic:#x}");
            assert_eq!(zstd::decode_all(rewound).unwrap(), TAR);
        }
        let not_skippable = zstd_after_skippable_frame(0x184D_2A60, TAR);
        assert_eq!(detect_slowly(&not_skippable).0, Compression::Uncompressed);
    }

    #[test]
    fn recognises_bzip2_and_xz_and_takes_the_rest_as_uncompressed() {
        assert_eq!(detect_slowly(b"BZh91AY&SY").0, Compression::Bzip2);
        assert_eq!(
            detect_slowly(&[0xfd, b'7', b'z', b'X', b'Z', 0x00, 0x00, 0x04]).0,
            Compression::Xz
        );
        assert_eq!(detect_slowly(TAR).0, Compression::Uncompressed);
        // Streams too short to hold a whole magic number, such as a cut-off gzip or zstd one.
        for short in [&b""[..], &[0x1f], &[0x1f, 0x8b], &[0x28, 0xb5, 0x2f]] {
            assert_eq!(
                detect_slowly(short).0,
                Compression::Uncompressed,
                "{short:?}"
            );
        }
        // gzip's identification bytes with a method other than deflate are not gzip.
        assert_eq!(
            detect_slowly(&[0x1f, 0x8b, 0x07, 0, 0, 0]).0,
            Compression::Uncompressed
        );
    }
}
