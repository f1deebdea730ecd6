//! OCI platforms: parsing, normalisation and matching as containerd's `platforms` package does.

use serde::{Deserialize, Serialize};

use crate::EngineError;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this daemon runs on, as containerd's `platforms.DefaultSpec()` names it.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform {
            architecture: architecture.to_owned(),
            os: std::env::consts::OS.to_owned(),
            ..Platform::default()
        }
    }

    /// Parses the JSON platform of the push and inspect endpoints, with moby's error texts.
    pub fn from_json(text: &str) -> Result<Platform, EngineError> {
        let p: Platform = serde_json::from_str(text)
            .map_err(|e| EngineError::InvalidArgument(format!("failed to parse platform: {e}")))?;
        if p.os.is_empty() && p.architecture.is_empty() {
            if p.variant.is_some() || p.os_version.is_some() || p.os_features.is_some() {
                return Err(EngineError::InvalidArgument(
                    "optional platform fields provided, but OS and Architecture are missing".into(),
                ));
            }
            return Err(EngineError::InvalidArgument(
                "both OS and Architecture must be provided".into(),
            ));
        }
        if p.os.is_empty() || p.architecture.is_empty() {
            return Err(EngineError::InvalidArgument(
                "both OS and Architecture must be provided".into(),
            ));
        }
        Ok(p)
    }

    /// Parses `os/arch[/variant]` as `platforms.Parse` does (used by pull's `platform`).
    pub fn parse_specifier(text: &str) -> Result<Platform, EngineError> {
        let parts: Vec<&str> = text.split('/').collect();
        let bad = || {
            EngineError::InvalidArgument(format!(
                "\"{text}\": unknown operating system or architecture: invalid argument"
            ))
        };
        let (os, architecture, variant) = match parts.as_slice() {
            [os, arch] => (*os, *arch, None),
            [os, arch, variant] => (*os, *arch, Some((*variant).to_owned())),
            _ => return Err(bad()),
        };
        if os.is_empty() || architecture.is_empty() {
            return Err(bad());
        }
        Ok(Platform {
            os: os.to_lowercase(),
            architecture: architecture.to_owned(),
            variant,
            ..Platform::default()
        })
    }

    /// containerd's `platforms.Normalize`: canonical OS and architecture names and default variants.
    pub fn normalized(&self) -> Platform {
        let os = match self.os.to_lowercase().as_str() {
            "macos" => "darwin".to_owned(),
            other => other.to_owned(),
        };
        let variant = self.variant.clone().unwrap_or_default().to_lowercase();
        let (architecture, variant) = match self.architecture.to_lowercase().as_str() {
            "i386" => ("386".to_owned(), String::new()),
            "x86_64" | "x86-64" | "amd64" => (
                "amd64".to_owned(),
                if variant == "v1" {
                    String::new()
                } else {
                    variant
                },
            ),
            "aarch64" | "arm64" => (
                "arm64".to_owned(),
                match variant.as_str() {
                    "8" | "v8" | "v8.0" => String::new(),
                    "9" | "9.0" | "v9.0" => "v9".to_owned(),
                    _ => variant,
                },
            ),
            "armhf" => ("arm".to_owned(), "v7".to_owned()),
            "armel" => ("arm".to_owned(), "v6".to_owned()),
            "arm" => (
                "arm".to_owned(),
                match variant.as_str() {
                    "" | "7" => "v7".to_owned(),
                    "5" | "6" | "8" => format!("v{variant}"),
                    _ => variant,
                },
            ),
            other => (other.to_owned(), variant),
        };
        Platform {
            architecture,
            os,
            os_version: self.os_version.clone(),
            os_features: self.os_features.clone(),
            variant: (!variant.is_empty()).then_some(variant),
        }
    }

    /// containerd's `platforms.OnlyStrict(self).Match(other)`: equal after normalisation.
    pub fn matches(&self, other: &Platform) -> bool {
        let (a, b) = (self.normalized(), other.normalized());
        a.os == b.os && a.architecture == b.architecture && a.variant == b.variant
    }

    /// How well `candidate` suits a host of this platform: None if it cannot run here; lower is
    /// better. Used to pick the platform shown by inspect and the manifest pushed for a partial index.
    pub fn host_preference(&self, candidate: &Platform) -> Option<u8> {
        let (host, c) = (self.normalized(), candidate.normalized());
        if host.os != c.os || host.architecture != c.architecture {
            return None;
        }
        Some(if host.variant == c.variant { 0 } else { 1 })
    }

    /// `os/arch[/variant]`, as containerd's `platforms.Format` writes it.
    pub fn format(&self) -> String {
        match &self.variant {
            Some(v) if !v.is_empty() => format!("{}/{}/{}", self.os, self.architecture, v),
            _ => format!("{}/{}", self.os, self.architecture),
        }
    }

    /// BuildKit marks attestation manifests with this platform.
    pub fn is_unknown(&self) -> bool {
        self.os == "unknown" && self.architecture == "unknown"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: variant.map(Into::into),
            ..Platform::default()
        }
    }

    #[test]
    fn arm64_means_arm64_v8() {
        assert!(p("linux", "arm64", None).matches(&p("linux", "arm64", Some("v8"))));
        assert!(p("linux", "aarch64", None).matches(&p("linux", "arm64", None)));
        assert!(!p("linux", "arm64", None).matches(&p("linux", "amd64", None)));
        assert!(p("linux", "arm", None).matches(&p("linux", "arm", Some("v7"))));
        assert!(!p("linux", "arm", Some("v6")).matches(&p("linux", "arm", Some("v7"))));
        assert!(p("linux", "x86_64", None).matches(&p("linux", "amd64", Some("v1"))));
    }

    #[test]
    fn json_errors_match_moby() {
        let err = |s: &str| Platform::from_json(s).unwrap_err().to_string();
        assert!(err("linux/amd64").starts_with("failed to parse platform: "));
        assert_eq!(
            err(r#"{"variant":"v8"}"#),
            "optional platform fields provided, but OS and Architecture are missing"
        );
        assert_eq!(
            err(r#"{"os":"linux"}"#),
            "both OS and Architecture must be provided"
        );
        assert_eq!(err("{}"), "both OS and Architecture must be provided");
        let ok =
            Platform::from_json(r#"{"architecture":"arm64","os":"linux","variant":"v8"}"#).unwrap();
        assert_eq!(ok.format(), "linux/arm64/v8");
    }

    #[test]
    fn specifier() {
        assert_eq!(
            Platform::parse_specifier("linux/arm/v7").unwrap(),
            p("linux", "arm", Some("v7"))
        );
        assert!(Platform::parse_specifier("linux").is_err());
    }
}
