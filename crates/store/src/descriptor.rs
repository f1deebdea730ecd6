//! The OCI content descriptor, reduced to what the store needs to address and walk content.
//! Media types and what they reference are `hoist_oci::media`'s to say.

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
