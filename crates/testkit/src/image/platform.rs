//! An image platform, as configs and index descriptors carry it.

use serde::Serialize;

/// An image platform as it appears in configs and index descriptors.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            architecture: architecture.to_owned(),
            os: os.to_owned(),
            variant: variant.map(str::to_owned),
        }
    }

    pub fn linux_amd64() -> Platform {
        Platform::new("linux", "amd64", None)
    }

    /// `os/arch[/variant]`, as `docker --platform` takes it.
    pub fn parse(text: &str) -> Platform {
        let parts: Vec<&str> = text.split('/').collect();
        match parts.as_slice() {
            [os, arch] => Platform::new(os, arch, None),
            [os, arch, variant] => Platform::new(os, arch, Some(variant)),
            _ => panic!("platform {text:?} is not os/arch[/variant]"),
        }
    }

    /// The platform JSON object (`architecture`, `os`, `variant` when set), as in descriptors.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(PlatformJson::from(self)).expect("platform to JSON")
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// `ocispec.Platform`: architecture, os, then `variant` when set.
#[derive(Serialize)]
pub(crate) struct PlatformJson {
    pub architecture: String,
    pub os: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl From<&Platform> for PlatformJson {
    fn from(p: &Platform) -> Self {
        PlatformJson {
            architecture: p.architecture.clone(),
            os: p.os.clone(),
            variant: p.variant.clone(),
        }
    }
}
