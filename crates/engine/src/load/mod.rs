//! `POST /images/load`: imports OCI layouts (`index.json`) and docker-archives (`manifest.json`),
//! plain, gzip or zstd compressed, streaming every blob into the store as it arrives.
//!
//! Blobs keep their bytes: nothing is recompressed. A docker-archive carries no manifest, so one
//! is built as containerd's archive importer (moby's containerd store) builds it, which makes the
//! image ID a function of the archive alone. The one deliberate difference: zstd layers are
//! labelled zstd, not gzip.
//!
//! moby unpacks what it loads, so content it cannot unpack never becomes an image; hoist keeps
//! layers packed but checks them as they stream in: every tar layer an image of the archive
//! names must decompress to a whole tar whose sha256 is the config's DiffID at its position.

mod archive;
mod platform;

use std::collections::HashMap;
use std::io::Read;

use hoist_oci::compression::{self, Compression};
use hoist_reference::{Digest, Reference};
use hoist_store::{Descriptor, Lease};
use serde::Deserialize;

use crate::events::Action;
use crate::image_content::{BuiltManifest, IndexEntry};
use crate::layer_check::Unpacked;
use crate::media::{self, MAX_MANIFEST_BYTES};
use crate::observe::Operation;
use crate::platform::Platform;
use crate::summary::OperationReport;
use crate::{Engine, EngineError, names};
use archive::{ArchiveFile, Ingested, normalize_entry_path};

/// What the walk over an OCI layout's content needs besides the store.
struct Graph<'a> {
    lease: &'a Lease,
    unpacked: &'a HashMap<Digest, Unpacked>,
}

/// One line of load's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedImage {
    /// The familiar name (`foo:latest`), or None for an image loaded without a name.
    pub name: Option<String>,
    pub id: Digest,
}

/// One image an archive names (or holds unnamed).
#[derive(Debug)]
struct ArchiveImage {
    name: Option<Reference>,
    target: Descriptor,
    /// The platform the archive gives the target: an OCI layout's descriptor platform, the
    /// config's platform for a docker-archive image, as containerd's importer records them.
    platform: Option<Platform>,
}

impl Engine {
    /// Loads every image of the archive `body`, or with `platform` only that platform's content
    /// of each (then every image must provide it).
    pub async fn load<R>(
        &self,
        body: R,
        platform: Option<Platform>,
    ) -> Result<Vec<LoadedImage>, EngineError>
    where
        R: tokio::io::AsyncRead + Send + Unpin + 'static,
    {
        let report = OperationReport::start(Operation::Load, self.observer.clone());
        let engine = self.clone();
        // The bridge must be made on the runtime; it is then driven from the blocking thread.
        let reader = tokio_util::io::SyncIoBridge::new(body);
        let result = self
            .blocking(move || engine.load_blocking(reader, platform))
            .await;
        report.finish(&result);
        result
    }

    fn load_blocking(
        &self,
        reader: impl Read + Send + 'static,
        platform: Option<Platform>,
    ) -> Result<Vec<LoadedImage>, EngineError> {
        let lease = self.store.lease();
        let Ingested { files, unpacked } = self.ingest_archive(reader, &lease)?;
        // With a platform, an image's own content need not all be there: the walk decides.
        let complete = platform.is_none();
        let images = if let Some(ArchiveFile::Metadata(index)) = files.get("index.json") {
            self.oci_images(index, &lease, complete, &unpacked)?
        } else if let Some(ArchiveFile::Metadata(manifest)) = files.get("manifest.json") {
            self.docker_archive_images(manifest, &files, &lease, &unpacked)?
        } else {
            return Err(EngineError::BadArchive(
                "invalid archive: it holds neither an OCI layout (index.json) nor a docker-archive manifest.json".into(),
            ));
        };
        let _lease = match &platform {
            Some(platform) => {
                let selection = self.select_platform_content(&images, platform)?;
                self.keep_only_selected(lease, selection)?
            }
            None => lease,
        };
        self.name_loaded(images)
        // The lease drops here: blobs of the archive that no image uses are collected.
    }

