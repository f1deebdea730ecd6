//! Deliberately broken archives for negative tests of `docker load`: each variant starts from the
//! valid archive and changes one thing.

use std::io::{Read, Write};

use super::plan::{ArchiveFormat, Plan};
use super::raw::{RawArchive, RawData, RawKind, Truncation};
use super::rewrite::replace_blob;

/// Name of the entry added by [`Breakage::ParentDirEntry`].
pub const PARENT_DIR_ENTRY_NAME: &str = "../hoist-testkit-parent-escape";
/// Name of the entry added by [`Breakage::AbsolutePathEntry`].
pub const ABSOLUTE_ENTRY_NAME: &str = "/tmp/hoist-testkit-absolute-escape";
/// The symlink added by [`Breakage::SymlinkDirEscape`]; a file is then written through it.
pub const SYMLINK_DIR_NAME: &str = "hoist-testkit-link";

/// One way of breaking an archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Breakage {
    /// A first entry named [`PARENT_DIR_ENTRY_NAME`] (`../…`).
    ParentDirEntry,
    /// A first entry named [`ABSOLUTE_ENTRY_NAME`] (an absolute path).
    AbsolutePathEntry,
    /// The first layer's file replaced by a symlink to `../../../../../../../../etc/passwd`,
    /// which `manifest.json` (or the OCI manifest, by digest name) still points at.
    SymlinkEscape,
    /// A first entry [`SYMLINK_DIR_NAME`] → `../../../../../../../../tmp`, then a file
    /// `hoist-testkit-link/hoist-testkit-through-link` that would land outside if followed.
    SymlinkDirEscape,
    /// Cut in the middle of the first layer's data (uncompressed archives), or at half the
    /// file (compressed ones).
    Truncated,
    /// The first layer (the config for [`ArchiveFormat::DockerLegacy`], whose layers are not
    /// named by digest) keeps its `blobs/sha256/<hex>` name, but one byte in its middle flips.
    BlobContentMismatch,
    /// `manifest.json` cut off mid-JSON (formats that have one).
    MalformedManifestJson,
    /// `index.json` cut off mid-JSON (formats that have one).
    MalformedIndexJson,
    /// The first layer's file left out while `manifest.json` (or the manifest) refers to it.
    MissingLayer,
    /// One byte inside a file of the first layer's tar flips and the layer is compressed again
    /// as it was; its blob digest (name, descriptors) follows, the config's diff_id does not.
    LayerDiffIdMismatch,
    /// The first layer holds text compressed as the layer was, not a tar; its blob digest
    /// (name, descriptors) follows.
    LayerNotTar,
    /// The first image's config lists one diff_id fewer than its manifest has layers; its
    /// digest (name, descriptors) follows.
    FewerDiffIds,
}

