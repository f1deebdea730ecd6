//! `POST /images/load`: imports OCI layouts (`index.json`) and docker-archives (`manifest.json`),
//! plain, gzip or zstd compressed, streaming every blob into the store as it arrives.
//!
//! Blobs keep their bytes: nothing is recompressed. A docker-archive carries no manifest, so one
//! is built as containerd's archive importer (moby's containerd store) builds it, which makes the
//! image ID a function of the archive alone. The one deliberate difference: zstd layers are
//! labelled zstd, not gzip.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};

use hoist_oci::compression::{self, Compression};
use hoist_reference::{Digest, Reference};
use hoist_store::{Descriptor, Lease, StoreError};
use serde::Deserialize;

use crate::events::Action;
use crate::image_content::{BuiltManifest, IndexEntry};
use crate::media::{self, MAX_MANIFEST_BYTES};
use crate::{Engine, EngineError, names};

/// One line of load's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedImage {
    /// The familiar name (`foo:latest`), or None for an image loaded without a name.
    pub name: Option<String>,
    pub id: Digest,
}

/// Small JSON files of an archive's own structure, kept in memory rather than stored as blobs.
const MAX_METADATA_BYTES: u64 = 64 * 1024 * 1024;
/// How many links may chain (a link to a link …) before an archive is refused.
const MAX_LINK_DEPTH: usize = 16;

#[derive(Clone, Debug)]
enum ArchiveFile {
    Blob(Digest, u64),
    Metadata(Vec<u8>),
}

impl Engine {
    pub async fn load<R>(&self, body: R) -> Result<Vec<LoadedImage>, EngineError>
    where
        R: tokio::io::AsyncRead + Send + Unpin + 'static,
    {
        let engine = self.clone();
        // The bridge must be made on the runtime; it is then driven from the blocking thread.
        let reader = tokio_util::io::SyncIoBridge::new(body);
        self.blocking(move || engine.load_blocking(reader)).await
    }

    fn load_blocking(
        &self,
        reader: impl Read + Send + 'static,
    ) -> Result<Vec<LoadedImage>, EngineError> {
        let lease = self.store.lease();
        let files = self.ingest_archive(reader, &lease)?;
        let images = if let Some(ArchiveFile::Metadata(index)) = files.get("index.json") {
            self.oci_images(index, &lease)?
        } else if let Some(ArchiveFile::Metadata(manifest)) = files.get("manifest.json") {
            self.docker_archive_images(manifest, &files, &lease)?
        } else {
            return Err(EngineError::BadArchive(
                "invalid archive: it holds neither an OCI layout (index.json) nor a docker-archive manifest.json".into(),
            ));
        };
        self.name_loaded(images)
        // `lease` drops here: blobs of the archive that no image uses are collected.
    }