    /// The images of an OCI layout: every descriptor of `index.json`, named by its annotations.
    fn oci_images(
        &self,
        index_json: &[u8],
        lease: &Lease,
        complete: bool,
        unpacked: &HashMap<Digest, Unpacked>,
    ) -> Result<Vec<ArchiveImage>, EngineError> {
        #[derive(Deserialize)]
        struct Layout {
            #[serde(default)]
            manifests: Vec<IndexEntry>,
        }
        let layout: Layout = serde_json::from_slice(index_json)
            .map_err(|e| EngineError::BadArchive(format!("invalid archive: index.json: {e}")))?;
        let mut images = Vec::new();
        for entry in layout.manifests {
            let desc = entry.descriptor.clone();
            let graph = Graph { lease, unpacked };
            self.check_graph(&graph, &desc, complete, 0)?;
            images.push(ArchiveImage {
                name: oci_image_name(&entry)?,
                target: desc,
                platform: entry.platform,
            });
        }
        Ok(images)
    }

    /// Checks that `desc` is present with its size, that manifests parse, that a top-level
    /// manifest has all its blobs, and that the layers the archive carried match their
    /// config. Under an index anything may be absent: such an image is partial, as a
    /// single-platform `docker save` of a multi-platform image makes it.
    fn check_graph(
        &self,
        graph: &Graph<'_>,
        desc: &Descriptor,
        required: bool,
        depth: usize,
    ) -> Result<(), EngineError> {
        if depth > 4 {
            return Err(EngineError::BadArchive(
                "invalid archive: image indexes nest too deeply".into(),
            ));
        }
        match self.store.blob_size(&desc.digest) {
            None if !required => return Ok(()),
            None => {
                return Err(EngineError::BadArchive(format!(
                    "invalid archive: content {} ({}) is missing",
                    desc.digest, desc.media_type
                )));
            }
            Some(size) if size != desc.size => {
                return Err(EngineError::BadArchive(format!(
                    "invalid archive: content {} is {size} bytes, but its descriptor says {}",
                    desc.digest, desc.size
                )));
            }
            Some(_) => {}
        }
        graph.lease.protect(&desc.digest);
        if !(media::is_index(&desc.media_type) || media::is_manifest(&desc.media_type)) {
            return Ok(());
        }
        let bytes = self.store.read_blob(&desc.digest, MAX_MANIFEST_BYTES)?;
        let doc: crate::image_content::ManifestDoc =
            serde_json::from_slice(&bytes).map_err(|e| {
                EngineError::BadArchive(format!(
                    "invalid archive: manifest {} is malformed: {e}",
                    desc.digest
                ))
            })?;
        if media::is_index(&desc.media_type) {
            for child in &doc.manifests {
                self.check_graph(graph, &child.descriptor, false, depth + 1)?;
            }
            return Ok(());
        }
        let config = doc.config.ok_or_else(|| {
            EngineError::BadArchive(format!(
                "invalid archive: manifest {} has no config",
                desc.digest
            ))
        })?;
        self.check_graph(graph, &config, required, depth + 1)?;
        for layer in doc
            .layers
            .iter()
            .filter(|l| !media::is_non_distributable(&l.media_type))
        {
            self.check_graph(graph, layer, required, depth + 1)?;
        }
        if self.store.has_blob(&config.digest) {
            self.check_diff_ids(&config.digest, &doc.layers, graph.unpacked)?;
        }
        Ok(())
    }

