//! How Docker images map onto the store's opaque image names, following moby's containerd image
//! store: one record per tag (`docker.io/library/foo:latest`), one per pushed or pulled digest
//! (`docker.io/library/foo@sha256:…`), and `moby-dangling@sha256:…` for an image that lost its
//! last name but is kept, so `docker images -f dangling=true` can still show it.
//! An image is the set of records sharing one target; its ID is the target's digest.

use std::collections::BTreeMap;
use std::time::SystemTime;

use hoist_reference::{Digest, Reference};
use hoist_store::{Descriptor, ImageRecord, Store};

use crate::EngineError;

pub(crate) const DANGLING_PREFIX: &str = "moby-dangling@";

pub(crate) fn tag_record_name(tagged: &Reference) -> String {
    tagged.without_digest().to_string()
}

pub(crate) fn digest_record_name(repo: &Reference, digest: &Digest) -> String {
    repo.name_only().with_digest(digest.clone()).to_string()
}

pub(crate) fn dangling_record_name(digest: &Digest) -> String {
    format!("{DANGLING_PREFIX}{digest}")
}

/// What a record's name says about the image.
pub(crate) enum RecordName {
    Tag(Reference),
    Digest(Reference),
    Dangling,
    /// Something we did not write; ignored rather than fatal.
    Other,
}

pub(crate) fn classify(name: &str) -> RecordName {
    if name.starts_with(DANGLING_PREFIX) {
        return RecordName::Dangling;
    }
    match Reference::parse_normalized(name) {
        Ok(r) if r.digest().is_some() && r.tag().is_none() => RecordName::Digest(r),
        Ok(r) if r.tag().is_some() && r.digest().is_none() => RecordName::Tag(r),
        _ => RecordName::Other,
    }
}

/// An image as Docker shows it: one target and every name pointing at it.
#[derive(Clone, Debug)]
pub struct ImageView {
    pub target: Descriptor,
    pub tags: Vec<Reference>,
    pub digests: Vec<Reference>,
    pub created_at: SystemTime,
    /// When a tag was last set on this image (Metadata.LastTagTime).
    pub last_tag_time: Option<SystemTime>,
}

impl ImageView {
    pub fn id(&self) -> &Digest {
        &self.target.digest
    }

    pub fn is_dangling(&self) -> bool {
        self.tags.is_empty() && self.digests.is_empty()
    }
}

/// Every image in the store, grouped by target, ordered by ID.
pub(crate) fn all_images(store: &Store) -> Vec<ImageView> {
    group(store.images())
}

fn group(records: Vec<ImageRecord>) -> Vec<ImageView> {
    let mut by_id: BTreeMap<Digest, ImageView> = BTreeMap::new();
    for record in records {
        let view = by_id
            .entry(record.target.digest.clone())
            .or_insert_with(|| ImageView {
                target: record.target.clone(),
                tags: Vec::new(),
                digests: Vec::new(),
                created_at: record.created_at,
                last_tag_time: None,
            });
        view.created_at = view.created_at.min(record.created_at);
        match classify(&record.name) {
            RecordName::Tag(r) => {
                view.tags.push(r);
                view.last_tag_time = view.last_tag_time.max(Some(record.updated_at));
            }
            RecordName::Digest(r) => view.digests.push(r),
            RecordName::Dangling | RecordName::Other => {}
        }
    }
    let mut views: Vec<ImageView> = by_id.into_values().collect();
    for v in &mut views {
        v.tags.sort_by_key(|r| r.to_string());
        v.digests.sort_by_key(|r| r.to_string());
    }
    views
}

/// How the user named an image.
pub(crate) enum Lookup {
    /// By a reference that has a record of its own (tag or digest).
    Name(Reference),
    /// By full or abbreviated ID.
    Id,
    /// By a digest reference (`foo@sha256:<id>`) that no record carries under that exact name.
    Digest(Reference),
}

