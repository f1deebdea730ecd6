//! hoist's content store, in the spirit of containerd's: blobs by digest, image records (opaque
//! name → descriptor), labels on blobs, leases protecting work in progress, and garbage
//! collection of blobs that nothing reaches.
//!
//! Crash safety, at any instant including `kill -9`:
//! - no partially written file is ever visible under `blobs/` (blobs are written in `ingest/`,
//!   fsynced, verified and renamed into place, then the directory is fsynced; a staged batch is
//!   made durable by one `syncfs` before any of its renames);
//! - no record points at a blob that is not fully written (records are committed after their
//!   blobs, in `meta.db` transactions that are durable and all-or-nothing);
//! - leftovers are cleaned on the next [`Store::open`]: temp files are wiped, records whose
//!   target is missing are dropped, unreachable blobs are collected.
//!
//! One record whose content cannot be read never takes the store down: records are refused when
//! their manifest could not be read back, and GC keeps what an unreadable manifest names while
//! collecting everything else.
//!
//! The store knows nothing of registries or of Docker's API: names and label keys are opaque.
//!
//! On disk:
//! ```text
//! root/                    mode 0700
//!   hoistd.lock            exclusive flock + the holder's pid
//!   meta.db                image records and blob labels (redb; see `metadata`)
//!   meta.json              the same, as earlier versions kept it; migrated and removed on open
//!   blobs/sha256/<hex>     committed blobs, read-only, only ever created by rename
//!   ingest/                temp files of in-flight blob writes; wiped on open
//! ```

mod blob;
mod checksum;
mod descriptor;
mod error;
mod file_sink;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod gc;
mod images;
mod integrity;
mod labels;
mod layout;
mod lease;
mod legacy;
mod lock;
mod manifest;
mod metadata;
mod removal;
mod space;
mod store;
mod verify;
mod writer;

pub use descriptor::Descriptor;
pub use error::StoreError;
pub use gc::GcStats;
pub use hoist_reference::Digest;
pub use images::{ImageChange, ImageRecord};
pub use integrity::VerifiedBlob;
pub use labels::Durability;
pub use lease::Lease;
pub use removal::BlobRemoval;
pub use space::{FreeSpaceReserve, StoreOptions};
pub use store::Store;
pub use verify::{Problem, VerifyReport};
pub use writer::{BlobWriter, StagedBlobs};
