//! Image archives as `docker load` takes them, written from generated images.
//!
//! ```no_run
//! use hoist_testkit::archive::{ArchiveBuilder, ArchiveFormat};
//! use hoist_testkit::image::{Flavor, ImageBuilder};
//! let image = ImageBuilder::new(Flavor::Docker).build();
//! ArchiveBuilder::new(ArchiveFormat::DockerLegacy)
//!     .image(&image, &["foo:latest"])
//!     .write(std::path::Path::new("/tmp/foo.tar"));
//! ```

mod broken;
mod plan;
mod raw;
mod rewrite;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::Serialize;

use crate::image::json::{DescriptorJson, IndexJson};
use crate::image::{Image, ImageIndex, Platform, sha256_digest};

pub use broken::{ABSOLUTE_ENTRY_NAME, Breakage, PARENT_DIR_ENTRY_NAME, SYMLINK_DIR_NAME};
pub use plan::ArchiveFormat;
use plan::Plan;
pub use raw::{ArchiveCompression, RawArchive, RawData, RawEntry, RawKind, Truncation};

#[derive(Clone, Debug)]
enum Target {
    Image(Image),
    Index(ImageIndex),
}

impl Target {
    /// The manifest or index the archive names.
    fn top(&self) -> &crate::image::Blob {
        match self {
            Target::Image(image) => &image.manifest,
            Target::Index(index) => &index.index,
        }
    }

    fn contents(&self) -> Vec<&crate::image::Blob> {
        match self {
            Target::Image(image) => image.contents().collect(),
            Target::Index(index) => index.contents().collect(),
        }
    }

    /// The platform images (attestations are not images docker-archive formats can carry).
    fn platform_images(&self) -> Vec<&Image> {
        match self {
            Target::Image(image) => vec![image],
            Target::Index(index) => index.images.iter().collect(),
        }
    }
}

/// Builds an archive of one or more images or indexes.
#[derive(Clone, Debug)]
pub struct ArchiveBuilder {
    format: ArchiveFormat,
    compression: ArchiveCompression,
    targets: Vec<(Target, Vec<String>)>,
    omitted: HashSet<String>,
    only_platform: Option<Platform>,
}

/// One `manifest.json` element; Go's field order (`Config`, `RepoTags`, `Layers`).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestJsonEntry {
    config: String,
    /// `null` when untagged, as docker writes a nil slice.
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

impl ArchiveBuilder {
    pub fn new(format: ArchiveFormat) -> ArchiveBuilder {
        ArchiveBuilder {
            format,
            compression: ArchiveCompression::None,
            targets: Vec::new(),
            omitted: HashSet::new(),
            only_platform: None,
        }
    }

    pub fn compression(mut self, compression: ArchiveCompression) -> ArchiveBuilder {
        self.compression = compression;
        self
    }

    /// Adds an image under `tags` (as a user names them, e.g. `foo:latest`,
    /// `127.0.0.1:5000/team/app:2`); no tags makes it untagged.
    pub fn image(mut self, image: &Image, tags: &[&str]) -> ArchiveBuilder {
        self.targets
            .push((Target::Image(image.clone()), owned(tags)));
        self
    }

    /// Adds a multi-platform image. Docker-archive formats list its platform images.
    pub fn index(mut self, index: &ImageIndex, tags: &[&str]) -> ArchiveBuilder {
        self.targets
            .push((Target::Index(index.clone()), owned(tags)));
        self
    }

    /// Leaves the blob with this digest out (a partial layout).
    pub fn omit_blob(mut self, digest: &str) -> ArchiveBuilder {
        self.omitted.insert(digest.to_owned());
        self
    }

    /// Leaves out configs and layers of every platform image (and its attestation) of the
    /// indexes except `platform` (`os/arch[/variant]`); their manifests stay, as in a
    /// `docker save --platform` of an image pulled for one platform.
    pub fn only_platform_blobs(mut self, platform: &str) -> ArchiveBuilder {
        self.only_platform = Some(Platform::parse(platform));
        self
    }