/// Resolves what a user typed (`foo`, `foo:1`, `foo@sha256:…`, `sha256:<id>`, `<id prefix>`) to an
/// image, as moby's containerd store does: a full ID or digest first, then the name (with
/// `latest` added when no tag is given), then an ID prefix of at least 4 hex characters.
pub(crate) fn resolve(store: &Store, input: &str) -> Result<(ImageView, Lookup), EngineError> {
    let images = all_images(store);
    let not_found = || EngineError::NoSuchImage(no_such_image_name(input));
    if input.is_empty() {
        return Err(EngineError::InvalidArgument(
            "image name cannot be blank".into(),
        ));
    }
    let id_text = input.strip_prefix("sha256:").unwrap_or(input);
    let looks_like_id = id_text.len() >= 4
        && id_text.len() <= 64
        && id_text
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if looks_like_id && id_text.len() == 64 {
        return images
            .into_iter()
            .find(|v| v.id().hex() == id_text)
            .map(|v| (v, Lookup::Id))
            .ok_or_else(not_found);
    }
    if let Ok(reference) = Reference::parse_normalized(input) {
        let reference = reference.tag_name_only();
        if let Some(view) = images
            .iter()
            .find(|v| v.tags.contains(&reference) || v.digests.contains(&reference))
        {
            return Ok((view.clone(), Lookup::Name(reference)));
        }
        // A digest reference names content even when no record carries that exact repository
        // (`docker inspect foo@sha256:<id>`), as in moby.
        if let Some(digest) = reference.digest()
            && let Some(view) = images.iter().find(|v| v.id() == digest)
        {
            return Ok((view.clone(), Lookup::Digest(reference)));
        }
    } else if !looks_like_id {
        return Err(Reference::parse_normalized(input)
            .err()
            .map(EngineError::from)
            .unwrap_or_else(not_found));
    }
    if looks_like_id {
        let mut matching = images
            .into_iter()
            .filter(|v| v.id().hex().starts_with(id_text));
        if let Some(first) = matching.next() {
            if matching.next().is_some() {
                return Err(EngineError::Conflict(format!(
                    "multiple IDs found with provided prefix: {id_text}"
                )));
            }
            return Ok((first, Lookup::Id));
        }
    }
    Err(not_found())
}

/// How moby prints a record name in `Untagged:` lines: familiar, dangling records as they are.
pub(crate) fn familiar_record_name(name: &str) -> String {
    match Reference::parse_normalized(name) {
        Ok(r) => r.familiar_string(),
        Err(_) => name.to_owned(),
    }
}

/// The name moby prints in `No such image: …`: the familiar form, with `:latest` added to a bare
/// name (`foo` → `foo:latest`), other registries in full; IDs as given.
pub(crate) fn no_such_image_name(input: &str) -> String {
    match Reference::parse_normalized(input) {
        Ok(r) => r.tag_name_only().familiar_string(),
        Err(_) => input.to_owned(),
    }
}

/// Images tagged in `repository` (a name without tag), as `(tag reference, image)`, sorted by tag.
/// moby's `getSameReferences` (containerd store): which of an image's record names (sorted, as
/// containerd lists them) count as the same reference as `named`, or, with no name (deleting by
/// ID), as the first name. Same repository and same tag; digest records of the repository only
/// when it has no other tag there; every record when `named` is a digest reference; dangling
/// records and names that do not parse always.
pub(crate) fn same_references<'a>(named: Option<&Reference>, all: &'a [String]) -> Vec<&'a str> {
    let mut named = named.cloned();
    let all_tags = named
        .as_ref()
        .is_some_and(|n| n.tag().is_none() && n.digest().is_some());
    let mut tag: Option<String> = named.as_ref().and_then(|n| n.tag().map(str::to_owned));
    let mut same = Vec::new();
    // Digest records of the repository, kept unless another tag of it turns up.
    let mut digest_records: Option<Vec<&str>> = Some(Vec::new());
    for name in all {
        let record = match classify(name) {
            RecordName::Tag(r) | RecordName::Digest(r) => r,
            RecordName::Dangling | RecordName::Other => {
                same.push(name.as_str());
                continue;
            }
        };
        match &named {
            None => {
                tag = record.tag().map(str::to_owned);
                named = Some(record);
            }
            Some(n) if n.name() != record.name() => continue,
            Some(_) if !all_tags => match record.tag() {
                Some(record_tag) => match &tag {
                    None => tag = Some(record_tag.to_owned()),
                    Some(t) if t != record_tag => {
                        digest_records = None;
                        continue;
                    }
                    Some(_) => {}
                },
                None => {
                    if let Some(digests) = digest_records.as_mut() {
                        digests.push(name.as_str());
                    }
                    continue;
                }
            },
            Some(_) => {}
        }
        same.push(name.as_str());
    }
    same.extend(digest_records.unwrap_or_default());
    same
}

