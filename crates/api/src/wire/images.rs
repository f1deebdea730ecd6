//! Image answers: the list, inspect, history and removal.

use std::collections::BTreeMap;

use hoist_engine::{
    HistoryEntry, ImageDetails, ImageSummary, ManifestKind, ManifestSummary, Platform, PruneReport,
    PrunedItem, Removal,
};
use serde::Serialize;

use crate::version::ApiVersion;
use crate::wire::time::rfc3339;

/// Image answers carry the image's OCI descriptor from this version on.
const DESCRIPTOR_SINCE: &str = "1.48";
/// `VirtualSize` (always equal to `Size`) is gone from list and inspect from this version on,
/// and so is inspect's zero `Created` for an image without one.
const NO_VIRTUAL_SIZE_SINCE: &str = "1.44";
/// Before this version an image without names is listed as `<none>:<none>`.
const EMPTY_NAMES_SINCE: &str = "1.43";

/// An OCI descriptor. Keys sorted by name.
#[derive(Debug, Serialize)]
pub struct Descriptor {
    pub digest: String,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// What the image index says the described manifest is for, when it says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<hoist_engine::Platform>,
    pub size: u64,
}

impl From<hoist_engine::Descriptor> for Descriptor {
    fn from(d: hoist_engine::Descriptor) -> Descriptor {
        Descriptor {
            digest: d.digest.to_string(),
            media_type: d.media_type,
            platform: None,
            size: d.size,
        }
    }
}

fn descriptor_for(version: &ApiVersion, target: hoist_engine::Descriptor) -> Option<Descriptor> {
    version
        .at_least(DESCRIPTOR_SINCE)
        .then(|| Descriptor::from(target))
}

/// One row of `GET /images/json` (moby's `image.Summary`). Keys sorted by name.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Summary {
    /// hoist runs no containers: -1 ("not computed") in the list, 0 in disk usage.
    pub containers: i64,
    pub created: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub descriptor: Option<Descriptor>,
    pub id: String,
    /// null when the config has none.
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifests: Option<Vec<ManifestSummaryItem>>,
    pub parent_id: String,
    /// null only in disk usage, for an image without names.
    pub repo_digests: Option<Vec<String>>,
    pub repo_tags: Option<Vec<String>>,
    /// -1 when not computed.
    pub shared_size: i64,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtual_size: Option<u64>,
}

impl Summary {
    /// A row of the list: names never null, `<none>` placeholders before API 1.43.
    pub fn new(image: ImageSummary, version: &ApiVersion) -> Summary {
        let mut tags = image.tags.clone();
        let mut digests = image.digests.clone();
        if !version.at_least(EMPTY_NAMES_SINCE) && tags.is_empty() && digests.is_empty() {
            tags.push("<none>:<none>".into());
            digests.push("<none>@<none>".into());
        }
        let descriptor = descriptor_for(version, image.target.clone());
        Summary {
            containers: -1,
            descriptor,
            repo_digests: Some(digests),
            repo_tags: Some(tags),
            ..Summary::common(image, version)
        }
    }

    /// A row of `GET /system/df`: moby counts containers (0 here) of images it can show, and
    /// leaves empty names null.
    pub fn for_disk_usage(image: ImageSummary, version: &ApiVersion) -> Summary {
        let non_empty = |names: &Vec<String>| (!names.is_empty()).then(|| names.clone());
        Summary {
            containers: if image.available { 0 } else { -1 },
            descriptor: Some(Descriptor::from(image.target.clone())),
            repo_digests: non_empty(&image.digests),
            repo_tags: non_empty(&image.tags),
            ..Summary::common(image, version)
        }
    }

    fn common(image: ImageSummary, version: &ApiVersion) -> Summary {
        Summary {
            containers: -1,
            created: image.created,
            descriptor: None,
            id: image.id.to_string(),
            labels: image.labels,
            // moby omits an empty list.
            manifests: image
                .manifests
                .filter(|all| !all.is_empty())
                .map(|all| all.into_iter().map(ManifestSummaryItem::from).collect()),
            parent_id: String::new(),
            repo_digests: None,
            repo_tags: None,
            shared_size: image.shared_size.map_or(-1, |s| s as i64),
            size: image.size,
            virtual_size: (!version.at_least(NO_VIRTUAL_SIZE_SINCE)).then_some(image.size),
        }
    }
}

/// An OCI descriptor as moby writes one from an index (`ocispec.Descriptor`), in its order.
#[derive(Debug, Serialize)]
pub struct FullDescriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

