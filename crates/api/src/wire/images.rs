//! Image answers: the list, inspect, history and removal.

use std::collections::BTreeMap;

use hoist_engine::{HistoryEntry, ImageDetails, ImageSummary, Removal};
use serde::Serialize;

use crate::version::ApiVersion;
use crate::wire::time::rfc3339;

/// Image answers carry the image's OCI descriptor from this version on.
const DESCRIPTOR_SINCE: &str = "1.48";
/// The list's `VirtualSize` (always equal to `Size`) is gone from this version on.
const NO_VIRTUAL_SIZE_SINCE: &str = "1.44";

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
    /// hoist runs no containers: always -1, "not computed".
    pub containers: i64,
    pub created: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub descriptor: Option<Descriptor>,
    pub id: String,
    pub labels: BTreeMap<String, String>,
    pub parent_id: String,
    pub repo_digests: Vec<String>,
    pub repo_tags: Vec<String>,
    /// Always -1, "not computed".
    pub shared_size: i64,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtual_size: Option<u64>,
}

impl Summary {
    pub fn new(image: ImageSummary, version: &ApiVersion) -> Summary {
        Summary {
            containers: -1,
            created: image.created,
            descriptor: descriptor_for(version, image.target),
            id: image.id.to_string(),
            labels: image.labels,
            parent_id: String::new(),
            repo_digests: image.digests,
            repo_tags: image.tags,
            shared_size: -1,
            size: image.size,
            virtual_size: (!version.at_least(NO_VIRTUAL_SIZE_SINCE)).then_some(image.size),
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
}

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
            created: image.created,
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
                labels: BTreeMap::from([("b".into(), "1".into()), ("a".into(), "2".into())]),
                target: target(),
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