pub(crate) fn tags_in_repository(
    store: &Store,
    repository: &Reference,
) -> Vec<(Reference, ImageView)> {
    let name = repository.name();
    let mut out = Vec::new();
    for view in all_images(store) {
        for tag in &view.tags {
            if tag.name() == name {
                out.push((tag.clone(), view.clone()));
            }
        }
    }
    out.sort_by(|a, b| a.0.tag().cmp(&b.0.tag()));
    out
}

/// moby's `imageFamiliarName` of the record a lookup resolved to: the name used, or for an ID
/// the image's first name, or its ID when it has none (dangling).
pub(crate) fn record_display_name(view: &ImageView, lookup: &Lookup) -> String {
    match lookup {
        Lookup::Name(r) => r.familiar_string(),
        Lookup::Digest(_) | Lookup::Id => view
            .tags
            .first()
            .or(view.digests.first())
            .map_or_else(|| view.id().to_string(), Reference::familiar_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    fn names(short: &[&str]) -> Vec<String> {
        let mut all: Vec<String> = short
            .iter()
            .map(|n| match *n {
                "dangling" => dangling_record_name(&Digest::parse(DIGEST).unwrap()),
                n if n.ends_with('@') => format!("docker.io/library/{n}{DIGEST}"),
                n => format!("docker.io/library/{n}"),
            })
            .collect();
        all.sort();
        all
    }

    fn same(named: Option<&str>, all: &[String]) -> Vec<String> {
        let named = named.map(|n| Reference::parse_normalized(n).unwrap());
        same_references(named.as_ref(), all)
            .into_iter()
            .map(|n| {
                n.trim_start_matches("docker.io/library/")
                    .replace(DIGEST, "")
            })
            .collect()
    }

    #[test]
    fn by_id_the_first_name_and_its_digest_records_are_one_reference() {
        assert_eq!(same(None, &names(&["foo:1", "foo@"])), ["foo:1", "foo@"]);
        assert_eq!(same(None, &names(&["foo:1", "foo:2"])), ["foo:1"]);
        assert_eq!(same(None, &names(&["bar:1", "foo:1"])), ["bar:1"]);
        assert_eq!(same(None, &names(&["foo:1", "foo:2", "foo@"])), ["foo:1"]);
        assert_eq!(same(None, &names(&["dangling"])), ["moby-dangling@"]);
    }

    #[test]
    fn by_tag_only_that_tag_and_by_digest_every_name_of_the_repository() {
        let all = names(&["bar:1", "foo:1", "foo:2", "foo@"]);
        assert_eq!(same(Some("foo:2"), &all), ["foo:2"]);
        assert_eq!(
            same(Some(&format!("foo@{DIGEST}")), &all),
            ["foo:1", "foo:2", "foo@"]
        );
        let all = names(&["bar:1", "foo:1", "foo@"]);
        assert_eq!(same(Some("foo:1"), &all), ["foo:1", "foo@"]);
        assert_eq!(same(Some("bar:1"), &all), ["bar:1"]);
    }
}
