//! `POST /images/{name}/push`: sends local images to a registry, byte for byte.
//!
//! The work splits in two, as the API needs it: `prepare_push` resolves what to push and fails
//! with a status code before any output; `PushJob::run` then transfers, reporting progress on a
//! board, and fails in-stream.

mod complete;
mod plan;

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::try_join_all;
use hoist_reference::{Digest, Reference};
use hoist_registry::{Access, BlobSource, Credentials, Repository};
use hoist_store::{Descriptor, Durability, ImageChange, Lease};

use crate::auth::AuthConfig;
use crate::blocking::BlockingDrop;
use crate::engine::Engine;
use crate::error::EngineError;
use crate::events::Action;
use crate::image_content::{IndexEntry, read_manifest};
use crate::observe::{Direction, Operation, RetryCause, SkipReason};
use crate::platform::Platform;
use crate::progress::ProgressBoard;
use crate::retry::RetryPolicy;
use crate::summary::{OperationReport, Tally};
use crate::uploads::{BlobJob, BlobOutcome, Upload, UploadPhase, UploadSource, UploadState};
use crate::{media, names};
use plan::{PlanBlob, Planned, PushPlan, plan_push};

/// What the client asked for.
#[derive(Debug)]
pub struct PushRequest {
    /// The image name from the path, in either form (`docker.io/library/foo` or `foo`).
    pub name: String,
    /// Replaces a tag in `name`. None and no tag in `name`: every local tag of the repository.
    pub tag: Option<String>,
    /// Push only this platform's manifest (API >= 1.46).
    pub platform: Option<Platform>,
    pub auth: AuthConfig,
}

