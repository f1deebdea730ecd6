//! The engine's error type. The API layer maps `kind()` to an HTTP status in one place.

use hoist_reference::ReferenceError;
use hoist_registry::RegistryError;
use hoist_store::StoreError;

/// What class of failure an error is, independent of transport. Mirrors moby's errdefs classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidArgument,
    NotFound,
    Conflict,
    Forbidden,
    Unauthorized,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Worded as moby words it; clients print it verbatim.
    #[error("No such image: {0}")]
    NoSuchImage(String),
    #[error(transparent)]
    InvalidReference(#[from] ReferenceError),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Refused whatever the credentials (moby's 403 for pulling the reserved name `scratch`).
    #[error("{0}")]
    Forbidden(String),
    /// A credential check failed (only `/auth` reports this as 401; push and pull report it
    /// in-stream, because a 401 makes the docker CLI prompt for a Docker Hub login).
    #[error("{0}")]
    Unauthorized(String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An archive given to `load` is unusable.
    #[error("{0}")]
    BadArchive(String),
    /// Content that should unpack as a layer and does not (`docker import` of a non-tar):
    /// moby finds it when it unpacks, and answers 500.
    #[error("{0}")]
    Unpack(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Internal(String),
    /// The daemon is stopping and its shutdown timeout ran out before this transfer ended.
    #[error("hoistd is shutting down: the transfer was cancelled")]
    ShuttingDown,
    /// An error of a transfer that several pushes were watching.
    #[error("{0}")]
    Shared(std::sync::Arc<EngineError>),
    /// A transfer that failed on every attempt: the last error, and the first one, which is
    /// usually the cause (later attempts often fail only because the first broke the session).
    #[error(
        "{last} (gave up after {attempts} attempts{})",
        first_cause(first, last)
    )]
    GaveUp {
        attempts: u32,
        first: String,
        last: Box<EngineError>,
    },
}

fn first_cause(first: &str, last: &EngineError) -> String {
    if first == last.to_string() {
        String::new()
    } else {
        format!("; the first failed with: {first}")
    }
}

impl EngineError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::NoSuchImage(_) | EngineError::NotFound(_) => ErrorKind::NotFound,
            EngineError::InvalidReference(_)
            | EngineError::InvalidArgument(_)
            | EngineError::BadArchive(_) => ErrorKind::InvalidArgument,
            // Content the store cannot read back, offered as an image (an archive's manifest).
            EngineError::Store(StoreError::UnreadableManifest { .. }) => ErrorKind::InvalidArgument,
            EngineError::Conflict(_) => ErrorKind::Conflict,
            EngineError::Forbidden(_) => ErrorKind::Forbidden,
            EngineError::Unauthorized(_) => ErrorKind::Unauthorized,
            EngineError::Registry(_)
            | EngineError::Store(_)
            | EngineError::Io { .. }
            | EngineError::Unpack(_)
            | EngineError::Internal(_)
            | EngineError::ShuttingDown => ErrorKind::Internal,
            EngineError::Shared(inner) => inner.kind(),
            EngineError::GaveUp { last, .. } => last.kind(),
        }
    }

    /// `last` as the outcome of `attempts` attempts, the first of which failed with `first`.
    pub(crate) fn after_attempts(
        last: EngineError,
        attempts: u32,
        first: Option<String>,
    ) -> EngineError {
        match first {
            Some(first) if attempts > 1 => EngineError::GaveUp {
                attempts,
                first,
                last: Box::new(last),
            },
            _ => last,
        }
    }

    /// An I/O failure while doing `context`; one the store raised inside a `Read` or `Write` (a
    /// damaged blob, the free-space reserve reached) stays that store error, which says it all.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> EngineError {
        match StoreError::from_io(source) {
            Ok(store_error) => EngineError::Store(store_error),
            Err(source) => EngineError::Io {
                context: context.into(),
                source,
            },
        }
    }
}
