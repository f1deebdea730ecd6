//! `GET /images/get` and `GET /images/{name}/get`: writes images as a tar that `docker load`
//! (hoist's, moby's and podman's) takes back, as moby ≥ 25 writes it: an OCI layout with
//! `index.json` plus a docker-archive `manifest.json` over the same `blobs/sha256/` files.
//! Blobs go out byte-identical; a partial index is written with the content that is present.

mod stream;

use std::collections::BTreeSet;

use bytes::Bytes;
use futures_util::Stream;
use hoist_reference::{Digest, Reference};
use hoist_store::{Descriptor, StoreError};
use serde::Serialize;

use crate::events::Action;
use crate::image_content::{describe_target, platform_not_provided, present_manifests};
use crate::names::{self, ImageView, Lookup};
use crate::platform::{Matching, Platform};
use crate::{Engine, EngineError};
use stream::ArchiveWriter;

/// Images resolved for saving; resolution errors (404) come before any output.
pub struct SavePlan {
    engine: Engine,
    entries: Vec<SaveEntry>,
}

/// One image of the archive: the name it is saved under, what is saved, and the platform the
/// image index gives that (when one platform of it was chosen).
struct SaveEntry {
    name: Option<Reference>,
    target: Descriptor,
    platform: Option<Platform>,
}

impl Engine {
    /// Resolves `inputs` (and, with `platform`, each image's manifest for it, as moby's
    /// `docker save --platform`: the archive then holds that manifest alone).
    pub fn prepare_save(
        &self,
        inputs: &[String],
        platform: Option<&Platform>,
    ) -> Result<SavePlan, EngineError> {
        let mut entries = Vec::new();
        for (name, view, display) in self.resolve_save_inputs(inputs)? {
            let (target, target_platform) = match platform {
                None => (view.target, None),
                Some(wanted) => self.export_target(&view.target, wanted, &display)?,
            };
            entries.push(SaveEntry {
                name,
                target,
                platform: target_platform,
            });
        }
        entries.dedup_by(|a, b| a.name == b.name && a.target.digest == b.target.digest);
        self.log_image_ids(Action::Save, entries.iter().map(|e| &e.target.digest));
        Ok(SavePlan {
            engine: self.clone(),
            entries,
        })
    }

    /// Each input as (name to save it under, image, the name moby's errors give it).
    fn resolve_save_inputs(
        &self,
        inputs: &[String],
    ) -> Result<Vec<(Option<Reference>, ImageView, String)>, EngineError> {
        let mut entries = Vec::new();
        for input in inputs {
            // A bare repository name saves every tag of it, as moby does.
            if let Ok(r) = Reference::parse_normalized(input)
                && r.tag().is_none()
                && r.digest().is_none()
            {
                let tagged = names::tags_in_repository(&self.store, &r);
                if !tagged.is_empty() {
                    for (tag, view) in tagged {
                        let display = tag.familiar_string();
                        entries.push((Some(tag), view, display));
                    }
                    continue;
                }
            }
            let (view, lookup) = names::resolve(&self.store, input)?;
            let display = names::record_display_name(&view, &lookup);
            match lookup {
                Lookup::Name(r) if r.tag().is_some() => entries.push((Some(r), view, display)),
                _ => entries.push((None, view, display)),
            }
        }
        Ok(entries)
    }

    /// moby's `getPushDescriptor` with a platform: the one complete, runnable manifest of
    /// `target` for `wanted`.
    fn export_target(
        &self,
        target: &Descriptor,
        wanted: &Platform,
        display: &str,
    ) -> Result<(Descriptor, Option<Platform>), EngineError> {
        let present = present_manifests(&self.store, target)?;
        let matching: Vec<_> = present
            .iter()
            .filter(|m| m.complete && !m.entry.is_attestation())
            .filter(|m| {
                m.platform
                    .as_ref()
                    .is_some_and(|p| wanted.rank(p, Matching::Strict).is_some())
            })
            .collect();
        let context = "no suitable export target found";
        match matching.as_slice() {
            [] => Err(EngineError::NotFound(format!(
                "{context}: {}",
                platform_not_provided(display, wanted)
            ))),
            [only] => Ok((only.entry.descriptor.clone(), only.entry.platform.clone())),
            _ => Err(EngineError::Conflict(format!(
                "{context}: multiple manifests found for platform {}",
                wanted.format_all()
            ))),
        }
    }
}

