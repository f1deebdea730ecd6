//! Which blobs a blob references, for walking image graphs (GC, and the engine's `children`).
//!
//! Only the references are parsed, with minimal serde structs; the blob bytes stay as stored.
//! Results are cached per digest: blobs are immutable, and GC walks the same manifests over and
//! over.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::sync::{Arc, Mutex, PoisonError};

use hoist_reference::Digest;

use crate::descriptor::{Descriptor, media_type};
use crate::error::{IoContext, StoreError};
use crate::layout::Layout;

/// Registries refuse manifests above 4 MiB (distribution's limit), so anything larger is not one
/// of ours, and reading it whole to find out would be wasteful.
pub(crate) const MANIFEST_SIZE_LIMIT: u64 = 4 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ManifestKind {
    /// OCI index or Docker manifest list: references manifests.
    Index,
    /// OCI or Docker schema2 image manifest: references a config and layers.
    Manifest,
}

impl ManifestKind {
    pub fn of_media_type(media_type: &str) -> Option<ManifestKind> {
        match media_type {
            media_type::OCI_INDEX | media_type::DOCKER_MANIFEST_LIST => Some(ManifestKind::Index),
            media_type::OCI_MANIFEST | media_type::DOCKER_MANIFEST => Some(ManifestKind::Manifest),
            _ => None,
        }
    }

    fn parse_children(self, bytes: &[u8]) -> Result<Vec<Descriptor>, serde_json::Error> {
        #[derive(serde::Deserialize)]
        struct Index {
            manifests: Vec<Descriptor>,
        }
        #[derive(serde::Deserialize)]
        struct Manifest {
            config: Descriptor,
            layers: Vec<Descriptor>,
        }
        match self {
            ManifestKind::Index => Ok(serde_json::from_slice::<Index>(bytes)?.manifests),
            ManifestKind::Manifest => {
                let manifest: Manifest = serde_json::from_slice(bytes)?;
                let mut children = Vec::with_capacity(manifest.layers.len() + 1);
                children.push(manifest.config);
                children.extend(manifest.layers);
                Ok(children)
            }
        }
    }
}

/// Guesses whether JSON bytes of unknown media type are an index or a manifest.
///
/// Lease roots are bare digests, so this is how GC finds what a protected manifest references.
/// The `mediaType` field decides when present (it is in every Docker and containerd-built
/// manifest); otherwise the shape does, as OCI lets manifests omit it. An image config has a
/// `config` field but no `layers`, so it is not mistaken for a manifest.
fn sniff(bytes: &[u8]) -> Option<ManifestKind> {
    #[derive(serde::Deserialize)]
    struct Shape {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde::de::IgnoredAny>,
        config: Option<serde::de::IgnoredAny>,
        layers: Option<serde::de::IgnoredAny>,
    }
    // Layers are compressed tars: don't bother the JSON parser with them.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' {
        return None;
    }
    let shape: Shape = serde_json::from_slice(bytes).ok()?;
    match shape.media_type.as_deref() {
        Some(media_type) => ManifestKind::of_media_type(media_type),
        None if shape.manifests.is_some() => Some(ManifestKind::Index),
        None if shape.config.is_some() && shape.layers.is_some() => Some(ManifestKind::Manifest),
        None => None,
    }
}

type Children = Arc<[Descriptor]>;

#[derive(Default)]
pub(crate) struct ChildrenCache {
    parsed: Mutex<HashMap<(Digest, ManifestKind), Children>>,
    sniffed: Mutex<HashMap<Digest, Option<ManifestKind>>>,
}

