//! The OCI content descriptor, reduced to what the store needs to address and walk content.

use hoist_reference::Digest;

/// Points at a blob: what it is, its digest and its size. Serialises with OCI field names, so it
/// can be read straight out of manifests and indexes (other descriptor fields are ignored).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

/// Media types whose blobs reference other blobs. Everything else is a leaf to the store.
pub mod media_type {
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
}
