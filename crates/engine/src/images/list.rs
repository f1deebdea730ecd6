//! `GET /images/json`: the local image list, as moby's containerd store builds it: records are
//! filtered one by one, then grouped by target; an image shows the tags that passed and one
//! digest reference, that of the last passing record in name order.

use std::collections::{BTreeMap, HashMap};

use hoist_reference::{Digest, Reference};
use hoist_store::{Descriptor, ImageRecord};

use super::filter::{ListFilters, RecordFilter};
use super::manifests::{ContentSummary, ManifestSummary, summarize};
use super::parse_rfc3339;
use crate::image_content::{PlatformImage, describe_target};
use crate::names::{self, RecordName};
use crate::{Engine, EngineError};

/// One image of the local list.
#[derive(Debug)]
pub struct ImageSummary {
    pub id: Digest,
    /// Familiar tag references (`foo:latest`) of the records that passed the filters.
    pub tags: Vec<String>,
    /// One familiar digest reference (`foo@sha256:…`); none for a dangling image; the bare ID
    /// when no platform of the image is available locally.
    pub digests: Vec<String>,
    /// Seconds since the Unix epoch of the config's `created`; 0 when it has none.
    pub created: i64,
    /// Bytes of content of every manifest of the image.
    pub size: u64,
    /// The config's labels; None when it has none.
    pub labels: Option<BTreeMap<String, String>>,
    pub target: Descriptor,
    /// Bytes of this image's blobs that other listed images use too, when asked for.
    pub shared_size: Option<u64>,
    /// The image's manifests, when asked for.
    pub manifests: Option<Vec<ManifestSummary>>,
    /// Whether a platform of the image is available locally (moby counts containers only then).
    pub available: bool,
}

/// What `GET /images/json` asks for besides the filters.
#[derive(Debug, Default)]
pub struct ListOptions {
    pub filters: ListFilters,
    /// Compute `shared_size`.
    pub shared_size: bool,
    /// Describe every manifest.
    pub manifests: bool,
}

impl Engine {
    pub async fn list_images(
        &self,
        options: ListOptions,
    ) -> Result<Vec<ImageSummary>, EngineError> {
        let engine = self.clone();
        self.blocking(move || engine.list_images_blocking(&options))
            .await
    }

    pub(crate) fn list_images_blocking(
        &self,
        options: &ListOptions,
    ) -> Result<Vec<ImageSummary>, EngineError> {
        let mut filter = RecordFilter::new(&self.store, &self.host_platform, &options.filters)?;
        // The record each image is shown through, and the tags that passed, by image ID.
        let mut shown: BTreeMap<Digest, ImageRecord> = BTreeMap::new();
        let mut tags: HashMap<Digest, Vec<Reference>> = HashMap::new();
        for record in self.store.images() {
            if !listable(filter.passes(&record), &record).unwrap_or(false) {
                continue;
            }
            let id = record.target.digest.clone();
            match names::classify(&record.name) {
                RecordName::Dangling => {
                    shown.entry(id).or_insert(record);
                }
                name => {
                    if let RecordName::Tag(tag) = name {
                        tags.entry(id.clone()).or_default().push(tag);
                    }
                    shown.insert(id, record);
                }
            }
        }

        let mut out = Vec::with_capacity(shown.len());
        let mut contents = Vec::with_capacity(shown.len());
        for (id, record) in shown {
            let tags = tags.remove(&id).unwrap_or_default();
            let Some(content) = listable(summarize(&self.store, &record.target), &record) else {
                continue;
            };
            let summary = self.summary(id, &record, tags, &content, options.manifests);
            let Some(summary) = listable(summary, &record) else {
                continue;
            };
            out.push(summary);
            contents.push(content);
        }
        if options.shared_size {
            for (image, size) in out.iter_mut().zip(shared_sizes(&contents)) {
                image.shared_size = Some(size);
            }
        }
        // Newest first, as `docker images` lists them.
        out.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    fn summary(
        &self,
        id: Digest,
        record: &ImageRecord,
        tags: Vec<Reference>,
        content: &ContentSummary,
        with_manifests: bool,
    ) -> Result<ImageSummary, EngineError> {
        let described = describe_target(&self.store, &record.target, &self.host_platform)?;
        let digests = match (&described, names::classify(&record.name)) {
            (None, _) => vec![id.to_string()],
            (Some(_), RecordName::Tag(r) | RecordName::Digest(r)) => {
                vec![r.name_only().with_digest(id.clone()).familiar_string()]
            }
            (Some(_), RecordName::Dangling | RecordName::Other) => Vec::new(),
        };
        Ok(ImageSummary {
            tags: tags.iter().map(Reference::familiar_string).collect(),
            digests,
            created: described.as_ref().and_then(created_unix).unwrap_or(0),
            size: content.total_size(),
            labels: described.as_ref().and_then(labels_of),
            target: record.target.clone(),
            shared_size: None,
            manifests: with_manifests.then(|| content.manifests.clone()),
            available: described.is_some(),
            id,
        })
    }
}

/// One image whose content cannot be read is left out of the list, and logged: it must never
/// fail the list of all the others.
fn listable<T>(result: Result<T, EngineError>, record: &ImageRecord) -> Option<T> {
    result
        .map_err(|e| {
            tracing::warn!(
                image = %record.target.digest,
                name = %record.name,
                error = %e,
                "leaving an image whose content cannot be read out of the list"
            );
        })
        .ok()
}

/// moby's `SharedSize` for content: per image, the bytes of its blobs that at least one other
/// of the images also has.
fn shared_sizes(contents: &[ContentSummary]) -> Vec<u64> {
    let mut users: HashMap<&Digest, usize> = HashMap::new();
    for content in contents {
        for blob in &content.blobs {
            *users.entry(&blob.digest).or_default() += 1;
        }
    }
    contents
        .iter()
        .map(|content| {
            content
                .blobs
                .iter()
                .filter(|b| users.get(&b.digest).is_some_and(|n| *n > 1))
                .map(|b| b.size)
                .sum()
        })
        .collect()
}

fn labels_of(image: &PlatformImage) -> Option<BTreeMap<String, String>> {
    image
        .config
        .pointer("/config/Labels")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

fn created_unix(image: &PlatformImage) -> Option<i64> {
    image
        .config
        .get("created")
        .and_then(serde_json::Value::as_str)
        .and_then(parse_rfc3339)
}
