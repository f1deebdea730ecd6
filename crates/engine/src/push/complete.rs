//! Completing a partly present multi-platform image from where it was pulled.
//!
//! A pull keeps the index byte for byte but fetches one platform's content, and records the
//! registry and repository the index came from (`provenance`). When such an index is pushed and
//! neither the store nor the target repository holds the rest, the push asks that origin: the
//! manifests missing here are fetched (small, verified against their digests), every blob
//! missing here is first checked to be there, and then relayed during the push, blob by blob,
//! as an upload whose bytes are read from the origin as they are sent (a cross-repository mount
//! when the origin is another repository of the target registry). Nothing is stored locally.
//!
//! If completion is turned off (`push-complete-from-origin`), or the origin is unknown,
//! unreachable, refuses the credentials or no longer has everything, the push falls back to the
//! host platform's manifest as before, and the status line says why.

use std::collections::HashSet;

use futures_util::future::try_join_all;
use futures_util::{StreamExt, TryStreamExt};
use hoist_reference::Digest;
use hoist_registry::{Access, Credentials, RegistryError, Repository};
use hoist_store::Descriptor;

use super::PushJob;
use super::plan::{FetchedManifest, PartialIndex, PlanBlob, PushPlan, manifest_blobs};
use crate::auth::normalize_server;
use crate::error::EngineError;
use crate::image_content::MANIFEST_FETCHES_AT_ONCE;
use crate::media;
use crate::observe::{Direction, RetryCause};
use crate::uploads::{BlobJob, UploadSource};

/// How many blobs are checked at the origin at once before a completion.
const CHECKS_IN_FLIGHT: usize = 8;

