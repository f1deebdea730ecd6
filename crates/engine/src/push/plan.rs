//! Deciding what a push sends: which blobs, which manifests in which order, and what to do when a
//! multi-platform image is only partly present locally.

use bytes::Bytes;
use hoist_reference::Digest;
use hoist_registry::Repository;
use hoist_store::{Descriptor, Store};

use crate::blocking;
use crate::error::EngineError;
use crate::image_content::{IndexEntry, parse_manifest};
use crate::media::{self, MAX_MANIFEST_BYTES};
use crate::platform::Platform;

pub(crate) struct PushPlan {
    /// Pushed last, under the tag.
    pub root: Descriptor,
    pub root_bytes: Bytes,
    /// Pushed by digest, before the root.
    pub child_manifests: Vec<(Descriptor, Bytes)>,
    /// Unique blobs to transfer (layers and configs).
    pub blobs: Vec<PlanBlob>,
    /// Set when a partial index could not be pushed whole and one platform's manifest is pushed
    /// under the tag instead.
    pub fallback: Option<Fallback>,
}

/// A platform manifest pushed under the tag instead of its index, and why.
pub(crate) struct Fallback {
    pub original: IndexEntry,
    pub selected: IndexEntry,
    /// Why the index could not be pushed whole, for the status line.
    pub reason: String,
}

pub(crate) struct PlanBlob {
    pub descriptor: Descriptor,
    /// Shown to the client as a layer line; configs and attestation blobs transfer silently.
    pub is_layer: bool,
    /// Not in the local store: read from this repository (where the image came from) as it is
    /// sent.
    pub relay_from: Option<Repository>,
}

/// What planning found: a plan, or an index only partly here and in the target repository.
pub(crate) enum Planned {
    Ready(Box<PushPlan>),
    Partial(PartialIndex),
}

/// An index of which some manifests or blobs are neither in the local store nor in the target
/// repository: it is either completed from elsewhere or replaced by one platform's manifest.
pub(crate) struct PartialIndex {
    pub root: Descriptor,
    pub root_bytes: Bytes,
    pub present: Vec<LocalManifest>,
    /// Manifests listed by the index that are not in the local store (nor in the target).
    pub absent: Vec<IndexEntry>,
    display_name: String,
}

/// A manifest fetched from elsewhere to complete a partial index, with its blobs.
pub(crate) struct FetchedManifest {
    pub descriptor: Descriptor,
    pub bytes: Bytes,
    pub blobs: Vec<Descriptor>,
    /// Those of `blobs` not in the local store.
    pub missing: Vec<Descriptor>,
}

impl PushPlan {
    /// Layers in the order docker shows `Preparing`: each manifest's top-most layer first.
    pub fn display_layers(&self) -> impl Iterator<Item = &Descriptor> {
        self.blobs
            .iter()
            .filter(|b| b.is_layer)
            .map(|b| &b.descriptor)
    }
}

/// The store reads planning needs: whether blobs are present, and the bytes of manifests.
pub(crate) trait LocalContent {
    fn has_blob(&self, digest: &Digest) -> bool;
    fn read_manifest(&self, digest: &Digest) -> Result<Bytes, EngineError>;
}

impl LocalContent for Store {
    fn has_blob(&self, digest: &Digest) -> bool {
        Store::has_blob(self, digest)
    }

    fn read_manifest(&self, digest: &Digest) -> Result<Bytes, EngineError> {
        Ok(Bytes::from(self.read_blob(digest, MAX_MANIFEST_BYTES)?))
    }
}

/// A manifest present locally, with the blobs it needs and which of those are absent.
pub(crate) struct LocalManifest {
    pub entry: IndexEntry,
    bytes: Bytes,
    blobs: Vec<Descriptor>,
    pub missing: Vec<Descriptor>,
}

impl LocalManifest {
    fn has(&self, blob: &Descriptor) -> bool {
        !self.missing.iter().any(|m| m.digest == blob.digest)
    }
}

/// What the local store holds of a push's target.
enum LocalTarget {
    /// A manifest with all its blobs.
    Manifest(Box<LocalManifest>),
    /// An index, with the child manifests present locally and those absent.
    Index {
        bytes: Bytes,
        present: Vec<LocalManifest>,
        absent: Vec<IndexEntry>,
    },
}

fn local_manifest(
    content: &impl LocalContent,
    entry: &IndexEntry,
) -> Result<Option<LocalManifest>, EngineError> {
    let desc = &entry.descriptor;
    if !content.has_blob(&desc.digest) {
        return Ok(None);
    }
    let bytes = content.read_manifest(&desc.digest)?;
    let blobs = manifest_blobs(&desc.digest, &bytes)?;
    let missing = blobs
        .iter()
        .filter(|b| !content.has_blob(&b.digest))
        .cloned()
        .collect();
    Ok(Some(LocalManifest {
        entry: entry.clone(),
        bytes,
        blobs,
        missing,
    }))
}

