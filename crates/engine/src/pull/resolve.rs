//! Resolving what a pull names: the top manifest (by tag or digest) from the first source that
//! has it, and, for a multi-platform index, the platform manifests to fetch.

use bytes::Bytes;
use hoist_reference::Reference;
use hoist_registry::{FetchedManifest, RegistryError};
use hoist_store::Descriptor;

use super::errors::resolve_error;
use crate::downloads::Source;
use crate::error::EngineError;
use crate::image_content::{IndexEntry, ManifestDoc};
use crate::media;
use crate::observe::{Direction, RetryCause};
use crate::platform::Platform;
use crate::retry::RetryPolicy;

/// A manifest or index as the registry serves it.
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    pub descriptor: Descriptor,
    pub bytes: Bytes,
}

impl Resolved {
    fn from_fetched(fetched: FetchedManifest) -> Resolved {
        Resolved {
            descriptor: Descriptor {
                media_type: fetched.media_type,
                digest: fetched.digest,
                size: fetched.bytes.len() as u64,
            },
            bytes: fetched.bytes,
        }
    }

    pub fn is_index(&self) -> bool {
        media::is_index(&self.descriptor.media_type)
    }
}

/// Fetches `reference`'s top manifest. Sources are tried in order and the ones before the
/// answering source are dropped from `sources`, so the rest of the pull starts where it worked.
/// A registry failure reads as a pull's (`pull access denied …`).
pub(crate) async fn resolve_top(
    sources: &mut Vec<Source>,
    reference: &Reference,
    policy: &RetryPolicy,
) -> Result<Resolved, EngineError> {
    resolve_top_reporting(sources, reference, policy, resolve_error).await
}

/// [`resolve_top`], with `report` turning the last source's registry failure into the error.
pub(crate) async fn resolve_top_reporting(
    sources: &mut Vec<Source>,
    reference: &Reference,
    policy: &RetryPolicy,
    report: fn(RegistryError, &Reference) -> EngineError,
) -> Result<Resolved, EngineError> {
    let wanted = match (reference.digest(), reference.tag()) {
        (Some(digest), _) => digest.to_string(),
        (None, Some(tag)) => tag.to_owned(),
        (None, None) => {
            return Err(EngineError::Internal(format!(
                "{reference} has neither a tag nor a digest"
            )));
        }
    };
    let (fetched, answered) = fetch_manifest(sources, &wanted, policy)
        .await
        .map_err(|e| report(e, reference))?;
    sources.drain(..answered);
    let resolved = Resolved::from_fetched(fetched);
    let media_type = &resolved.descriptor.media_type;
    if !media::is_index(media_type) && !media::is_manifest(media_type) {
        return Err(EngineError::InvalidArgument(format!(
            "unsupported media type {media_type}"
        )));
    }
    Ok(resolved)
}

/// The tags of `repository`, from the first source that lists them (sources before it are
/// dropped, as for manifests), sorted.
pub(crate) async fn list_tags(
    sources: &mut Vec<Source>,
    repository: &Reference,
    policy: &RetryPolicy,
) -> Result<Vec<String>, EngineError> {
    let mut failure = None;
    for (i, source) in sources.iter().enumerate() {
        let mut attempt = 1;
        let result = loop {
            match source.repository.list_tags().await {
                Err(e) if !source.mirror && e.is_retryable() && attempt < policy.max_attempts => {
                    policy.note_retry(
                        Direction::Pull,
                        source.repository.host(),
                        RetryCause::of(&e),
                        attempt,
                        "listing the tags",
                        &e,
                    );
                    tokio::time::sleep(policy.delay(attempt, e.retry_after())).await;
                    attempt += 1;
                }
                other => break other,
            }
        };
        match result {
            Ok(mut tags) => {
                sources.drain(..i);
                tags.sort();
                return Ok(tags);
            }
            Err(e) => failure = Some(e),
        }
    }
    let error = failure.unwrap_or_else(|| RegistryError::Config("no registry to pull from".into()));
    Err(resolve_error(error, repository))
}

