//! The image generator: random-content images whose every digest is computed here, with `sha2`
//! directly, so that tests compare hoist's results against truth that hoist did not produce.
//!
//! Every blob (layers, configs, manifests, indexes) is a file under a temporary directory named
//! `blobs/sha256/<hex>`, written while hashing: layers of hundreds of MiB never sit in memory.
//!
//! ```no_run
//! use hoist_testkit::image::{Compression, Flavor, ImageBuilder, LayerSpec};
//! let image = ImageBuilder::new(Flavor::Oci)
//!     .seed(7)
//!     .layer(LayerSpec::files(&[4096, 1024]).compression(Compression::Zstd { level: 3 }))
//!     .layer(LayerSpec::files(&[256 << 20]).compression(Compression::Gzip { level: 0 }))
//!     .build();
//! println!("{} {}", image.digest(), image.manifest_bytes().len());
//! ```

mod blob;
mod builder;
mod index;
pub(crate) mod json;
mod layer;

pub use blob::{Blob, BlobDir};
pub use builder::{Image, ImageBuilder, ZstdInDockerManifest};
pub use index::{ImageIndex, IndexBuilder};
pub use json::docker_archive_manifest;
pub use layer::{Compression, Layer, LayerSpec};

/// Media types, spelled once.
pub mod media_type {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    pub const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";

    /// The layer type of BuildKit's attestation manifests.
    pub const IN_TOTO: &str = "application/vnd.in-toto+json";
}

/// Which family of media types an image uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flavor {
    /// `application/vnd.oci.image.*`
    Oci,
    /// Docker schema2: `application/vnd.docker.*`
    Docker,
}

impl Flavor {
    pub fn manifest_media_type(self) -> &'static str {
        match self {
            Flavor::Oci => media_type::OCI_MANIFEST,
            Flavor::Docker => media_type::DOCKER_MANIFEST,
        }
    }

    pub fn index_media_type(self) -> &'static str {
        match self {
            Flavor::Oci => media_type::OCI_INDEX,
            Flavor::Docker => media_type::DOCKER_MANIFEST_LIST,
        }
    }

    pub fn config_media_type(self) -> &'static str {
        match self {
            Flavor::Oci => media_type::OCI_CONFIG,
            Flavor::Docker => media_type::DOCKER_CONFIG,
        }
    }
}

/// An image platform as it appears in configs and index descriptors.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            architecture: architecture.to_owned(),
            os: os.to_owned(),
            variant: variant.map(str::to_owned),
        }
    }

    pub fn linux_amd64() -> Platform {
        Platform::new("linux", "amd64", None)
    }

    /// `os/arch[/variant]`, as `docker --platform` takes it.
    pub fn parse(text: &str) -> Platform {
        let parts: Vec<&str> = text.split('/').collect();
        match parts.as_slice() {
            [os, arch] => Platform::new(os, arch, None),
            [os, arch, variant] => Platform::new(os, arch, Some(variant)),
            _ => panic!("platform {text:?} is not os/arch[/variant]"),
        }
    }

    /// The platform JSON object (`architecture`, `os`, `variant` when set), as in descriptors.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(json::PlatformJson::from(self)).expect("platform to JSON")
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}
