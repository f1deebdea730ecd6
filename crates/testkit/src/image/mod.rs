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
pub mod media_type;
mod platform;

pub use blob::{Blob, BlobDir};
pub use builder::{Image, ImageBuilder, ZstdInDockerManifest};
pub use index::{ImageIndex, IndexBuilder};
pub use json::docker_archive_manifest;
pub use layer::{Compression, Layer, LayerSpec};
pub use platform::Platform;

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

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}
