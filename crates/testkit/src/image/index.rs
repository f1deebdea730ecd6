//! Multi-platform images: an OCI index or Docker manifest list over platform images, optionally
//! with BuildKit-style attestation manifests.

use std::collections::{BTreeMap, HashSet};

use rand::{Rng, SeedableRng, rngs::StdRng};

use super::blob::{Blob, BlobDir};
use super::builder::{Image, ImageBuilder};
use super::json::{DescriptorJson, IndexJson, ManifestJson};
use super::layer::{Compression, Layer, LayerSpec};
use super::platform::PlatformJson;
use super::{Flavor, Platform, media_type};

/// Builds an [`ImageIndex`].
pub struct IndexBuilder {
    flavor: Flavor,
    seed: Option<u64>,
    images: Vec<ImageSource>,
    attestations: bool,
}

enum ImageSource {
    /// An image built elsewhere, and whether its descriptor carries its platform.
    Built(Image, bool),
    Generate(Platform, Vec<LayerSpec>),
}

impl IndexBuilder {
    pub fn new(flavor: Flavor) -> IndexBuilder {
        IndexBuilder {
            flavor,
            seed: None,
            images: Vec::new(),
            attestations: false,
        }
    }

    pub fn seed(mut self, seed: u64) -> IndexBuilder {
        self.seed = Some(seed);
        self
    }

    /// A generated image of this index's flavour for `platform` (`os/arch[/variant]`).
    pub fn platform(mut self, platform: &str, layers: &[LayerSpec]) -> IndexBuilder {
        self.images.push(ImageSource::Generate(
            Platform::parse(platform),
            layers.to_vec(),
        ));
        self
    }

    /// An image built elsewhere; its `platform` goes into the descriptor.
    pub fn image(mut self, image: Image) -> IndexBuilder {
        self.images.push(ImageSource::Built(image, true));
        self
    }

    /// An image built elsewhere, listed without a `platform` in its descriptor (the index
    /// specification makes it optional; readers then go by the config).
    pub fn image_without_platform(mut self, image: Image) -> IndexBuilder {
        self.images.push(ImageSource::Built(image, false));
        self
    }

    /// Adds, after the platform images, one attestation manifest per platform image as BuildKit
    /// makes them: an OCI manifest with an in-toto layer, whose index descriptor has platform
    /// `unknown/unknown` and the `vnd.docker.reference.*` annotations naming its subject.
    pub fn with_attestations(mut self) -> IndexBuilder {
        self.attestations = true;
        self
    }

    pub fn build(self) -> ImageIndex {
        let seed = self.seed.unwrap_or_else(|| rand::rng().random());
        let mut rng = StdRng::seed_from_u64(seed);
        let dir = BlobDir::new();
        let (images, described): (Vec<Image>, Vec<bool>) = self
            .images
            .into_iter()
            .map(|source| match source {
                ImageSource::Built(image, described) => (image, described),
                ImageSource::Generate(platform, layers) => (
                    ImageBuilder::new(self.flavor)
                        .seed(rng.random())
                        .platform(platform)
                        .layers(layers)
                        .blob_dir(&dir)
                        .build(),
                    true,
                ),
            })
            .unzip();
        assert!(!images.is_empty(), "an index needs at least one image");

        let attestations: Vec<Image> = if self.attestations {
            images
                .iter()
                .map(|subject| attestation_for(subject, &dir))
                .collect()
        } else {
            Vec::new()
        };

        let mut manifests: Vec<DescriptorJson> = images
            .iter()
            .zip(&described)
            .map(|(image, described)| DescriptorJson {
                platform: described.then(|| PlatformJson::from(&image.platform)),
                ..DescriptorJson::of(&image.manifest)
            })
            .collect();
        for (attestation, subject) in attestations.iter().zip(&images) {
            manifests.push(DescriptorJson {
                annotations: Some(BTreeMap::from([
                    (
                        "vnd.docker.reference.digest".to_owned(),
                        subject.digest().to_owned(),
                    ),
                    (
                        "vnd.docker.reference.type".to_owned(),
                        "attestation-manifest".to_owned(),
                    ),
                ])),
                platform: Some(PlatformJson::from(&attestation.platform)),
                ..DescriptorJson::of(&attestation.manifest)
            });
        }
        let index_json = IndexJson {
            schema_version: 2,
            media_type: self.flavor.index_media_type().to_owned(),
            manifests,
        };
        let bytes = serde_json::to_vec(&index_json).expect("serialize index");
        let index = dir.write_bytes(self.flavor.index_media_type(), &bytes);
        ImageIndex {
            flavor: self.flavor,
            index,
            images,
            attestations,
            _dir: dir,
        }
    }
}