    pub fn write(&self, path: &Path) {
        self.plan().raw.write(path);
    }

    /// The archive as entries, to inspect or edit before writing.
    pub fn to_raw(&self) -> RawArchive {
        self.plan().raw
    }

    /// A deliberately broken variant of this archive; see [`Breakage`].
    pub fn broken(&self, breakage: Breakage) -> RawArchive {
        broken::apply(self.plan(), self.format, breakage)
    }

    fn omitted_digests(&self) -> HashSet<String> {
        let mut omitted = self.omitted.clone();
        let Some(keep) = &self.only_platform else {
            return omitted;
        };
        for (target, _) in &self.targets {
            let Target::Index(index) = target else {
                continue;
            };
            let kept: HashSet<&str> = index
                .images
                .iter()
                .zip(
                    index
                        .attestations
                        .iter()
                        .map(Some)
                        .chain(std::iter::repeat(None)),
                )
                .filter(|(image, _)| &image.platform == keep)
                .flat_map(|(image, att)| {
                    image.blobs().chain(att.into_iter().flat_map(|a| a.blobs()))
                })
                .map(|b| b.digest.as_str())
                .collect();
            for blob in index.blobs() {
                if !kept.contains(blob.digest.as_str()) {
                    omitted.insert(blob.digest.clone());
                }
            }
        }
        omitted
    }

    pub(crate) fn plan(&self) -> Plan {
        let omitted = self.omitted_digests();
        let mut plan = Plan {
            raw: RawArchive::new().compression(self.compression),
            layer_entries: Vec::new(),
            config_entries: Vec::new(),
        };
        match self.format {
            ArchiveFormat::DockerLegacy => self.plan_legacy(&mut plan, &omitted),
            ArchiveFormat::DockerBlobs => {
                self.plan_blobs(&mut plan, &omitted, false);
                self.plan_manifest_json(&mut plan, &omitted);
                self.plan_repositories(&mut plan);
            }
            ArchiveFormat::Oci => {
                self.plan_blobs(&mut plan, &omitted, true);
                self.plan_oci_metadata(&mut plan);
            }
            ArchiveFormat::Both => {
                self.plan_blobs(&mut plan, &omitted, true);
                // Alphabetical, as docker save writes them.
                self.plan_index_json(&mut plan);
                self.plan_manifest_json(&mut plan, &omitted);
                self.plan_oci_layout(&mut plan);
                self.plan_repositories(&mut plan);
            }
        }
        plan
    }

    /// `blobs/sha256/<hex>` for every blob (with manifests and indexes when `with_manifests`).
    fn plan_blobs(&self, plan: &mut Plan, omitted: &HashSet<String>, with_manifests: bool) {
        plan.raw = std::mem::take(&mut plan.raw)
            .dir("blobs/")
            .dir("blobs/sha256/");
        let mut written = HashSet::new();
        for (target, _) in &self.targets {
            let mut manifests = HashSet::new();
            let mut configs = HashSet::new();
            match target {
                Target::Image(image) => {
                    manifests.insert(image.digest().to_owned());
                    configs.insert(image.config_digest().to_owned());
                }
                Target::Index(index) => {
                    manifests.insert(index.digest().to_owned());
                    for image in index.all_images() {
                        manifests.insert(image.digest().to_owned());
                        configs.insert(image.config_digest().to_owned());
                    }
                }
            }
            for blob in target.contents() {
                let is_manifest = manifests.contains(&blob.digest);
                if omitted.contains(&blob.digest)
                    || (is_manifest && !with_manifests)
                    || !written.insert(blob.digest.clone())
                {
                    continue;
                }
                let name = format!("blobs/sha256/{}", blob.hex());
                if configs.contains(&blob.digest) {
                    plan.config_entries.push(name.clone());
                } else if !is_manifest {
                    plan.layer_entries.push(name.clone());
                }
                plan.raw = std::mem::take(&mut plan.raw).file_from(name, &blob.path);
            }
        }
    }

