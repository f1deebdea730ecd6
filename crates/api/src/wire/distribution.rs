//! The `GET /distribution/{name}/json` answer.

use hoist_engine::{DistributionInfo, Platform};
use serde::Serialize;

use crate::wire::images::Descriptor;

/// moby's `registry.DistributionInspect`. `Platforms` is `null` when there are none.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DistributionInspect {
    pub descriptor: Descriptor,
    pub platforms: Option<Vec<OciPlatform>>,
}

/// An OCI platform; empty optional fields are left out, as Go's `omitempty` does.
#[derive(Debug, Serialize)]
pub struct OciPlatform {
    pub architecture: String,
    pub os: String,
    #[serde(rename = "os.version", skip_serializing_if = "String::is_empty")]
    pub os_version: String,
    #[serde(rename = "os.features", skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

impl From<DistributionInfo> for DistributionInspect {
    fn from(info: DistributionInfo) -> DistributionInspect {
        DistributionInspect {
            descriptor: info.descriptor.into(),
            platforms: info
                .platforms
                .map(|platforms| platforms.into_iter().map(OciPlatform::from).collect()),
        }
    }
}

impl From<Platform> for OciPlatform {
    fn from(p: Platform) -> OciPlatform {
        OciPlatform {
            architecture: p.architecture,
            os: p.os,
            os_version: p.os_version.unwrap_or_default(),
            os_features: p.os_features.unwrap_or_default(),
            variant: p.variant.unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hoist_reference::Digest;

    #[test]
    fn platforms_leave_out_empty_fields_and_none_is_null() {
        let descriptor = hoist_engine::Descriptor {
            media_type: "application/vnd.oci.image.index.v1+json".into(),
            digest: Digest::sha256_from_bytes(&[7; 32]),
            size: 3,
        };
        let arm = Platform {
            architecture: "arm64".into(),
            os: "linux".into(),
            variant: Some("v8".into()),
            os_version: Some(String::new()),
            ..Platform::default()
        };
        let with = DistributionInspect::from(DistributionInfo {
            descriptor: descriptor.clone(),
            platforms: Some(vec![arm, Platform::default()]),
        });
        let json = serde_json::to_value(&with).unwrap();
        assert_eq!(
            json["Platforms"],
            serde_json::json!([
                {"architecture": "arm64", "os": "linux", "variant": "v8"},
                {"architecture": "", "os": ""},
            ])
        );
        assert_eq!(json["Descriptor"]["size"], 3);
        let without = DistributionInspect::from(DistributionInfo {
            descriptor,
            platforms: None,
        });
        assert!(serde_json::to_value(&without).unwrap()["Platforms"].is_null());
    }
}