    /// The tar layers of an image against its config: as many DiffIDs as layers, and each layer
    /// this load carried (one already in the store was checked when it came) unpacks to a tar
    /// whose digest is the DiffID at its position. Images without tar layers (attestations)
    /// are not unpacked, and not checked.
    fn check_diff_ids(
        &self,
        config: &Digest,
        layers: &[Descriptor],
        unpacked: &HashMap<Digest, Unpacked>,
    ) -> Result<(), EngineError> {
        #[derive(Deserialize)]
        struct Config {
            rootfs: Option<RootFs>,
        }
        #[derive(Deserialize)]
        struct RootFs {
            #[serde(default)]
            diff_ids: Vec<String>,
        }
        if !layers.iter().any(|l| media::is_layer(&l.media_type)) {
            return Ok(());
        }
        let bytes = self.store.read_blob(config, media::MAX_CONFIG_BYTES)?;
        let parsed: Config = serde_json::from_slice(&bytes).map_err(|e| {
            EngineError::BadArchive(format!(
                "invalid archive: image config {config} is malformed: {e}"
            ))
        })?;
        let diff_ids = parsed.rootfs.map(|r| r.diff_ids).unwrap_or_default();
        if diff_ids.len() != layers.len() {
            return Err(EngineError::BadArchive(format!(
                "invalid archive: image config {config} lists {} diff_ids for {} layers",
                diff_ids.len(),
                layers.len()
            )));
        }
        for (layer, expected) in layers.iter().zip(&diff_ids) {
            if !media::is_layer(&layer.media_type) {
                continue;
            }
            match unpacked.get(&layer.digest) {
                None => {}
                Some(Err(reason)) => {
                    return Err(EngineError::BadArchive(format!(
                        "invalid archive: layer {} is not a valid layer: {reason}",
                        layer.digest
                    )));
                }
                Some(Ok(actual)) if actual.to_string() != *expected => {
                    return Err(EngineError::BadArchive(format!(
                        "invalid archive: layer {} does not match image config {config}: \
                         its diff_id is {actual}, the config expects {expected}",
                        layer.digest
                    )));
                }
                Some(Ok(_)) => {}
            }
        }
        Ok(())
    }

