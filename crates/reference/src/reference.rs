//! The normalised image reference and its familiar forms.

use std::fmt;
use std::str::FromStr;

use crate::normalize::{self, DEFAULT_DOMAIN, DEFAULT_TAG};
use crate::parse::Parts;
use crate::{Digest, ReferenceError, grammar};

/// A named image reference as Docker normalises it: `docker.io/library/ubuntu:22.04`.
///
/// `Display` gives the full form (upstream's `String()`); [`familiar_string`](Self::familiar_string)
/// gives the one docker prints (`ubuntu:22.04`).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Reference {
    /// Empty only in upstream's corner case where the first component looks like a host to
    /// normalisation but not to the grammar (`a_b.c/foo`); the whole name is then the path.
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses what a docker user types, as upstream's `ParseNormalizedNamed`:
    /// `foo` is `docker.io/library/foo`, `user/foo` is `docker.io/user/foo`,
    /// `index.docker.io/foo` is `docker.io/library/foo`; a first component is a registry when it
    /// holds `.` or `:`, is `localhost`, or has uppercase. Tags and digests are kept.
    pub fn parse_normalized(s: &str) -> Result<Reference, ReferenceError> {
        normalize::parse_normalized(s).map(Reference::from)
    }

    /// The registry: `docker.io`, `localhost:5000`, `[::1]:5000`. Empty in one corner case kept
    /// from upstream: a first component with `.` or `:` that is not a valid host but is a valid
    /// path component (`a_b.c/foo`) leaves the whole name as the path.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository within the registry: `library/foo`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Domain and path, without tag or digest: `docker.io/library/foo`.
    pub fn name(&self) -> String {
        normalize::join_name(&self.domain, &self.path)
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The name as docker shows it: `foo`, `user/foo`, `localhost:5000/foo`.
    pub fn familiar_name(&self) -> String {
        normalize::familiar_name(&self.domain, &self.path)
    }

    /// The reference as docker shows it: familiar name, then `:tag`, then `@digest`.
    pub fn familiar_string(&self) -> String {
        let mut familiar = self.familiar_name();
        self.push_suffixes(&mut familiar);
        familiar
    }

    /// Sets the tag, replacing any, and keeps the digest.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        if !is_valid_tag(tag) {
            return Err(ReferenceError::InvalidTagFormat);
        }
        Ok(Reference {
            tag: Some(tag.to_owned()),
            ..self.clone()
        })
    }

    /// Sets the digest, replacing any, and keeps the tag. Infallible where upstream's `WithDigest`
    /// is not: a [`Digest`] is already validated.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    pub fn without_tag(&self) -> Reference {
        Reference {
            tag: None,
            ..self.clone()
        }
    }

    pub fn without_digest(&self) -> Reference {
        Reference {
            digest: None,
            ..self.clone()
        }
    }

    /// Neither tag nor digest (upstream's `TrimNamed`).
    pub fn name_only(&self) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: None,
        }
    }

    /// `TagNameOnly`: a bare name means its `latest` tag; anything tagged or digested is kept.
    pub fn tag_name_only(self) -> Reference {
        if self.tag.is_some() || self.digest.is_some() {
            return self;
        }
        Reference {
            tag: Some(DEFAULT_TAG.to_owned()),
            ..self
        }
    }

    pub fn is_docker_hub(&self) -> bool {
        self.domain == DEFAULT_DOMAIN
    }

    fn push_suffixes(&self, out: &mut String) {
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(digest.as_str());
        }
    }
}

impl From<Parts> for Reference {
    fn from(parts: Parts) -> Reference {
        let Parts {
            domain,
            path,
            tag,
            digest,
        } = parts;
        Reference {
            domain,
            path,
            tag,
            digest,
        }
    }
}

/// Whether `tag` is a valid tag: `[\w][\w.-]{0,127}`, ASCII only.
pub fn is_valid_tag(tag: &str) -> bool {
    grammar::is_tag(tag)
}

/// The full form, upstream's `String()`: `docker.io/library/foo:tag@sha256:…`.
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut full = self.name();
        self.push_suffixes(&mut full);
        f.write_str(&full)
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Reference, ReferenceError> {
        Reference::parse_normalized(s)
    }
}

impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Reads any form `parse_normalized` reads; the full form written by `Serialize` reads back
/// unchanged.
impl<'de> serde::Deserialize<'de> for Reference {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Reference, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Reference::parse_normalized(&s).map_err(serde::de::Error::custom)
    }
}
