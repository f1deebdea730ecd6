//! Single-platform images: layers, a config and a manifest.

use std::collections::{BTreeMap, HashSet};

use rand::{Rng, SeedableRng, rngs::StdRng};

use super::blob::{Blob, BlobDir};
use super::json::{
    ConfigJson, ContainerConfigJson, DescriptorJson, HistoryJson, ManifestJson, RootFsJson,
    docker_archive_manifest,
};
use super::layer::{Compression, Layer, LayerSpec};
use super::{Flavor, Platform, media_type, sha256_digest};

/// Which media type a zstd layer gets in a Docker-flavoured manifest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ZstdInDockerManifest {
    /// `…diff.tar.gzip`, as containerd's importer labels it when loading a docker-archive (see
    /// [`super::docker_archive_manifest`]); the default, so that a Docker-flavoured image's
    /// digest is always the ID it gets when loaded from a docker-archive.
    #[default]
    AsGzip,
    /// `…diff.tar.zstd`, the honest type (as BuildKit pushes zstd with Docker media types).
    AsZstd,
}

enum LayerSource {
    Generate(LayerSpec),
    Existing(Layer),
    /// The layer at this position of the image being built, again.
    Repeat(usize),
}

/// Builds an [`Image`]; every choice has a default so `ImageBuilder::new(flavor).build()` works
/// (one 1 KiB gzip layer, linux/amd64).
pub struct ImageBuilder {
    flavor: Flavor,
    seed: Option<u64>,
    platform: Platform,
    layers: Vec<LayerSource>,
    created: String,
    env: Vec<String>,
    cmd: Vec<String>,
    labels: BTreeMap<String, String>,
    dir: Option<BlobDir>,
    zstd_in_docker: ZstdInDockerManifest,
}

impl ImageBuilder {
    pub fn new(flavor: Flavor) -> ImageBuilder {
        ImageBuilder {
            flavor,
            seed: None,
            platform: Platform::linux_amd64(),
            layers: Vec::new(),
            // Fixed so that a seed reproduces the config (and so the digests) exactly.
            created: "2025-01-01T00:00:00Z".to_owned(),
            env: vec![
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
            ],
            cmd: vec!["/bin/sh".to_owned()],
            labels: BTreeMap::new(),
            dir: None,
            zstd_in_docker: ZstdInDockerManifest::default(),
        }
    }

    /// An image of one gzip layer per size (stored blocks, level 0: as fast to make as plain
    /// bytes, and the size is close to the layer's), reproducible from `seed`: what transfer
    /// tests push and pull.
    pub fn gzip_layers(flavor: Flavor, seed: u64, sizes: &[u64]) -> Image {
        ImageBuilder::new(flavor)
            .seed(seed)
            .layers(
                sizes
                    .iter()
                    .map(|&s| LayerSpec::single(s).compression(Compression::Gzip { level: 0 })),
            )
            .build()
    }

    /// Makes the content reproducible: the same builder calls with the same seed give the same
    /// bytes and digests. Without it, a random seed is drawn (see [`Image::seed`]).
    pub fn seed(mut self, seed: u64) -> ImageBuilder {
        self.seed = Some(seed);
        self
    }

    pub fn platform(mut self, platform: Platform) -> ImageBuilder {
        self.platform = platform;
        self
    }

    pub fn layer(mut self, spec: LayerSpec) -> ImageBuilder {
        self.layers.push(LayerSource::Generate(spec));
        self
    }

    pub fn layers(mut self, specs: impl IntoIterator<Item = LayerSpec>) -> ImageBuilder {
        self.layers
            .extend(specs.into_iter().map(LayerSource::Generate));
        self
    }

    /// Reuses a layer generated for another image (for shared-layer, mount and dedup tests).
    pub fn existing_layer(mut self, layer: &Layer) -> ImageBuilder {
        self.layers.push(LayerSource::Existing(layer.clone()));
        self
    }

    /// Repeats the layer at `position` (0-based) of this image: the manifest lists it twice.
    pub fn repeat_layer(mut self, position: usize) -> ImageBuilder {
        self.layers.push(LayerSource::Repeat(position));
        self
    }

    /// The config's `created`, RFC 3339.
    pub fn created(mut self, created: &str) -> ImageBuilder {
        self.created = created.to_owned();
        self
    }

    pub fn env(mut self, entry: &str) -> ImageBuilder {
        self.env.push(entry.to_owned());
        self
    }

