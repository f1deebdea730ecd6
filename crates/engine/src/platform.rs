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
        // Go decodes `null` into the zero platform, which the checks below then refuse.
        let p: Platform = match text.trim() {
            "null" => Platform::default(),
            _ => serde_json::from_str(text).map_err(|e| {
                EngineError::InvalidArgument(format!(
                    "failed to parse platform: {}",
                    go_json_error(text, &e)
                ))
            })?,
        };
        if p.os.is_empty() && p.architecture.is_empty() {
            let has_optional = p.variant.as_deref().is_some_and(|v| !v.is_empty())
                || p.os_version.as_deref().is_some_and(|v| !v.is_empty())
                || p.os_features.as_ref().is_some_and(|f| !f.is_empty());
            if has_optional {
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

    /// `os[(os.version)]/arch[/variant]`, as containerd's `platforms.FormatAll` writes it (in
    /// moby's "does not provide the specified platform" errors).
    pub fn format_all(&self) -> String {
        if self.os.is_empty() {
            return "unknown".to_owned();
        }
        let os = match self.os_version.as_deref() {
            Some(version) if !version.is_empty() => format!("{}({version})", self.os),
            _ => self.os.clone(),
        };
        [
            os.as_str(),
            &self.architecture,
            self.variant.as_deref().unwrap_or(""),
        ]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("/")
    }

    /// Where `candidate` ranks for a request of this platform: None when it does not match,
    /// lower is better. `Strict` is containerd's `OnlyStrict` (equal after normalisation);
    /// `Compatible` is its `Only`, which also takes what this platform can run (`386` for
    /// `amd64`, older variants, 32-bit `arm` for `arm64`), in that order.
    pub fn rank(&self, candidate: &Platform, matching: Matching) -> Option<usize> {
        let wanted = self.normalized();
        match matching {
            Matching::Strict => wanted.matches(candidate).then_some(0),
            Matching::Compatible => compatible_platforms(&wanted)
                .iter()
                .position(|p| p.matches(candidate)),
        }
    }

    /// BuildKit marks attestation manifests with this platform.
    pub fn is_unknown(&self) -> bool {
        self.os == "unknown" && self.architecture == "unknown"
    }
}

/// Go's `encoding/json` words for the common ways a value is not JSON, which moby puts in its
/// message; serde's own words otherwise.
fn go_json_error(text: &str, error: &serde_json::Error) -> String {
    let first = text.trim_start().chars().next();
    match (error.classify(), first) {
        (_, None) | (serde_json::error::Category::Eof, _) => "unexpected end of JSON input".into(),
        (serde_json::error::Category::Syntax, Some(c))
            if !matches!(c, '{' | '[' | '"' | '-' | '0'..='9' | 't' | 'f' | 'n') =>
        {
            format!("invalid character '{c}' looking for beginning of value")
        }
        _ => error.to_string(),
    }
}

/// How a requested platform selects among an image's platforms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matching {
    /// Only the platform itself (moby's inspect, save and delete).
    Strict,
    /// The platform and those it can run (moby's history).
    Compatible,
}

/// containerd's `platformVector`: `platform` (normalised) and, in order of preference, the
/// platforms it can also run.
fn compatible_platforms(platform: &Platform) -> Vec<Platform> {
    let with = |architecture: &str, variant: Option<String>| Platform {
        architecture: architecture.to_owned(),
        variant,
        ..platform.clone()
    };
    let version = |variant: &Option<String>| {
        variant
            .as_deref()
            .and_then(|v| v.strip_prefix('v').unwrap_or(v).parse::<u32>().ok())
    };
    let mut vector = vec![platform.clone()];
    match platform.architecture.as_str() {
        "amd64" => {
            if let Some(n) = version(&platform.variant).filter(|n| *n > 1) {
                vector.extend((1..n).rev().map(|v| with("amd64", Some(format!("v{v}")))));
            }
            vector.push(with("386", None));
        }
        "arm" => {
            if let Some(n) = version(&platform.variant).filter(|n| *n > 5) {
                vector.extend((5..n).rev().map(|v| with("arm", Some(format!("v{v}")))));
            }
        }
        "arm64" => {
            let variant = platform.variant.clone().unwrap_or_else(|| "v8".to_owned());
            vector = arm64_versions(&variant)
                .into_iter()
                .map(|v| with("arm64", Some(v)))
                .collect();
            if vector.is_empty() {
                return vector;
            }
            let arm_variant = if variant.starts_with("v8") || variant.starts_with("v9") {
                "v8".to_owned()
            } else {
                variant
            };
            vector.extend(compatible_platforms(&with("arm", Some(arm_variant))));
        }
        _ => {}
    }
    vector
}

