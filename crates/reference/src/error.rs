//! Errors, worded exactly as distribution/reference and go-digest word them: clients print them.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid checksum digest format")]
    InvalidDigestFormat,
    #[error("unsupported digest algorithm")]
    UnsupportedDigestAlgorithm,
    #[error("invalid checksum digest length")]
    InvalidDigestLength,
}
