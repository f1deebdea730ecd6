//! hoist's content store, in the spirit of containerd's: blobs by digest, image records (opaque
//! name → descriptor), labels on blobs, leases protecting work in progress, and garbage
//! collection of blobs that nothing reaches.
//!
//! Crash safety, at any instant including `kill -9`:
//! - no partially written file is ever visible under `blobs/` (blobs are written in `ingest/`,
//!   fsynced, verified and renamed into place, then the directory is fsynced);
//! - no record points at a blob that is not fully written (records are persisted after their
//!   blobs are committed, and `meta.json` is replaced atomically);
//! - leftovers are cleaned on the next [`Store::open`]: temp files are wiped, records whose
//!   target is missing are dropped, unreachable blobs are collected.
//!
//! The store knows nothing of registries or of Docker's API: names and label keys are opaque.
//!
//! On disk:
//! ```text
//! root/                    mode 0700
//!   hoistd.lock            exclusive flock + the holder's pid
//!   meta.json              image records and blob labels (versioned, replaced atomically)
//!   blobs/sha256/<hex>     committed blobs, read-only, only ever created by rename
//!   ingest/                temp files of in-flight writes (blobs and meta.json); wiped on open
//! ```

mod blob;
mod descriptor;
mod error;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod gc;
mod images;
mod labels;
mod layout;
mod lease;
mod lock;
mod manifest;
mod metadata;
mod store;
mod writer;

pub use descriptor::Descriptor;
pub use error::StoreError;
pub use gc::GcStats;
pub use hoist_reference::Digest;
pub use images::{ImageChange, ImageRecord};
pub use lease::Lease;
pub use store::Store;
pub use writer::BlobWriter;
