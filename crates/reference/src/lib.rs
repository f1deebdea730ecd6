//! Docker image references and content digests.
//!
//! No crate reproduces distribution/reference's grammar together with Docker's normalisation
//! (`foo` → `docker.io/library/foo`), and clients print our error strings, so both are written
//! here to match upstream exactly.

mod digest;
mod error;

pub use digest::Digest;
pub use error::ReferenceError;
