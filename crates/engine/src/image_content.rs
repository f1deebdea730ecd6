//! Reading an image's manifests and config out of the store, choosing the platform to show when
//! the image is a multi-platform index.

use hoist_reference::Digest;
use hoist_store::{Descriptor, Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::EngineError;
use crate::media::{self, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES};
use crate::platform::{Matching, Platform};

/// Child manifests of one index fetched from a registry at once, by a pull or by a push
/// completing an index: they are small, and an index may list thousands (their layers go
/// through the daemon-wide transfer slots).
pub(crate) const MANIFEST_FETCHES_AT_ONCE: usize = 8;

/// The fields of a manifest or index hoist reads. Raw bytes stay the source of truth; this is
/// parsed only to decide things and is never serialised back.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ManifestDoc {
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default)]
    pub manifests: Vec<IndexEntry>,
}

/// A descriptor in an index, with the platform and annotations that say what it is.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
pub(crate) struct IndexEntry {
    #[serde(flatten)]
    pub descriptor: Descriptor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

impl IndexEntry {
    /// BuildKit's attestation manifests ride along in an index but are not runnable images.
    pub fn is_attestation(&self) -> bool {
        self.platform.as_ref().is_some_and(Platform::is_unknown)
            || self.annotations.as_ref().is_some_and(|a| {
                a.get("vnd.docker.reference.type").map(String::as_str)
                    == Some("attestation-manifest")
            })
    }
}

pub(crate) fn read_manifest(store: &Store, desc: &Descriptor) -> Result<ManifestDoc, EngineError> {
    let bytes = store
        .read_blob(&desc.digest, MAX_MANIFEST_BYTES)
        .map_err(|e| match e {
            StoreError::TooLarge {
                digest,
                size,
                limit,
            } => EngineError::Internal(format!(
                "manifest {digest} cannot be read: it is {size} bytes, more than the {limit} bytes a manifest may have"
            )),
            e => e.into(),
        })?;
    parse_manifest(&desc.digest, &bytes)
}

/// Parses the stored bytes of manifest or index `digest`.
pub(crate) fn parse_manifest(digest: &Digest, bytes: &[u8]) -> Result<ManifestDoc, EngineError> {
    serde_json::from_slice(bytes)
        .map_err(|e| EngineError::Internal(format!("manifest {digest} is not valid JSON: {e}")))
}

/// One runnable image: a manifest, its config, and the platform it was chosen for.
#[derive(Clone, Debug)]
pub(crate) struct PlatformImage {
    pub manifest: Descriptor,
    pub config_descriptor: Descriptor,
    pub config: serde_json::Value,
    pub layers: Vec<Descriptor>,
}

impl PlatformImage {
    pub fn platform(&self) -> Platform {
        serde_json::from_value(self.config.clone()).unwrap_or_default()
    }

    /// The config's `Labels`; none when absent or malformed.
    pub fn labels(&self) -> std::collections::BTreeMap<String, String> {
        self.config
            .pointer("/config/Labels")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    }

