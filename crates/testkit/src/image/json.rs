//! The JSON documents of an image. serde_json writes struct fields in declaration order and maps
//! (`BTreeMap`) sorted by key, which is what Go's `encoding/json` does for the structs and maps
//! that BuildKit, docker and containerd marshal: the field order below follows those Go structs.

use std::collections::BTreeMap;
use std::io::Read;

use serde::Serialize;

use super::blob::Blob;
use super::media_type;
use super::platform::PlatformJson;

/// `ocispec.Descriptor`: mediaType, digest, size, then the `omitempty` fields in Go's order
/// (urls, annotations, data, platform, artifactType).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DescriptorJson {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformJson>,
}

impl DescriptorJson {
    pub(crate) fn of(blob: &Blob) -> DescriptorJson {
        DescriptorJson {
            media_type: blob.media_type.clone(),
            digest: blob.digest.clone(),
            size: blob.size,
            annotations: None,
            platform: None,
        }
    }
}

/// An image manifest, OCI or Docker schema2: the same four fields in the same order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ManifestJson {
    pub schema_version: u32,
    pub media_type: String,
    pub config: DescriptorJson,
    pub layers: Vec<DescriptorJson>,
}

/// An OCI index or Docker manifest list.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct IndexJson {
    pub schema_version: u32,
    pub media_type: String,
    pub manifests: Vec<DescriptorJson>,
}

/// An image config, shaped like what `docker build` writes.
#[derive(Serialize)]
pub(crate) struct ConfigJson {
    pub architecture: String,
    pub os: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    pub created: String,
    pub config: ContainerConfigJson,
    pub rootfs: RootFsJson,
    pub history: Vec<HistoryJson>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ContainerConfigJson {
    pub env: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    pub labels: BTreeMap<String, String>,
}

#[derive(Serialize)]
pub(crate) struct RootFsJson {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<String>,
}

#[derive(Serialize)]
pub(crate) struct HistoryJson {
    pub created: String,
    pub created_by: String,
    pub comment: String,
}

/// The Docker schema2 manifest that containerd's archive importer builds for one entry of a
/// docker-archive `manifest.json` — the bytes docker ≥ 25 (containerd image store) stores, and so
/// the image ID it reports, after `docker load` of an archive without `index.json`. hoist builds
/// the same bytes; tests compare its image IDs with the digest of these.
///
/// The rule (containerd `core/images/archive/importer.go`, `ImportIndex` → `resolveLayers` →
/// `writeManifest`, read at containerd commit 301026e5):
/// - `json.Marshal` (compact, no trailing newline) of the anonymous struct
///   `{SchemaVersion int "schemaVersion"; MediaType string "mediaType"; Config ocispec.Descriptor
///   "config"; Layers []ocispec.Descriptor "layers"}` with `schemaVersion` 2 and `mediaType`
///   `application/vnd.docker.distribution.manifest.v2+json`;
/// - each descriptor is `{"mediaType","digest","size"}` in that order (`ocispec.Descriptor`; its
///   other fields are `omitempty` and empty here);
/// - `digest` is the sha256 of the file's bytes as stored in the archive and `size` its tar
///   header size, for the config and for each layer (a symlinked layer gets its target's);
/// - the config's `mediaType` is `application/vnd.docker.container.image.v1+json`;
/// - a layer's `mediaType` comes from sniffing its first bytes (`compression.DecompressStream`):
///   uncompressed (or empty) → `application/vnd.docker.image.rootfs.diff.tar`; **any** detected
///   compression — gzip (`1f 8b 08`) *and* zstd (`28 b5 2f fd`, or a skippable frame) — →
///   `application/vnd.docker.image.rootfs.diff.tar.gzip`. There is no zstd case: a zstd layer is
///   labelled gzip. (moby's `LoadImage` does not pass `WithImportCompression`, so uncompressed
///   layers stay uncompressed.)
pub fn docker_archive_manifest(config: &Blob, layers: &[Blob]) -> Vec<u8> {
    let manifest = ManifestJson {
        schema_version: 2,
        media_type: media_type::DOCKER_MANIFEST.to_owned(),
        config: DescriptorJson {
            media_type: media_type::DOCKER_CONFIG.to_owned(),
            ..DescriptorJson::of(config)
        },
        layers: layers
            .iter()
            .map(|layer| DescriptorJson {
                media_type: containerd_sniffed_layer_type(layer).to_owned(),
                ..DescriptorJson::of(layer)
            })
            .collect(),
    };
    serde_json::to_vec(&manifest).expect("serialize docker-archive manifest")
}

/// The layer media type containerd's importer picks from the first ten bytes of the content.
fn containerd_sniffed_layer_type(layer: &Blob) -> &'static str {
    let mut head = Vec::with_capacity(10);
    std::fs::File::open(&layer.path)
        .and_then(|f| f.take(10).read_to_end(&mut head))
        .unwrap_or_else(|e| panic!("read the start of layer {}: {e}", layer.digest));
    let gzip = head.starts_with(&[0x1f, 0x8b, 0x08]);
    let zstd_frame = head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]);
    let zstd_skippable = head.len() >= 8
        && u32::from_le_bytes([head[0], head[1], head[2], head[3]]) & 0xFFFF_FFF0 == 0x184D_2A50;
    if gzip || zstd_frame || zstd_skippable {
        media_type::DOCKER_LAYER_GZIP
    } else {
        media_type::DOCKER_LAYER
    }
}