/// An attestation manifest shaped like BuildKit's: config `{"architecture":"unknown",…}` and one
/// uncompressed in-toto statement layer whose subject is the image's manifest.
fn attestation_for(subject: &Image, dir: &BlobDir) -> Image {
    let statement = serde_json::json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://slsa.dev/provenance/v0.2",
        "subject": [{
            "name": format!("pkg:docker/hoist-testkit@{}?platform={}", subject.seed,
                subject.platform.to_string().replace('/', "%2F")),
            "digest": {"sha256": subject.digest().trim_start_matches("sha256:")},
        }],
        "predicate": {"builder": {"id": "hoist-testkit"}, "buildType": "hoist-testkit/v1"},
    });
    let statement_blob = dir.write_bytes(
        media_type::IN_TOTO,
        &serde_json::to_vec(&statement).expect("serialize in-toto statement"),
    );
    let layer = Layer::from_blob(statement_blob.clone(), Compression::None, dir);
    let config = serde_json::json!({
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [statement_blob.digest]},
    });
    let config = dir.write_bytes(
        media_type::OCI_CONFIG,
        &serde_json::to_vec(&config).expect("serialize attestation config"),
    );
    let manifest = ManifestJson {
        schema_version: 2,
        media_type: media_type::OCI_MANIFEST.to_owned(),
        config: DescriptorJson::of(&config),
        layers: vec![DescriptorJson {
            annotations: Some(BTreeMap::from([(
                "in-toto.io/predicate-type".to_owned(),
                "https://slsa.dev/provenance/v0.2".to_owned(),
            )])),
            ..DescriptorJson::of(&statement_blob)
        }],
    };
    let manifest = dir.write_bytes(
        media_type::OCI_MANIFEST,
        &serde_json::to_vec(&manifest).expect("serialize attestation manifest"),
    );
    Image::from_parts(
        Flavor::Oci,
        Platform::new("unknown", "unknown", None),
        manifest,
        config,
        vec![layer],
        subject.seed,
        dir.clone(),
    )
}

/// A generated multi-platform image.
#[derive(Clone, Debug)]
pub struct ImageIndex {
    pub flavor: Flavor,
    /// The index (or manifest list) itself.
    pub index: Blob,
    /// The platform images, in index order.
    pub images: Vec<Image>,
    /// Attestation manifests (as images of platform `unknown/unknown`), one per platform image in
    /// the same order, listed in the index after all platform images.
    pub attestations: Vec<Image>,
    _dir: BlobDir,
}

impl ImageIndex {
    pub fn digest(&self) -> &str {
        &self.index.digest
    }

    pub fn media_type(&self) -> &str {
        &self.index.media_type
    }

    pub fn size(&self) -> u64 {
        self.index.size
    }

    pub fn index_bytes(&self) -> Vec<u8> {
        self.index.bytes()
    }

    pub fn index_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.index_bytes()).expect("generated index is JSON")
    }

    pub fn descriptor(&self) -> serde_json::Value {
        self.index.descriptor()
    }

    /// The image for `platform` (`os/arch[/variant]`).
    pub fn image_for(&self, platform: &str) -> &Image {
        let wanted = Platform::parse(platform);
        self.images
            .iter()
            .find(|i| i.platform == wanted)
            .unwrap_or_else(|| panic!("no image for platform {platform} in this index"))
    }

    /// Platform images then attestations.
    pub fn all_images(&self) -> impl Iterator<Item = &Image> {
        self.images.iter().chain(&self.attestations)
    }

    /// Every manifest the index lists (platform images, then attestations).
    pub fn manifests(&self) -> impl Iterator<Item = &Blob> {
        self.all_images().map(|i| &i.manifest)
    }

    /// Every distinct non-manifest blob (configs and layers) of every listed manifest.
    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        let mut seen = HashSet::new();
        self.all_images()
            .flat_map(|i| i.blobs())
            .filter(move |b| seen.insert(b.digest.clone()))
    }

    /// Everything an OCI layout holds: the index, each manifest, then [`ImageIndex::blobs`].
    pub fn contents(&self) -> impl Iterator<Item = &Blob> {
        std::iter::once(&self.index)
            .chain(self.manifests())
            .chain(self.blobs())
    }
}