    /// The images of a docker-archive: one schema2 manifest built per `manifest.json` entry.
    fn docker_archive_images(
        &self,
        manifest_json: &[u8],
        files: &HashMap<String, ArchiveFile>,
        lease: &Lease,
        unpacked: &HashMap<Digest, Unpacked>,
    ) -> Result<Vec<ArchiveImage>, EngineError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Entry {
            config: String,
            #[serde(default)]
            repo_tags: Option<Vec<String>>,
            #[serde(default)]
            layers: Vec<String>,
        }
        let entries: Vec<Entry> = serde_json::from_slice(manifest_json)
            .map_err(|e| EngineError::BadArchive(format!("invalid archive: manifest.json: {e}")))?;
        let blob = |path: &str| -> Result<(Digest, u64), EngineError> {
            let normalized = normalize_entry_path(path)?;
            match files.get(&normalized) {
                Some(ArchiveFile::Blob(d, size)) => Ok((d.clone(), *size)),
                _ => Err(EngineError::BadArchive(format!(
                    "invalid archive: manifest.json refers to {path}, which is not in the archive"
                ))),
            }
        };
        let mut images = Vec::new();
        for entry in entries {
            let (config_digest, config_size) = blob(&entry.config)?;
            let config_bytes = self
                .store
                .read_blob(&config_digest, crate::media::MAX_CONFIG_BYTES)?;
            let platform = serde_json::from_slice::<Platform>(&config_bytes).map_err(|e| {
                EngineError::BadArchive(format!(
                    "invalid archive: image config {} is malformed: {e}",
                    entry.config
                ))
            })?;
            let mut layers = Vec::new();
            for path in &entry.layers {
                let (digest, size) = blob(path)?;
                layers.push(Descriptor {
                    media_type: self.layer_media_type(&digest)?.to_owned(),
                    digest,
                    size,
                });
            }
            // A docker-archive's `layer.tar` is the layer blob itself, whatever its compression:
            // the blob digest is the file's, its DiffID is what it unpacks to.
            self.check_diff_ids(&config_digest, &layers, unpacked)?;
            let manifest = BuiltManifest {
                schema_version: 2,
                media_type: media::DOCKER_MANIFEST,
                config: Descriptor {
                    media_type: media::DOCKER_CONFIG.to_owned(),
                    digest: config_digest,
                    size: config_size,
                },
                layers,
            };
            let bytes = serde_json::to_vec(&manifest)
                .map_err(|e| EngineError::Internal(format!("encoding a manifest: {e}")))?;
            let (digest, size) = self.store.put_blob(lease, &bytes)?;
            let target = Descriptor {
                media_type: media::DOCKER_MANIFEST.to_owned(),
                digest,
                size,
            };
            let tags = entry.repo_tags.unwrap_or_default();
            let image = |name| ArchiveImage {
                name,
                target: target.clone(),
                // A config naming no platform gives the image none, as in containerd.
                platform: (!platform.os.is_empty() || !platform.architecture.is_empty())
                    .then(|| platform.clone()),
            };
            if tags.is_empty() {
                images.push(image(None));
            }
            for tag in tags {
                let reference = Reference::parse_normalized(&tag).map_err(|e| {
                    EngineError::BadArchive(format!("invalid archive: image name {tag:?}: {e}"))
                })?;
                if reference.digest().is_some() {
                    return Err(EngineError::BadArchive(format!(
                        "invalid archive: image name {tag:?} has a digest; only tags can name loaded images"
                    )));
                }
                images.push(image(Some(reference.tag_name_only())));
            }
        }
        Ok(images)
    }

    /// containerd's importer names the layer type after the compression it sniffs in the first
    /// bytes (`compression.DetectCompression`). It labels zstd layers gzip too, which breaks
    /// every client that trusts the label; hoist labels them zstd (a documented difference).
    fn layer_media_type(&self, digest: &Digest) -> Result<&'static str, EngineError> {
        let file = self.store.open_blob(digest)?;
        let (compression, _) = compression::detect(file)
            .map_err(|e| EngineError::io(format!("reading layer {digest}"), e))?;
        Ok(match compression {
            Compression::Gzip => media::DOCKER_LAYER_GZIP,
            Compression::Zstd => media::DOCKER_LAYER_ZSTD,
            Compression::Uncompressed | Compression::Bzip2 | Compression::Xz => media::DOCKER_LAYER,
        })
    }

    /// Points the loaded names at their images; an image loaded without a name is kept as
    /// dangling unless it already has one.
    fn name_loaded(&self, images: Vec<ArchiveImage>) -> Result<Vec<LoadedImage>, EngineError> {
        let _guard = self
            .names_lock
            .lock()
            .map_err(|_| EngineError::Internal("names lock poisoned".into()))?;
        let existing = self.store.images();
        let mut assignments: Vec<(String, Descriptor)> = Vec::new();
        let mut loaded = Vec::new();
        for ArchiveImage { name, target, .. } in images {
            match name {
                Some(reference) => {
                    assignments.push((names::tag_record_name(&reference), target.clone()));
                    loaded.push(LoadedImage {
                        name: Some(reference.familiar_string()),
                        id: target.digest.clone(),
                    });
                }
                None => {
                    let named = existing.iter().any(|r| r.target.digest == target.digest)
                        || assignments.iter().any(|(_, t)| t.digest == target.digest);
                    if !named {
                        assignments
                            .push((names::dangling_record_name(&target.digest), target.clone()));
                    }
                    loaded.push(LoadedImage {
                        name: None,
                        id: target.digest.clone(),
                    });
                }
            }
        }
        let changes = self.retarget_changes(&assignments);
        self.store.apply(changes)?;
        self.log_image_ids(Action::Load, loaded.iter().map(|l| &l.id));
        Ok(loaded)
    }
}

/// An OCI layout entry's name: `io.containerd.image.name`, else `org.opencontainers.image.ref.name`
/// when it is a full reference; a bare tag there names nothing.
fn oci_image_name(entry: &IndexEntry) -> Result<Option<Reference>, EngineError> {
    let annotations = entry.annotations.clone().unwrap_or_default();
    let candidate = annotations
        .get("io.containerd.image.name")
        .cloned()
        .or_else(|| {
            annotations
                .get("org.opencontainers.image.ref.name")
                .filter(|r| r.contains('/') || r.contains(':'))
                .cloned()
        });
    let Some(name) = candidate else {
        return Ok(None);
    };
    let reference = Reference::parse_normalized(&name).map_err(|e| {
        EngineError::BadArchive(format!("invalid archive: image name {name:?}: {e}"))
    })?;
    if reference.digest().is_some() && reference.tag().is_none() {
        return Ok(None);
    }
    Ok(Some(reference.without_digest().tag_name_only()))
}
