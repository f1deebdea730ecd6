//! Docker image references and content digests.
//!
//! No crate reproduces distribution/reference's grammar together with Docker's normalisation
//! (`foo` → `docker.io/library/foo`), and clients print our error strings, so both are written
//! here to match upstream (distribution/reference v0.6, go-digest v1) exactly.

mod digest;
mod error;
mod grammar;
mod normalize;
mod parse;
mod reference;

pub use digest::Digest;
pub use error::ReferenceError;
pub use reference::{Reference, is_valid_tag};
