//! Errors, worded exactly as distribution/reference and go-digest word them: clients print them.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid checksum digest format")]
    InvalidDigestFormat,
    #[error("unsupported digest algorithm")]
    UnsupportedDigestAlgorithm,
    #[error("invalid checksum digest length")]
    InvalidDigestLength,

    #[error("invalid reference format")]
    InvalidReferenceFormat,
    #[error("invalid tag format")]
    InvalidTagFormat,
    /// The reference only parses once lowercased.
    #[error("repository name must be lowercase")]
    NameContainsUppercase,
    /// Upstream's answer to an empty string. Normalisation always prefixes a domain, so
    /// [`Reference::parse_normalized`](crate::Reference::parse_normalized) reports
    /// [`InvalidReferenceFormat`](ReferenceError::InvalidReferenceFormat) for `""` instead, as
    /// docker does.
    #[error("repository name must have at least one component")]
    NameEmpty,
    /// The path (the domain is not counted, as of distribution/reference v0.6) is too long.
    #[error("repository name must not be more than 255 characters")]
    NameTooLong,
    /// Docker's normalisation checks case before parsing and names the offending repository
    /// path, which is everything after the domain up to the first `:`.
    #[error("invalid reference format: repository name ({repository}) must be lowercase")]
    RepositoryNameNotLowercase { repository: String },
    /// A bare 64-hex string is an image ID, so docker refuses to read it as a name.
    #[error("invalid repository name ({name}), cannot specify 64-byte hexadecimal strings")]
    HexadecimalRepositoryName { name: String },
}