    fn plan_oci_metadata(&self, plan: &mut Plan) {
        self.plan_index_json(plan);
        self.plan_oci_layout(plan);
    }

    fn plan_oci_layout(&self, plan: &mut Plan) {
        plan.raw = std::mem::take(&mut plan.raw)
            .file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec());
    }

    /// `index.json`: one descriptor per (image, tag) with `io.containerd.image.name` (the full
    /// name) and `org.opencontainers.image.ref.name` (the tag), as docker save writes; an
    /// untagged image gets a descriptor without annotations.
    fn plan_index_json(&self, plan: &mut Plan) {
        let mut manifests = Vec::new();
        for (target, tags) in &self.targets {
            if tags.is_empty() {
                manifests.push(DescriptorJson::of(target.top()));
            }
            for tag in tags {
                let (full_name, tag_only) = normalize_tagged_name(tag);
                manifests.push(DescriptorJson {
                    annotations: Some(BTreeMap::from([
                        ("io.containerd.image.name".to_owned(), full_name),
                        ("org.opencontainers.image.ref.name".to_owned(), tag_only),
                    ])),
                    ..DescriptorJson::of(target.top())
                });
            }
        }
        // Typed structs, not `json!`: without serde_json's preserve_order its maps sort keys,
        // and docker writes `schemaVersion`, `mediaType`, `manifests` in that order.
        let index = IndexJson {
            schema_version: 2,
            media_type: crate::image::media_type::OCI_INDEX.to_owned(),
            manifests,
        };
        plan.raw = std::mem::take(&mut plan.raw).file(
            "index.json",
            serde_json::to_vec(&index).expect("serialize index.json"),
        );
    }

    /// `manifest.json` for the blob layouts: one element per platform image whose config and
    /// layers are all in the archive.
    fn plan_manifest_json(&self, plan: &mut Plan, omitted: &HashSet<String>) {
        let mut entries = Vec::new();
        for (target, tags) in &self.targets {
            for image in target.platform_images() {
                if image.blobs().any(|b| omitted.contains(&b.digest)) {
                    continue;
                }
                entries.push(ManifestJsonEntry {
                    config: format!("blobs/sha256/{}", image.config.hex()),
                    repo_tags: (!tags.is_empty()).then(|| tags.clone()),
                    layers: image
                        .layers
                        .iter()
                        .map(|l| format!("blobs/sha256/{}", l.blob.hex()))
                        .collect(),
                });
            }
        }
        plan.raw = std::mem::take(&mut plan.raw).file(
            "manifest.json",
            serde_json::to_vec(&entries).expect("serialize manifest.json"),
        );
    }

    /// `repositories`: `{"<name>":{"<tag>":"<top layer id>"}}`.
    fn plan_repositories(&self, plan: &mut Plan) {
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (target, tags) in &self.targets {
            let Some(image) = target.platform_images().first().copied() else {
                continue;
            };
            let top = match self.format {
                ArchiveFormat::DockerLegacy => {
                    legacy_layer_ids(image).last().cloned().unwrap_or_default()
                }
                _ => image
                    .layers
                    .last()
                    .map(|l| l.blob.hex().to_owned())
                    .unwrap_or_default(),
            };
            for tag in tags {
                let (name, tag_only) = split_tag(tag);
                repositories
                    .entry(name.to_owned())
                    .or_default()
                    .insert(tag_only.to_owned(), top.clone());
            }
        }
        plan.raw = std::mem::take(&mut plan.raw).file(
            "repositories",
            serde_json::to_vec(&repositories).expect("serialize repositories"),
        );
    }

    fn plan_legacy(&self, plan: &mut Plan, omitted: &HashSet<String>) {
        // Layer directory written for each blob digest, to link duplicates to it.
        let mut dir_of_blob: BTreeMap<String, String> = BTreeMap::new();
        let mut dirs_written = HashSet::new();
        let mut configs_written = HashSet::new();
        let mut entries = Vec::new();
        let mut raw = std::mem::take(&mut plan.raw);
        for (target, tags) in &self.targets {
            for image in target.platform_images() {
                let ids = legacy_layer_ids(image);
                let mut layer_paths = Vec::new();
                for (i, (layer, id)) in image.layers.iter().zip(&ids).enumerate() {
                    let layer_path = format!("{id}/layer.tar");
                    layer_paths.push(layer_path.clone());
                    if !dirs_written.insert(id.clone()) || omitted.contains(&layer.blob.digest) {
                        continue;
                    }
                    raw = raw
                        .dir(format!("{id}/"))
                        .file(format!("{id}/VERSION"), b"1.0".to_vec());
                    let mut json = serde_json::json!({"id": id});
                    if i > 0 {
                        json["parent"] = serde_json::json!(ids[i - 1]);
                    }
                    raw = raw.file(
                        format!("{id}/json"),
                        serde_json::to_vec(&json).expect("layer json"),
                    );
                    match dir_of_blob.get(&layer.blob.digest) {
                        Some(other) => {
                            raw = raw.symlink(&layer_path, format!("../{other}/layer.tar"));
                        }
                        None => {
                            dir_of_blob.insert(layer.blob.digest.clone(), id.clone());
                            plan.layer_entries.push(layer_path.clone());
                            raw = raw.file_from(&layer_path, &layer.blob.path);
                        }
                    }
                }
                let config_path = format!("{}.json", image.config.hex());
                if configs_written.insert(config_path.clone())
                    && !omitted.contains(image.config_digest())
                {
                    plan.config_entries.push(config_path.clone());
                    raw = raw.file_from(&config_path, &image.config.path);
                }
                entries.push(ManifestJsonEntry {
                    config: config_path,
                    repo_tags: (!tags.is_empty()).then(|| tags.clone()),
                    layers: layer_paths,
                });
            }
        }
        plan.raw = raw.file(
            "manifest.json",
            serde_json::to_vec(&entries).expect("serialize manifest.json"),
        );
        self.plan_repositories(plan);
    }
}