/// moby's `image.ManifestSummary`, in its field order.
#[derive(Debug, Serialize)]
pub struct ManifestSummaryItem {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Descriptor")]
    pub descriptor: FullDescriptor,
    #[serde(rename = "Available")]
    pub available: bool,
    #[serde(rename = "Size")]
    pub size: ManifestSize,
    #[serde(rename = "Kind")]
    pub kind: &'static str,
    #[serde(rename = "ImageData", skip_serializing_if = "Option::is_none")]
    pub image_data: Option<ImageProperties>,
    #[serde(rename = "AttestationData", skip_serializing_if = "Option::is_none")]
    pub attestation_data: Option<AttestationProperties>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ManifestSize {
    pub content: u64,
    pub total: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageProperties {
    pub platform: Platform,
    pub size: UnpackedSize,
    /// null: hoist runs no containers.
    pub containers: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UnpackedSize {
    pub unpacked: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttestationProperties {
    pub r#for: String,
}

impl From<ManifestSummary> for ManifestSummaryItem {
    fn from(m: ManifestSummary) -> ManifestSummaryItem {
        let (kind, image_data, attestation_data) = match m.kind {
            ManifestKind::Image(data) => (
                "image",
                Some(ImageProperties {
                    platform: data.platform,
                    size: UnpackedSize { unpacked: 0 },
                    containers: None,
                }),
                None,
            ),
            ManifestKind::Attestation { of } => (
                "attestation",
                None,
                Some(AttestationProperties {
                    r#for: of.to_string(),
                }),
            ),
            ManifestKind::Unknown => ("unknown", None, None),
        };
        ManifestSummaryItem {
            id: m.descriptor.digest.to_string(),
            descriptor: FullDescriptor {
                media_type: m.descriptor.media_type,
                digest: m.descriptor.digest.to_string(),
                size: m.descriptor.size,
                annotations: m.annotations,
                platform: m.platform,
            },
            available: m.available,
            // No unpacked snapshots: the total is the content.
            size: ManifestSize {
                content: m.content_size,
                total: m.content_size,
            },
            kind,
            image_data,
            attestation_data,
        }
    }
}

/// `POST /images/prune` (moby's `image.PruneReport`): `ImagesDeleted` null when nothing went.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PruneAnswer {
    pub images_deleted: Option<Vec<DeleteItem>>,
    pub space_reclaimed: u64,
}

impl From<PruneReport> for PruneAnswer {
    fn from(report: PruneReport) -> PruneAnswer {
        let items: Vec<DeleteItem> = report
            .items
            .into_iter()
            .map(|item| match item {
                PrunedItem::Untagged(name) => DeleteItem::Untagged(name),
                PrunedItem::Deleted(digest) => DeleteItem::Deleted(digest),
            })
            .collect();
        PruneAnswer {
            images_deleted: (!items.is_empty()).then_some(items),
            space_reclaimed: report.space_reclaimed,
        }
    }
}

/// `GET /images/{name}/json` (moby's `image.InspectResponse`). Keys sorted by name.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Inspect {
    pub architecture: String,
    pub author: String,
    pub comment: String,
    pub config: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub descriptor: Option<Descriptor>,
    pub docker_version: String,
    pub graph_driver: GraphDriver,
    pub id: String,
    /// With `manifests=1` (API 1.48 on): every manifest of the image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifests: Option<Vec<ManifestSummaryItem>>,
    pub metadata: Metadata,
    pub os: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub os_version: String,
    pub parent: String,
    pub repo_digests: Vec<String>,
    pub repo_tags: Vec<String>,
    #[serde(rename = "RootFS")]
    pub root_fs: RootFs,
    pub size: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub variant: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtual_size: Option<u64>,
}

/// What moby wrote for an image without a creation time before API 1.44: Go's zero time.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GraphDriver {
    pub data: Option<BTreeMap<String, String>>,
    pub name: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Metadata {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_tag_time: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RootFs {
    pub layers: Vec<String>,
    #[serde(rename = "Type")]
    pub kind: String,
}

impl Inspect {
    pub fn new(image: ImageDetails, version: &ApiVersion) -> Inspect {
        let platform = image.platform;
        Inspect {
            architecture: platform.architecture,
            author: image.author,
            comment: image.comment,
            config: image.runtime_config,
            created: match image.created {
                None if !version.at_least(NO_VIRTUAL_SIZE_SINCE) => Some(ZERO_TIME.to_owned()),
                created => created,
            },
            descriptor: descriptor_for(version, image.target).map(|d| Descriptor {
                platform: image.target_platform,
                ..d
            }),
            docker_version: image.docker_version,
            graph_driver: GraphDriver {
                data: None,
                name: "hoist".into(),
            },
            id: image.id.to_string(),
            manifests: None,
            metadata: Metadata {
                last_tag_time: image.last_tag_time.map(rfc3339),
            },
            os: platform.os,
            os_version: platform.os_version.unwrap_or_default(),
            parent: String::new(),
            repo_digests: image.digests,
            repo_tags: image.tags,
            root_fs: RootFs {
                layers: image.diff_ids,
                kind: "layers".into(),
            },
            size: image.size,
            variant: platform.variant.unwrap_or_default(),
            virtual_size: (!version.at_least(NO_VIRTUAL_SIZE_SINCE)).then_some(image.size),
        }
    }
}

/// One row of `GET /images/{name}/history` (moby's `image.HistoryResponseItem`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HistoryItem {
    /// `<missing>` for steps that are no image of their own.
    pub id: String,
    pub created: i64,
    pub created_by: String,
    /// null rather than empty when the step has no tags.
    pub tags: Option<Vec<String>>,
    pub size: u64,
    pub comment: String,
}

impl From<HistoryEntry> for HistoryItem {
    fn from(entry: HistoryEntry) -> HistoryItem {
        HistoryItem {
            id: entry
                .id
                .map_or_else(|| "<missing>".to_owned(), |id| id.to_string()),
            created: entry.created,
            created_by: entry.created_by,
            tags: (!entry.tags.is_empty()).then_some(entry.tags),
            size: entry.size,
            comment: entry.comment,
        }
    }
}

/// One row of the `DELETE /images/{name}` answer (moby's `image.DeleteResponse`):
/// `{"Untagged": name}` or `{"Deleted": id}`.
#[derive(Debug, Serialize)]
pub enum DeleteItem {
    Untagged(String),
    Deleted(String),
}

impl From<Removal> for DeleteItem {
    fn from(removal: Removal) -> DeleteItem {
        match removal {
            Removal::Untagged(name) => DeleteItem::Untagged(name),
            Removal::Deleted(id) => DeleteItem::Deleted(id.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use hoist_engine::Platform;
    use hoist_reference::Digest;

    use super::*;
    use crate::wire::sorted::assert_keys_sorted;

    fn digest() -> Digest {
        Digest::parse(&format!("sha256:{}", "a".repeat(64))).expect("valid digest")
    }

    fn target() -> hoist_engine::Descriptor {
        hoist_engine::Descriptor {
            media_type: "application/vnd.oci.image.index.v1+json".into(),
            digest: digest(),
            size: 10,
        }
    }

    fn summary(version: &str) -> Summary {
        Summary::new(
            ImageSummary {
                id: digest(),
                tags: vec!["foo:latest".into()],
                digests: Vec::new(),
                created: 1,
                size: 2,
                labels: Some(BTreeMap::from([
                    ("b".into(), "1".into()),
                    ("a".into(), "2".into()),
                ])),
                target: target(),
                shared_size: None,
                manifests: None,
                available: true,
            },
            &ApiVersion::parse(version),
        )
    }

    fn inspect(version: &str) -> Inspect {
        Inspect::new(
            ImageDetails {
                id: digest(),
                tags: vec!["foo:latest".into()],
                digests: Vec::new(),
                created: Some("2024-01-01T00:00:00Z".into()),
                comment: String::new(),
                docker_version: String::new(),
                author: String::new(),
                runtime_config: serde_json::json!({"Env": ["A=1"], "Cmd": ["sh"]}),
                platform: Platform {
                    architecture: "arm64".into(),
                    os: "linux".into(),
                    os_version: Some("1".into()),
                    os_features: None,
                    variant: Some("v8".into()),
                },
                size: 3,
                diff_ids: vec!["sha256:00".into()],
                last_tag_time: Some(SystemTime::UNIX_EPOCH),
                target: target(),
                target_platform: None,
            },
            &ApiVersion::parse(version),
        )
    }

    #[test]
    fn keys_are_sorted() {
        for version in ["1.24", "1.47", "1.50"] {
            assert_keys_sorted(&summary(version));
            assert_keys_sorted(&inspect(version));
        }
    }

    fn json(value: &impl Serialize) -> serde_json::Value {
        serde_json::to_value(value).expect("serialises")
    }

    #[test]
    fn fields_follow_the_version() {
        let old = json(&summary("1.43"));
        assert_eq!(old["VirtualSize"], 2);
        assert!(old.get("Descriptor").is_none());
        let new = json(&summary("1.48"));
        assert!(new.get("VirtualSize").is_none());
        assert_eq!(new["Descriptor"]["digest"], digest().to_string());
        assert!(json(&inspect("1.47")).get("Descriptor").is_none());
        assert_eq!(json(&inspect("1.48"))["Descriptor"]["size"], 10);
    }
}
