//! `POST /images/create?fromImage=…`: fetches images from registries into the store, verbatim.
//!
//! As push, in two phases. `prepare_pull` parses the reference and resolves its top manifest
//! (Docker Hub mirrors first), so that a bad name is a 400, `scratch` a 403 and an unknown or
//! inaccessible image a 404 before any output. `PullJob::run` then fetches what the store lacks,
//! reporting on a progress board, and fails in-stream.
//!
//! A multi-platform index is kept byte for byte (so the image ID and a later push keep its
//! digest), with the content of one platform: the one asked for, or the host's. The image is
//! then partial, which push and save handle. With `platform=all` every manifest the index lists
//! comes along, attestations included, and the image is complete: a save or push of it carries
//! the whole index.

mod errors;
mod events;
mod layers;
pub(crate) mod resolve;
mod source;

use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use hoist_reference::{Digest, Reference};
use hoist_store::{Descriptor, Durability, Lease};

pub use events::{PullEvent, PullLayerState};

use crate::auth::AuthConfig;
use crate::blocking::BlockingDrop;
use crate::downloads::{Source, verification_failed};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::events::Action;
use crate::image_content::{IndexEntry, ManifestDoc, parse_manifest};
use crate::observe::Operation;
use crate::platform::Platform;
use crate::progress::ProgressBoard;
use crate::summary::{OperationReport, Tally};
use crate::{media, names};
use resolve::{Resolved, choose_platform, every_platform, fetch_child, list_tags, resolve_top};

/// What the client asked for.
#[derive(Debug)]
pub struct PullRequest {
    /// `fromImage`, in any form docker accepts (`foo`, `docker.io/library/foo`, `reg:5000/a/b:1`).
    pub image: String,
    /// A tag or a digest; replaces what `image` carries.
    pub tag: Option<String>,
    /// Which manifests of an index to fetch.
    pub platforms: PullPlatforms,
    pub auth: AuthConfig,
}

/// Which manifests of a multi-platform index a pull fetches, with their content.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum PullPlatforms {
    /// The best match for the host, and its attestations (no `platform` given).
    #[default]
    Host,
    /// The manifest of this platform, matched exactly after normalisation, and its attestations.
    One(Platform),
    /// Every manifest the index lists, attestations included (`platform=all`).
    All,
}

impl PullPlatforms {
    /// The value of pull's `platform` that asks for every platform. moby refuses it (it is
    /// neither an OS nor an architecture), so it gives no request moby serves another meaning;
    /// the docker CLI passes `--platform` through unchecked, so `docker pull --platform all` works.
    pub const ALL: &'static str = "all";

    /// Reads pull's `platform` parameter: [`PullPlatforms::ALL`], or `os/arch[/variant]` with
    /// containerd's error for anything else.
    pub fn parse(text: &str) -> Result<PullPlatforms, EngineError> {
        if text == Self::ALL {
            return Ok(PullPlatforms::All);
        }
        Platform::parse_specifier(text).map(PullPlatforms::One)
    }

    /// The one platform asked for, if any.
    fn requested(&self) -> Option<&Platform> {
        match self {
            PullPlatforms::One(platform) => Some(platform),
            PullPlatforms::Host | PullPlatforms::All => None,
        }
    }
}

/// A pull resolved and ready to run.
pub struct PullJob {
    engine: Engine,
    /// What the client named: a tag, a digest, or a repository (every tag).
    reference: Reference,
    images: Vec<PullImage>,
    /// What was asked for (a mismatch of a single-platform image with one platform is warned
    /// of).
    platforms: PullPlatforms,
    sources: Vec<Source>,
    /// What the pull moved, for its summary line.
    tally: Arc<Tally>,
}