    pub fn cmd(mut self, cmd: &[&str]) -> ImageBuilder {
        self.cmd = cmd.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> ImageBuilder {
        self.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Writes blobs into `dir` (shared with other images) instead of a new temp dir.
    pub fn blob_dir(mut self, dir: &BlobDir) -> ImageBuilder {
        self.dir = Some(dir.clone());
        self
    }

    pub fn zstd_in_docker_manifest(mut self, choice: ZstdInDockerManifest) -> ImageBuilder {
        self.zstd_in_docker = choice;
        self
    }

    fn layer_media_type(&self, compression: Compression) -> &'static str {
        match (self.flavor, compression, self.zstd_in_docker) {
            (Flavor::Docker, Compression::Zstd { .. }, ZstdInDockerManifest::AsGzip) => {
                media_type::DOCKER_LAYER_GZIP
            }
            (flavor, compression, _) => compression.media_type(flavor),
        }
    }

    pub fn build(mut self) -> Image {
        if self.layers.is_empty() {
            self.layers
                .push(LayerSource::Generate(LayerSpec::single(1024)));
        }
        let seed = self.seed.unwrap_or_else(|| rand::rng().random());
        let mut rng = StdRng::seed_from_u64(seed);
        let dir = self.dir.clone().unwrap_or_default();

        let mut layers: Vec<Layer> = Vec::new();
        for source in &self.layers {
            let layer = match source {
                LayerSource::Generate(spec) => {
                    let media_type = self.layer_media_type(spec.compression);
                    Layer::generate(&dir, spec, rng.random(), media_type)
                }
                LayerSource::Existing(layer) => {
                    layer.with_media_type(self.layer_media_type(layer.compression))
                }
                LayerSource::Repeat(position) => layers
                    .get(*position)
                    .unwrap_or_else(|| panic!("repeat_layer({position}): no such layer yet"))
                    .clone(),
            };
            layers.push(layer);
        }

        // The seed label makes two images with equal layers (or none) still differ.
        let mut labels = self.labels.clone();
        labels.insert("org.hoist.testkit.seed".to_owned(), seed.to_string());
        let config = ConfigJson {
            architecture: self.platform.architecture.clone(),
            os: self.platform.os.clone(),
            variant: self.platform.variant.clone(),
            created: self.created.clone(),
            config: ContainerConfigJson {
                env: self.env.clone(),
                cmd: self.cmd.clone(),
                working_dir: "/".to_owned(),
                labels,
            },
            rootfs: RootFsJson {
                kind: "layers".to_owned(),
                diff_ids: layers.iter().map(|l| l.diff_id.clone()).collect(),
            },
            history: layers
                .iter()
                .enumerate()
                .map(|(i, layer)| HistoryJson {
                    created: self.created.clone(),
                    created_by: format!("COPY layer-{i} / # {}", layer.diff_id),
                    comment: "hoist-testkit".to_owned(),
                })
                .collect(),
        };
        let config_bytes = serde_json::to_vec(&config).expect("serialize config");
        let config = dir.write_bytes(self.flavor.config_media_type(), &config_bytes);

        let manifest_json = ManifestJson {
            schema_version: 2,
            media_type: self.flavor.manifest_media_type().to_owned(),
            config: DescriptorJson::of(&config),
            layers: layers.iter().map(|l| DescriptorJson::of(&l.blob)).collect(),
        };
        let manifest_bytes = serde_json::to_vec(&manifest_json).expect("serialize manifest");
        let manifest = dir.write_bytes(self.flavor.manifest_media_type(), &manifest_bytes);

        Image {
            flavor: self.flavor,
            platform: self.platform,
            manifest,
            config,
            layers,
            seed,
            dir,
        }
    }
}

/// A generated single-platform image.
#[derive(Clone, Debug)]
pub struct Image {
    pub flavor: Flavor,
    pub platform: Platform,
    pub manifest: Blob,
    pub config: Blob,
    /// In manifest order; a repeated layer appears twice.
    pub layers: Vec<Layer>,
    /// The seed that reproduces this image.
    pub seed: u64,
    dir: BlobDir,
}

impl Image {
    pub(crate) fn from_parts(
        flavor: Flavor,
        platform: Platform,
        manifest: Blob,
        config: Blob,
        layers: Vec<Layer>,
        seed: u64,
        dir: BlobDir,
    ) -> Image {
        Image {
            flavor,
            platform,
            manifest,
            config,
            layers,
            seed,
            dir,
        }
    }

    /// The manifest digest (what a registry names this image by; the image ID once loaded).
    pub fn digest(&self) -> &str {
        &self.manifest.digest
    }

    pub fn media_type(&self) -> &str {
        &self.manifest.media_type
    }

    pub fn size(&self) -> u64 {
        self.manifest.size
    }

    pub fn manifest_bytes(&self) -> Vec<u8> {
        self.manifest.bytes()
    }

    pub fn manifest_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.manifest_bytes()).expect("generated manifest is JSON")
    }

    pub fn config_bytes(&self) -> Vec<u8> {
        self.config.bytes()
    }

    pub fn config_digest(&self) -> &str {
        &self.config.digest
    }

    pub fn diff_ids(&self) -> Vec<&str> {
        self.layers.iter().map(|l| l.diff_id.as_str()).collect()
    }

    /// The blobs a registry holds for this image besides the manifest: config, then each
    /// distinct layer in manifest order.
    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        let mut seen = HashSet::new();
        std::iter::once(&self.config)
            .chain(self.layers.iter().map(|l| &l.blob))
            .filter(move |b| seen.insert(b.digest.clone()))
    }

    /// Everything an OCI layout holds for this image: the manifest, then [`Image::blobs`].
    pub fn contents(&self) -> impl Iterator<Item = &Blob> {
        std::iter::once(&self.manifest).chain(self.blobs())
    }

    /// Sum of the sizes of [`Image::blobs`].
    pub fn blobs_size(&self) -> u64 {
        self.blobs().map(|b| b.size).sum()
    }

    /// `{"mediaType","digest","size"}` of the manifest.
    pub fn descriptor(&self) -> serde_json::Value {
        self.manifest.descriptor()
    }

    /// The directory holding this image's generated blobs.
    pub fn blob_dir(&self) -> &BlobDir {
        &self.dir
    }

    /// The manifest containerd's importer builds when this image is loaded from a docker-archive
    /// (`manifest.json` without `index.json`); see [`super::docker_archive_manifest`]. For a
    /// Docker-flavoured image (with the default [`ZstdInDockerManifest::AsGzip`]) these are the
    /// manifest's own bytes.
    pub fn docker_archive_manifest_bytes(&self) -> Vec<u8> {
        let layers: Vec<Blob> = self.layers.iter().map(|l| l.blob.clone()).collect();
        docker_archive_manifest(&self.config, &layers)
    }

    /// The image ID after loading this image from a docker-archive: the digest of
    /// [`Image::docker_archive_manifest_bytes`].
    pub fn docker_archive_id(&self) -> String {
        sha256_digest(&self.docker_archive_manifest_bytes())
    }
}
