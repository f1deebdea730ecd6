//! Deciding what a push sends: which blobs, which manifests in which order, and what to do when a
//! multi-platform image is only partly present locally.

use bytes::Bytes;
use hoist_reference::Digest;
use hoist_registry::Repository;
use hoist_store::{Descriptor, Store};

use crate::EngineError;
use crate::image_content::{IndexEntry, read_manifest};
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
    /// under the tag instead: (the index, the manifest chosen).
    pub fallback: Option<(IndexEntry, IndexEntry)>,
}

pub(crate) struct PlanBlob {
    pub descriptor: Descriptor,
    /// Shown to the client as a layer line; configs and attestation blobs transfer silently.
    pub is_layer: bool,
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

/// A manifest present locally, with the blobs it needs and which of those are absent.
struct LocalManifest {
    entry: IndexEntry,
    bytes: Bytes,
    blobs: Vec<Descriptor>,
    missing: Vec<Descriptor>,
}

fn local_manifest(store: &Store, entry: &IndexEntry) -> Result<Option<LocalManifest>, EngineError> {
    let desc = &entry.descriptor;
    if !store.has_blob(&desc.digest) {
        return Ok(None);
    }
    let bytes = Bytes::from(store.read_blob(&desc.digest, MAX_MANIFEST_BYTES)?);
    let doc = read_manifest(store, desc)?;
    let mut blobs: Vec<Descriptor> = doc.config.into_iter().collect();
    // Docker lists layers bottom-up; show and start the top-most first.
    blobs.extend(
        doc.layers
            .into_iter()
            .rev()
            .filter(|l| !media::is_non_distributable(&l.media_type)),
    );
    let missing = blobs
        .iter()
        .filter(|b| !store.has_blob(&b.digest))
        .cloned()
        .collect();
    Ok(Some(LocalManifest {
        entry: entry.clone(),
        bytes,
        blobs,
        missing,
    }))
}

fn entry_for(desc: &Descriptor) -> IndexEntry {
    IndexEntry {
        descriptor: desc.clone(),
        platform: None,
        annotations: None,
    }
}

pub(crate) async fn plan_push(
    store: &Store,
    target: &Descriptor,
    display_name: &str,
    repository: &Repository,
    host: &Platform,
) -> Result<PushPlan, EngineError> {
    if media::is_manifest(&target.media_type) {
        let Some(local) = local_manifest(store, &entry_for(target))? else {
            return Err(missing_content(display_name, &target.digest));
        };
        if let Some(first) = local.missing.first() {
            return Err(missing_content(display_name, &first.digest));
        }
        return Ok(single(local, None));
    }
    if !media::is_index(&target.media_type) {
        return Err(EngineError::InvalidArgument(format!(
            "{display_name}: cannot push content of media type {}",
            target.media_type
        )));
    }
    let root_bytes = Bytes::from(store.read_blob(&target.digest, MAX_MANIFEST_BYTES)?);
    let index = read_manifest(store, target)?;
    let mut present = Vec::new();
    let mut absent = Vec::new();
    for entry in &index.manifests {
        match local_manifest(store, entry)? {
            Some(local) if media::is_manifest(&entry.descriptor.media_type) => present.push(local),
            _ => absent.push(entry.clone()),
        }
    }
    let incomplete = !absent.is_empty() || present.iter().any(|m| !m.missing.is_empty());
    if !incomplete || registry_has_the_rest(repository, &absent, &present).await? {
        let mut blobs = Vec::new();
        let mut children = Vec::new();
        for m in &present {
            for b in m.blobs.iter().filter(|b| store.has_blob(&b.digest)) {
                push_unique(&mut blobs, b);
            }
            children.push((m.entry.descriptor.clone(), m.bytes.clone()));
        }
        return Ok(PushPlan {
            root: target.clone(),
            root_bytes,
            child_manifests: children,
            blobs,
            fallback: None,
        });
    }
    // Push what can be pushed whole: the complete manifest that best suits this host.
    let best = present
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
            let original = IndexEntry {
                descriptor: target.clone(),
                platform: None,
                annotations: None,
            };
            let selected = chosen.entry.clone();
            Ok(single(chosen, Some((original, selected))))
        }
        None => Err(EngineError::NotFound(format!(
            "cannot push {display_name}: the content of its image index {} is only partly in the local store, \
             the registry does not have the rest, and no complete manifest for {} is available locally",
            target.digest,
            host.format()
        ))),
    }
}

fn single(local: LocalManifest, fallback: Option<(IndexEntry, IndexEntry)>) -> PushPlan {
    let mut blobs = Vec::new();
    for b in &local.blobs {
        push_unique(&mut blobs, b);
    }
    PushPlan {
        root: local.entry.descriptor,
        root_bytes: local.bytes,
        child_manifests: Vec::new(),
        blobs,
        fallback,
    }
}

fn push_unique(blobs: &mut Vec<PlanBlob>, desc: &Descriptor) {
    if !blobs.iter().any(|b| b.descriptor.digest == desc.digest) {
        blobs.push(PlanBlob {
            descriptor: desc.clone(),
            is_layer: media::is_layer(&desc.media_type),
        });
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