    /// Bytes of content this image occupies: manifest, config and layers.
    pub fn content_size(&self) -> u64 {
        self.manifest.size
            + self.config_descriptor.size
            + self.layers.iter().map(|l| l.size).sum::<u64>()
    }
}

/// The platform image to describe for `target`: the target itself when it is a manifest, or the
/// child of an index best suited to `host` whose manifest and config are present locally, falling
/// back to the first present one. None when nothing usable is present (a partial index).
pub(crate) fn describe_target(
    store: &Store,
    target: &Descriptor,
    host: &Platform,
) -> Result<Option<PlatformImage>, EngineError> {
    if media::is_manifest(&target.media_type) {
        return load_platform_image(store, target);
    }
    if !media::is_index(&target.media_type) {
        return Ok(None);
    }
    let index = read_manifest(store, target)?;
    let mut candidates: Vec<(u8, &IndexEntry)> = index
        .manifests
        .iter()
        .filter(|e| media::is_manifest(&e.descriptor.media_type) && !e.is_attestation())
        .map(|e| {
            let pref = e
                .platform
                .as_ref()
                .and_then(|p| host.host_preference(p))
                .unwrap_or(u8::MAX);
            (pref, e)
        })
        .collect();
    candidates.sort_by_key(|(pref, _)| *pref);
    for (_, entry) in candidates {
        if let Some(image) = load_platform_image(store, &entry.descriptor)? {
            return Ok(Some(image));
        }
    }
    Ok(None)
}

/// One manifest of an image whose bytes are in the store: the target itself, or a child of the
/// target index. moby's `walkImageManifests` sees the same set.
#[derive(Debug)]
pub(crate) struct PresentManifest {
    pub entry: IndexEntry,
    /// The platform the index gives it, else its config's; None when neither can be read.
    pub platform: Option<Platform>,
    /// The manifest with its config, when the config is in the store.
    pub image: Option<PlatformImage>,
    /// Its config and every layer are in the store too.
    pub complete: bool,
}

/// Every manifest of `target` that is in the store, in index order.
pub(crate) fn present_manifests(
    store: &Store,
    target: &Descriptor,
) -> Result<Vec<PresentManifest>, EngineError> {
    let entries = if media::is_manifest(&target.media_type) {
        vec![IndexEntry {
            descriptor: target.clone(),
            platform: None,
            annotations: None,
        }]
    } else if media::is_index(&target.media_type) && store.has_blob(&target.digest) {
        read_manifest(store, target)?.manifests
    } else {
        Vec::new()
    };
    let mut present = Vec::new();
    for entry in entries {
        if !media::is_manifest(&entry.descriptor.media_type)
            || !store.has_blob(&entry.descriptor.digest)
        {
            continue;
        }
        let image = load_platform_image(store, &entry.descriptor)?;
        let complete = image
            .as_ref()
            .is_some_and(|i| i.layers.iter().all(|l| store.has_blob(&l.digest)));
        let platform = entry
            .platform
            .clone()
            .or_else(|| image.as_ref().map(PlatformImage::platform));
        present.push(PresentManifest {
            entry,
            platform,
            image,
            complete,
        });
    }
    Ok(present)
}

/// The manifest among `candidates` that best fits `wanted`, first in index order among equals.
pub(crate) fn best_for<'a>(
    candidates: impl IntoIterator<Item = &'a PresentManifest>,
    wanted: &Platform,
    matching: Matching,
) -> Option<&'a PresentManifest> {
    candidates
        .into_iter()
        .filter_map(|m| Some((wanted.rank(m.platform.as_ref()?, matching)?, m)))
        .min_by_key(|(rank, _)| *rank)
        .map(|(_, m)| m)
}

/// moby's answer when an image has no manifest for a requested platform (a 404).
pub(crate) fn platform_not_provided(image: &str, wanted: &Platform) -> EngineError {
    EngineError::NotFound(format!(
        "image with reference {image} was found but does not provide the specified platform ({})",
        wanted.format_all()
    ))
}

fn load_platform_image(
    store: &Store,
    manifest: &Descriptor,
) -> Result<Option<PlatformImage>, EngineError> {
    if !store.has_blob(&manifest.digest) {
        return Ok(None);
    }
    let doc = read_manifest(store, manifest)?;
    let Some(config_descriptor) = doc.config else {
        return Ok(None);
    };
    if !store.has_blob(&config_descriptor.digest) {
        return Ok(None);
    }
    let raw = store.read_blob(&config_descriptor.digest, MAX_CONFIG_BYTES)?;
    let config = serde_json::from_slice(&raw).map_err(|e| {
        EngineError::Internal(format!(
            "image config {} is not valid JSON: {e}",
            config_descriptor.digest
        ))
    })?;
    Ok(Some(PlatformImage {
        manifest: manifest.clone(),
        config_descriptor,
        config,
        layers: doc.layers,
    }))
}

/// A manifest hoist builds itself (for docker-archives and imports), written as Go's
/// `json.Marshal` writes containerd's: `schemaVersion`, `mediaType`, `config`, `layers`, compact,
/// descriptors as `mediaType`, `digest`, `size`. Field order here is the byte order there, which
/// is what makes the digests equal to containerd's.
#[derive(Serialize)]
pub(crate) struct BuiltManifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType")]
    pub media_type: &'static str,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}