/// The blobs a manifest needs, config first, then its layers top-most first (Docker lists them
/// bottom-up; docker shows and starts the top-most first). Non-distributable layers are left out.
pub(crate) fn manifest_blobs(
    digest: &Digest,
    bytes: &[u8],
) -> Result<Vec<Descriptor>, EngineError> {
    let doc = parse_manifest(digest, bytes)?;
    let mut blobs: Vec<Descriptor> = doc.config.into_iter().collect();
    blobs.extend(
        doc.layers
            .into_iter()
            .rev()
            .filter(|l| !media::is_non_distributable(&l.media_type)),
    );
    Ok(blobs)
}

fn entry_for(desc: &Descriptor) -> IndexEntry {
    IndexEntry {
        descriptor: desc.clone(),
        platform: None,
        annotations: None,
    }
}

/// Reads what the push needs of the local store, each manifest once.
fn read_local(
    content: &impl LocalContent,
    target: &Descriptor,
    display_name: &str,
) -> Result<LocalTarget, EngineError> {
    if media::is_manifest(&target.media_type) {
        let Some(local) = local_manifest(content, &entry_for(target))? else {
            return Err(missing_content(display_name, &target.digest));
        };
        if let Some(first) = local.missing.first() {
            return Err(missing_content(display_name, &first.digest));
        }
        return Ok(LocalTarget::Manifest(Box::new(local)));
    }
    if !media::is_index(&target.media_type) {
        return Err(EngineError::InvalidArgument(format!(
            "{display_name}: cannot push content of media type {}",
            target.media_type
        )));
    }
    let bytes = content.read_manifest(&target.digest)?;
    let index = parse_manifest(&target.digest, &bytes)?;
    let mut present = Vec::new();
    let mut absent = Vec::new();
    for entry in &index.manifests {
        match local_manifest(content, entry)? {
            Some(local) if media::is_manifest(&entry.descriptor.media_type) => present.push(local),
            _ => absent.push(entry.clone()),
        }
    }
    Ok(LocalTarget::Index {
        bytes,
        present,
        absent,
    })
}

/// Decides what a push of `target` sends. The store is read off the async threads; the registry
/// is asked only about what a partial index lacks locally.
pub(crate) async fn plan_push(
    store: Store,
    target: &Descriptor,
    display_name: &str,
    repository: &Repository,
) -> Result<Planned, EngineError> {
    let local = {
        let (target, display_name) = (target.clone(), display_name.to_owned());
        blocking::run(move || read_local(&store, &target, &display_name)).await?
    };
    let (root_bytes, present, absent) = match local {
        LocalTarget::Manifest(local) => return Ok(Planned::Ready(Box::new(single(*local, None)))),
        LocalTarget::Index {
            bytes,
            present,
            absent,
        } => (bytes, present, absent),
    };
    let incomplete = !absent.is_empty() || present.iter().any(|m| !m.missing.is_empty());
    let partial = PartialIndex {
        root: target.clone(),
        root_bytes,
        present,
        absent,
        display_name: display_name.to_owned(),
    };
    if !incomplete || registry_has_the_rest(repository, &partial.absent, &partial.present).await? {
        return Ok(Planned::Ready(Box::new(partial.complete(Vec::new(), None))));
    }
    Ok(Planned::Partial(partial))
}

impl PartialIndex {
    /// The whole index: what is here, and `fetched` (the absent manifests, from `origin`)
    /// with every blob missing here relayed from `origin`. Without `origin`, everything missing
    /// here is in the target repository already.
    pub fn complete(self, fetched: Vec<FetchedManifest>, origin: Option<&Repository>) -> PushPlan {
        let mut blobs = Vec::new();
        let mut children = Vec::new();
        let relay = |b: &Descriptor, local: bool| PlanBlob {
            descriptor: b.clone(),
            is_layer: media::is_layer(&b.media_type),
            relay_from: if local { None } else { origin.cloned() },
        };
        for m in &self.present {
            for b in &m.blobs {
                if m.has(b) || origin.is_some() {
                    push_unique(&mut blobs, relay(b, m.has(b)));
                }
            }
            children.push((m.entry.descriptor.clone(), m.bytes.clone()));
        }
        for m in fetched {
            for b in &m.blobs {
                let local = !m.missing.iter().any(|x| x.digest == b.digest);
                push_unique(&mut blobs, relay(b, local));
            }
            children.push((m.descriptor, m.bytes));
        }
        PushPlan {
            root: self.root,
            root_bytes: self.root_bytes,
            child_manifests: children,
            blobs,
            fallback: None,
        }
    }

    /// Push what can be pushed whole: the complete manifest that best suits this host, under
    /// the tag. `reason` says why the index could not be pushed whole.
    pub fn fall_back(self, host: &Platform, reason: String) -> Result<PushPlan, EngineError> {
        let best = self
            .present
            .into_iter()
            .filter(|m| m.missing.is_empty() && !m.entry.is_attestation())
            .filter_map(|m| {
                let pref = m
                    .entry
                    .platform
                    .as_ref()
                    .and_then(|p| host.host_preference(p))?;
                Some((pref, m))
            })
            .min_by_key(|(pref, _)| *pref);
        match best {
            Some((_, chosen)) => {
                let fallback = Fallback {
                    original: entry_for(&self.root),
                    selected: chosen.entry.clone(),
                    reason,
                };
                Ok(single(chosen, Some(fallback)))
            }
            None => Err(EngineError::NotFound(format!(
                "cannot push {}: the content of its image index {} is only partly in the local store, \
                 the registry does not have the rest, and no complete manifest for {} is available locally ({reason})",
                self.display_name,
                self.root.digest,
                host.format()
            ))),
        }
    }
}