/// A child manifest of an index, by digest, from the first source that has it.
pub(crate) async fn fetch_child(
    sources: &[Source],
    entry: &IndexEntry,
    policy: &RetryPolicy,
) -> Result<Resolved, EngineError> {
    let digest = &entry.descriptor.digest;
    let (fetched, _) = fetch_manifest(sources, digest.as_str(), policy).await?;
    let resolved = Resolved::from_fetched(fetched);
    if !media::is_manifest(&resolved.descriptor.media_type) {
        return Err(EngineError::InvalidArgument(format!(
            "manifest {digest} of the index has unsupported media type {}",
            resolved.descriptor.media_type
        )));
    }
    Ok(resolved)
}

/// GET a manifest from the first source that serves it: mirrors get one try, the origin the
/// retry policy. Returns the manifest and the index of the source that served it.
async fn fetch_manifest(
    sources: &[Source],
    reference: &str,
    policy: &RetryPolicy,
) -> Result<(FetchedManifest, usize), RegistryError> {
    let mut failure = None;
    for (i, source) in sources.iter().enumerate() {
        let mut attempt = 1;
        loop {
            match source.repository.get_manifest(reference).await {
                Ok(fetched) => return Ok((fetched, i)),
                Err(e) if !source.mirror && e.is_retryable() && attempt < policy.max_attempts => {
                    policy.note_retry(
                        Direction::Pull,
                        source.repository.host(),
                        RetryCause::of(&e),
                        attempt,
                        &format!("fetching manifest {reference}"),
                        &e,
                    );
                    tokio::time::sleep(policy.delay(attempt, e.retry_after())).await;
                    attempt += 1;
                }
                Err(e) => {
                    if source.mirror {
                        tracing::info!(
                            mirror = source.repository.host(),
                            reference,
                            error = %e,
                            "mirror cannot serve the manifest; trying the next source"
                        );
                    }
                    failure = Some(e);
                    break;
                }
            }
        }
    }
    Err(failure.unwrap_or_else(|| RegistryError::Config("no registry to pull from".into())))
}

/// The platform manifest of an index to pull: the one matching `wanted` exactly, or, with no
/// platform asked for, the best match for `host`. Attestations are never chosen.
pub(crate) fn choose_platform(
    index: &Resolved,
    wanted: Option<&Platform>,
    host: &Platform,
) -> Result<IndexEntry, EngineError> {
    let doc: ManifestDoc = serde_json::from_slice(&index.bytes).map_err(|e| {
        EngineError::InvalidArgument(format!(
            "image index {} is malformed: {e}",
            index.descriptor.digest
        ))
    })?;
    let candidates = doc.manifests.into_iter().filter(|e| {
        media::is_manifest(&e.descriptor.media_type) && !e.is_attestation() && e.platform.is_some()
    });
    let chosen = match wanted {
        Some(wanted) => candidates
            .into_iter()
            .find(|e| e.platform.as_ref().is_some_and(|p| wanted.matches(p))),
        None => candidates
            .filter_map(|e| {
                let preference = e.platform.as_ref().and_then(|p| host.host_preference(p))?;
                Some((preference, e))
            })
            .min_by_key(|(preference, _)| *preference)
            .map(|(_, e)| e),
    };
    chosen.ok_or_else(|| {
        EngineError::NotFound(format!(
            "no matching manifest for {} in the manifest list entries",
            wanted.unwrap_or(host).format()
        ))
    })
}

