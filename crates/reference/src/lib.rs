//! Docker image references and content digests.
//!
//! No crate reproduces distribution/reference's grammar together with Docker's normalisation
//! (`foo` → `docker.io/library/foo`), and clients print our error strings, so both are written
//! here to match upstream (distribution/reference v0.6, go-digest v1) exactly.
//!
//! ```
//! use hoist_reference::Reference;
//!
//! let reference: Reference = "ubuntu:22.04".parse()?;
//! assert_eq!(reference.to_string(), "docker.io/library/ubuntu:22.04");
//! assert_eq!(reference.familiar_string(), "ubuntu:22.04");
//!
//! let error = Reference::parse_normalized("Ubuntu").unwrap_err();
//! assert_eq!(
//!     error.to_string(),
//!     "invalid reference format: repository name (library/Ubuntu) must be lowercase"
//! );
//! # Ok::<(), hoist_reference::ReferenceError>(())
//! ```

#![forbid(unsafe_code)]

mod digest;
mod error;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod grammar;
mod normalize;
mod parse;
mod reference;

pub use digest::Digest;
pub use error::ReferenceError;
pub use reference::{Reference, is_valid_tag};
