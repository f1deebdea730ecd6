//! What the engine tells whoever watches it (the daemon's metrics) about its work: a narrow
//! trait called at a few points (a blob transfer ending, a retry, a push, pull or load ending),
//! with small closed vocabularies for causes, so nothing unbounded (image names, digests) can
//! reach a metric label. How it is exported is the watcher's business.

use std::sync::Arc;
use std::time::Duration;

use hoist_registry::RegistryError;
use hoist_store::StoreError;

use crate::error::EngineError;

/// Receives the engine's reports. Every method has a default that ignores it.
pub trait Observer: Send + Sync + 'static {
    /// A blob transfer task ended with all of the blob's `bytes` sent to `registry` (push) or
    /// stored from it (pull): once per blob transferred, however many pushes or pulls watched
    /// it and however many attempts it took.
    fn blob_transferred(&self, direction: Direction, registry: &str, bytes: u64) {
        let _ = (direction, registry, bytes);
    }

    /// A push did not upload a blob: `registry` had it, or mounted it from another repository.
    fn blob_skipped(&self, registry: &str, reason: SkipReason) {
        let _ = (registry, reason);
    }

    /// A request to `registry` failed for `cause` and is tried again.
    fn retried(&self, registry: &str, cause: RetryCause) {
        let _ = (registry, cause);
    }

    /// A push, pull or load ended after `elapsed`: `Ok` when it succeeded.
    fn finished(&self, operation: Operation, elapsed: Duration, result: Result<(), FailureCause>) {
        let _ = (operation, elapsed, result);
    }
}

/// The engine's observer, shared by everything that reports.
#[derive(Clone)]
pub(crate) struct ObserverHandle(Arc<dyn Observer>);

impl ObserverHandle {
    pub fn new(observer: Arc<dyn Observer>) -> ObserverHandle {
        ObserverHandle(observer)
    }
}

impl Default for ObserverHandle {
    fn default() -> ObserverHandle {
        ObserverHandle(Arc::new(NoObserver))
    }
}

impl std::ops::Deref for ObserverHandle {
    type Target = dyn Observer;

    fn deref(&self) -> &(dyn Observer + 'static) {
        self.0.as_ref()
    }
}

impl std::fmt::Debug for ObserverHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ObserverHandle")
    }
}

/// Ignores everything: the engine's observer when the daemon watches nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoObserver;

impl Observer for NoObserver {}

/// Which way blobs move.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Push,
    Pull,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Push => "push",
            Direction::Pull => "pull",
        }
    }
}

/// The use cases whose duration and failures are reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    Push,
    Pull,
    Load,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Push => "push",
            Operation::Pull => "pull",
            Operation::Load => "load",
        }
    }
}

/// Why a push sent no bytes of a blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// The repository already had it.
    Exists,
    /// Mounted from another repository of the same registry.
    Mounted,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Exists => "exists",
            SkipReason::Mounted => "mounted",
        }
    }
}

/// Why a registry request is tried again, from the retry policy's classification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RetryCause {
    /// A 5xx answer (or a registry's `UNAVAILABLE` code).
    ServerError,
    /// 429 (or `TOOMANYREQUESTS`).
    TooManyRequests,
    /// 408 or 499: the registry or a proxy gave up waiting.
    RequestTimeout,
    /// No usable answer: the connection was refused, reset or closed, or timed out, or a
    /// download ended short.
    Reset,
    /// No byte moved for the stall timeout.
    Stall,
    /// The registry refused a token before its expiry; the request went again with a new one.
    TokenRenewal,
    /// The registry forgot the upload session (`BLOB_UPLOAD_UNKNOWN`): the blob starts again.
    UploadUnknown,
}

impl RetryCause {
    pub const ALL: [RetryCause; 7] = [
        RetryCause::ServerError,
        RetryCause::TooManyRequests,
        RetryCause::RequestTimeout,
        RetryCause::Reset,
        RetryCause::Stall,
        RetryCause::TokenRenewal,
        RetryCause::UploadUnknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RetryCause::ServerError => "server_error",
            RetryCause::TooManyRequests => "too_many_requests",
            RetryCause::RequestTimeout => "request_timeout",
            RetryCause::Reset => "reset",
            RetryCause::Stall => "stall",
            RetryCause::TokenRenewal => "token_renewal",
            RetryCause::UploadUnknown => "upload_unknown",
        }
    }

    /// The cause of a retryable registry error (any other error is read as a connection
    /// failure, which is what is left once statuses are told apart).
    pub fn of(error: &RegistryError) -> RetryCause {
        if error.is_upload_unknown() {
            return RetryCause::UploadUnknown;
        }
        let has_code = |code: &str| error.error_codes().iter().any(|c| c.code == code);
        match error.status() {
            Some(429) => RetryCause::TooManyRequests,
            Some(408 | 499) => RetryCause::RequestTimeout,
            Some(500..=599) => RetryCause::ServerError,
            Some(_) if has_code("TOOMANYREQUESTS") => RetryCause::TooManyRequests,
            Some(_) => RetryCause::ServerError,
            None => RetryCause::Reset,
        }
    }
}