    /// Reads every tar entry, storing files as blobs (verified against `blobs/<alg>/<hex>` names)
    /// and keeping the archive's JSON structure files in memory. Returns path → file.
    fn ingest_archive(
        &self,
        reader: impl Read + Send + 'static,
        lease: &Lease,
    ) -> Result<HashMap<String, ArchiveFile>, EngineError> {
        let reader = decompress(BufReader::with_capacity(1 << 20, reader))
            .map_err(|e| EngineError::BadArchive(format!("invalid archive: {e}")))?;
        let mut archive = tar::Archive::new(reader);
        let mut files: HashMap<String, ArchiveFile> = HashMap::new();
        let mut links: Vec<(String, String)> = Vec::new();
        let entries = archive.entries().map_err(corrupt)?;
        for entry in entries {
            let mut entry = entry.map_err(corrupt)?;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let path = normalize_entry_path(&raw)?;
            match entry.header().entry_type() {
                tar::EntryType::Directory => {}
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    if path.is_empty() {
                        continue;
                    }
                    let declared_size = entry.size();
                    let file = if is_structure_file(&path) {
                        let mut bytes = Vec::new();
                        (&mut entry)
                            .take(MAX_METADATA_BYTES + 1)
                            .read_to_end(&mut bytes)
                            .map_err(corrupt)?;
                        if bytes.len() as u64 > MAX_METADATA_BYTES {
                            return Err(EngineError::BadArchive(format!(
                                "invalid archive: {path} is too large"
                            )));
                        }
                        check_complete(&path, bytes.len() as u64, declared_size)?;
                        ArchiveFile::Metadata(bytes)
                    } else {
                        self.ingest_blob(&path, &mut entry, declared_size, lease)?
                    };
                    files.insert(path, file);
                }
                tar::EntryType::Symlink => {
                    // Relative to the link's directory: docker save links a repeated layer
                    // as `<id>/layer.tar` → `../<other id>/layer.tar`.
                    let target = link_target(&entry, &raw)?;
                    let parent = path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
                    let resolved = resolve_within_archive(parent, &target)
                        .ok_or_else(|| escaping_link(&raw, &target))?;
                    links.push((path, resolved));
                }
                tar::EntryType::Link => {
                    // Hard links name their target from the archive's root.
                    let target = link_target(&entry, &raw)?;
                    let resolved = resolve_within_archive("", &target)
                        .ok_or_else(|| escaping_link(&raw, &target))?;
                    links.push((path, resolved));
                }
                // Extended headers are consumed by the tar crate; anything else has no place here.
                tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => {}
                other => {
                    return Err(EngineError::BadArchive(format!(
                        "invalid archive: entry {raw} has unsupported type {other:?}"
                    )));
                }
            }
        }
        for _ in 0..MAX_LINK_DEPTH {
            let mut changed = false;
            for (path, target) in &links {
                if !files.contains_key(path)
                    && let Some(file) = files.get(target).cloned()
                {
                    files.insert(path.clone(), file);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        Ok(files)
    }

    fn ingest_blob(
        &self,
        path: &str,
        entry: &mut impl Read,
        declared_size: u64,
        lease: &Lease,
    ) -> Result<ArchiveFile, EngineError> {
        let expected = blob_digest_from_path(path)?;
        let mut writer = self.store.blob_writer(lease)?;
        let copied = std::io::copy(entry, &mut writer).map_err(corrupt)?;
        check_complete(path, copied, declared_size)?;
        match writer.commit(expected.as_ref()) {
            Ok((digest, size)) => Ok(ArchiveFile::Blob(digest, size)),
            Err(StoreError::DigestMismatch { expected, actual }) => {
                Err(EngineError::BadArchive(format!(
                    "invalid archive: content of {path} does not match its digest {expected} (it hashes to {actual})"
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The images of an OCI layout: every descriptor of `index.json`, named by its annotations.
    fn oci_images(
        &self,
        index_json: &[u8],
        lease: &Lease,
    ) -> Result<Vec<(Option<Reference>, Descriptor)>, EngineError> {
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
            self.check_graph(&desc, lease, true, 0)?;
            images.push((oci_image_name(&entry)?, desc));
        }
        Ok(images)
    }

    /// Checks that `desc` is present with its size, that manifests parse, and that a top-level
    /// manifest has all its blobs. Under an index anything may be absent: such an image is
    /// partial, as a single-platform `docker save` of a multi-platform image makes it.
    fn check_graph(
        &self,
        desc: &Descriptor,
        lease: &Lease,
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
        lease.protect(&desc.digest);
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
                self.check_graph(&child.descriptor, lease, false, depth + 1)?;
            }
            return Ok(());
        }
        let config = doc.config.ok_or_else(|| {
            EngineError::BadArchive(format!(
                "invalid archive: manifest {} has no config",
                desc.digest
            ))
        })?;
        self.check_graph(&config, lease, required, depth + 1)?;
        for layer in doc
            .layers
            .iter()
            .filter(|l| !media::is_non_distributable(&l.media_type))
        {
            self.check_graph(layer, lease, required, depth + 1)?;
        }
        Ok(())
    }

    /// The images of a docker-archive: one schema2 manifest built per `manifest.json` entry.
    fn docker_archive_images(
        &self,
        manifest_json: &[u8],
        files: &HashMap<String, ArchiveFile>,
        lease: &Lease,
    ) -> Result<Vec<(Option<Reference>, Descriptor)>, EngineError> {
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
            serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&config_bytes)
                .map_err(|e| {
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
            if tags.is_empty() {
                images.push((None, target.clone()));
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
                images.push((Some(reference.tag_name_only()), target.clone()));
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
    fn name_loaded(
        &self,
        images: Vec<(Option<Reference>, Descriptor)>,
    ) -> Result<Vec<LoadedImage>, EngineError> {
        let _guard = self
            .names_lock
            .lock()
            .map_err(|_| EngineError::Internal("names lock poisoned".into()))?;
        let existing = self.store.images();
        let mut assignments: Vec<(String, Descriptor)> = Vec::new();
        let mut loaded = Vec::new();
        for (name, target) in images {
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

fn decompress<R: BufRead + Send + 'static>(reader: R) -> std::io::Result<Box<dyn Read + Send>> {
    let (compression, reader) = compression::detect(reader)?;
    Ok(match compression {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
        Compression::Uncompressed | Compression::Bzip2 | Compression::Xz => Box::new(reader),
    })
}

/// An archive path made relative and clean (`./a//b` → `a/b`). Absolute paths and `..` are
/// refused outright: nothing legitimate in an image archive needs them.
fn normalize_entry_path(raw: &str) -> Result<String, EngineError> {
    if raw.starts_with('/') {
        return Err(EngineError::BadArchive(format!(
            "invalid archive: entry {raw:?} has an absolute path"
        )));
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(EngineError::BadArchive(format!(
                    "invalid archive: entry {raw:?} points outside the archive"
                )));
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// `target` taken relative to the directory `base` (both archive paths), with `.` and `..`
/// applied; None when it is absolute or climbs above the archive's root.
fn resolve_within_archive(base: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

fn link_target(entry: &tar::Entry<'_, impl Read>, raw: &str) -> Result<String, EngineError> {
    entry
        .link_name_bytes()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .ok_or_else(|| {
            EngineError::BadArchive(format!("invalid archive: link {raw:?} has no target"))
        })
}

fn escaping_link(raw: &str, target: &str) -> EngineError {
    EngineError::BadArchive(format!(
        "invalid archive: link {raw:?} points outside the archive ({target:?})"
    ))
}

fn is_structure_file(path: &str) -> bool {
    matches!(
        path,
        "index.json" | "manifest.json" | "oci-layout" | "repositories"
    ) || path.ends_with("/json")
        || path.ends_with("/VERSION")
}

/// `blobs/<alg>/<hex>` names the digest its content must have, and so does the `<hex>.json`
/// name docker save gives a docker-archive's config (the sha256 of the config).
fn blob_digest_from_path(path: &str) -> Result<Option<Digest>, EngineError> {
    if let Some(hex) = path.strip_suffix(".json")
        && hex.len() == 64
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Digest::parse(&format!("sha256:{hex}"))
            .map(Some)
            .map_err(|e| EngineError::Internal(format!("a 64-hex name is a digest: {e}")));
    }
    let mut parts = path.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("blobs"), Some(alg), Some(hex), None) => Digest::parse(&format!("{alg}:{hex}"))
            .map(Some)
            .map_err(|e| {
                EngineError::BadArchive(format!(
                    "invalid archive: {path} is not named by a valid digest: {e}"
                ))
            }),
        _ => Ok(None),
    }
}

fn corrupt(e: std::io::Error) -> EngineError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        return EngineError::BadArchive(format!("invalid archive: it is truncated ({e})"));
    }
    EngineError::BadArchive(format!("invalid archive: {e}"))
}

/// The tar reader hands out a short entry when the input ends inside it; say so, rather than
/// let the short content fail later as a digest mismatch or bad JSON.
fn check_complete(path: &str, read: u64, declared: u64) -> Result<(), EngineError> {
    if read < declared {
        return Err(EngineError::BadArchive(format!(
            "invalid archive: it is truncated: {path} ends after {read} of its {declared} bytes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_are_cleaned_and_escapes_refused() {
        assert_eq!(normalize_entry_path("./a//b/").unwrap(), "a/b");
        assert!(normalize_entry_path("../etc/passwd").is_err());
        assert!(normalize_entry_path("a/../../b").is_err());
        assert!(normalize_entry_path("/etc/passwd").is_err());
    }

    #[test]
    fn link_targets_resolve_inside_the_archive_only() {
        assert_eq!(
            resolve_within_archive("aaa", "../bbb/layer.tar").as_deref(),
            Some("bbb/layer.tar")
        );
        assert_eq!(resolve_within_archive("", "./x//y").as_deref(), Some("x/y"));
        assert_eq!(resolve_within_archive("aaa", "../../etc/passwd"), None);
        assert_eq!(resolve_within_archive("", "../x"), None);
        assert_eq!(resolve_within_archive("a/b", "/etc/passwd"), None);
    }

    #[test]
    fn blob_paths_name_digests() {
        let hex = "a".repeat(64);
        assert_eq!(
            blob_digest_from_path(&format!("blobs/sha256/{hex}"))
                .unwrap()
                .unwrap()
                .hex(),
            hex
        );
        assert!(blob_digest_from_path("blobs/sha256/zz").is_err());
        assert!(blob_digest_from_path("abc/layer.tar").unwrap().is_none());
        assert_eq!(
            blob_digest_from_path(&format!("{hex}.json"))
                .unwrap()
                .unwrap()
                .hex(),
            hex
        );
        assert!(
            blob_digest_from_path(&format!("{hex}/json"))
                .unwrap()
                .is_none()
        );
        assert!(blob_digest_from_path("config.json").unwrap().is_none());
    }
}
