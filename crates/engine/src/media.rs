//! The OCI content facts the engine uses: media types, their classes and size limits, all
//! defined in `hoist_oci`.

pub(crate) use hoist_oci::limits::{MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES};
pub(crate) use hoist_oci::media::*;