#[derive(Serialize)]
struct OciIndex<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    manifests: Vec<IndexEntryOut<'a>>,
}

#[derive(Serialize)]
struct IndexEntryOut<'a> {
    #[serde(flatten)]
    descriptor: &'a Descriptor,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    annotations: std::collections::BTreeMap<&'static str, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<&'a Platform>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerArchiveEntry {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

fn blob_path(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm(), digest.hex())
}

impl SavePlan {
    /// The archive's bytes, produced on the blocking pool while the stream is read. A failure
    /// after the first bytes (a damaged blob, a read error) is the stream's last item, before
    /// the archive's end, so that what arrived cannot pass for a whole archive.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, EngineError>> + Send + 'static {
        stream::spawn_archive(move |archive| self.write_archive(archive))
    }

    fn write_archive(&self, archive: &mut ArchiveWriter) -> Result<(), EngineError> {
        let store = &self.engine.store;
        let mut blobs: BTreeSet<Digest> = BTreeSet::new();
        for entry in &self.entries {
            self.collect(&entry.target, &mut blobs, 0)?;
        }
        archive.directory("blobs/")?;
        archive.directory("blobs/sha256/")?;
        for digest in &blobs {
            // Verified as it streams: a blob damaged on disk ends the archive with an error
            // instead of going out as if it were whole.
            archive
                .blob(store, digest, &blob_path(digest))
                .inspect_err(|e| {
                    if let EngineError::Store(StoreError::CorruptBlob { .. }) = e {
                        tracing::error!(blob = %digest, error = %e, "refusing to save a damaged blob");
                    }
                })?;
        }
        let index = OciIndex {
            schema_version: 2,
            media_type: crate::media::OCI_INDEX,
            manifests: self
                .entries
                .iter()
                .map(|entry| IndexEntryOut {
                    descriptor: &entry.target,
                    platform: entry.platform.as_ref(),
                    annotations: entry
                        .name
                        .iter()
                        .flat_map(|r| {
                            [
                                ("io.containerd.image.name", r.to_string()),
                                (
                                    "org.opencontainers.image.ref.name",
                                    r.tag().unwrap_or("latest").to_owned(),
                                ),
                            ]
                        })
                        .collect(),
                })
                .collect(),
        };
        let mut docker_entries: Vec<(Digest, DockerArchiveEntry)> = Vec::new();
        for SaveEntry { name, target, .. } in &self.entries {
            let Some(image) = describe_target(store, target, &self.engine.host_platform)? else {
                continue;
            };
            if image.layers.iter().any(|l| !store.has_blob(&l.digest)) {
                continue;
            }
            let entry = match docker_entries.iter_mut().find(|(d, _)| *d == target.digest) {
                Some((_, e)) => e,
                None => {
                    docker_entries.push((
                        target.digest.clone(),
                        DockerArchiveEntry {
                            config: blob_path(&image.config_descriptor.digest),
                            repo_tags: Vec::new(),
                            layers: image.layers.iter().map(|l| blob_path(&l.digest)).collect(),
                        },
                    ));
                    &mut docker_entries.last_mut().expect("just pushed").1
                }
            };
            if let Some(r) = name {
                entry.repo_tags.push(r.familiar_string());
            }
        }
        let docker: Vec<&DockerArchiveEntry> = docker_entries.iter().map(|(_, e)| e).collect();
        archive.file("index.json", &to_json(&index)?)?;
        archive.file("manifest.json", &to_json(&docker)?)?;
        archive.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
    }

    /// Every present blob reachable from `desc`.
    fn collect(
        &self,
        desc: &Descriptor,
        out: &mut BTreeSet<Digest>,
        depth: usize,
    ) -> Result<(), EngineError> {
        let store = &self.engine.store;
        if depth > 4 || !store.has_blob(&desc.digest) || !out.insert(desc.digest.clone()) {
            return Ok(());
        }
        for child in store.children(desc)? {
            self.collect(&child, out, depth + 1)?;
        }
        Ok(())
    }
}

fn to_json(value: &impl Serialize) -> Result<Vec<u8>, EngineError> {
    serde_json::to_vec(value)
        .map_err(|e| EngineError::Internal(format!("encoding archive metadata: {e}")))
}
