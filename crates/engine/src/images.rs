//! The image use cases that only touch the local store: list, inspect, history, tag, remove.

use std::collections::BTreeMap;
use std::time::SystemTime;

use hoist_reference::{Digest, Reference};
use hoist_store::{Descriptor, ImageChange};

use crate::image_content::{PlatformImage, describe_target};
use crate::names::{self, Lookup};
use crate::platform::Platform;
use crate::{Engine, EngineError};

/// One image of the local list.
#[derive(Debug)]
pub struct ImageSummary {
    pub id: Digest,
    /// Familiar tag references (`foo:latest`); with a reference filter, only those it matched.
    pub tags: Vec<String>,
    /// Familiar digest references (`foo@sha256:…`).
    pub digests: Vec<String>,
    /// Seconds since the Unix epoch: the config's `created`, else when the image was stored.
    pub created: i64,
    /// Bytes of content of the platform shown (the target alone when none is stored).
    pub size: u64,
    pub labels: BTreeMap<String, String>,
    pub target: Descriptor,
}

/// One image in detail: its names, what its config says, and the layers it is made of.
#[derive(Debug)]
pub struct ImageDetails {
    pub id: Digest,
    /// Familiar tag references (`foo:latest`).
    pub tags: Vec<String>,
    /// Familiar digest references (`foo@sha256:…`).
    pub digests: Vec<String>,
    /// The config's `created`, as written there; None when it has none.
    pub created: Option<String>,
    pub comment: String,
    pub docker_version: String,
    pub author: String,
    /// The config's runtime section (`config`), an empty object when it has none.
    pub runtime_config: serde_json::Value,
    /// The config's platform fields; empty strings for those it lacks.
    pub platform: Platform,
    /// Bytes of content of the platform shown (the target alone when none is stored).
    pub size: u64,
    /// The uncompressed layer digests (`rootfs.diff_ids`).
    pub diff_ids: Vec<String>,
    /// When a tag was last set on this image.
    pub last_tag_time: Option<SystemTime>,
    pub target: Descriptor,
}

/// One step of an image's history, newest first.
#[derive(Debug)]
pub struct HistoryEntry {
    /// The image's ID on the newest step; None on older steps, which are no image of their own.
    pub id: Option<Digest>,
    /// Seconds since the Unix epoch; 0 when the step has no readable time.
    pub created: i64,
    pub created_by: String,
    /// The image's familiar tag references, on the newest step only.
    pub tags: Vec<String>,
    /// Bytes of the layer the step made; 0 for a step that made none.
    pub size: u64,
    pub comment: String,
}

/// What removing an image did, one name or image at a time.
#[derive(Debug, PartialEq, Eq)]
pub enum Removal {
    /// A familiar name that no longer points at the image.
    Untagged(String),
    /// The image itself, gone with its last name.
    Deleted(Digest),
}

/// Filters of `GET /images/json` that hoist understands.
#[derive(Debug, Default)]
pub struct ListFilters {
    pub dangling: Option<bool>,
    /// Globs matched as `reference.FamiliarMatch` does.
    pub reference: Vec<String>,
    /// `key` or `key=value`.
    pub label: Vec<String>,
}

impl Engine {
    pub async fn list_images(
        &self,
        filters: ListFilters,
    ) -> Result<Vec<ImageSummary>, EngineError> {
        let engine = self.clone();
        self.blocking(move || engine.list_images_blocking(&filters))
            .await
    }

