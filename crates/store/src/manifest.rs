//! Which blobs a blob references, for walking image graphs (GC, and the engine's `children`).
//!
//! Only the references are parsed, with minimal serde structs; the blob bytes stay as stored.
//! Results are cached per digest: blobs are immutable, and GC walks the same manifests over and
//! over.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::sync::{Arc, Mutex, PoisonError};

use hoist_oci::limits::MAX_MANIFEST_BYTES;
use hoist_oci::media;
use hoist_reference::Digest;

use crate::blob::{open_blob_file, read_blob_limited};
use crate::descriptor::Descriptor;
use crate::error::{IoContext, StoreError};
use crate::layout::Layout;
use crate::store::Store;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ManifestKind {
    /// OCI index or Docker manifest list: references manifests.
    Index,
    /// OCI or Docker schema2 image manifest: references a config and layers.
    Manifest,
}

impl ManifestKind {
    pub fn of_media_type(media_type: &str) -> Option<ManifestKind> {
        if media::is_index(media_type) {
            Some(ManifestKind::Index)
        } else if media::is_manifest(media_type) {
            Some(ManifestKind::Manifest)
        } else {
            None
        }
    }

    pub(crate) fn parse_children(self, bytes: &[u8]) -> Result<Vec<Descriptor>, serde_json::Error> {
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
pub(crate) fn sniff(bytes: &[u8]) -> Option<ManifestKind> {
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

impl Store {
    /// The blobs `desc` references: an index or manifest list its manifests, a manifest its
    /// config then its layers; other media types none. Errors if the blob is absent or is not
    /// valid JSON of its media type.
    pub fn children(&self, desc: &Descriptor) -> Result<Vec<Descriptor>, StoreError> {
        match ManifestKind::of_media_type(&desc.media_type) {
            Some(kind) => {
                let children =
                    self.inner
                        .children
                        .of_kind(&self.inner.layout, &desc.digest, kind)?;
                Ok(children.to_vec())
            }
            None if self.has_blob(&desc.digest) => Ok(Vec::new()),
            None => Err(StoreError::NotFound(desc.digest.clone())),
        }
    }
}

type Children = Arc<[Descriptor]>;

#[derive(Default)]
pub(crate) struct ChildrenCache {
    parsed: Mutex<HashMap<(Digest, ManifestKind), Children>>,
    sniffed: Mutex<HashMap<Digest, Option<ManifestKind>>>,
    /// Digests appearing in manifests that cannot be parsed (see [`digests_named_in`]).
    named: Mutex<HashMap<Digest, Arc<[Digest]>>>,
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
                let kind = read_if_json_object(layout, digest)?.and_then(|bytes| sniff(&bytes));
                lock(&self.sniffed).insert(digest.clone(), kind);
                kind
            }
        };
        match kind {
            Some(kind) => self.of_kind(layout, digest, kind),
            None => Ok(Children::from([])),
        }
    }

    /// Every digest written out in a blob's bytes: a superset of what a manifest that cannot be
    /// parsed references, read in bounded memory whatever its size.
    pub fn named_in(&self, layout: &Layout, digest: &Digest) -> Result<Arc<[Digest]>, StoreError> {
        if let Some(named) = lock(&self.named).get(digest) {
            return Ok(named.clone());
        }
        let (file, _, path) = open_blob_file(layout, digest)?;
        let named: Arc<[Digest]> = digests_named_in(file)
            .context(|| format!("reading {}", path.display()))?
            .into_iter()
            .collect();
        lock(&self.named).insert(digest.clone(), named.clone());
        Ok(named)
    }

    /// Called when a blob is collected: a later blob with that digest would parse the same, but
    /// the cache should not outgrow the store.
    pub fn forget(&self, digest: &Digest) {
        let mut parsed = lock(&self.parsed);
        parsed.remove(&(digest.clone(), ManifestKind::Index));
        parsed.remove(&(digest.clone(), ManifestKind::Manifest));
        drop(parsed);
        lock(&self.sniffed).remove(digest);
        lock(&self.named).remove(digest);
    }
}

/// How many distinct digests [`digests_named_in`] keeps: the bytes of a real manifest name a few
/// thousand at most, and the set must stay bounded whatever a blob holds.
const MAX_NAMED_DIGESTS: usize = 1 << 20;