/// Legacy v1 layer IDs: each depends on its parent's, so the same content at two positions gets
/// two directories (the second a symlink), as docker save's chain IDs do.
fn legacy_layer_ids(image: &Image) -> Vec<String> {
    let mut parent = String::new();
    image
        .layers
        .iter()
        .map(|layer| {
            let id = sha256_digest(format!("{parent} {}", layer.blob.digest).as_bytes())
                .trim_start_matches("sha256:")
                .to_owned();
            parent = id.clone();
            id
        })
        .collect()
}

fn owned(tags: &[&str]) -> Vec<String> {
    tags.iter().map(|t| t.to_string()).collect()
}

/// (`name`, `tag`) of `name[:tag]`, tag `latest` when absent.
fn split_tag(reference: &str) -> (&str, &str) {
    assert!(
        !reference.contains('@'),
        "archive tags cannot carry digests: {reference}"
    );
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last_slash..].rfind(':') {
        Some(colon) => (
            &reference[..last_slash + colon],
            &reference[last_slash + colon + 1..],
        ),
        None => (reference, "latest"),
    }
}

/// (`docker.io/library/foo:latest`, `latest`) for `foo`: Docker's normalisation (a first
/// component with `.` or `:`, or `localhost`, is a registry; otherwise `docker.io`, with
/// `library/` for single-component names). Written here, not borrowed from hoist, on purpose.
pub fn normalize_tagged_name(reference: &str) -> (String, String) {
    let (name, tag) = split_tag(reference);
    let full = match name.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            name.to_owned()
        }
        Some(_) => format!("docker.io/{name}"),
        None => format!("docker.io/library/{name}"),
    };
    (format!("{full}:{tag}"), tag.to_owned())
}
