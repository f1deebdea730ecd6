//! `POST /images/create?fromSrc=-`: a one-layer image from a tar in the request body, as moby's
//! containerd store makes it (`docker import`): an OCI manifest, an OCI config built from the
//! `changes`, and the layer, whose digest is the image ID.

mod changes;
mod layer;

use std::io::Read;

use hoist_reference::{Digest, Reference};
use hoist_store::{Descriptor, Lease};
use serde::Serialize;

use crate::image_content::BuiltManifest;
use crate::platform::Platform;
use crate::{Engine, EngineError, media, names};
use changes::{RunConfig, apply_changes};
use layer::store_layer;

/// What the client asked for.
#[derive(Debug, Default)]
pub struct ImportRequest {
    /// `fromSrc`: `-` for the request body (the only source hoist takes).
    pub source: String,
    /// `repo`, possibly with a tag; no name leaves the image dangling.
    pub repo: Option<String>,
    pub tag: Option<String>,
    /// The history comment; `Imported from <source>` by default, as in moby.
    pub message: Option<String>,
    /// Dockerfile instructions (`CMD`, `ENV`, …) for the image config.
    pub changes: Vec<String>,
    /// The image's platform; the host's when None.
    pub platform: Option<Platform>,
}

/// An import checked and ready to read its archive.
pub struct ImportJob {
    engine: Engine,
    name: Option<Reference>,
    comment: String,
    config: RunConfig,
    platform: Platform,
}

impl Engine {
    /// Checks an import request before its body is read: 400 for a bad name, an unusable
    /// source or changes moby would refuse.
    pub fn prepare_import(&self, request: ImportRequest) -> Result<ImportJob, EngineError> {
        if request.source != "-" {
            return Err(EngineError::InvalidArgument(format!(
                "importing from {:?} is not supported: send the archive as the request body (fromSrc=-)",
                request.source
            )));
        }
        let name = match request.repo.as_deref().filter(|r| !r.is_empty()) {
            None => None,
            Some(repo) => Some(repo_tag_reference(repo, request.tag.as_deref())?),
        };
        let comment = request
            .message
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| format!("Imported from {}", request.source));
        Ok(ImportJob {
            engine: self.clone(),
            name,
            comment,
            config: apply_changes(&request.changes)?,
            platform: request
                .platform
                .unwrap_or_else(|| self.host_platform.clone()),
        })
    }
}

/// moby's `RepoTagReference`: `repo` may carry a tag, `tag` replaces it, none means `latest`.
fn repo_tag_reference(repo: &str, tag: Option<&str>) -> Result<Reference, EngineError> {
    let reference = Reference::parse_normalized(repo)?;
    if reference.digest().is_some() {
        return Err(EngineError::InvalidArgument(
            "cannot import digest reference".into(),
        ));
    }
    Ok(match tag.filter(|t| !t.is_empty()) {
        Some(tag) => reference.with_tag(tag)?,
        None => reference.tag_name_only(),
    })
}

impl ImportJob {
    /// Reads the archive from `body`, stores the image and names it. Returns the image ID.
    pub async fn run<R>(self, body: R) -> Result<Digest, EngineError>
    where
        R: tokio::io::AsyncRead + Send + Unpin + 'static,
    {
        let engine = self.engine.clone();
        // The bridge must be made on the runtime; it is then driven from the blocking thread.
        let reader = tokio_util::io::SyncIoBridge::new(body);
        engine.blocking(move || self.import_blocking(reader)).await
    }

    fn import_blocking(self, body: impl Read) -> Result<Digest, EngineError> {
        let store = &self.engine.store;
        let lease = store.lease();
        let layer = store_layer(store, &lease, body)?;
        let config = self.store_config(&lease, &layer.diff_id)?;
        let manifest = BuiltManifest {
            schema_version: 2,
            media_type: media::OCI_MANIFEST,
            config,
            layers: vec![layer.descriptor],
        };
        let bytes = serde_json::to_vec(&manifest)
            .map_err(|e| EngineError::Internal(format!("encoding a manifest: {e}")))?;
        let (digest, size) = store.put_blob(&lease, &bytes)?;
        let target = Descriptor {
            media_type: media::OCI_MANIFEST.to_owned(),
            digest: digest.clone(),
            size,
        };
        self.name_image(target)?;
        Ok(digest)
        // `lease` drops here; the named image now keeps its content.
    }

    fn store_config(&self, lease: &Lease, diff_id: &Digest) -> Result<Descriptor, EngineError> {
        let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let config = ImageConfig {
            created: &created,
            architecture: &self.platform.architecture,
            os: &self.platform.os,
            variant: self.platform.variant.as_deref(),
            comment: &self.comment,
            config: &self.config,
            rootfs: RootFs {
                kind: "layers",
                diff_ids: vec![diff_id.to_string()],
            },
            history: vec![History {
                created: &created,
                comment: &self.comment,
            }],
        };
        let bytes = serde_json::to_vec(&config)
            .map_err(|e| EngineError::Internal(format!("encoding an image config: {e}")))?;
        let (digest, size) = self.engine.store.put_blob(lease, &bytes)?;
        Ok(Descriptor {
            media_type: media::OCI_CONFIG.to_owned(),
            digest,
            size,
        })
    }

    /// The tag, or a dangling record when the import has no name.
    fn name_image(&self, target: Descriptor) -> Result<(), EngineError> {
        let engine = &self.engine;
        let _guard = engine
            .names_lock
            .lock()
            .map_err(|_| EngineError::Internal("names lock poisoned".into()))?;
        let name = match &self.name {
            Some(reference) => names::tag_record_name(reference),
            None => names::dangling_record_name(&target.digest),
        };
        let digest = target.digest.clone();
        let changes = engine.retarget_changes(&[(name, target)]);
        engine.store.apply(changes)?;
        engine.log_import(self.name.as_ref(), &digest);
        Ok(())
    }
}

/// moby's `DockerOCIImage` as its import fills it, plus the top-level `comment` of the classic
/// image config (which `docker inspect` shows as Comment).
#[derive(Serialize)]
struct ImageConfig<'a> {
    created: &'a str,
    architecture: &'a str,
    os: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'a str>,
    comment: &'a str,
    rootfs: RootFs,
    history: Vec<History<'a>>,
    config: &'a RunConfig,
}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

#[derive(Serialize)]
struct History<'a> {
    created: &'a str,
    comment: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_repo_tag_reference() {
        let r = repo_tag_reference("foo:imp", None).unwrap();
        assert_eq!(r.to_string(), "docker.io/library/foo:imp");
        let r = repo_tag_reference("foo:imp", Some("2")).unwrap();
        assert_eq!(r.to_string(), "docker.io/library/foo:2");
        let r = repo_tag_reference("127.0.0.1:5000/a/b", None).unwrap();
        assert_eq!(r.to_string(), "127.0.0.1:5000/a/b:latest");
        let digest = format!("foo@sha256:{}", "a".repeat(64));
        assert_eq!(
            repo_tag_reference(&digest, None).unwrap_err().to_string(),
            "cannot import digest reference"
        );
    }
}