/// The distinct `sha256:<64 hex>` strings in `reader`, read in chunks. More than
/// [`MAX_NAMED_DIGESTS`] is an error: past that, what the bytes reference is unknowable.
pub(crate) fn digests_named_in(mut reader: impl Read) -> io::Result<HashSet<Digest>> {
    const PREFIX: &[u8] = b"sha256:";
    const LEN: usize = 7 + 64;
    let mut named = HashSet::new();
    let mut buf = vec![0u8; 64 * 1024 + LEN];
    let mut kept = 0;
    loop {
        let read = reader.read(&mut buf[kept..])?;
        let end = kept + read;
        let mut at = 0;
        // At the end of the input, nothing more can complete a match.
        while at + LEN <= end {
            let candidate = &buf[at..at + LEN];
            let hex = &candidate[PREFIX.len()..];
            if candidate.starts_with(PREFIX)
                && hex.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                && let Ok(digest) = std::str::from_utf8(candidate).map(Digest::parse)
                && let Ok(digest) = digest
            {
                named.insert(digest);
                if named.len() > MAX_NAMED_DIGESTS {
                    return Err(io::Error::other(format!(
                        "names more than {MAX_NAMED_DIGESTS} digests"
                    )));
                }
                at += LEN;
            } else {
                at += 1;
            }
        }
        if read == 0 {
            return Ok(named);
        }
        // The tail that could still start a match continues into the next chunk.
        buf.copy_within(at..end, 0);
        kept = end - at;
    }
}

fn read_manifest(layout: &Layout, digest: &Digest) -> Result<Vec<u8>, StoreError> {
    read_blob_limited(layout, digest, MAX_MANIFEST_BYTES)
}

/// Reads a blob only if it could be a manifest: small enough and starting with `{`. A lease
/// protects layers too, and reading megabytes of gzip to learn it is not JSON would hold up GC.
fn read_if_json_object(layout: &Layout, digest: &Digest) -> Result<Option<Vec<u8>>, StoreError> {
    const PEEK: u64 = 512;
    let (file, size, path) = open_blob_file(layout, digest)?;
    if size > MAX_MANIFEST_BYTES {
        return Ok(None);
    }
    let reading = || format!("reading {}", path.display());
    let mut file = file.take(MAX_MANIFEST_BYTES + 1);
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    (&mut file)
        .take(PEEK)
        .read_to_end(&mut bytes)
        .context(reading)?;
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        Some(_) => return Ok(None),
        None if (bytes.len() as u64) < PEEK => return Ok(None),
        None => {}
    }
    file.read_to_end(&mut bytes).context(reading)?;
    Ok((bytes.len() as u64 <= MAX_MANIFEST_BYTES).then_some(bytes))
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
            media::OCI_MANIFEST
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
    fn only_small_blobs_that_start_like_an_object_are_read_for_sniffing() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        layout.create().unwrap();
        let store = |bytes: &[u8]| {
            let digest = Digest::sha256_from_bytes(&[bytes.len() as u8; 32]);
            std::fs::write(layout.blob_path(&digest), bytes).unwrap();
            digest
        };
        let padded = [vec![b' '; 600], br#"{"manifests":[]}"#.to_vec()].concat();
        let padded = store(&padded);
        let gzip = store(&[0x1f, 0x8b, 8, 0]);
        let huge = store(&vec![b'{'; MAX_MANIFEST_BYTES as usize + 1]);

        assert!(read_if_json_object(&layout, &padded).unwrap().is_some());
        assert_eq!(read_if_json_object(&layout, &gzip).unwrap(), None);
        assert_eq!(read_if_json_object(&layout, &huge).unwrap(), None);
        let absent = Digest::sha256_from_bytes(&[0xee; 32]);
        assert!(matches!(
            read_if_json_object(&layout, &absent),
            Err(StoreError::NotFound(_))
        ));

        let cache = ChildrenCache::default();
        assert!(cache.of_unknown(&layout, &padded).unwrap().is_empty());
        assert!(cache.of_unknown(&layout, &gzip).unwrap().is_empty());
        assert_eq!(
            lock(&cache.sniffed).get(&padded),
            Some(&Some(ManifestKind::Index))
        );
    }

    #[test]
    fn finds_every_digest_written_in_any_bytes_across_chunk_boundaries() {
        let a = Digest::sha256_from_bytes(&[0xaa; 32]);
        let b = Digest::sha256_from_bytes(&[0xbb; 32]);
        // `b` straddles the first 64 KiB chunk; `sha256:` with too few or upper-case hex is not a
        // digest; repeats count once.
        let mut bytes = format!("{{\"x\":\"{a}\",").into_bytes();
        bytes.resize(64 * 1024 - 30, b' ');
        bytes.extend(format!("{b} {a} sha256:abc sha256:{}", "A".repeat(64)).bytes());
        let named = digests_named_in(bytes.as_slice()).unwrap();
        assert_eq!(named, HashSet::from([a, b]));
        assert!(digests_named_in(&b"\x1f\x8b"[..]).unwrap().is_empty());
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
