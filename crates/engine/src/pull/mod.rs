//! `POST /images/create?fromImage=…`: fetches images from registries into the store, verbatim.
//!
//! As push, in two phases. `prepare_pull` parses the reference and resolves its top manifest
//! (Docker Hub mirrors first), so that a bad name is a 400, `scratch` a 403 and an unknown or
//! inaccessible image a 404 before any output. `PullJob::run` then fetches what the store lacks,
//! reporting on a progress board, and fails in-stream.
//!
//! A multi-platform index is kept byte for byte (so the image ID and a later push keep its
//! digest), with the content of one platform only: the one asked for, or the host's. The image
//! is then partial, which push and save handle.

mod errors;
mod events;
mod layers;
pub(crate) mod resolve;
mod source;

use hoist_reference::{Digest, Reference};
use hoist_store::{Descriptor, Lease};

pub use events::{PullEvent, PullLayerState};

use crate::auth::AuthConfig;
use crate::blocking::BlockingDrop;
use crate::downloads::{Source, verification_failed};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::events::Action;
use crate::image_content::{IndexEntry, ManifestDoc, parse_manifest};
use crate::platform::Platform;
use crate::progress::ProgressBoard;
use crate::{media, names};
use resolve::{Resolved, choose_platform, fetch_child, list_tags, resolve_top};

/// What the client asked for.
#[derive(Debug)]
pub struct PullRequest {
    /// `fromImage`, in any form docker accepts (`foo`, `docker.io/library/foo`, `reg:5000/a/b:1`).
    pub image: String,
    /// A tag or a digest; replaces what `image` carries.
    pub tag: Option<String>,
    /// `os/arch[/variant]` of the manifest to fetch from an index; the host's when None.
    pub platform: Option<Platform>,
    pub auth: AuthConfig,
}

/// A pull resolved and ready to run.
pub struct PullJob {
    engine: Engine,
    /// What the client named: a tag, a digest, or a repository (every tag).
    reference: Reference,
    images: Vec<PullImage>,
    /// Set when the platform was asked for (a mismatch of a single-platform image is warned of).
    platform: Option<Platform>,
    sources: Vec<Source>,
}

/// One image of a pull: one tag of the repository, or the one tag or digest asked for.
struct PullImage {
    reference: Reference,
    top: Resolved,
    /// For an index: the platform manifest to fetch.
    platform_entry: Option<IndexEntry>,
}

impl Engine {
    /// Resolves a pull request against the registry. Errors here come before any output.
    pub async fn prepare_pull(&self, request: PullRequest) -> Result<PullJob, EngineError> {
        let reference = requested_reference(&request.image, request.tag.as_deref())?;
        let credentials = request.auth.credentials_for(reference.domain());
        let mut sources = self.pull_sources(&reference.name_only(), credentials);
        let references = if reference.tag().is_none() && reference.digest().is_none() {
            // Every tag of the repository, as moby pulls them for `docker pull --all-tags`.
            let tags = list_tags(&mut sources, &reference, &self.retry).await?;
            if tags.is_empty() {
                return Err(EngineError::NotFound(format!(
                    "no tags found for {}",
                    reference.familiar_name()
                )));
            }
            tags.iter()
                .map(|tag| reference.with_tag(tag))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            vec![reference.clone()]
        };
        let mut images = Vec::with_capacity(references.len());
        for reference in references {
            let top = resolve_top(&mut sources, &reference, &self.retry).await?;
            let platform_entry = if top.is_index() {
                Some(choose_platform(
                    &top,
                    request.platform.as_ref(),
                    &self.host_platform,
                )?)
            } else {
                None
            };
            images.push(PullImage {
                reference,
                top,
                platform_entry,
            });
        }
        Ok(PullJob {
            engine: self.clone(),
            reference,
            images,
            platform: request.platform,
            sources,
        })
    }
}

