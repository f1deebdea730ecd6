//! `GET /images/{name}/json`: one image in detail.

use std::time::SystemTime;

use hoist_reference::{Digest, Reference};
use hoist_store::Descriptor;

use crate::image_content::{
    PlatformImage, best_for, describe_target, platform_not_provided, present_manifests,
};
use crate::names;
use crate::platform::{Matching, Platform};
use crate::{Engine, EngineError};

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
    /// The platform the image index gives `target`: set when a platform was requested and the
    /// target is that platform's manifest.
    pub target_platform: Option<Platform>,
}

impl Engine {
    /// `docker image inspect [--platform P]`. With a platform, the image is that platform's
    /// manifest (its ID and descriptor are the manifest's), as moby shows it; an image without a
    /// complete manifest for it is a 404.
    pub async fn inspect_image(
        &self,
        name: &str,
        platform: Option<Platform>,
    ) -> Result<ImageDetails, EngineError> {
        let engine = self.clone();
        let name = name.to_owned();
        self.blocking(move || engine.inspect_blocking(&name, platform.as_ref()))
            .await
    }

    fn inspect_blocking(
        &self,
        name: &str,
        platform: Option<&Platform>,
    ) -> Result<ImageDetails, EngineError> {
        let (view, _) = names::resolve(&self.store, name)?;
        let (id, target, target_platform, described) = match platform {
            None => (
                view.id().clone(),
                view.target.clone(),
                None,
                describe_target(&self.store, &view.target, &self.host_platform)?,
            ),
            Some(wanted) => {
                let present = present_manifests(&self.store, &view.target)?;
                let runnable = present
                    .iter()
                    .filter(|m| m.complete && !m.entry.is_attestation());
                let best = best_for(runnable, wanted, Matching::Strict)
                    .ok_or_else(|| platform_not_provided(name, wanted))?;
                let manifest = &best.entry.descriptor;
                (
                    manifest.digest.clone(),
                    manifest.clone(),
                    best.entry.platform.clone(),
                    best.image.clone(),
                )
            }
        };
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
            id,
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
                .unwrap_or(target.size),
            diff_ids,
            last_tag_time: view.last_tag_time,
            target,
            target_platform,
        })
    }
}

impl Engine {
    /// The manifests of the image `name` names, for `GET /images/{name}/json?manifests=1`.
    pub async fn image_manifests(
        &self,
        name: &str,
    ) -> Result<Vec<super::ManifestSummary>, EngineError> {
        let engine = self.clone();
        let name = name.to_owned();
        self.blocking(move || {
            let (view, _) = names::resolve(&engine.store, &name)?;
            Ok(super::manifests::summarize(&engine.store, &view.target)?.manifests)
        })
        .await
    }
}
