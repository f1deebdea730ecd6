//! Errors of the store. Every I/O failure carries what we were doing and on which path, because
//! "No such file or directory" alone tells an operator nothing.

use std::io;
use std::path::PathBuf;

use hoist_reference::Digest;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process (or another `Store` in this one) holds the data root.
    #[error("data root {} is in use by another hoistd ({})", root.display(), holder(*pid))]
    Locked { root: PathBuf, pid: Option<u32> },

    #[error("blob {0} not found")]
    NotFound(Digest),

    #[error("blob {digest} is {size} bytes, more than the {limit} allowed here")]
    TooLarge {
        digest: Digest,
        size: u64,
        limit: u64,
    },

    /// An image record may only point at a blob that is fully in the store.
    #[error("image target {0} is not in the store")]
    MissingBlob(Digest),

    /// A blob asked to be removed is protected by a live lease: work in progress reads it.
    #[error("blob {0} is in use by an operation in progress")]
    InUse(Digest),

    #[error("digest mismatch: expected {expected}, content hashes to {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },

    /// A stored blob no longer hashes to its name: bit rot, or a file altered behind our back.
    #[error("blob {digest} is corrupt: its content hashes to {actual}")]
    CorruptBlob { digest: Digest, actual: Digest },

    /// Writing on would leave the data root's filesystem with less than the configured reserve.
    #[error(
        "not enough free space in {}: {available} bytes left, {reserve} reserved",
        root.display()
    )]
    NoSpace {
        root: PathBuf,
        available: u64,
        reserve: u64,
    },

    #[error("blob {digest} is not a valid manifest or index: {reason}")]
    InvalidManifest { digest: Digest, reason: String },

    /// An image record may only point at content every reader can read back: a manifest or index
    /// (and each manifest of an index that is present) within the size limit and well formed.
    #[error("image {name} refused: manifest {digest} {reason}")]
    UnreadableManifest {
        name: String,
        digest: Digest,
        reason: String,
    },

    /// The metadata cannot be understood; refusing to start beats silently forgetting every image.
    #[error("metadata file {} is corrupt: {reason}", path.display())]
    CorruptMetadata { path: PathBuf, reason: String },

    #[error("metadata file {} has version {found}, this hoistd understands up to {supported}", path.display())]
    UnsupportedMetadataVersion {
        path: PathBuf,
        found: u64,
        supported: u64,
    },

    /// A lease is bound to the store that created it.
    #[error("lease belongs to a different store than {}", root.display())]
    ForeignLease { root: PathBuf },

    /// The metadata database failed (I/O, or corruption redb detected).
    #[error("{context}: {source}")]
    Database {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl StoreError {
    pub(crate) fn database(context: String, source: impl Into<redb::Error>) -> StoreError {
        StoreError::Database {
            context,
            source: Box::new(source.into()),
        }
    }
}

impl StoreError {
    /// The store error an I/O error carries, if it is one the store raised inside a `Read` or
    /// `Write` (which can only return `io::Error`); the I/O error as it is otherwise.
    pub fn from_io(error: io::Error) -> Result<StoreError, io::Error> {
        if !error
            .get_ref()
            .is_some_and(|inner| inner.is::<StoreError>())
        {
            return Err(error);
        }
        let kind = error.kind();
        match error.into_inner() {
            Some(inner) => inner
                .downcast::<StoreError>()
                .map(|store_error| *store_error)
                .map_err(|inner| io::Error::new(kind, inner)),
            None => Err(io::Error::from(kind)),
        }
    }

    /// Carries this error through a `Read` or `Write`; [`StoreError::from_io`] gets it back.
    pub(crate) fn into_io(self) -> io::Error {
        io::Error::other(self)
    }
}

fn holder(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("pid {pid}"),
        None => "pid unknown".to_owned(),
    }
}

/// Attaches context to I/O results: `fs::read(&p).context(|| format!("reading {}", p.display()))`.
pub(crate) trait IoContext<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, StoreError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Io {
            context: what(),
            source,
        })
    }
}