    fn list_images_blocking(
        &self,
        filters: &ListFilters,
    ) -> Result<Vec<ImageSummary>, EngineError> {
        let mut out = Vec::new();
        for view in names::all_images(&self.store) {
            if let Some(dangling) = filters.dangling
                && view.is_dangling() != dangling
            {
                continue;
            }
            let mut tags: Vec<&Reference> = view.tags.iter().collect();
            if !filters.reference.is_empty() {
                tags.retain(|t| filters.reference.iter().any(|p| familiar_match(p, t)));
                let digest_match = view
                    .digests
                    .iter()
                    .any(|d| filters.reference.iter().any(|p| familiar_match(p, d)));
                if tags.is_empty() && !digest_match {
                    continue;
                }
            }
            let described = describe_target(&self.store, &view.target, &self.host_platform)?;
            let labels = described.as_ref().map(labels_of).unwrap_or_default();
            if !filters.label.iter().all(|f| label_matches(f, &labels)) {
                continue;
            }
            out.push(ImageSummary {
                id: view.id().clone(),
                tags: tags.iter().map(|t| t.familiar_string()).collect(),
                digests: view
                    .digests
                    .iter()
                    .map(Reference::familiar_string)
                    .collect(),
                created: described
                    .as_ref()
                    .and_then(created_unix)
                    .unwrap_or_else(|| unix(view.created_at)),
                size: described
                    .as_ref()
                    .map(PlatformImage::content_size)
                    .unwrap_or(view.target.size),
                labels,
                target: view.target.clone(),
            });
        }
        // Newest first, as `docker images` lists them.
        out.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    pub async fn inspect_image(&self, name: &str) -> Result<ImageDetails, EngineError> {
        let engine = self.clone();
        let name = name.to_owned();
        self.blocking(move || engine.inspect_blocking(&name)).await
    }

    fn inspect_blocking(&self, name: &str) -> Result<ImageDetails, EngineError> {
        let (view, _) = names::resolve(&self.store, name)?;
        let described = describe_target(&self.store, &view.target, &self.host_platform)?;
        let config = described.as_ref().map(|d| &d.config);
        let field = |key: &str| {
            config
                .and_then(|c| c.get(key))
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let diff_ids = config
            .and_then(|c| c.pointer("/rootfs/diff_ids"))
            .and_then(serde_json::Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let non_empty = |text: String| (!text.is_empty()).then_some(text);
        Ok(ImageDetails {
            id: view.id().clone(),
            tags: view.tags.iter().map(Reference::familiar_string).collect(),
            digests: view
                .digests
                .iter()
                .map(Reference::familiar_string)
                .collect(),
            comment: field("comment"),
            created: config
                .and_then(|c| c.get("created"))
                .and_then(|v| v.as_str())
                .map(str::to_owned),
            docker_version: field("docker_version"),
            author: field("author"),
            runtime_config: config
                .and_then(|c| c.get("config"))
                .cloned()
                .unwrap_or(serde_json::Value::Object(Default::default())),
            platform: Platform {
                architecture: field("architecture"),
                os: field("os"),
                os_version: non_empty(field("os.version")),
                os_features: None,
                variant: non_empty(field("variant")),
            },
            size: described
                .as_ref()
                .map(PlatformImage::content_size)
                .unwrap_or(view.target.size),
            diff_ids,
            last_tag_time: view.last_tag_time,
            target: view.target.clone(),
        })
    }

    pub async fn image_history(&self, name: &str) -> Result<Vec<HistoryEntry>, EngineError> {
        let engine = self.clone();
        let name = name.to_owned();
        self.blocking(move || engine.history_blocking(&name)).await
    }

    fn history_blocking(&self, name: &str) -> Result<Vec<HistoryEntry>, EngineError> {
        let (view, _) = names::resolve(&self.store, name)?;
        let Some(image) = describe_target(&self.store, &view.target, &self.host_platform)? else {
            return Ok(Vec::new());
        };
        let history = image
            .config
            .get("history")
            .and_then(serde_json::Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut layer_sizes = image.layers.iter().map(|l| l.size);
        let mut entries: Vec<HistoryEntry> = history
            .iter()
            .map(|h| {
                let empty = h
                    .get("empty_layer")
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(false);
                let text = |k: &str| {
                    h.get(k)
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                HistoryEntry {
                    id: None,
                    created: h
                        .get("created")
                        .and_then(serde_json::Value::as_str)
                        .and_then(parse_rfc3339)
                        .unwrap_or(0),
                    created_by: text("created_by"),
                    tags: Vec::new(),
                    size: if empty {
                        0
                    } else {
                        layer_sizes.next().unwrap_or(0)
                    },
                    comment: text("comment"),
                }
            })
            .collect();
        entries.reverse();
        if let Some(top) = entries.first_mut() {
            top.id = Some(view.id().clone());
            top.tags = view.tags.iter().map(Reference::familiar_string).collect();
        }
        Ok(entries)
    }

    /// `docker tag`: points `repo[:tag]` at the image `source` names. A tag moved away from an
    /// image that then has no name left makes that image dangling instead of losing it.
    pub async fn tag_image(
        &self,
        source: &str,
        repo: &str,
        tag: Option<&str>,
    ) -> Result<(), EngineError> {
        let engine = self.clone();
        let (source, repo, tag) = (source.to_owned(), repo.to_owned(), tag.map(str::to_owned));
        self.blocking(move || engine.tag_blocking(&source, &repo, tag.as_deref()))
            .await
    }

    fn tag_blocking(&self, source: &str, repo: &str, tag: Option<&str>) -> Result<(), EngineError> {
        let target = Reference::parse_normalized(repo)?;
        // moby's wording (`httputils.RepoTagReference`, shared with import).
        if target.digest().is_some() {
            return Err(EngineError::InvalidArgument(
                "cannot import digest reference".into(),
            ));
        }
        let target = match tag {
            Some(t) if !t.is_empty() => target.with_tag(t)?,
            _ => target.tag_name_only(),
        };
        // `sha256:abc` would read as a digest, not as repository `sha256` with tag `abc`.
        if target.familiar_name() == "sha256" {
            return Err(EngineError::InvalidArgument(
                "refusing to create an ambiguous tag using digest algorithm as name".into(),
            ));
        }
        let (view, _) = names::resolve(&self.store, source)?;
        let _guard = self
            .names_lock
            .lock()
            .map_err(|_| EngineError::Internal("names lock poisoned".into()))?;
        let changes =
            self.retarget_changes(&[(names::tag_record_name(&target), view.target.clone())]);
        self.store.apply(changes)?;
        Ok(())
    }

    /// The store changes that point each name at its target, plus a dangling record for every
    /// image that would otherwise lose its last name. The caller holds `names_lock`.
    pub(crate) fn retarget_changes(
        &self,
        names_and_targets: &[(String, Descriptor)],
    ) -> Vec<ImageChange> {
        let records = self.store.images();
        let mut changes: Vec<ImageChange> = names_and_targets
            .iter()
            .map(|(name, target)| ImageChange::Put {
                name: name.clone(),
                target: target.clone(),
            })
            .collect();
        let new_names: std::collections::BTreeSet<&str> =
            names_and_targets.iter().map(|(n, _)| n.as_str()).collect();
        let mut orphaned = Vec::new();
        for record in &records {
            let Some((_, new_target)) = names_and_targets.iter().find(|(n, _)| *n == record.name)
            else {
                continue;
            };
            if new_target.digest == record.target.digest {
                continue;
            }
            let keeps_a_name = records.iter().any(|r| {
                r.target.digest == record.target.digest && !new_names.contains(r.name.as_str())
            }) || names_and_targets
                .iter()
                .any(|(_, t)| t.digest == record.target.digest);
            if !keeps_a_name
                && !orphaned
                    .iter()
                    .any(|d: &Descriptor| d.digest == record.target.digest)
            {
                orphaned.push(record.target.clone());
            }
        }
        for target in orphaned {
            changes.push(ImageChange::Put {
                name: names::dangling_record_name(&target.digest),
                target,
            });
        }
        // An image that gets a name is no longer dangling (moby's TagImage deletes the record).
        let mut named_targets: Vec<&Descriptor> = Vec::new();
        for (name, target) in names_and_targets {
            if name.starts_with(names::DANGLING_PREFIX)
                || named_targets.iter().any(|t| t.digest == target.digest)
            {
                continue;
            }
            named_targets.push(target);
            let dangling = names::dangling_record_name(&target.digest);
            if records.iter().any(|r| r.name == dangling) {
                changes.push(ImageChange::Delete { name: dangling });
            }
        }
        changes
    }

    /// `docker rmi`. `noprune` is accepted and ignored: hoist has no parent images to keep.
    pub async fn remove_image(&self, name: &str, force: bool) -> Result<Vec<Removal>, EngineError> {
        let engine = self.clone();
        let name = name.to_owned();
        self.blocking(move || engine.remove_blocking(&name, force))
            .await
    }

    /// As moby's containerd store (`ImageDelete`): a name that covers only some of the image's
    /// names removes just those ("Untagged"); otherwise the image goes with every name. By ID, an
    /// image with several names that are not one reference needs `force`.
    fn remove_blocking(&self, input: &str, force: bool) -> Result<Vec<Removal>, EngineError> {
        let _guard = self
            .names_lock
            .lock()
            .map_err(|_| EngineError::Internal("names lock poisoned".into()))?;
        let (view, lookup) = names::resolve(&self.store, input)?;
        // Every record naming the image, in containerd's listing order (by name).
        let mut all: Vec<String> = self
            .store
            .images()
            .into_iter()
            .filter(|r| r.target.digest == *view.id())
            .map(|r| r.name)
            .collect();
        all.sort();
        let named = match &lookup {
            Lookup::Name(r) | Lookup::Digest(r) => Some(r),
            Lookup::Id => None,
        };
        let same = names::same_references(named, &all);
        if let Lookup::Digest(reference) = &lookup
            && same.is_empty()
        {
            return Err(EngineError::NoSuchImage(reference.familiar_string()));
        }
        let untagged = |name: &str| Removal::Untagged(names::familiar_record_name(name));
        if named.is_some() && same.len() != all.len() {
            let responses = same.iter().map(|n| untagged(n)).collect();
            let changes = same
                .iter()
                .map(|n| ImageChange::Delete {
                    name: (*n).to_owned(),
                })
                .collect();
            self.store.apply(changes)?;
            return Ok(responses);
        }
        if named.is_none() && same.len() != all.len() && all.len() > 1 && !force {
            return Err(EngineError::Conflict(format!(
                "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                view.id().short_id()
            )));
        }
        let mut responses: Vec<Removal> = all
            .iter()
            .filter(|n| !matches!(names::classify(n), names::RecordName::Dangling))
            .map(|n| untagged(n))
            .collect();
        responses.push(Removal::Deleted(view.id().clone()));
        let changes = all
            .into_iter()
            .map(|name| ImageChange::Delete { name })
            .collect();
        self.store.apply(changes)?;
        Ok(responses)
    }
}

fn labels_of(image: &PlatformImage) -> BTreeMap<String, String> {
    image
        .config
        .pointer("/config/Labels")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default()
}

fn label_matches(filter: &str, labels: &BTreeMap<String, String>) -> bool {
    match filter.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
        None => labels.contains_key(filter),
    }
}

/// distribution/reference's `FamiliarMatch`: the glob against the familiar string, then against
/// the familiar name. Globs follow Go's `path.Match` (`*` stops at `/`).
fn familiar_match(pattern: &str, reference: &Reference) -> bool {
    let Ok(glob) = glob::Pattern::new(pattern) else {
        return false;
    };
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    glob.matches_with(&reference.familiar_string(), opts)
        || glob.matches_with(&reference.familiar_name(), opts)
}

fn created_unix(image: &PlatformImage) -> Option<i64> {
    image
        .config
        .get("created")
        .and_then(serde_json::Value::as_str)
        .and_then(parse_rfc3339)
}

fn parse_rfc3339(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp())
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn familiar_match_follows_path_match() {
        let r = Reference::parse_normalized("foo:1").unwrap();
        assert!(familiar_match("foo", &r));
        assert!(familiar_match("foo:*", &r));
        assert!(familiar_match("f*", &r));
        let r = Reference::parse_normalized("localhost:5000/team/app:2").unwrap();
        assert!(!familiar_match("localhost:5000/*", &r));
        assert!(familiar_match("localhost:5000/*/*", &r));
    }
}