pub(super) fn apply(plan: Plan, format: ArchiveFormat, breakage: Breakage) -> RawArchive {
    let mut raw = plan.raw;
    let first_layer = plan
        .layer_entries
        .first()
        .cloned()
        .expect("a breakage needs an archive with at least one layer");
    match breakage {
        Breakage::ParentDirEntry => {
            raw.entries
                .insert(0, file_entry(PARENT_DIR_ENTRY_NAME, b"escaped\n"));
        }
        Breakage::AbsolutePathEntry => {
            raw.entries
                .insert(0, file_entry(ABSOLUTE_ENTRY_NAME, b"escaped\n"));
        }
        Breakage::SymlinkEscape => {
            let entry = raw
                .find_mut(&first_layer)
                .expect("first layer entry is in the plan");
            entry.kind = RawKind::Symlink(b"../../../../../../../../etc/passwd".to_vec());
        }
        Breakage::SymlinkDirEscape => {
            let through = file_entry(
                &format!("{SYMLINK_DIR_NAME}/hoist-testkit-through-link"),
                b"escaped\n",
            );
            raw.entries.insert(0, through);
            raw.entries.insert(
                0,
                super::raw::RawEntry {
                    name: SYMLINK_DIR_NAME.as_bytes().to_vec(),
                    kind: RawKind::Symlink(b"../../../../../../../../tmp".to_vec()),
                },
            );
        }
        Breakage::Truncated => {
            let truncation = if raw.compression == super::raw::ArchiveCompression::None {
                let (_, start, size) = raw
                    .data_offsets()
                    .into_iter()
                    .find(|(name, _, _)| *name == first_layer)
                    .expect("first layer has data");
                Truncation::Bytes(start + size / 2)
            } else {
                Truncation::Fraction(0.5)
            };
            raw = raw.truncate(truncation);
        }
        Breakage::BlobContentMismatch => {
            let victim = match format {
                ArchiveFormat::DockerLegacy => plan
                    .config_entries
                    .first()
                    .cloned()
                    .expect("legacy archive has a config"),
                _ => first_layer,
            };
            let entry = raw.find_mut(&victim).expect("victim entry is in the plan");
            let RawKind::File(data) = &entry.kind else {
                panic!("{victim} is not a file");
            };
            let mut bytes = data.bytes();
            let middle = bytes.len() / 2;
            // For a JSON config, swap the case of a letter so it stays valid JSON.
            let at = (middle..bytes.len())
                .chain(0..middle)
                .find(|i| bytes[*i].is_ascii_alphabetic() || format != ArchiveFormat::DockerLegacy)
                .expect("a byte to flip");
            bytes[at] = if bytes[at].is_ascii_alphabetic() {
                bytes[at] ^ 0x20
            } else {
                bytes[at] ^ 0xff
            };
            entry.kind = RawKind::File(RawData::Bytes(bytes));
        }
        Breakage::MalformedManifestJson => {
            assert!(
                format != ArchiveFormat::Oci,
                "an OCI-only archive has no manifest.json"
            );
            raw.replace("manifest.json", br#"[{"Config":"blobs/sha256/"#.to_vec());
        }
        Breakage::MalformedIndexJson => {
            assert!(
                matches!(format, ArchiveFormat::Oci | ArchiveFormat::Both),
                "only OCI layouts have index.json"
            );
            raw.replace(
                "index.json",
                br#"{"schemaVersion":2,"manifests":[{"#.to_vec(),
            );
        }
        Breakage::MissingLayer => {
            raw.remove(&first_layer);
        }
        Breakage::LayerDiffIdMismatch => {
            let (compression, tar) = decompress(&file_bytes(&raw, &first_layer));
            let flipped = flip_a_file_byte(tar);
            replace_blob(&mut raw, &first_layer, compress(compression, &flipped));
        }
        Breakage::LayerNotTar => {
            let (compression, _) = decompress(&file_bytes(&raw, &first_layer));
            let text = b"this is not a tar archive\n".repeat(64);
            replace_blob(&mut raw, &first_layer, compress(compression, &text));
        }
        Breakage::FewerDiffIds => {
            let config = plan
                .config_entries
                .first()
                .cloned()
                .expect("an archive with a config");
            let mut json: serde_json::Value =
                serde_json::from_slice(&file_bytes(&raw, &config)).expect("config is JSON");
            json["rootfs"]["diff_ids"]
                .as_array_mut()
                .expect("config has diff_ids")
                .pop();
            replace_blob(
                &mut raw,
                &config,
                serde_json::to_vec(&json).expect("serialize config"),
            );
        }
    }
    raw
}

fn file_bytes(raw: &RawArchive, name: &str) -> Vec<u8> {
    match raw.find(name).map(|e| &e.kind) {
        Some(RawKind::File(data)) => data.bytes(),
        _ => panic!("{name} is not a file of the archive"),
    }
}

#[derive(Clone, Copy)]
enum LayerCompression {
    Plain,
    Gzip,
    Zstd,
}

fn decompress(bytes: &[u8]) -> (LayerCompression, Vec<u8>) {
    let mut out = Vec::new();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .expect("gunzip layer");
        (LayerCompression::Gzip, out)
    } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        (
            LayerCompression::Zstd,
            zstd::decode_all(bytes).expect("unzstd layer"),
        )
    } else {
        (LayerCompression::Plain, bytes.to_vec())
    }
}

fn compress(compression: LayerCompression, bytes: &[u8]) -> Vec<u8> {
    match compression {
        LayerCompression::Plain => bytes.to_vec(),
        LayerCompression::Gzip => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(bytes).expect("gzip layer");
            gz.finish().expect("gzip layer")
        }
        LayerCompression::Zstd => zstd::encode_all(bytes, 3).expect("zstd layer"),
    }
}

/// The tar with one byte in the middle of its first non-empty file flipped: still a well-formed
/// tar (headers and sizes untouched), with other content.
fn flip_a_file_byte(mut tar: Vec<u8>) -> Vec<u8> {
    let at = {
        let mut archive = tar::Archive::new(&tar[..]);
        let mut entries = archive.entries().expect("layer is a tar");
        entries
            .find_map(|entry| {
                let entry = entry.expect("layer entry");
                (entry.size() > 0).then(|| entry.raw_file_position() + entry.size() / 2)
            })
            .expect("a layer file with content")
    };
    let at = usize::try_from(at).expect("offset fits");
    tar[at] ^= 0xff;
    tar
}

fn file_entry(name: &str, content: &[u8]) -> super::raw::RawEntry {
    super::raw::RawEntry {
        name: name.as_bytes().to_vec(),
        kind: RawKind::File(RawData::Bytes(content.to_vec())),
    }
}
