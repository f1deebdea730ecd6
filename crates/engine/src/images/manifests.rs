//! What an image's content amounts to, manifest by manifest, as moby's containerd image store
//! reports it (`ImageManifestSummary`): each platform manifest with its availability, kind and
//! sizes, and the blobs present locally. hoist keeps no unpacked snapshots, so every size is
//! content size and `Unpacked` is 0.

use std::collections::{BTreeMap, HashSet};

use hoist_reference::Digest;
use hoist_store::{Descriptor, Store};

use crate::EngineError;
use crate::image_content::{IndexEntry, read_manifest};
use crate::media;
use crate::platform::Platform;

/// Indexes nested deeper than this are not walked (no real image nests more than one).
const MAX_INDEX_DEPTH: usize = 4;

/// BuildKit's annotations on an attestation manifest in an index.
const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";

/// What a manifest of an image is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManifestKind {
    /// A runnable image for its platform.
    Image(ImageData),
    /// A BuildKit attestation of the manifest with this digest.
    Attestation { of: Digest },
    /// Neither (a pseudo-image whose purpose hoist cannot tell).
    Unknown,
}

/// The platform of an image manifest: the index's word for it, else its config's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageData {
    pub platform: Platform,
}

/// One manifest reachable from an image's target.
#[derive(Clone, Debug)]
pub struct ManifestSummary {
    /// The descriptor as the index gives it (platform and annotations included).
    pub descriptor: Descriptor,
    pub platform: Option<Platform>,
    pub annotations: Option<BTreeMap<String, String>>,
    /// The manifest, its config and every layer are present locally.
    pub available: bool,
    /// Bytes of the manifest's blobs present locally (manifest, config, layers).
    pub content_size: u64,
    pub kind: ManifestKind,
}

/// An image's content as a whole.
#[derive(Debug, Default)]
pub struct ContentSummary {
    pub manifests: Vec<ManifestSummary>,
    /// Blobs present below the manifests (not the index itself), each once.
    pub blobs: Vec<Descriptor>,
}

impl ContentSummary {
    /// moby's `Size` of a listed image: the content of every manifest, summed per manifest.
    pub fn total_size(&self) -> u64 {
        self.manifests.iter().map(|m| m.content_size).sum()
    }
}

/// Summarises the manifests reachable from `target`.
pub(crate) fn summarize(store: &Store, target: &Descriptor) -> Result<ContentSummary, EngineError> {
    let mut summary = ContentSummary::default();
    let mut seen = HashSet::new();
    let root = IndexEntry {
        descriptor: target.clone(),
        platform: None,
        annotations: None,
    };
    visit(store, &root, 0, &mut summary, &mut seen)?;
    Ok(summary)
}

fn visit(
    store: &Store,
    entry: &IndexEntry,
    depth: usize,
    summary: &mut ContentSummary,
    seen: &mut HashSet<Digest>,
) -> Result<(), EngineError> {
    let desc = &entry.descriptor;
    if media::is_manifest(&desc.media_type) {
        let (manifest, present) = summarize_manifest(store, entry)?;
        for blob in present {
            if seen.insert(blob.digest.clone()) {
                summary.blobs.push(blob);
            }
        }
        summary.manifests.push(manifest);
        return Ok(());
    }
    if !media::is_index(&desc.media_type)
        || depth >= MAX_INDEX_DEPTH
        || !store.has_blob(&desc.digest)
    {
        return Ok(());
    }
    for child in read_manifest(store, desc)?.manifests {
        visit(store, &child, depth + 1, summary, seen)?;
    }
    Ok(())
}

/// The summary of one manifest, and its blobs present locally.
fn summarize_manifest(
    store: &Store,
    entry: &IndexEntry,
) -> Result<(ManifestSummary, Vec<Descriptor>), EngineError> {
    let desc = &entry.descriptor;
    let present = present_children(store, desc)?;
    let doc = if store.has_blob(&desc.digest) {
        Some(read_manifest(store, desc)?)
    } else {
        None
    };
    let available = doc.as_ref().is_some_and(|doc| {
        doc.config
            .iter()
            .chain(&doc.layers)
            .all(|d| store.has_blob(&d.digest))
            && doc.config.is_some()
    });
    let annotation = |key: &str| entry.annotations.as_ref().and_then(|a| a.get(key));
    let pseudo = annotation(REFERENCE_TYPE).is_some()
        || entry.platform.as_ref().is_some_and(Platform::is_unknown)
        || doc.as_ref().is_some_and(|doc| {
            !doc.layers.is_empty() && !doc.layers.iter().any(|l| media::is_layer(&l.media_type))
        });
    let kind = if pseudo {
        match annotation(REFERENCE_TYPE)
            .and(annotation(REFERENCE_DIGEST))
            .and_then(|d| Digest::parse(d).ok())
        {
            Some(of) => ManifestKind::Attestation { of },
            None => ManifestKind::Unknown,
        }
    } else {
        let platform = match &entry.platform {
            Some(p) => p.clone(),
            None if available => config_platform(store, doc.as_ref())?,
            None => Platform::default(),
        };
        ManifestKind::Image(ImageData { platform })
    };
    let summary = ManifestSummary {
        descriptor: desc.clone(),
        platform: entry.platform.clone(),
        annotations: entry.annotations.clone(),
        available,
        content_size: present.iter().map(|d| d.size).sum(),
        kind,
    };
    Ok((summary, present))
}

fn config_platform(
    store: &Store,
    doc: Option<&crate::image_content::ManifestDoc>,
) -> Result<Platform, EngineError> {
    let Some(config) = doc.and_then(|d| d.config.as_ref()) else {
        return Ok(Platform::default());
    };
    let raw = store.read_blob(&config.digest, media::MAX_CONFIG_BYTES)?;
    Ok(serde_json::from_slice(&raw).unwrap_or_default())
}

/// containerd's `walkPresentChildren` from `desc`: `desc` and, for manifests and indexes, their
/// children, recursively, keeping only the blobs present locally.
pub(crate) fn present_children(
    store: &Store,
    desc: &Descriptor,
) -> Result<Vec<Descriptor>, EngineError> {
    let mut out = Vec::new();
    let mut stack = vec![(desc.clone(), 0)];
    while let Some((desc, depth)) = stack.pop() {
        if !store.has_blob(&desc.digest) {
            continue;
        }
        let readable = media::is_manifest(&desc.media_type) || media::is_index(&desc.media_type);
        if readable && depth < MAX_INDEX_DEPTH {
            let doc = read_manifest(store, &desc)?;
            let children = doc
                .config
                .into_iter()
                .chain(doc.layers)
                .chain(doc.manifests.into_iter().map(|e| e.descriptor));
            // Reversed so the walk visits children in document order.
            let children: Vec<_> = children.map(|c| (c, depth + 1)).collect();
            stack.extend(children.into_iter().rev());
        }
        out.push(desc);
    }
    Ok(out)
}

/// The configs present below `target`, in walk order.
pub(crate) fn present_configs(
    store: &Store,
    target: &Descriptor,
) -> Result<Vec<Descriptor>, EngineError> {
    Ok(present_children(store, target)?
        .into_iter()
        .filter(|d| d.media_type == media::OCI_CONFIG || d.media_type == media::DOCKER_CONFIG)
        .collect())
}