/// One image of a pull: one tag of the repository, or the one tag or digest asked for.
struct PullImage {
    reference: Reference,
    top: Resolved,
    /// For an index: the platform manifests to fetch (one, or every one with `platform=all`).
    platform_entries: Vec<IndexEntry>,
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
            let platform_entries = match (&request.platforms, top.is_index()) {
                (_, false) => Vec::new(),
                (PullPlatforms::All, true) => every_platform(&top)?,
                (platforms, true) => vec![choose_platform(
                    &top,
                    platforms.requested(),
                    &self.host_platform,
                )?],
            };
            images.push(PullImage {
                reference,
                top,
                platform_entries,
            });
        }
        Ok(PullJob {
            engine: self.clone(),
            reference,
            images,
            platforms: request.platforms,
            sources,
            tally: Arc::default(),
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
        let report = OperationReport::start_logged(
            Operation::Pull,
            self.engine.observer.clone(),
            self.reference.to_string(),
            self.reference.domain().to_owned(),
            Arc::clone(&self.tally),
        );
        let result = self.pull_all(board).await;
        report.finish(&result);
        result
    }

    async fn pull_all(&self, board: &ProgressBoard<PullEvent>) -> Result<(), EngineError> {
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
        let id = match image.reference.tag() {
            Some(tag) => tag.to_owned(),
            None => image.reference.to_string(),
        };
        board.post(PullEvent::PullingFrom {
            id,
            repository: image.reference.path().to_owned(),
        });
        self.store_manifest(lease, &image.top).await?;
        let manifests = if image.platform_entries.is_empty() {
            vec![ChildManifest::read(&image.top)?]
        } else {
            self.child_manifests(lease, &image.platform_entries).await?
        };
        let mut configs = Vec::new();
        let mut layers = Vec::new();
        for manifest in &manifests {
            let (config, own_layers) = image_blobs(manifest)?;
            configs.push(config);
            layers.extend(own_layers);
        }
        let shown = layers::fetch_content(
            engine,
            &self.sources,
            lease,
            (&configs, &layers),
            board,
            &self.tally,
        );
        let attested = match self.platforms {
            // Everything was asked for: an attestation that cannot be fetched fails the pull.
            PullPlatforms::All => {
                let entries = attestation_entries(image, |_| true);
                let (_, attested) =
                    futures_util::try_join!(shown, self.fetch_attestations(&entries, lease))?;
                attested
            }
            PullPlatforms::Host | PullPlatforms::One(_) => {
                shown.await?;
                self.fetch_attestations_quietly(image, lease).await
            }
        };
        // The origin holds what was pulled (a mirror only caches it): later pushes to that
        // registry mount these blobs instead of uploading them again, and a push of a partly
        // pulled index fetches the rest from where the index (the top manifest) is.
        let blobs: Vec<Digest> = std::iter::once(&image.top.descriptor)
            .chain(manifests.iter().map(|m| &m.descriptor))
            .chain(&configs)
            .chain(&layers)
            .map(|d| d.digest.clone())
            .chain(attested)
            .collect();
        let (host, path) = (
            image.reference.domain().to_owned(),
            image.reference.path().to_owned(),
        );
        let recorder = engine.clone();
        engine
            .blocking(move || recorder.record_sources(&host, &path, &blobs, Durability::Immediate))
            .await?;
        if let [config] = configs.as_slice()
            && let Some(note) = self.platform_mismatch(image, config).await?
        {
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

    /// Child manifests of the index, in order, a few fetched at once: an index may list
    /// thousands.
    async fn child_manifests(
        &self,
        lease: &Lease,
        entries: &[IndexEntry],
    ) -> Result<Vec<ChildManifest>, EngineError> {
        // The futures are made first: a stream mapping borrowed entries is not `Send` for every
        // lifetime, which the response body needs.
        let fetches: Vec<_> = entries
            .iter()
            .map(|entry| self.child_manifest(lease, entry))
            .collect();
        futures_util::stream::iter(fetches)
            .buffered(crate::image_content::MANIFEST_FETCHES_AT_ONCE)
            .try_collect()
            .await
    }

    /// A child manifest of the index: from the store when an earlier pull brought it, else from
    /// the registry, stored under the lease.
    async fn child_manifest(
        &self,
        lease: &Lease,
        entry: &IndexEntry,
    ) -> Result<ChildManifest, EngineError> {
        if let Some(stored) = self.stored_manifest(lease, &entry.descriptor).await? {
            return ChildManifest::read(&stored);
        }
        let fetched = fetch_child(&self.sources, entry, &self.engine.retry).await?;
        self.store_manifest(lease, &fetched).await?;
        ChildManifest::read(&fetched)
    }

    /// The index's attestation manifests for the platform pulled (BuildKit's provenance and
    /// SBOM, small), with their content, so that a save or push of the image carries them. moby
    /// leaves them behind. Quietly, as they are not layers of the image: when they cannot be
    /// fetched, that is logged and the pull goes on without them. Returns the manifests and
    /// blobs fetched.
    async fn fetch_attestations_quietly(&self, image: &PullImage, lease: &Lease) -> Vec<Digest> {
        let subjects: Vec<&str> = image
            .platform_entries
            .iter()
            .map(|e| e.descriptor.digest.as_str())
            .collect();
        let entries =
            attestation_entries(image, |entry| subjects.iter().any(|s| attests(entry, s)));
        match self.fetch_attestations(&entries, lease).await {
            Ok(blobs) => blobs,
            Err(e) => {
                tracing::warn!(
                    image = %image.reference,
                    error = %e,
                    "attestation manifests could not be pulled; the image is pulled without them"
                );
                Vec::new()
            }
        }
    }

    /// Fetches attestation manifests and their config and layers, without progress lines (moby
    /// shows only image layers). Returns the digests of all of them, manifests included.
    async fn fetch_attestations(
        &self,
        entries: &[IndexEntry],
        lease: &Lease,
    ) -> Result<Vec<Digest>, EngineError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let mut manifests = self.child_manifests(lease, entries).await?;
        let mut configs = Vec::new();
        let mut blobs = Vec::new();
        for manifest in manifests.iter_mut() {
            configs.extend(manifest.doc.config.take());
            blobs.append(&mut manifest.doc.layers);
        }
        let unseen = ProgressBoard::new(PullEvent::progress);
        layers::fetch_content(
            &self.engine,
            &self.sources,
            lease,
            (&configs, &blobs),
            &unseen,
            &self.tally,
        )
        .await?;
        // Recorded as the image's own content is: pushes elsewhere in the registry mount them.
        Ok(manifests
            .iter()
            .map(|m| &m.descriptor)
            .chain(&configs)
            .chain(&blobs)
            .map(|d| d.digest.clone())
            .collect())
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
        let Some(wanted) = self.platforms.requested().cloned() else {
            return Ok(None);
        };
        if !image.platform_entries.is_empty() {
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

/// The config and the distributable layers of an image manifest.
fn image_blobs(manifest: &ChildManifest) -> Result<(Descriptor, Vec<Descriptor>), EngineError> {
    let config = manifest.doc.config.clone().ok_or_else(|| {
        EngineError::InvalidArgument(format!(
            "manifest {} has no config",
            manifest.descriptor.digest
        ))
    })?;
    let layers = manifest
        .doc
        .layers
        .iter()
        .filter(|l| !media::is_non_distributable(&l.media_type))
        .cloned()
        .collect();
    Ok((config, layers))
}

/// A manifest of the image, read: its bytes are in the store, and an index may list thousands
/// of them, so only what the pull needs of each is kept.
struct ChildManifest {
    descriptor: Descriptor,
    doc: ManifestDoc,
}

impl ChildManifest {
    fn read(manifest: &Resolved) -> Result<ChildManifest, EngineError> {
        let doc = serde_json::from_slice(&manifest.bytes).map_err(|e| {
            EngineError::InvalidArgument(format!(
                "manifest {} is malformed: {e}",
                manifest.descriptor.digest
            ))
        })?;
        Ok(ChildManifest {
            descriptor: manifest.descriptor.clone(),
            doc,
        })
    }
}

/// The attestation manifests of the image's index that `wanted` selects; none for a manifest.
fn attestation_entries(image: &PullImage, wanted: impl Fn(&IndexEntry) -> bool) -> Vec<IndexEntry> {
    if !image.top.is_index() {
        return Vec::new();
    }
    match parse_manifest(&image.top.descriptor.digest, &image.top.bytes) {
        Ok(index) => index
            .manifests
            .into_iter()
            .filter(|e| e.is_attestation() && wanted(e))
            .collect(),
        Err(_) => Vec::new(),
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

    #[test]
    fn platform_all_is_every_platform_and_anything_else_a_platform() {
        assert_eq!(PullPlatforms::parse("all").unwrap(), PullPlatforms::All);
        assert_eq!(
            PullPlatforms::parse("linux/arm64").unwrap(),
            PullPlatforms::One(Platform::parse_specifier("linux/arm64").unwrap())
        );
        // moby's words for what is neither; the keyword is exact, as the CLI lowercases.
        for text in ["ALL", "bogus", "all/"] {
            let err = PullPlatforms::parse(text).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument, "{text}");
        }
        assert_eq!(
            PullPlatforms::parse("bogus").unwrap_err().to_string(),
            "\"bogus\": unknown operating system or architecture: invalid argument"
        );
        assert_eq!(PullPlatforms::All.requested(), None);
    }
}