// A poisoned cache only means another thread panicked between two map operations; every entry in
// it is still a complete, correct value.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ChildrenCache {
    /// Children of a blob read as `kind`. `NotFound` if the blob is absent.
    pub fn of_kind(
        &self,
        layout: &Layout,
        digest: &Digest,
        kind: ManifestKind,
    ) -> Result<Children, StoreError> {
        let key = (digest.clone(), kind);
        if let Some(children) = lock(&self.parsed).get(&key) {
            return Ok(children.clone());
        }
        // Read outside the lock: other walkers should not wait on our disk I/O.
        let bytes = read_manifest(layout, digest)?;
        let children: Children = kind
            .parse_children(&bytes)
            .map_err(|e| StoreError::InvalidManifest {
                digest: digest.clone(),
                reason: e.to_string(),
            })?
            .into();
        lock(&self.parsed).insert(key, children.clone());
        Ok(children)
    }

    /// Children of a blob whose media type is unknown (see [`sniff`]). `NotFound` if absent;
    /// blobs that are not manifests, including oversized ones, have none.
    pub fn of_unknown(&self, layout: &Layout, digest: &Digest) -> Result<Children, StoreError> {
        let cached = lock(&self.sniffed).get(digest).copied();
        let kind = match cached {
            Some(kind) => kind,
            None => {
                let kind = match read_manifest(layout, digest) {
                    Ok(bytes) => sniff(&bytes),
                    Err(StoreError::TooLarge { .. }) => None,
                    Err(e) => return Err(e),
                };
                lock(&self.sniffed).insert(digest.clone(), kind);
                kind
            }
        };
        match kind {
            Some(kind) => self.of_kind(layout, digest, kind),
            None => Ok(Children::from([])),
        }
    }

    /// Called when a blob is collected: a later blob with that digest would parse the same, but
    /// the cache should not outgrow the store.
    pub fn forget(&self, digest: &Digest) {
        let mut parsed = lock(&self.parsed);
        parsed.remove(&(digest.clone(), ManifestKind::Index));
        parsed.remove(&(digest.clone(), ManifestKind::Manifest));
        drop(parsed);
        lock(&self.sniffed).remove(digest);
    }
}

fn read_manifest(layout: &Layout, digest: &Digest) -> Result<Vec<u8>, StoreError> {
    read_blob_limited(layout, digest, MANIFEST_SIZE_LIMIT)
}

/// Reads a whole blob, refusing more than `limit` bytes (checked again while reading, so a file
/// that is not what its size said cannot make us allocate without bound).
pub(crate) fn read_blob_limited(
    layout: &Layout,
    digest: &Digest,
    limit: u64,
) -> Result<Vec<u8>, StoreError> {
    let path = layout.blob_path(digest);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(StoreError::NotFound(digest.clone()));
        }
        Err(e) => return Err(e).context(|| format!("opening {}", path.display())),
    };
    let size = file
        .metadata()
        .context(|| format!("reading metadata of {}", path.display()))?
        .len();
    let too_large = |size| StoreError::TooLarge {
        digest: digest.clone(),
        size,
        limit,
    };
    if size > limit {
        return Err(too_large(size));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_children_in_order_and_ignores_other_fields() {
        let config = "sha256:".to_owned() + &"c".repeat(64);
        let layer = "sha256:".to_owned() + &"1".repeat(64);
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":7}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer}","size":9,"annotations":{{"a":"b"}}}}]}}"#,
            media_type::OCI_MANIFEST
        );
        let children = ManifestKind::Manifest
            .parse_children(manifest.as_bytes())
            .unwrap();
        let digests: Vec<_> = children.iter().map(|d| d.digest.as_str()).collect();
        assert_eq!(digests, [config.as_str(), layer.as_str()]);
        assert_eq!(children[1].size, 9);
        assert!(
            ManifestKind::Index
                .parse_children(manifest.as_bytes())
                .is_err()
        );
    }

    #[test]
    fn sniffs_by_media_type_then_by_shape() {
        let cases: &[(&str, Option<ManifestKind>)] = &[
            (
                r#"{"mediaType":"application/vnd.oci.image.index.v1+json"}"#,
                Some(ManifestKind::Index),
            ),
            (
                r#"{"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#,
                Some(ManifestKind::Manifest),
            ),
            (
                r#"{"mediaType":"application/vnd.oci.image.config.v1+json","layers":[]}"#,
                None,
            ),
            (
                r#"  {"schemaVersion":2,"manifests":[]}"#,
                Some(ManifestKind::Index),
            ),
            (r#"{"config":{},"layers":[]}"#, Some(ManifestKind::Manifest)),
            // A Docker image config: `config` but no `layers`.
            (
                r#"{"architecture":"amd64","config":{"Env":[]},"rootfs":{}}"#,
                None,
            ),
            ("\x1f\u{8b}\u{8}\0", None),
            ("[1,2]", None),
            ("{not json", None),
            ("", None),
        ];
        for (bytes, want) in cases {
            assert_eq!(sniff(bytes.as_bytes()), *want, "{bytes:?}");
        }
    }
}