/// moby's reading of `fromImage` and `tag`: a trailing `:` is dropped (old `pull -a` clients
/// send it), a `tag` that parses as a digest is one, and `scratch` is reserved.
fn requested_reference(image: &str, tag: Option<&str>) -> Result<Reference, EngineError> {
    let mut reference = Reference::parse_normalized(image.strip_suffix(':').unwrap_or(image))?;
    if let Some(tag) = tag.filter(|t| !t.is_empty()) {
        reference = match Digest::parse(tag) {
            Ok(digest) => reference.name_only().with_digest(digest),
            Err(_) => reference.with_tag(tag)?,
        };
    }
    if reference.digest().is_some() {
        // The digest decides what is pulled; a tag beside it would name nothing fetched.
        reference = reference.without_tag();
    }
    if reference.familiar_name() == "scratch" {
        return Err(EngineError::Forbidden(
            "'scratch' is a reserved name".into(),
        ));
    }
    Ok(reference)
}

impl PullJob {
    /// The reference being pulled, fully qualified.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// Fetches what the store lacks, records the names, and reports on `board`. Dropping the
    /// future cancels every download no other pull is watching; what was stored goes with the
    /// job's lease unless an image now uses it.
    pub async fn run(self, board: &ProgressBoard<PullEvent>) -> Result<(), EngineError> {
        let engine = self.engine.clone();
        let lease = BlockingDrop::new(engine.store.lease());
        let mut newer = false;
        let mut outcome = Ok(());
        for image in &self.images {
            match self.pull(image, &lease, board).await {
                Ok(changed) => newer |= changed,
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        // Releasing the lease collects what the pull stored and nothing uses.
        lease.release().await;
        outcome?;
        // For every tag, moby names the repository itself.
        let reference = match (self.reference.tag(), self.reference.digest()) {
            (None, None) => self.reference.familiar_name(),
            _ => self.reference.familiar_string(),
        };
        board.post(PullEvent::Done { reference, newer });
        Ok(())
    }

    async fn pull(
        &self,
        image: &PullImage,
        lease: &Lease,
        board: &ProgressBoard<PullEvent>,
    ) -> Result<bool, EngineError> {
        let engine = &self.engine;
        let policy = &engine.retry;
        let id = match image.reference.tag() {
            Some(tag) => tag.to_owned(),
            None => image.reference.to_string(),
        };
        board.post(PullEvent::PullingFrom {
            id,
            repository: image.reference.path().to_owned(),
        });
        self.store_manifest(lease, &image.top).await?;
        let manifest = match &image.platform_entry {
            Some(entry) => match self.stored_manifest(lease, &entry.descriptor).await? {
                Some(stored) => stored,
                None => {
                    let child = fetch_child(&self.sources, entry, policy).await?;
                    self.store_manifest(lease, &child).await?;
                    child
                }
            },
            None => image.top.clone(),
        };
        let doc: ManifestDoc = serde_json::from_slice(&manifest.bytes).map_err(|e| {
            EngineError::InvalidArgument(format!(
                "manifest {} is malformed: {e}",
                manifest.descriptor.digest
            ))
        })?;
        let config = doc.config.clone().ok_or_else(|| {
            EngineError::InvalidArgument(format!(
                "manifest {} has no config",
                manifest.descriptor.digest
            ))
        })?;
        let layers: Vec<Descriptor> = doc
            .layers
            .into_iter()
            .filter(|l| !media::is_non_distributable(&l.media_type))
            .collect();
        layers::fetch_content(engine, &self.sources, lease, &config, &layers, board).await?;
        // The origin holds what was pulled (a mirror only caches it): later pushes to that
        // registry mount these blobs instead of uploading them again, and a push of a partly
        // pulled index fetches the rest from where the index (the top manifest) is.
        let blobs: Vec<Digest> = [&image.top.descriptor, &manifest.descriptor, &config]
            .into_iter()
            .chain(&layers)
            .map(|d| d.digest.clone())
            .collect();
        let (host, path) = (
            image.reference.domain().to_owned(),
            image.reference.path().to_owned(),
        );
        let recorder = engine.clone();
        engine
            .blocking(move || recorder.record_sources(&host, &path, &blobs))
            .await?;
        if let Some(entry) = &image.platform_entry {
            self.fetch_attestations(image, entry, lease).await;
        }
        if let Some(note) = self.platform_mismatch(image, &config).await? {
            board.post(PullEvent::Note(note));
        }
        let target = image.top.descriptor.clone();
        let reference = image.reference.clone();
        let recorder = engine.clone();
        let newer = engine
            .blocking(move || recorder.record_pull(&reference, target))
            .await?;
        board.post(PullEvent::Digest(image.top.descriptor.digest.clone()));
        Ok(newer)
    }

    /// The index's attestation manifests for the platform pulled (BuildKit's provenance and
    /// SBOM, small), with their content, so that a save or push of the image carries them. moby
    /// leaves them behind. Quietly, as they are not layers of the image: one that cannot be
    /// fetched is logged and the pull goes on without it.
    async fn fetch_attestations(&self, image: &PullImage, pulled: &IndexEntry, lease: &Lease) {
        let Ok(index) = parse_manifest(&image.top.descriptor.digest, &image.top.bytes) else {
            return;
        };
        let subject = pulled.descriptor.digest.as_str();
        for entry in index.manifests.iter().filter(|e| attests(e, subject)) {
            if let Err(e) = self.fetch_attestation(image, entry, lease).await {
                tracing::warn!(
                    image = %image.reference,
                    attestation = %entry.descriptor.digest,
                    error = %e,
                    "an attestation manifest could not be pulled; the image is pulled without it"
                );
            }
        }
    }

    async fn fetch_attestation(
        &self,
        image: &PullImage,
        entry: &IndexEntry,
        lease: &Lease,
    ) -> Result<(), EngineError> {
        let manifest = match self.stored_manifest(lease, &entry.descriptor).await? {
            Some(stored) => stored,
            None => {
                let fetched = fetch_child(&self.sources, entry, &self.engine.retry).await?;
                self.store_manifest(lease, &fetched).await?;
                fetched
            }
        };
        let doc = parse_manifest(&manifest.descriptor.digest, &manifest.bytes)?;
        let Some(config) = doc.config else {
            return Ok(());
        };
        let unseen = ProgressBoard::new(PullEvent::progress);
        layers::fetch_content(
            &self.engine,
            &self.sources,
            lease,
            &config,
            &doc.layers,
            &unseen,
        )
        .await?;
        // Recorded as the image's own blobs are: pushes elsewhere in the registry mount them.
        let blobs: Vec<Digest> = [&manifest.descriptor, &config]
            .into_iter()
            .chain(&doc.layers)
            .map(|d| d.digest.clone())
            .collect();
        let (host, path) = (
            image.reference.domain().to_owned(),
            image.reference.path().to_owned(),
        );
        let recorder = self.engine.clone();
        self.engine
            .blocking(move || recorder.record_sources(&host, &path, &blobs))
            .await
    }

    /// Stores a manifest's bytes under the lease, checking they are what the registry said.
    async fn store_manifest(&self, lease: &Lease, manifest: &Resolved) -> Result<(), EngineError> {
        let (store, lease, bytes) = (
            self.engine.store.clone(),
            lease.clone(),
            manifest.bytes.clone(),
        );
        let expected = manifest.descriptor.digest.clone();
        let stored = self
            .engine
            .blocking(move || Ok(store.put_blob(&lease, &bytes)?))
            .await?;
        if stored.0 != expected {
            return Err(verification_failed(&expected));
        }
        Ok(())
    }

    /// A manifest the store already has (from an earlier pull of this index), protected by
    /// the lease before it is looked for.
    async fn stored_manifest(
        &self,
        lease: &Lease,
        descriptor: &Descriptor,
    ) -> Result<Option<Resolved>, EngineError> {
        let (store, lease, desc) = (self.engine.store.clone(), lease.clone(), descriptor.clone());
        self.engine
            .blocking(move || {
                lease.protect(&desc.digest);
                if !store.has_blob(&desc.digest) {
                    return Ok(None);
                }
                let bytes = store.read_blob(&desc.digest, media::MAX_MANIFEST_BYTES)?;
                Ok(Some(Resolved {
                    descriptor: desc,
                    bytes: bytes.into(),
                }))
            })
            .await
    }

    /// moby pulls a single-platform image whatever platform was asked for, and warns when its
    /// platform is another.
    async fn platform_mismatch(
        &self,
        image: &PullImage,
        config: &Descriptor,
    ) -> Result<Option<String>, EngineError> {
        let Some(wanted) = self.platform.clone() else {
            return Ok(None);
        };
        if image.platform_entry.is_some() {
            return Ok(None);
        }
        let (store, digest) = (self.engine.store.clone(), config.digest.clone());
        let raw = self
            .engine
            .blocking(move || Ok(store.read_blob(&digest, media::MAX_CONFIG_BYTES)?))
            .await?;
        let actual: Platform = serde_json::from_slice(&raw).unwrap_or_default();
        if wanted.matches(&actual) {
            return Ok(None);
        }
        Ok(Some(format!(
            "WARNING: image with reference {} was found but its platform ({}) does not match the specified platform ({})",
            image.reference,
            actual.format(),
            wanted.format()
        )))
    }
}

/// Whether `entry` is an attestation manifest of the manifest `subject`.
fn attests(entry: &IndexEntry, subject: &str) -> bool {
    entry.is_attestation()
        && entry.annotations.as_ref().is_some_and(|a| {
            a.get("vnd.docker.reference.digest").map(String::as_str) == Some(subject)
        })
}

impl Engine {
    /// Points the pulled names at `target`: the tag (moving it, and keeping an image it leaves
    /// without a name as dangling) and `repo@digest` (RepoDigests). True when a name now points
    /// at other content than before.
    fn record_pull(&self, reference: &Reference, target: Descriptor) -> Result<bool, EngineError> {
        let _guard = self
            .names_lock
            .lock()
            .map_err(|_| EngineError::Internal("names lock poisoned".into()))?;
        let digest_name = names::digest_record_name(reference, &target.digest);
        let newer = match reference.tag() {
            Some(_) => {
                let tag_name = names::tag_record_name(reference);
                self.store.image(&tag_name).map(|r| r.target.digest) != Some(target.digest.clone())
            }
            None => self.store.image(&digest_name).is_none(),
        };
        let mut assignments = vec![(digest_name, target.clone())];
        if reference.tag().is_some() {
            assignments.push((names::tag_record_name(reference), target));
        }
        let changes = self.retarget_changes(&assignments);
        self.store.apply(changes)?;
        self.log_image_event(
            Action::Pull,
            &reference.familiar_string(),
            &reference.familiar_name(),
        );
        Ok(newer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_read_as_moby_reads_them() {
        let r = requested_reference("docker.io/library/foo", Some("1.0")).unwrap();
        assert_eq!(r.to_string(), "docker.io/library/foo:1.0");
        let digest = format!("sha256:{}", "a".repeat(64));
        let r = requested_reference("foo:old", Some(&digest)).unwrap();
        assert_eq!(r.to_string(), format!("docker.io/library/foo@{digest}"));
        let r = requested_reference("127.0.0.1:5000/a/b:", None).unwrap();
        assert_eq!(r.to_string(), "127.0.0.1:5000/a/b");
        let err = requested_reference("scratch", Some("latest")).unwrap_err();
        assert_eq!(err.to_string(), "'scratch' is a reserved name");
        assert_eq!(err.kind(), crate::ErrorKind::Forbidden);
        assert!(requested_reference("Foo", None).is_err());
    }
}