/// The arm64 variants a CPU of `variant` runs, best first: `v9.x` runs `v9.x`…`v9` and
/// `v8.(x+5)`…`v8` (capped at `v8.9`), `v8.x` runs `v8.x`…`v8`. Empty for an unknown variant.
fn arm64_versions(variant: &str) -> Vec<String> {
    let parse = |major: u32| -> Option<u32> {
        let rest = variant.strip_prefix(&format!("v{major}"))?;
        match rest {
            "" => Some(0),
            _ => rest.strip_prefix('.')?.parse().ok(),
        }
    };
    let name = |major: u32, minor: u32| match minor {
        0 => format!("v{major}"),
        _ => format!("v{major}.{minor}"),
    };
    let (majors, minors): (Vec<u32>, Vec<u32>) = if let Some(minor) = parse(8).filter(|m| *m <= 9) {
        (vec![8], vec![minor])
    } else if let Some(minor) = parse(9).filter(|m| *m <= 7) {
        (vec![9, 8], vec![minor, (minor + 5).min(9)])
    } else {
        return Vec::new();
    };
    majors
        .into_iter()
        .zip(minors)
        .flat_map(|(major, minor)| (0..=minor).rev().map(move |m| name(major, m)))
        .collect()
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
        assert_eq!(
            err("linux/amd64"),
            "failed to parse platform: invalid character 'l' looking for beginning of value"
        );
        assert_eq!(
            err(""),
            "failed to parse platform: unexpected end of JSON input"
        );
        assert_eq!(err("null"), "both OS and Architecture must be provided");
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
    fn compatible_ranks_follow_containerd_only() {
        let rank = |want: &Platform, c: &Platform| want.rank(c, Matching::Compatible);
        let arm64 = p("linux", "arm64", None);
        assert_eq!(rank(&arm64, &p("linux", "arm64", Some("v8"))), Some(0));
        assert!(rank(&arm64, &p("linux", "arm", Some("v7"))).is_some());
        assert!(
            rank(&arm64, &p("linux", "arm", Some("v8")))
                < rank(&arm64, &p("linux", "arm", Some("v7")))
        );
        assert_eq!(rank(&arm64, &p("linux", "amd64", None)), None);
        let amd64 = p("linux", "amd64", None);
        assert_eq!(rank(&amd64, &p("linux", "386", None)), Some(1));
        assert_eq!(amd64.rank(&p("linux", "386", None), Matching::Strict), None);
        let v9 = p("linux", "arm64", Some("v9.2"));
        assert!(rank(&v9, &p("linux", "arm64", Some("v8.7"))).is_some());
        assert_eq!(rank(&v9, &p("linux", "arm64", Some("v8.8"))), None);
        assert_eq!(
            rank(
                &p("linux", "arm", Some("v6")),
                &p("linux", "arm", Some("v7"))
            ),
            None
        );
    }

    #[test]
    fn format_all_names_the_os_version() {
        assert_eq!(
            p("linux", "arm64", Some("v8")).format_all(),
            "linux/arm64/v8"
        );
        let mut windows = p("windows", "amd64", None);
        windows.os_version = Some("10.0.17763".into());
        assert_eq!(windows.format_all(), "windows(10.0.17763)/amd64");
        assert_eq!(Platform::default().format_all(), "unknown");
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