/// What the client sees of a push. Only the API knows how these look on the wire.
#[derive(Clone, Debug, PartialEq)]
pub enum PushEvent {
    /// "The push refers to repository [<name>]".
    Repository(String),
    Layer {
        id: String,
        state: LayerState,
    },
    Progress {
        id: String,
        current: u64,
        total: u64,
    },
    /// A free-form status line.
    Note(String),
    /// One tag is done: "<tag>: digest: <digest> size: <size>", then the PushResult aux.
    Pushed {
        tag: String,
        digest: Digest,
        size: u64,
    },
    /// moby's `manifestPushedInsteadOfIndex` aux message.
    ManifestPushedInsteadOfIndex {
        original_index: serde_json::Value,
        selected_manifest: serde_json::Value,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum LayerState {
    Preparing,
    Waiting,
    Pushed,
    AlreadyExists,
    MountedFrom(String),
    Retrying { seconds: u64 },
}

impl PushEvent {
    pub fn progress(id: &str, current: u64, total: u64) -> PushEvent {
        PushEvent::Progress {
            id: id.to_owned(),
            current,
            total,
        }
    }
}

/// A push resolved and ready to run.
pub struct PushJob {
    engine: Engine,
    repository: Reference,
    items: Vec<PushItem>,
    credentials: Credentials,
    /// What the push moved, for its summary line.
    tally: Arc<Tally>,
    /// What the client sent, for the credentials of a registry an image is completed from.
    auth: AuthConfig,
    /// Keeps the images' content from being collected while the push reads it.
    _lease: BlockingDrop<Lease>,
}

struct PushItem {
    tag: Reference,
    /// The image as stored.
    image: Descriptor,
    /// What to push under the tag: the image, or the one platform manifest asked for.
    target: Descriptor,
}

/// Whether a push looks for blobs in the registry before sending them, decided once per push.
struct ExistenceChecks {
    /// A push of this daemon to the repository is running or ended without success.
    unsettled: bool,
    answer: tokio::sync::OnceCell<bool>,
}

impl Engine {
    /// Resolves a push request against the local store. Errors here come before any output:
    /// 400 for a bad name or platform, 404 for a missing image, tag or platform.
    pub fn prepare_push(&self, request: PushRequest) -> Result<PushJob, EngineError> {
        let named = Reference::parse_normalized(&request.name)?;
        if named.digest().is_some() {
            return Err(EngineError::InvalidArgument(
                "cannot push a digest reference".into(),
            ));
        }
        let tagged = match request.tag.as_deref() {
            Some(tag) if !tag.is_empty() => Some(named.with_tag(tag)?),
            _ => named.tag().is_some().then(|| named.clone()),
        };
        let mut items = Vec::new();
        match tagged {
            Some(tag) => {
                let record = self
                    .store
                    .image(&names::tag_record_name(&tag))
                    .ok_or_else(|| EngineError::NoSuchImage(tag.familiar_string()))?;
                items.push(PushItem {
                    tag,
                    image: record.target.clone(),
                    target: record.target,
                });
            }
            None => {
                for (tag, view) in names::tags_in_repository(&self.store, &named) {
                    items.push(PushItem {
                        tag,
                        image: view.target.clone(),
                        target: view.target,
                    });
                }
                if items.is_empty() {
                    return Err(EngineError::NoSuchImage(named.familiar_string()));
                }
            }
        }
        if let Some(platform) = &request.platform {
            for item in &mut items {
                item.target = self.select_platform(&item.tag, &item.target, platform)?;
            }
        }
        let lease = self.store.lease();
        for item in &items {
            lease.protect(&item.image.digest);
        }
        Ok(PushJob {
            engine: self.clone(),
            credentials: request.auth.credentials_for(named.domain()),
            auth: request.auth,
            repository: named.name_only(),
            items,
            tally: Arc::default(),
            _lease: BlockingDrop::new(lease),
        })
    }

    /// The manifest of `image` for `platform`, matched as containerd's `OnlyStrict` does.
    fn select_platform(
        &self,
        tag: &Reference,
        image: &Descriptor,
        platform: &Platform,
    ) -> Result<Descriptor, EngineError> {
        let not_provided = || {
            EngineError::NotFound(format!(
                "image with reference {tag} was found but does not provide the specified platform ({})",
                platform.format()
            ))
        };
        if media::is_index(&image.media_type) {
            let index = read_manifest(&self.store, image)?;
            return index
                .manifests
                .iter()
                .find(|e| {
                    !e.is_attestation() && e.platform.as_ref().is_some_and(|p| platform.matches(p))
                })
                .map(|e| e.descriptor.clone())
                .ok_or_else(not_provided);
        }
        let described = crate::image_content::describe_target(&self.store, image, platform)?;
        match described {
            Some(img) if platform.matches(&img.platform()) => Ok(image.clone()),
            _ => Err(not_provided()),
        }
    }
}

impl PushJob {
    /// The repository being pushed to, fully qualified.
    pub fn repository(&self) -> &Reference {
        &self.repository
    }

    /// Pushes every resolved tag, reporting on `board`. Dropping the future cancels every
    /// transfer no other push is watching.
    pub async fn run(self, board: &ProgressBoard<PushEvent>) -> Result<(), EngineError> {
        let reference = match self.items.as_slice() {
            [one] => one.tag.to_string(),
            _ => self.repository.to_string(),
        };
        let report = OperationReport::start_logged(
            Operation::Push,
            self.engine.observer.clone(),
            reference,
            self.repository.domain().to_owned(),
            Arc::clone(&self.tally),
        );
        let result = self.push_all(board).await;
        report.finish(&result);
        result
    }

    async fn push_all(&self, board: &ProgressBoard<PushEvent>) -> Result<(), EngineError> {
        board.post(PushEvent::Repository(self.repository.name()));
        let repository = self.engine.registries.repository(
            self.repository.domain(),
            self.repository.path(),
            Access::PullPush,
            self.credentials.clone(),
        );
        let (unsettled, settlement) = self
            .engine
            .unsettled_pushes
            .begin(repository.host(), repository.path());
        // Asked of the registry once, when a blob is about to be sent.
        let existence_checks = ExistenceChecks {
            unsettled,
            answer: tokio::sync::OnceCell::new(),
        };
        let mut confirmed: HashMap<Digest, BlobOutcome> = HashMap::new();
        for item in &self.items {
            self.push_item(item, &repository, &existence_checks, &mut confirmed, board)
                .await?;
        }
        settlement.succeeded();
        Ok(())
    }

    /// True when the registry says the repository has no tag; false when it has one or cannot
    /// tell (the existence checks then run as usual).
    async fn repository_is_empty(&self, repository: &Repository) -> bool {
        match repository.has_tags().await {
            Ok(has_tags) => !has_tags,
            Err(e) => {
                tracing::debug!(repository = %self.repository, error = %e, "could not list tags; checking every blob");
                false
            }
        }
    }

    /// Whether blobs are looked for in the registry before they are sent: always, unless the
    /// repository has no tag and no push of this daemon to it is unsettled.
    async fn check_existing(&self, repository: &Repository, checks: &ExistenceChecks) -> bool {
        *checks
            .answer
            .get_or_init(|| async {
                checks.unsettled || !self.repository_is_empty(repository).await
            })
            .await
    }

    /// Whether the registry already has the plan's root, which the store says this repository
    /// held (pushed there, or pulled from there, before). A registry takes a manifest only once
    /// what it references is in the repository, so its blobs need no checks of their own: one
    /// HEAD instead of the tag list and a HEAD per blob. A failed HEAD answers no, and the usual
    /// checks follow.
    async fn registry_has_root(&self, plan: &PushPlan, repository: &Repository) -> bool {
        let root = &plan.root.digest;
        if !self
            .engine
            .known_sources(repository.host(), root)
            .contains(repository.path())
        {
            return false;
        }
        match repository.manifest_digest(root.as_str()).await {
            Ok(found) => found.as_ref() == Some(root),
            Err(e) => {
                tracing::debug!(repository = %self.repository, error = %e, "could not look for the pushed manifest; checking every blob");
                false
            }
        }
    }

    async fn push_item(
        &self,
        item: &PushItem,
        repository: &Repository,
        existence_checks: &ExistenceChecks,
        confirmed: &mut HashMap<Digest, BlobOutcome>,
        board: &ProgressBoard<PushEvent>,
    ) -> Result<(), EngineError> {
        let engine = &self.engine;
        let display = item.tag.familiar_string();
        let plan = match plan_push(engine.store.clone(), &item.target, &display, repository).await?
        {
            Planned::Ready(plan) => *plan,
            Planned::Partial(partial) => self.complete_or_fall_back(partial, repository).await?,
        };
        if let Some(fallback) = &plan.fallback {
            let (original, selected) = (&fallback.original, &fallback.selected);
            board.post(PushEvent::Note(format!(
                "Pushing the {} manifest {} of {display} instead of the image index {}: {}",
                selected
                    .platform
                    .as_ref()
                    .map(Platform::format)
                    .unwrap_or_default(),
                selected.descriptor.digest,
                original.descriptor.digest,
                fallback.reason,
            )));
            board.post(PushEvent::ManifestPushedInsteadOfIndex {
                original_index: descriptor_json(original),
                selected_manifest: descriptor_json(selected),
            });
        }
        for layer in plan.display_layers() {
            board.post(PushEvent::Layer {
                id: layer.digest.short_id().to_owned(),
                state: LayerState::Preparing,
            });
        }
        if self.registry_has_root(&plan, repository).await {
            for blob in &plan.blobs {
                if blob.is_layer {
                    board.post(PushEvent::Layer {
                        id: blob.descriptor.digest.short_id().to_owned(),
                        state: LayerState::AlreadyExists,
                    });
                }
                self.tally.present(1);
                engine
                    .retry
                    .observer
                    .blob_skipped(repository.host(), SkipReason::Exists);
                confirmed.insert(blob.descriptor.digest.clone(), BlobOutcome::AlreadyExists);
            }
        } else {
            self.transfer_content(&plan, repository, existence_checks, confirmed, board)
                .await?;
        }
        let tag = item.tag.tag().unwrap_or("latest");
        put_manifest(
            repository,
            tag,
            &plan.root,
            plan.root_bytes.clone(),
            &engine.retry,
            &self.tally,
        )
        .await?;
        board.post(PushEvent::Pushed {
            tag: tag.to_owned(),
            digest: plan.root.digest.clone(),
            size: plan.root.size,
        });
        // Store writes are fsync'd; keep them off the async threads. Each blob's new home was
        // recorded as its upload ended (`transfer_blob`); the manifest pushed under the tag is
        // recorded now.
        let blobs = vec![plan.root.digest.clone()];
        let repo_digest = (plan.root.digest == item.image.digest).then(|| {
            (
                names::digest_record_name(&item.tag, &plan.root.digest),
                item.image.clone(),
            )
        });
        let (host, path) = (repository.host().to_owned(), repository.path().to_owned());
        let engine = self.engine.clone();
        // The registry holds the image whole by now: failing to remember where it went (on a
        // full disk) costs later pushes a mount, not this push its success, as in moby.
        if let Err(e) = self
            .engine
            .blocking(move || engine.record_push(&host, &path, &blobs, repo_digest))
            .await
        {
            tracing::warn!(error = %e, "could not record where the pushed image went");
        }
        let tag = item.tag.familiar_string();
        self.engine
            .log_image_event(Action::Push, &tag, &item.tag.familiar_name());
        Ok(())
    }

    /// Sends the plan's blobs (each checked for, mounted or uploaded) and its child manifests,
    /// everything but the root.
    async fn transfer_content(
        &self,
        plan: &PushPlan,
        repository: &Repository,
        existence_checks: &ExistenceChecks,
        confirmed: &mut HashMap<Digest, BlobOutcome>,
        board: &ProgressBoard<PushEvent>,
    ) -> Result<(), EngineError> {
        let check_existing = self.check_existing(repository, existence_checks).await;
        let transfers = plan
            .blobs
            .iter()
            .map(|blob| self.transfer_blob(blob, repository, check_existing, confirmed, board));
        let outcomes = try_join_all(transfers).await?;
        for (blob, outcome) in plan.blobs.iter().zip(outcomes) {
            confirmed.insert(blob.descriptor.digest.clone(), outcome);
        }
        for (child, bytes) in &plan.child_manifests {
            if repository
                .manifest_digest(child.digest.as_str())
                .await?
                .is_none()
            {
                put_manifest(
                    repository,
                    child.digest.as_str(),
                    child,
                    bytes.clone(),
                    &self.engine.retry,
                    &self.tally,
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Follows the transfer of one blob, translating its states into layer lines.
    async fn transfer_blob(
        &self,
        blob: &PlanBlob,
        repository: &Repository,
        check_existing: bool,
        confirmed: &HashMap<Digest, BlobOutcome>,
        board: &ProgressBoard<PushEvent>,
    ) -> Result<BlobOutcome, EngineError> {
        let desc = &blob.descriptor;
        let id = desc.digest.short_id().to_owned();
        let show = |state: LayerState| PushEvent::Layer {
            id: id.clone(),
            state,
        };
        if confirmed.contains_key(&desc.digest) {
            // Pushed for an earlier tag of this request.
            if blob.is_layer {
                board.post(show(LayerState::AlreadyExists));
            }
            return Ok(BlobOutcome::AlreadyExists);
        }
        let engine = &self.engine;
        let job = match &blob.relay_from {
            Some(origin) => self.relay_job(blob, origin, repository, check_existing),
            None => BlobJob {
                repository: repository.clone(),
                // SAFETY: content-store blobs are immutable: written once through a temporary
                // file renamed into place, never modified or truncated afterwards, only unlinked.
                #[allow(unsafe_code)]
                blob: UploadSource::Stored(unsafe {
                    BlobSource::new(
                        engine.store.blob_path(&desc.digest),
                        desc.digest.clone(),
                        desc.size,
                    )
                }),
                check_existing,
                mount_from: engine.mount_candidates(repository, &desc.digest),
                chunk_size: engine.chunk_size_for(repository.host()),
            },
        };
        let upload = engine.uploads.upload(job);
        let outcome = follow(&upload, blob.is_layer, &id, desc.size, board).await;
        self.tally.retried(upload.retries());
        let outcome = outcome?;
        match &outcome {
            BlobOutcome::Pushed => self.tally.transferred(desc.size),
            BlobOutcome::AlreadyExists => self.tally.present(1),
            BlobOutcome::Mounted { .. } => self.tally.mounted(),
        }
        if blob.relay_from.is_some() {
            // Not in the store, so not labelled (as after the push).
            return Ok(outcome);
        }
        // Recorded while this push still holds the upload: an upload of the blob to another
        // repository of the registry starting now finds it either running or recorded, and
        // mounts it from here.
        engine.record_source(repository.host(), repository.path(), &desc.digest);
        drop(upload);
        Ok(outcome)
    }
}

/// Follows one upload to its end, translating its states into layer lines when `show` is set.
async fn follow(
    upload: &Upload,
    show: bool,
    id: &str,
    size: u64,
    board: &ProgressBoard<PushEvent>,
) -> Result<BlobOutcome, EngineError> {
    let layer = |state: LayerState| PushEvent::Layer {
        id: id.to_owned(),
        state,
    };
    let mut waiting_shown = false;
    let mut bar_attempt = None;
    upload
        .follow(|state| {
            if !show {
                return;
            }
            match state {
                UploadState::Active(UploadPhase::Checking) | UploadState::Failed(_) => {}
                UploadState::Waiting => {
                    if !waiting_shown {
                        board.post(layer(LayerState::Waiting));
                        waiting_shown = true;
                    }
                }
                UploadState::Active(UploadPhase::Uploading { attempt }) => {
                    if bar_attempt != Some(*attempt) {
                        board.start_bar(id, upload.progress.clone(), size);
                        bar_attempt = Some(*attempt);
                    }
                }
                UploadState::Retrying { seconds } => {
                    board.finish_bar(id, layer(LayerState::Retrying { seconds: *seconds }));
                    bar_attempt = None;
                }
                UploadState::Done(outcome) => {
                    let state = match outcome {
                        BlobOutcome::AlreadyExists => LayerState::AlreadyExists,
                        BlobOutcome::Mounted { from } => LayerState::MountedFrom(from.clone()),
                        BlobOutcome::Pushed => LayerState::Pushed,
                    };
                    board.finish_bar(id, layer(state));
                }
            }
        })
        .await
}

async fn put_manifest(
    repository: &Repository,
    reference: &str,
    desc: &Descriptor,
    bytes: bytes::Bytes,
    policy: &RetryPolicy,
    tally: &Tally,
) -> Result<(), EngineError> {
    let mut attempt = 1;
    loop {
        match repository
            .put_manifest(reference, &desc.media_type, bytes.clone(), &desc.digest)
            .await
        {
            Ok(()) => return Ok(()),
            Err(e) if e.is_retryable() && attempt < policy.max_attempts => {
                policy.note_retry(
                    Direction::Push,
                    repository.host(),
                    RetryCause::of(&e),
                    attempt,
                    &format!("upload of manifest {}", desc.digest),
                    &e,
                );
                tally.retried(1);
                tokio::time::sleep(policy.delay(attempt, e.retry_after())).await;
                attempt += 1;
            }
            Err(e) => return Err(EngineError::Registry(e)),
        }
    }
}

fn descriptor_json(entry: &IndexEntry) -> serde_json::Value {
    serde_json::to_value(entry).unwrap_or(serde_json::Value::Null)
}

impl Engine {
    /// Remembers where pushed content now lives (for later cross-repository mounts and
    /// completions) and, when the image itself was pushed, its `repo@digest` name (RepoDigests).
    fn record_push(
        &self,
        host: &str,
        repository: &str,
        blobs: &[Digest],
        repo_digest: Option<(String, Descriptor)>,
    ) -> Result<(), EngineError> {
        let Some((name, target)) = repo_digest else {
            return self.record_sources(host, repository, blobs, Durability::Immediate);
        };
        let _guard = self
            .names_lock
            .lock()
            .map_err(|_| EngineError::Internal("names lock poisoned".into()))?;
        // Only an image that still has a name gets its RepoDigest: one removed while it was
        // being pushed stays removed.
        let still_stored = self
            .store
            .images()
            .iter()
            .any(|record| record.target.digest == target.digest);
        if still_stored && self.store.image(&name).is_none() {
            // One wait for the disk: the name's durable commit takes the homes with it.
            self.record_sources(host, repository, blobs, Durability::Deferred)?;
            self.store.apply(vec![ImageChange::Put { name, target }])?;
            return Ok(());
        }
        self.record_sources(host, repository, blobs, Durability::Immediate)
    }

    /// Repositories on the same registry known to hold `digest`, the one sharing the longest
    /// path prefix with the target first (containerd's choice), at most three.
    fn mount_candidates(&self, repository: &Repository, digest: &Digest) -> Vec<String> {
        let target = repository.path();
        let mut repos: Vec<String> = self
            .known_sources(repository.host(), digest)
            .into_iter()
            .filter(|r| r != target)
            .collect();
        let common = |r: &str| {
            r.split('/')
                .zip(target.split('/'))
                .take_while(|(a, b)| a == b)
                .count()
        };
        repos.sort_by(|a, b| common(b).cmp(&common(a)).then_with(|| a.cmp(b)));
        repos.truncate(3);
        repos
    }

    fn chunk_size_for(&self, host: &str) -> Option<u64> {
        self.config().registry.chunk_sizes.get(host).copied()
    }
}