/// Every image manifest an index lists, attestations aside (a pull of every platform fetches
/// those with their subjects' content, quietly). An entry that is not an image manifest (a
/// nested index) is refused: such a pull promises the whole index.
pub(crate) fn every_platform(index: &Resolved) -> Result<Vec<IndexEntry>, EngineError> {
    let doc: ManifestDoc = serde_json::from_slice(&index.bytes).map_err(|e| {
        EngineError::InvalidArgument(format!(
            "image index {} is malformed: {e}",
            index.descriptor.digest
        ))
    })?;
    let mut entries = Vec::new();
    for entry in doc.manifests {
        if !media::is_manifest(&entry.descriptor.media_type) {
            return Err(EngineError::InvalidArgument(format!(
                "image index {} lists {} of media type {}, which a pull of every platform cannot fetch",
                index.descriptor.digest, entry.descriptor.digest, entry.descriptor.media_type
            )));
        }
        if !entry.is_attestation() {
            entries.push(entry);
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hoist_reference::Digest;

    fn index(manifests: serde_json::Value) -> Resolved {
        let bytes = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_INDEX,
            "manifests": manifests,
        }))
        .unwrap();
        Resolved {
            descriptor: Descriptor {
                media_type: media::OCI_INDEX.into(),
                digest: Digest::sha256_from_bytes(&[0; 32]),
                size: bytes.len() as u64,
            },
            bytes: Bytes::from(bytes),
        }
    }

    fn entry(n: u8, platform: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "mediaType": media::OCI_MANIFEST,
            "digest": Digest::sha256_from_bytes(&[n; 32]).to_string(),
            "size": 100,
            "platform": platform,
        })
    }

    #[test]
    fn every_platform_takes_entries_without_a_platform_and_refuses_nested_indexes() {
        let mut bare = entry(4, serde_json::json!(null));
        bare.as_object_mut().unwrap().remove("platform");
        let idx = index(serde_json::json!([
            entry(
                3,
                serde_json::json!({"os": "linux", "architecture": "amd64"})
            ),
            bare,
        ]));
        assert_eq!(every_platform(&idx).unwrap().len(), 2);
        let mut nested = entry(5, serde_json::json!(null));
        nested["mediaType"] = media::OCI_INDEX.into();
        let idx = index(serde_json::json!([nested]));
        let err = every_platform(&idx).unwrap_err();
        assert!(
            err.to_string()
                .contains("which a pull of every platform cannot fetch"),
            "{err}"
        );
    }

    #[test]
    fn chooses_the_asked_platform_or_the_host_one_never_an_attestation() {
        let idx = index(serde_json::json!([
            entry(
                1,
                serde_json::json!({"os": "unknown", "architecture": "unknown"})
            ),
            entry(
                2,
                serde_json::json!({"os": "linux", "architecture": "arm64", "variant": "v8"})
            ),
            entry(
                3,
                serde_json::json!({"os": "linux", "architecture": "amd64"})
            ),
        ]));
        let amd64 = Platform::parse_specifier("linux/amd64").unwrap();
        let arm64 = Platform::parse_specifier("linux/arm64").unwrap();
        let digest_of = |e: IndexEntry| e.descriptor.digest;
        assert_eq!(
            digest_of(choose_platform(&idx, Some(&arm64), &amd64).unwrap()),
            Digest::sha256_from_bytes(&[2; 32])
        );
        assert_eq!(
            digest_of(choose_platform(&idx, None, &amd64).unwrap()),
            Digest::sha256_from_bytes(&[3; 32])
        );
        // Every platform: all but the attestation, in index order.
        assert_eq!(
            every_platform(&idx)
                .unwrap()
                .into_iter()
                .map(digest_of)
                .collect::<Vec<_>>(),
            [
                Digest::sha256_from_bytes(&[2; 32]),
                Digest::sha256_from_bytes(&[3; 32])
            ]
        );
        let s390x = Platform::parse_specifier("linux/s390x").unwrap();
        assert_eq!(
            choose_platform(&idx, Some(&s390x), &amd64)
                .unwrap_err()
                .to_string(),
            "no matching manifest for linux/s390x in the manifest list entries"
        );
    }
}