fn single(local: LocalManifest, fallback: Option<Fallback>) -> PushPlan {
    let mut blobs = Vec::new();
    for b in &local.blobs {
        push_unique(
            &mut blobs,
            PlanBlob {
                descriptor: b.clone(),
                is_layer: media::is_layer(&b.media_type),
                relay_from: None,
            },
        );
    }
    PushPlan {
        root: local.entry.descriptor,
        root_bytes: local.bytes,
        child_manifests: Vec::new(),
        blobs,
        fallback,
    }
}

/// Adds `blob` unless a blob of the same digest is there; a local copy wins over a relayed one.
fn push_unique(blobs: &mut Vec<PlanBlob>, blob: PlanBlob) {
    match blobs
        .iter_mut()
        .find(|b| b.descriptor.digest == blob.descriptor.digest)
    {
        Some(known) if blob.relay_from.is_none() => known.relay_from = None,
        Some(_) => {}
        None => blobs.push(blob),
    }
}

/// True when everything absent locally is already in the target repository: then the index can
/// still be pushed whole.
async fn registry_has_the_rest(
    repository: &Repository,
    absent: &[IndexEntry],
    present: &[LocalManifest],
) -> Result<bool, EngineError> {
    for entry in absent {
        let digest = &entry.descriptor.digest;
        if repository.manifest_digest(digest.as_str()).await?.is_none() {
            return Ok(false);
        }
    }
    for m in present {
        for blob in &m.missing {
            if repository.blob_exists(&blob.digest).await?.is_none() {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

fn missing_content(name: &str, digest: &Digest) -> EngineError {
    EngineError::NotFound(format!(
        "missing content: {digest} of {name} is not in the local store"
    ))
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use sha2::Digest as _;

    use super::*;

    const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

    /// Blobs in memory, counting how often each manifest is read.
    #[derive(Default)]
    struct Content {
        blobs: HashMap<Digest, Bytes>,
        reads: RefCell<HashMap<Digest, usize>>,
    }

    impl Content {
        fn add(&mut self, media_type: &str, bytes: Vec<u8>) -> Descriptor {
            let digest = Digest::sha256_from_bytes(&sha2::Sha256::digest(&bytes).into());
            let desc = Descriptor {
                media_type: media_type.into(),
                digest: digest.clone(),
                size: bytes.len() as u64,
            };
            self.blobs.insert(digest, Bytes::from(bytes));
            desc
        }

        fn manifest(&mut self, layer: &[u8]) -> Descriptor {
            let config = self.add("application/vnd.oci.image.config.v1+json", b"{}".to_vec());
            let layer = self.add("application/vnd.oci.image.layer.v1.tar", layer.to_vec());
            let doc = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": config,
                "layers": [layer],
            });
            self.add(OCI_MANIFEST, serde_json::to_vec(&doc).unwrap())
        }
    }

    impl LocalContent for Content {
        fn has_blob(&self, digest: &Digest) -> bool {
            self.blobs.contains_key(digest)
        }

        fn read_manifest(&self, digest: &Digest) -> Result<Bytes, EngineError> {
            *self.reads.borrow_mut().entry(digest.clone()).or_default() += 1;
            self.blobs
                .get(digest)
                .cloned()
                .ok_or_else(|| EngineError::NotFound(digest.to_string()))
        }
    }

    #[test]
    fn each_manifest_is_read_once() {
        let mut content = Content::default();
        let amd64 = content.manifest(b"amd64 layer");
        let arm64 = content.manifest(b"arm64 layer");
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {"mediaType": amd64.media_type, "digest": amd64.digest, "size": amd64.size,
                 "platform": {"os": "linux", "architecture": "amd64"}},
                {"mediaType": arm64.media_type, "digest": arm64.digest, "size": arm64.size,
                 "platform": {"os": "linux", "architecture": "arm64"}},
            ],
        });
        let index = content.add(
            "application/vnd.oci.image.index.v1+json",
            serde_json::to_vec(&index).unwrap(),
        );

        let LocalTarget::Index {
            present, absent, ..
        } = read_local(&content, &index, "test").unwrap()
        else {
            panic!("an index is read as one");
        };
        assert_eq!((present.len(), absent.len()), (2, 0));
        assert!(present.iter().all(|m| m.missing.is_empty()));
        let reads = content.reads.take();
        assert_eq!(reads.len(), 3);
        assert!(reads.values().all(|n| *n == 1), "{reads:?}");

        assert!(matches!(
            read_local(&content, &amd64, "test").unwrap(),
            LocalTarget::Manifest(_)
        ));
        assert_eq!(content.reads.borrow().get(&amd64.digest), Some(&1));
    }
}
