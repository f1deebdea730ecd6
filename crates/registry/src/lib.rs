//! hoist's OCI distribution client.
//!
//! It speaks the registry protocol and nothing else: the engine decides what to transfer,
//! retries, schedules and reports progress; this crate makes each request correctly (auth,
//! TLS, insecure registries, upload sessions) and classifies what went wrong.
//!
//! - [`Registries`] is the factory: one HTTP client per registry host, with its certs.d
//!   material, insecure-registry fallback and proxy settings, plus shared auth state.
//! - [`Repository`] is one repository on one registry, with the operations on it.
//!
//! Modules, each depending only on those below it (or beside it, left to right):
//!
//! ```text
//! registries   the factory: hands each repository its transport and file sender
//! login        `docker login` against a registry
//! search       Docker Hub's v1 search on an index
//! repository   one repository: ping, blobs; manifest, tags add their operations
//! upload/      sessions, PUT/PATCH chunks, resume; BlobSource; relay (another registry's blob
//!              as a body, verified on the way)
//!   sender       a file range as a body: file_body (read, or mmap windows) or sendfile/ (plain HTTP)
//! transport    one repository's requests: scheme fallback, credentials, 401 retry
//! auth/        Authorization per request: remembered challenges, token fetch and cache
//! error        RegistryError, distribution error bodies, classification
//! challenge    WWW-Authenticate parsing
//! endpoint/    host -> client and scheme: insecure, proxy, tls/ (certs.d, verifiers,
//!              handshake diagnosis)
//! http_util    bounded body reads, URL redaction
//! config, credentials   what the daemon hands over
//! ```
//!
//! Behaviour the engine can rely on:
//! - Nothing here retries on its own except two protocol-level recoveries: one re-authentication
//!   after a 401 on a request that carried a token (every request, blob bodies included: they
//!   are re-read from the file), and in-session resume of a chunked upload after a failed PATCH
//!   (at most 5 times, from the offset both sides agree on). The first is logged at info with
//!   its cause (`token_renewal`) and told to the hook set by [`Registries::on_token_renewal`].
//! - Tokens are renewed before they expire (a fifth of their life early, at most 30 s), so a
//!   push longer than a token's life does not meet a 401 at all.
//! - Token servers are reached with their registry's TLS settings (insecure, certs.d).
//! - `Authorization` is only attached to requests for the registry's own scheme, host and port.
//! - Errors display as distribution formats them, and classify themselves
//!   ([`RegistryError::is_retryable`], [`RegistryError::body_interrupted`], …).

mod auth;
mod challenge;
mod config;
mod credentials;
mod endpoint;
mod error;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod http_util;
mod login;
mod manifest;
mod registries;
mod repository;
mod search;
mod tags;
mod transport;
mod upload;

pub use config::{Access, ProxyConfig, RegistryConfig, mask_credentials};
pub use credentials::Credentials;
pub use error::{ErrorCode, RegistryError, ResponseError};
pub use login::{LoginError, LoginOutcome};
pub use manifest::FetchedManifest;
pub use registries::Registries;
pub use repository::{BlobStream, Repository};
pub use search::{SearchHit, SearchResults};
pub use upload::{BlobSource, MountOutcome, Progress, UploadMode, UploadSession};
