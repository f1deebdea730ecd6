//! `docker load --platform`: only the requested platform's content of a multi-platform archive
//! is kept, as containerd's importer keeps it under moby's strict platform matcher.
//!
//! Every image of the archive is walked from its target: index children whose platform differs
//! are left out, the manifests kept must be in the archive, and each image must provide the
//! platform (a manifest whose config names it, with config and layers present). What the walk
//! did not keep is then released; the indexes stay as they are, partial, as a pull of one
//! platform leaves them.

use std::collections::HashSet;

use hoist_reference::Digest;
use hoist_store::{Descriptor, Lease};

use super::ArchiveImage;
use crate::image_content::parse_manifest;
use crate::media::{self, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES};
use crate::platform::Platform;
use crate::{Engine, EngineError};

/// How deep indexes may nest under an image's target.
const MAX_DEPTH: usize = 4;

/// What a platform walk keeps of an archive.
#[derive(Default)]
pub(super) struct Selection {
    /// Manifests, configs and layers to keep.
    content: HashSet<Digest>,
    /// Indexes to keep: walking one reaches every child, so they are kept by bytes, not by lease.
    indexes: Vec<Digest>,
}

/// One image's walk: what it keeps, and whether it provides the platform.
struct Walk<'a> {
    engine: &'a Engine,
    platform: &'a Platform,
    selection: &'a mut Selection,
    provides: bool,
}

impl Engine {
    /// Selects `platform`'s content of `images`. Fails with moby's messages when content of the
    /// platform is missing or an image does not provide it; then nothing is named.
    pub(super) fn select_platform_content(
        &self,
        images: &[ArchiveImage],
        platform: &Platform,
    ) -> Result<Selection, EngineError> {
        let wanted = platform.format();
        if images.is_empty() {
            return Err(EngineError::NotFound(format!(
                "no images providing the requested platform {wanted} found"
            )));
        }
        let mut selection = Selection::default();
        let mut lacking: Vec<String> = Vec::new();
        for image in images {
            let mut walk = Walk {
                engine: self,
                platform,
                selection: &mut selection,
                provides: false,
            };
            walk.visit(&image.target, image.platform.as_ref(), 0)?;
            if !walk.provides {
                let name = match &image.name {
                    Some(reference) => reference.familiar_string(),
                    None => image.target.digest.to_string(),
                };
                if !lacking.contains(&name) {
                    lacking.push(name);
                }
            }
        }
        match lacking.as_slice() {
            [] => Ok(selection),
            [one] => Err(EngineError::NotFound(format!(
                "image {one} was loaded, but doesn't provide the requested platform ({wanted})"
            ))),
            many => Err(EngineError::NotFound(format!(
                "images [{}] were loaded, but don't provide the requested platform ({wanted})",
                many.join(", ")
            ))),
        }
    }

    /// Swaps the load's lease for one that protects only `selection`, so that releasing the
    /// first collects the rest of the archive (what nothing else in the store uses).
    ///
    /// An index cannot be protected without protecting every child it lists, so the kept
    /// indexes are read first, collected with the rest, and written back under the new lease.
    pub(super) fn keep_only_selected(
        &self,
        lease: Lease,
        selection: Selection,
    ) -> Result<Lease, EngineError> {
        let kept = self.store.lease();
        for digest in &selection.content {
            kept.protect(digest);
        }
        let mut indexes = Vec::new();
        for digest in &selection.indexes {
            indexes.push(self.store.read_blob(digest, MAX_MANIFEST_BYTES)?);
        }
        drop(lease);
        for bytes in indexes {
            self.store.put_blob(&kept, &bytes)?;
        }
        Ok(kept)
    }
}

impl Walk<'_> {
    /// Visits `desc`, reached through an entry that names `entry_platform` (if any).
    fn visit(
        &mut self,
        desc: &Descriptor,
        entry_platform: Option<&Platform>,
        depth: usize,
    ) -> Result<(), EngineError> {
        if entry_platform.is_some_and(|p| !self.platform.matches(p)) {
            return Ok(());
        }
        if depth > MAX_DEPTH {
            return Err(EngineError::BadArchive(
                "invalid archive: image indexes nest too deeply".into(),
            ));
        }
        let store = &self.engine.store;
        if !store.has_blob(&desc.digest) {
            return Err(EngineError::NotFound(format!(
                "requested platform ({}) found, but some content is missing: content digest {}: not found",
                self.platform.format(),
                desc.digest
            )));
        }
        if media::is_index(&desc.media_type) {
            if !self.selection.indexes.contains(&desc.digest) {
                self.selection.indexes.push(desc.digest.clone());
            }
            let bytes = store.read_blob(&desc.digest, MAX_MANIFEST_BYTES)?;
            let index = parse_manifest(&desc.digest, &bytes)?;
            for child in &index.manifests {
                self.visit(&child.descriptor, child.platform.as_ref(), depth + 1)?;
            }
            return Ok(());
        }
        self.selection.content.insert(desc.digest.clone());
        if !media::is_manifest(&desc.media_type) {
            return Ok(());
        }
        let bytes = store.read_blob(&desc.digest, MAX_MANIFEST_BYTES)?;
        let manifest = parse_manifest(&desc.digest, &bytes)?;
        let Some(config) = manifest.config else {
            return Ok(());
        };
        self.selection.content.insert(config.digest.clone());
        for layer in &manifest.layers {
            self.selection.content.insert(layer.digest.clone());
        }
        let layers_present = manifest
            .layers
            .iter()
            .filter(|l| !media::is_non_distributable(&l.media_type))
            .all(|l| store.has_blob(&l.digest));
        if layers_present && self.config_names_platform(&config)? {
            self.provides = true;
        }
        Ok(())
    }

    /// Whether the image config `config` is present and names the requested platform.
    fn config_names_platform(&self, config: &Descriptor) -> Result<bool, EngineError> {
        let store = &self.engine.store;
        if !store.has_blob(&config.digest) {
            return Ok(false);
        }
        let bytes = store.read_blob(&config.digest, MAX_CONFIG_BYTES)?;
        let platform: Platform = serde_json::from_slice(&bytes).map_err(|e| {
            EngineError::BadArchive(format!(
                "invalid archive: image config {} is malformed: {e}",
                config.digest
            ))
        })?;
        Ok(self.platform.matches(&platform))
    }
}
