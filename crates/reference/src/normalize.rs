//! Docker's normalisation (distribution/reference `normalize.go`): familiar names such as
//! `ubuntu` or `user/app` stand for repositories on Docker Hub, and back.

use std::borrow::Cow;

use crate::ReferenceError;
use crate::grammar;
use crate::parse::{Parts, parse};

/// Docker Hub as references name it. Its registry actually answers at registry-1.docker.io.
pub(crate) const DEFAULT_DOMAIN: &str = "docker.io";
/// Docker Hub's old name (the "Docker Index"), still accepted and rewritten to [`DEFAULT_DOMAIN`].
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// The Docker Hub namespace of official images: `ubuntu` is `library/ubuntu`.
const OFFICIAL_REPO_PREFIX: &str = "library/";
const LOCALHOST: &str = "localhost";
pub(crate) const DEFAULT_TAG: &str = "latest";

/// `ParseNormalizedNamed`.
pub(crate) fn parse_normalized(s: &str) -> Result<Parts, ReferenceError> {
    if grammar::is_identifier(s) {
        return Err(ReferenceError::HexadecimalRepositoryName { name: s.to_owned() });
    }
    let (domain, remainder) = split_docker_domain(s);
    // Upstream cuts at the first ':', which for a digest without tag lands inside the digest;
    // the message then names `repo@algo`, and so do we.
    let remote = remainder
        .split_once(':')
        .map_or(&*remainder, |(remote, _)| remote);
    if has_uppercase(remote) {
        return Err(ReferenceError::RepositoryNameNotLowercase {
            repository: remote.to_owned(),
        });
    }
    // Every input now has a '/', so upstream's "reference has no name" cannot happen.
    parse(&format!("{domain}/{remainder}"))
}

/// `splitDockerDomain`: decides whether the first component names a registry, before anything
/// is validated (so the remainder may still be refused by the grammar).
fn split_docker_domain(name: &str) -> (&str, Cow<'_, str>) {
    let Some((maybe_domain, maybe_remote)) = name.split_once('/') else {
        // A single element is always a Docker Hub official image, even "localhost" or
        // "example.com" (upstream has a FIXME about that).
        return (
            DEFAULT_DOMAIN,
            Cow::Owned(format!("{OFFICIAL_REPO_PREFIX}{name}")),
        );
    };
    let (domain, remote) = if maybe_domain == LEGACY_DEFAULT_DOMAIN {
        (DEFAULT_DOMAIN, maybe_remote)
    } else if maybe_domain == LOCALHOST
        || maybe_domain.contains(['.', ':'])
        // Repository paths may not hold uppercase, so such a first element can only be a host.
        || has_uppercase(maybe_domain)
    {
        (maybe_domain, maybe_remote)
    } else {
        (DEFAULT_DOMAIN, name)
    };
    if domain == DEFAULT_DOMAIN && !remote.contains('/') {
        return (
            domain,
            Cow::Owned(format!("{OFFICIAL_REPO_PREFIX}{remote}")),
        );
    }
    (domain, Cow::Borrowed(remote))
}

/// Go's `strings.ToLower(s) != s`. Rust's full lowercase mapping differs from Go's simple one in
/// what it maps to, never in which characters it changes, so the comparison agrees.
fn has_uppercase(s: &str) -> bool {
    s.chars().any(|c| !c.to_lowercase().eq([c]))
}

/// `familiarizeName`: drops `docker.io/`, and `library/` when a single component follows it.
pub(crate) fn familiar_name(domain: &str, path: &str) -> String {
    if domain != DEFAULT_DOMAIN {
        return join_name(domain, path);
    }
    match path.strip_prefix(OFFICIAL_REPO_PREFIX) {
        // Upstream assumes official images have no nested namespaces.
        Some(official) if !official.contains('/') => official.to_owned(),
        _ => path.to_owned(),
    }
}

/// `Name()`: a domain is only missing for names that upstream's grammar refused to read one in,
/// such as `a_b.c/foo`.
pub(crate) fn join_name(domain: &str, path: &str) -> String {
    if domain.is_empty() {
        path.to_owned()
    } else {
        format!("{domain}/{path}")
    }
}
