//! Facts about OCI and Docker image content that every hoist crate must agree on: the media
//! types it reads and writes, how large a manifest or config may be, and how a stream's
//! compression is told from its first bytes.
//!
//! Each fact lives here once. The store and the registry client both need them and must not
//! depend on each other, so they sit below both, with no dependencies of their own.
#![forbid(unsafe_code)]

pub mod compression;
pub mod limits;
pub mod media;