impl std::fmt::Display for RetryCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a push, pull or load failed, in classes an operator acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureCause {
    /// The client went away (or the daemon stopped) before the end.
    Cancelled,
    /// The registry refused the credentials (401).
    Unauthorized,
    /// Access denied (403, `DENIED`).
    Denied,
    /// No such image, locally or in the registry.
    NotFound,
    /// A bad name, option or archive.
    InvalidInput,
    /// The registry answered 5xx or 429 until the attempts ran out.
    RegistryUnavailable,
    /// The registry could not be reached or the connection failed, until the attempts ran out.
    Connection,
    /// Content whose bytes are not what its digest says.
    DigestMismatch,
    /// Another registry answer that ends the work.
    Registry,
    /// The data root's filesystem reached its free-space reserve.
    NoSpace,
    /// Another failure of the store or the local disk.
    Storage,
    /// Anything else (a stalled transfer, a conflict, a bug).
    Internal,
}

impl FailureCause {
    pub const ALL: [FailureCause; 12] = [
        FailureCause::Cancelled,
        FailureCause::Unauthorized,
        FailureCause::Denied,
        FailureCause::NotFound,
        FailureCause::InvalidInput,
        FailureCause::RegistryUnavailable,
        FailureCause::Connection,
        FailureCause::DigestMismatch,
        FailureCause::Registry,
        FailureCause::NoSpace,
        FailureCause::Storage,
        FailureCause::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureCause::Cancelled => "cancelled",
            FailureCause::Unauthorized => "unauthorized",
            FailureCause::Denied => "denied",
            FailureCause::NotFound => "not_found",
            FailureCause::InvalidInput => "invalid_input",
            FailureCause::RegistryUnavailable => "registry_unavailable",
            FailureCause::Connection => "connection",
            FailureCause::DigestMismatch => "digest_mismatch",
            FailureCause::Registry => "registry",
            FailureCause::NoSpace => "no_space",
            FailureCause::Storage => "storage",
            FailureCause::Internal => "internal",
        }
    }

    pub fn of(error: &EngineError) -> FailureCause {
        match error {
            EngineError::Shared(inner) => FailureCause::of(inner),
            EngineError::GaveUp { last, .. } => FailureCause::of(last),
            EngineError::Registry(e) => FailureCause::of_registry(e),
            EngineError::NoSuchImage(_) | EngineError::NotFound(_) => FailureCause::NotFound,
            EngineError::InvalidReference(_)
            | EngineError::InvalidArgument(_)
            | EngineError::BadArchive(_)
            | EngineError::Unpack(_) => FailureCause::InvalidInput,
            EngineError::Unauthorized(_) => FailureCause::Unauthorized,
            EngineError::Forbidden(_) => FailureCause::Denied,
            EngineError::Store(StoreError::NoSpace { .. }) => FailureCause::NoSpace,
            EngineError::Store(StoreError::DigestMismatch { .. }) => FailureCause::DigestMismatch,
            EngineError::Store(_) | EngineError::Io { .. } => FailureCause::Storage,
            EngineError::Conflict(_) | EngineError::Internal(_) => FailureCause::Internal,
            // The daemon stopped the work, as a client going away would have.
            EngineError::ShuttingDown => FailureCause::Cancelled,
        }
    }

    fn of_registry(error: &RegistryError) -> FailureCause {
        if error.is_unauthorized() {
            FailureCause::Unauthorized
        } else if error.is_denied() {
            FailureCause::Denied
        } else if error.is_digest_mismatch() {
            FailureCause::DigestMismatch
        } else if error.status() == Some(404) {
            FailureCause::NotFound
        } else if error.is_retryable() {
            match error.status() {
                Some(_) => FailureCause::RegistryUnavailable,
                None => FailureCause::Connection,
            }
        } else {
            FailureCause::Registry
        }
    }
}

impl std::fmt::Display for FailureCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cause_has_a_distinct_label() {
        let retry: std::collections::HashSet<_> =
            RetryCause::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(retry.len(), RetryCause::ALL.len());
        let failure: std::collections::HashSet<_> =
            FailureCause::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(failure.len(), FailureCause::ALL.len());
    }

    #[test]
    fn failures_see_through_shared_and_repeated_errors() {
        let inner = EngineError::NoSuchImage("x".into());
        let shared = EngineError::Shared(std::sync::Arc::new(inner));
        let gave_up = EngineError::GaveUp {
            attempts: 5,
            first: "first".into(),
            last: Box::new(shared),
        };
        assert_eq!(FailureCause::of(&gave_up), FailureCause::NotFound);
    }
}
