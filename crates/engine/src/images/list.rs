//! `GET /images/json`: the local image list and its filters.

use std::collections::BTreeMap;
use std::time::SystemTime;

use hoist_reference::{Digest, Reference};
use hoist_store::Descriptor;

use super::parse_rfc3339;
use crate::image_content::{PlatformImage, describe_listed};
use crate::names;
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
            let Ok(described) = describe_listed(&self.store, &view, &self.host_platform) else {
                continue;
            };
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