/// Why an origin cannot complete the index; its text ends the push's status line.
#[derive(Debug, thiserror::Error)]
enum Unavailable {
    #[error("{0}")]
    Registry(#[from] RegistryError),
    #[error("{0}")]
    Engine(#[from] EngineError),
    #[error("{digest} is a {media_type}, which hoist does not complete")]
    NotAManifest { digest: Digest, media_type: String },
    #[error("it serves {served} for manifest {asked}")]
    OtherManifest { asked: Digest, served: Digest },
    #[error("it no longer has blob {0}")]
    BlobGone(Digest),
    #[error("its blob {digest} has {served} bytes, not {expected}")]
    BlobSize {
        digest: Digest,
        served: u64,
        expected: u64,
    },
}

impl PushJob {
    /// The plan for an index only partly here and in the target repository: the whole index,
    /// completed from the repository it was pulled from, or the host platform's manifest with
    /// the reason the index could not be completed.
    pub(super) async fn complete_or_fall_back(
        &self,
        partial: PartialIndex,
        repository: &Repository,
    ) -> Result<PushPlan, EngineError> {
        let host = &self.engine.host_platform;
        let not_here = "the index's other platforms are not here";
        if !self.engine.config().push_complete_from_origin {
            let reason = format!(
                "{not_here}, and fetching them from where the image was pulled is turned off (push-complete-from-origin)"
            );
            return partial.fall_back(host, reason);
        }
        let origins = self.origins(&partial.root.digest, repository);
        let Some(first) = origins.first() else {
            let reason = format!("{not_here}, and where the image was pulled from is not known");
            return partial.fall_back(host, reason);
        };
        let mut failure = None;
        for (origin_host, origin_path) in &origins {
            let origin = self.engine.registries.repository(
                origin_host,
                origin_path,
                Access::Pull,
                self.origin_credentials(origin_host, repository),
            );
            match self.fetch_the_rest(&partial, &origin).await {
                Ok(fetched) => return Ok(partial.complete(fetched, Some(&origin))),
                Err(unavailable) => {
                    let cause = unavailable.to_string();
                    tracing::info!(origin = %format!("{origin_host}/{origin_path}"), %cause, "cannot complete the index from its origin");
                    failure.get_or_insert(cause);
                }
            }
        }
        let reason = format!(
            "{not_here} and could not be fetched from {}/{}: {}",
            first.0,
            first.1,
            failure.unwrap_or_default()
        );
        partial.fall_back(host, reason)
    }

    /// Where the index is known to come from, other than the target repository itself: the
    /// target's registry first (a mount moves no bytes), then the others, in name order.
    fn origins(&self, index: &Digest, target: &Repository) -> Vec<(String, String)> {
        let mut origins: Vec<(String, String)> = self
            .engine
            .sources_of(index)
            .into_iter()
            .filter(|(host, path)| !(host == target.host() && path == target.path()))
            .collect();
        origins.sort_by_key(|(host, path)| (host != target.host(), host.clone(), path.clone()));
        origins
    }

    /// The credentials the origin gets: the push's own when the origin is the target's registry
    /// or `X-Registry-Auth` names the origin's registry; otherwise none (the daemon keeps no
    /// credentials, and those sent with the pull are gone).
    fn origin_credentials(&self, origin_host: &str, target: &Repository) -> Credentials {
        if origin_host == target.host() {
            return self.credentials.clone();
        }
        let named = &self.auth.serveraddress;
        if !named.is_empty() && normalize_server(named) == origin_host {
            return self.auth.credentials_for(origin_host);
        }
        Credentials::Anonymous
    }

    /// The manifests absent here, fetched from `origin`, once every blob missing here is known
    /// to be there; or why `origin` cannot complete the index.
    async fn fetch_the_rest(
        &self,
        partial: &PartialIndex,
        origin: &Repository,
    ) -> Result<Vec<FetchedManifest>, Unavailable> {
        // The futures are made first: a stream mapping borrowed entries is not `Send` for every
        // lifetime, which the response body needs.
        let fetches: Vec<_> = partial
            .absent
            .iter()
            .map(|entry| self.fetch_manifest(origin, &entry.descriptor))
            .collect();
        let fetched: Vec<FetchedManifest> = futures_util::stream::iter(fetches)
            .buffered(MANIFEST_FETCHES_AT_ONCE)
            .try_collect()
            .await?;
        let mut seen = HashSet::new();
        let missing: Vec<Descriptor> = partial
            .present
            .iter()
            .flat_map(|m| &m.missing)
            .chain(fetched.iter().flat_map(|m| &m.missing))
            .filter(|blob| seen.insert(&blob.digest))
            .cloned()
            .collect();
        for batch in missing.chunks(CHECKS_IN_FLIGHT) {
            let checks = batch
                .iter()
                .map(|blob| self.check_origin_blob(origin, blob));
            try_join_all(checks).await?;
        }
        Ok(fetched)
    }

    /// A manifest of the index from `origin`, checked against its digest, with its blobs and
    /// which of them the store lacks.
    async fn fetch_manifest(
        &self,
        origin: &Repository,
        descriptor: &Descriptor,
    ) -> Result<FetchedManifest, Unavailable> {
        let digest = &descriptor.digest;
        if !media::is_manifest(&descriptor.media_type) {
            return Err(Unavailable::NotAManifest {
                digest: digest.clone(),
                media_type: descriptor.media_type.clone(),
            });
        }
        let fetched = self
            .ask_origin(origin.host(), || origin.get_manifest(digest.as_str()))
            .await?;
        if fetched.digest != *digest {
            return Err(Unavailable::OtherManifest {
                asked: digest.clone(),
                served: fetched.digest,
            });
        }
        let blobs = manifest_blobs(digest, &fetched.bytes)?;
        let store = self.engine.store.clone();
        let listed = blobs.clone();
        let missing = self
            .engine
            .blocking(move || {
                Ok(listed
                    .into_iter()
                    .filter(|b| !store.has_blob(&b.digest))
                    .collect())
            })
            .await?;
        Ok(FetchedManifest {
            descriptor: descriptor.clone(),
            bytes: fetched.bytes,
            blobs,
            missing,
        })
    }

    /// Whether `origin` holds `blob`, with its size.
    async fn check_origin_blob(
        &self,
        origin: &Repository,
        blob: &Descriptor,
    ) -> Result<(), Unavailable> {
        let digest = &blob.digest;
        match self
            .ask_origin(origin.host(), || origin.blob_exists(digest))
            .await?
        {
            None => Err(Unavailable::BlobGone(digest.clone())),
            // A registry that does not say the size (0) is taken at its word.
            Some(size) if size != blob.size && size != 0 => Err(Unavailable::BlobSize {
                digest: digest.clone(),
                served: size,
                expected: blob.size,
            }),
            Some(_) => Ok(()),
        }
    }

    /// One request to the origin, tried a second time after a transient failure: an origin
    /// that is down should cost the push a moment, not the whole retry policy, before it falls
    /// back.
    async fn ask_origin<T, F, Fut>(
        &self,
        origin_host: &str,
        mut request: F,
    ) -> Result<T, Unavailable>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        match request().await {
            Err(e) if e.is_retryable() => {
                let policy = &self.engine.retry;
                policy.note_retry(
                    Direction::Pull,
                    origin_host,
                    RetryCause::of(&e),
                    1,
                    "a request to the origin",
                    &e,
                );
                tokio::time::sleep(policy.delay(1, e.retry_after())).await;
                Ok(request().await?)
            }
            other => Ok(other?),
        }
    }

    /// The upload of a blob that is not here, read from `origin` as it is sent. From another
    /// repository of the target registry it is mounted first.
    pub(super) fn relay_job(
        &self,
        blob: &PlanBlob,
        origin: &Repository,
        repository: &Repository,
        check_existing: bool,
    ) -> BlobJob {
        let desc = &blob.descriptor;
        let mut mount_from = Vec::new();
        if origin.host() == repository.host() {
            mount_from.push(origin.path().to_owned());
        }
        BlobJob {
            repository: repository.clone(),
            blob: UploadSource::Relayed {
                origin: origin.clone(),
                digest: desc.digest.clone(),
                size: desc.size,
            },
            check_existing,
            mount_from,
            chunk_size: None,
        }
    }
}
