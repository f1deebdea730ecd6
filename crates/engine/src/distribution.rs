//! `GET /distribution/{name}/json`: what a registry serves under a name, read the way a pull
//! resolves it (mirrors, certs.d, insecure registries, tokens) and stored nowhere.
//!
//! As moby: the descriptor of the manifest or index the name points at; the platforms of every
//! entry of an index (attestations included, an entry without a platform as an empty one); for
//! a Docker schema 2 manifest the platform its config declares; for an OCI manifest none.
//! Registry failures keep the registry's wording and take the status its error code has.

use futures_util::StreamExt;
use hoist_reference::{Digest, Reference};
use hoist_registry::RegistryError;
use hoist_store::Descriptor;

use crate::auth::AuthConfig;
use crate::downloads::Source;
use crate::engine::Engine;
use crate::error::EngineError;
use crate::image_content::ManifestDoc;
use crate::media;
use crate::platform::Platform;
use crate::pull::resolve::{Resolved, resolve_top_reporting};

/// What the registry serves under a name.
#[derive(Clone, Debug)]
pub struct DistributionInfo {
    /// The manifest or index the name points at, as the registry serves it.
    pub descriptor: Descriptor,
    /// None where moby reports none (an OCI manifest, or a config without a platform).
    pub platforms: Option<Vec<Platform>>,
}

impl Engine {
    /// Resolves `name` (a tag, by default `latest`, or a digest) on its registry.
    pub async fn inspect_distribution(
        &self,
        name: &str,
        auth: AuthConfig,
    ) -> Result<DistributionInfo, EngineError> {
        let reference = remote_reference(name)?;
        let credentials = auth.credentials_for(reference.domain());
        let mut sources = self.pull_sources(&reference.name_only(), credentials);
        let top =
            resolve_top_reporting(&mut sources, &reference, &self.retry, registry_error).await?;
        let platforms = if top.is_index() {
            Some(index_platforms(&top)?)
        } else if top.descriptor.media_type == media::DOCKER_MANIFEST {
            config_platform(&sources, &top).await.map(|p| vec![p])
        } else {
            None
        };
        Ok(DistributionInfo {
            descriptor: top.descriptor,
            platforms,
        })
    }
}

/// moby's reading of the name: `ParseAnyReference`, `latest` when neither tag nor digest is
/// given, and `scratch` refused as a repository name.
fn remote_reference(name: &str) -> Result<Reference, EngineError> {
    let is_image_id = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
    if is_image_id || Digest::parse(name).is_ok() {
        return Err(EngineError::Internal(
            "no manifest found for full image ID".into(),
        ));
    }
    let reference = Reference::parse_normalized(name)?;
    if reference.familiar_name() == "scratch" {
        return Err(EngineError::InvalidArgument(
            "'scratch' is a reserved name".into(),
        ));
    }
    Ok(reference.tag_name_only())
}

/// Every entry's platform, in the index's order.
fn index_platforms(index: &Resolved) -> Result<Vec<Platform>, EngineError> {
    let doc: ManifestDoc = serde_json::from_slice(&index.bytes).map_err(|e| {
        EngineError::InvalidArgument(format!(
            "image index {} is malformed: {e}",
            index.descriptor.digest
        ))
    })?;
    Ok(doc
        .manifests
        .into_iter()
        .map(|entry| entry.platform.unwrap_or_default())
        .collect())
}

/// The platform a manifest's config declares, from the source that served the manifest. As in
/// moby, a config that cannot be read or declares neither OS nor architecture gives none.
async fn config_platform(sources: &[Source], manifest: &Resolved) -> Option<Platform> {
    let doc: ManifestDoc = serde_json::from_slice(&manifest.bytes).ok()?;
    let config = doc.config?;
    let source = sources.first()?;
    let mut stream = source.repository.get_blob(&config.digest).await.ok()?;
    let mut raw = Vec::new();
    while let Some(chunk) = stream.next().await {
        raw.extend_from_slice(&chunk.ok()?);
        if raw.len() > media::MAX_CONFIG_BYTES as usize {
            return None;
        }
    }
    let platform: Platform = serde_json::from_slice(&raw).ok()?;
    (!platform.os.is_empty() || !platform.architecture.is_empty()).then_some(platform)
}

/// moby answers a registry's error with the HTTP status distribution gives its first error
/// code, and the registry's words.
fn registry_error(error: RegistryError, _: &Reference) -> EngineError {
    let code = match error.error_codes().first() {
        Some(first) => first.code.to_ascii_uppercase(),
        None => return EngineError::Registry(error),
    };
    let message = error.to_string();
    match code.as_str() {
        "UNAUTHORIZED" => EngineError::Unauthorized(message),
        "DENIED" => EngineError::Forbidden(message),
        "NAME_UNKNOWN"
        | "MANIFEST_UNKNOWN"
        | "BLOB_UNKNOWN"
        | "BLOB_UPLOAD_UNKNOWN"
        | "BLOB_UPLOAD_INVALID" => EngineError::NotFound(message),
        "DIGEST_INVALID"
        | "SIZE_INVALID"
        | "NAME_INVALID"
        | "TAG_INVALID"
        | "MANIFEST_INVALID"
        | "MANIFEST_UNVERIFIED"
        | "MANIFEST_BLOB_UNKNOWN"
        | "PAGINATION_NUMBER_INVALID" => EngineError::InvalidArgument(message),
        _ => EngineError::Registry(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn names_are_read_as_moby_reads_them() {
        assert_eq!(
            remote_reference("foo").unwrap().to_string(),
            "docker.io/library/foo:latest"
        );
        assert_eq!(
            remote_reference("127.0.0.1:5000/a/b:1")
                .unwrap()
                .to_string(),
            "127.0.0.1:5000/a/b:1"
        );
        let id = "a".repeat(64);
        let err = remote_reference(&id).unwrap_err();
        assert_eq!(err.to_string(), "no manifest found for full image ID");
        assert_eq!(err.kind(), ErrorKind::Internal);
        let err = remote_reference(&format!("sha256:{id}")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal);
        let err = remote_reference("scratch").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert_eq!(
            remote_reference("Foo").unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }
}
