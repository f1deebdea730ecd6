//! Daemon-wide blob uploads to registries.
//!
//! Every blob upload runs as one shared transfer keyed by (registry, repository, digest):
//! concurrent pushes of the same blob to the same repository watch the same task, so it is
//! uploaded once, and it is cancelled when no push watches it any more. Uploads of the same blob
//! to other repositories of that registry wait for it and mount the blob (`leaders`). At most
//! `max-concurrent-uploads` of them send bytes at once, the largest first. A blob comes from the
//! store, or is relayed from another repository that holds it (a push completing a partly pulled
//! image). An upload session left unfinished (a failure, a cancellation) is cancelled at the
//! registry.

mod existence;
mod leaders;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::Either;
use hoist_reference::Digest;
use hoist_registry::{
    BlobSource, MountOutcome, Progress, RegistryError, Repository, UploadMode, UploadSession,
};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(crate) use existence::UnsettledPushes;

use crate::error::EngineError;
use crate::observe::{Direction, RetryCause, SkipReason};
use crate::retry::RetryPolicy;
use crate::transfer::{
    PriorityPermit, Reporter, SharedTransfers, SlotLoad, Transfer, TransferState,
};
use leaders::{Lead, Leaders};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct UploadKey {
    host: String,
    repository: String,
    digest: Digest,
}

/// What an upload task is doing, beyond the states every transfer has.
#[derive(Clone, Debug)]
pub(crate) enum UploadPhase {
    /// Asking the registry whether it has the blob, or mounting it from another repository.
    Checking,
    /// An upload attempt is sending bytes; `attempt` distinguishes retries.
    Uploading { attempt: u32 },
}

pub(crate) type UploadState = TransferState<UploadPhase, BlobOutcome>;

/// A watcher's handle on an upload. Dropping the last one cancels the upload.
pub(crate) type Upload = Transfer<UploadPhase, BlobOutcome>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BlobOutcome {
    AlreadyExists,
    Mounted { from: String },
    Pushed,
}

/// Where the bytes of an uploaded blob come from.
pub(crate) enum UploadSource {
    /// A blob file of the local store.
    Stored(BlobSource),
    /// Another repository (of this registry or another) that holds the blob: its bytes are read
    /// from there as they are sent, never stored here.
    Relayed {
        origin: Repository,
        digest: Digest,
        size: u64,
    },
}

impl UploadSource {
    fn digest(&self) -> &Digest {
        match self {
            UploadSource::Stored(blob) => &blob.digest,
            UploadSource::Relayed { digest, .. } => digest,
        }
    }

    fn size(&self) -> u64 {
        match self {
            UploadSource::Stored(blob) => blob.size,
            UploadSource::Relayed { size, .. } => *size,
        }
    }
}

/// Everything a blob upload needs.
pub(crate) struct BlobJob {
    pub repository: Repository,
    pub blob: UploadSource,
    /// Ask the registry whether it has the blob before anything else (see `existence`).
    pub check_existing: bool,
    /// Other repositories on the same registry known to hold the blob, best candidate first.
    pub mount_from: Vec<String>,
    /// Set when the registry is configured for chunked uploads (relayed blobs always go in one
    /// `PUT`: a relay cannot resume from an offset).
    pub chunk_size: Option<u64>,
}

#[derive(Clone, Debug)]
pub(crate) struct UploadSettings {
    pub retry: RetryPolicy,
    /// An attempt whose byte counter has not moved for this long is aborted and retried.
    pub stall_timeout: Duration,
    /// Chunk size used after a single PUT of a blob failed mid-body.
    pub fallback_chunk_size: u64,
}

pub(crate) struct Uploads {
    transfers: SharedTransfers<UploadKey, UploadPhase, BlobOutcome>,
    leaders: Leaders<UploadPhase, BlobOutcome>,
    /// Existence checks and mounts are cheap; they get their own, wider lane so that they never
    /// queue behind uploads.
    checks: Arc<Semaphore>,
    settings: UploadSettings,
    /// Cancellations of upload sessions left open by uploads that were stopped mid-way.
    cleanups: TaskTracker,
}

/// How long cancelling a left-over upload session may take.
const SESSION_CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

impl Uploads {
    pub fn new(max_uploads: usize, settings: UploadSettings, stop: CancellationToken) -> Uploads {
        Uploads {
            transfers: SharedTransfers::new("blob transfer", max_uploads, stop),
            leaders: Leaders::default(),
            checks: Arc::new(Semaphore::new(16)),
            settings,
            cleanups: TaskTracker::new(),
        }
    }

    /// Uploads sending bytes, and uploads waiting for a slot.
    pub fn load(&self) -> SlotLoad {
        self.transfers.load()
    }

    /// Changes `max-concurrent-uploads`; uploads running carry on.
    pub fn resize(&self, max_uploads: usize) {
        self.transfers.resize(max_uploads);
    }

    /// Waits until the sessions of stopped uploads are cancelled (each within
    /// `SESSION_CANCEL_TIMEOUT`), or `timeout` passes.
    pub async fn wait_session_cleanups(&self, timeout: Duration) {
        self.cleanups.close();
        let _ = tokio::time::timeout(timeout, self.cleanups.wait()).await;
    }

    /// Joins the running upload of this blob to this repository, or starts one, which follows
    /// a running upload of the blob to another repository of the registry if there is one.
    pub fn upload(&self, job: BlobJob) -> Arc<Upload> {
        let host = job.repository.host().to_owned();
        let repository = job.repository.path().to_owned();
        let digest = job.blob.digest().clone();
        self.leaders.start(&host, &repository, &digest, |lead| {
            let key = UploadKey {
                host: host.clone(),
                repository: repository.clone(),
                digest: digest.clone(),
            };
            let checks = Arc::clone(&self.checks);
            let settings = self.settings.clone();
            let cleanups = self.cleanups.clone();
            self.transfers
                .join_or_start(key, UploadPhase::Checking, |reporter| {
                    BlobWorker {
                        job,
                        reporter,
                        checks,
                        settings,
                        cleanups,
                    }
                    .run(lead)
                })
        })
    }
}

struct BlobWorker {
    job: BlobJob,
    reporter: Reporter<UploadPhase, BlobOutcome>,
    checks: Arc<Semaphore>,
    settings: UploadSettings,
    cleanups: TaskTracker,
}

/// An upload session this daemon opened and has not finished with. Dropped while armed (the
/// attempt using it failed, its push was cancelled while it waited for a slot or sent bytes,
/// or the daemon stops), it cancels the session at the registry with a `DELETE`, in the
/// background, so the registry can let go of what it received; a successful upload disarms it.
struct OpenSession {
    repository: Repository,
    session: UploadSession,
    armed: bool,
    cleanups: TaskTracker,
}

impl OpenSession {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for OpenSession {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // Dropped inside a task of the runtime (the transfer's); no runtime means the process
        // is exiting and the session is left to the registry's own expiry.
        if tokio::runtime::Handle::try_current().is_ok() {
            let (repository, session) = (self.repository.clone(), self.session.clone());
            self.cleanups.spawn(async move {
                let cancel = repository.cancel_upload(&session);
                let _ = tokio::time::timeout(SESSION_CANCEL_TIMEOUT, cancel).await;
            });
        }
    }
}

/// Why an upload attempt ended without success.
enum AttemptError {
    Registry(RegistryError),
    Stalled,
}

impl BlobWorker {
    async fn run(
        mut self,
        lead: Option<Lead<UploadPhase, BlobOutcome>>,
    ) -> Result<BlobOutcome, EngineError> {
        let digest = self.job.blob.digest().clone();
        if let Some(lead) = lead {
            self.follow_leader(lead).await;
        }
        let policy = &self.settings.retry;
        let host = self.job.repository.host();
        let mut session = match self.check_and_mount().await? {
            Ok(outcome) => {
                let reason = match outcome {
                    BlobOutcome::Mounted { .. } => SkipReason::Mounted,
                    BlobOutcome::AlreadyExists | BlobOutcome::Pushed => SkipReason::Exists,
                };
                policy.observer.blob_skipped(host, reason);
                return Ok(outcome);
            }
            // Armed at once: the wait for a slot may end in a cancellation.
            Err(session) => session.map(|session| self.open_session(session)),
        };
        // Held while an attempt runs; given back during each wait between attempts.
        let mut permit = self.upload_permit().await;
        let mut chunked = self.job.chunk_size;
        let mut attempt = 1;
        let mut first_failure = None;
        loop {
            self.reporter.show(UploadPhase::Uploading { attempt });
            let outcome = self.attempt(session.take(), chunked).await;
            let err = match outcome {
                Ok(()) => {
                    policy
                        .observer
                        .blob_transferred(Direction::Push, host, self.job.blob.size());
                    return Ok(BlobOutcome::Pushed);
                }
                Err(e) => e,
            };
            // "Failed mid-body": the attempt sent part of the blob, whichever way the failure
            // surfaced (a write error, a reset seen while reading, a proxy's 5xx).
            let sent = self.reporter.progress.get();
            let part_sent = sent > 0 && sent < self.job.blob.size();
            let (retryable, retry_after, interrupted, cause, message) = match &err {
                AttemptError::Registry(e) => (
                    e.is_retryable() || e.is_upload_unknown(),
                    e.retry_after(),
                    e.body_interrupted() || part_sent,
                    RetryCause::of(e),
                    e.to_string(),
                ),
                AttemptError::Stalled => (
                    true,
                    None,
                    part_sent,
                    RetryCause::Stall,
                    format!(
                        "upload of {digest} made no progress for {:?}",
                        self.settings.stall_timeout
                    ),
                ),
            };
            if !retryable || attempt >= policy.max_attempts {
                let last = match err {
                    AttemptError::Registry(e) => EngineError::Registry(e),
                    AttemptError::Stalled => EngineError::Internal(message),
                };
                return Err(EngineError::after_attempts(last, attempt, first_failure));
            }
            policy.note_retry(
                Direction::Push,
                host,
                cause,
                attempt,
                &format!("upload of {digest}"),
                &message,
            );
            first_failure.get_or_insert_with(|| {
                if interrupted {
                    format!(
                        "{message}, with {sent} of {} bytes handed to the connection",
                        self.job.blob.size()
                    )
                } else {
                    message
                }
            });
            if interrupted && chunked.is_none() {
                // A single PUT died mid-body: smaller requests get through flaky links and can
                // resume, so retry this blob in chunks.
                chunked = Some(self.settings.fallback_chunk_size);
            }
            // Every retry waits, a lost upload session too: the failure that lost it (a reset,
            // a proxy restart) is usually still going on, and retrying at once burns the
            // attempts in a second. The slot goes to someone else meanwhile.
            drop(permit);
            self.reporter
                .retry_countdown(policy.delay(attempt, retry_after))
                .await;
            permit = self.upload_permit().await;
            attempt += 1;
        }
    }

    /// Waits for the leader's upload of this blob to another repository to end; when it put the
    /// blob there, that repository is the first to mount from. Holds no slot meanwhile.
    async fn follow_leader(&mut self, lead: Lead<UploadPhase, BlobOutcome>) {
        self.reporter.show_waiting();
        match lead.upload.follow(|_| {}).await {
            Ok(_) => {
                self.job.mount_from.retain(|r| *r != lead.repository);
                self.job.mount_from.insert(0, lead.repository);
            }
            Err(e) => tracing::debug!(
                digest = %self.job.blob.digest(),
                from = %lead.repository,
                error = %e,
                "the upload this one waited for failed; uploading on its own"
            ),
        }
        self.reporter.show(UploadPhase::Checking);
    }

    /// Ok(outcome) when nothing needs uploading; Err(session) with a session a mount opened.
    async fn check_and_mount(
        &self,
    ) -> Result<Result<BlobOutcome, Option<UploadSession>>, EngineError> {
        let repo = &self.job.repository;
        let digest = self.job.blob.digest();
        if !self.job.check_existing && self.job.mount_from.is_empty() {
            return Ok(Err(None));
        }
        let _lane = self
            .checks
            .acquire()
            .await
            .map_err(|_| EngineError::Internal("check lane closed".into()))?;
        if self.job.check_existing {
            let exists = self
                .with_retries(|| async move { repo.blob_exists(digest).await })
                .await?;
            if exists.is_some() {
                return Ok(Ok(BlobOutcome::AlreadyExists));
            }
        }
        let mut session = None;
        for from in &self.job.mount_from {
            match repo.mount_blob(digest, from).await {
                Ok(MountOutcome::Mounted) => {
                    return Ok(Ok(BlobOutcome::Mounted { from: from.clone() }));
                }
                Ok(MountOutcome::Session(s)) => {
                    // Not mountable from there, but the registry opened a session we can use.
                    session = Some(s);
                    break;
                }
                Ok(MountOutcome::NotMounted) => {}
                Err(e) => {
                    tracing::debug!(%digest, %from, error = %e, "mount failed; trying a plain upload")
                }
            }
        }
        Ok(Err(session))
    }

    async fn upload_permit(&self) -> PriorityPermit {
        self.reporter.slot(self.job.blob.size()).await
    }

    fn open_session(&self, session: UploadSession) -> OpenSession {
        OpenSession {
            repository: self.job.repository.clone(),
            session,
            armed: true,
            cleanups: self.cleanups.clone(),
        }
    }

    async fn attempt(
        &self,
        session: Option<OpenSession>,
        chunked: Option<u64>,
    ) -> Result<(), AttemptError> {
        let repo = &self.job.repository;
        let open = match session {
            Some(open) => open,
            None => self.open_session(repo.start_upload().await.map_err(AttemptError::Registry)?),
        };
        let session = open.session.clone();
        let mode = match chunked {
            Some(chunk_size) => UploadMode::Chunked { chunk_size },
            None => UploadMode::Monolithic,
        };
        let progress = &self.reporter.progress;
        progress.set(0);
        let upload = match &self.job.blob {
            UploadSource::Stored(blob) => {
                Either::Left(repo.upload_blob(session, blob, mode, progress))
            }
            UploadSource::Relayed {
                origin,
                digest,
                size,
            } => Either::Right(repo.upload_relayed(session, digest, *size, origin, progress)),
        };
        let result = watch_stalls(
            upload,
            progress,
            self.job.blob.size(),
            self.settings.stall_timeout,
        )
        .await;
        if result.is_ok() {
            open.disarm();
        }
        result
    }

    /// Retries a body-less request (existence check) on transient errors, showing the countdown.
    async fn with_retries<T, F, Fut>(&self, mut op: F) -> Result<T, EngineError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, RegistryError>>,
    {
        let policy = &self.settings.retry;
        let mut attempt = 1;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() && attempt < policy.max_attempts => {
                    policy.note_retry(
                        Direction::Push,
                        self.job.repository.host(),
                        RetryCause::of(&e),
                        attempt,
                        &format!("existence check of {}", self.job.blob.digest()),
                        &e,
                    );
                    self.reporter
                        .retry_countdown(policy.delay(attempt, e.retry_after()))
                        .await;
                    self.reporter.show(UploadPhase::Checking);
                    attempt += 1;
                }
                Err(e) => return Err(EngineError::Registry(e)),
            }
        }
    }
}

/// Runs an upload, aborting it when its byte counter stops moving: a dead connection or a
/// registry that stopped reading would otherwise hang the push forever. Once every byte is sent
/// the registry is given five times longer to answer, since it hashes and stores the blob first.
async fn watch_stalls(
    upload: impl std::future::Future<Output = Result<(), RegistryError>>,
    progress: &Progress,
    size: u64,
    stall_timeout: Duration,
) -> Result<(), AttemptError> {
    tokio::pin!(upload);
    let tick = (stall_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut last = progress.get();
    let mut last_change = Instant::now();
    loop {
        tokio::select! {
            result = &mut upload => return result.map_err(AttemptError::Registry),
            _ = tokio::time::sleep(tick) => {
                let now = progress.get();
                if now != last {
                    last = now;
                    last_change = Instant::now();
                    continue;
                }
                let limit = if now >= size { stall_timeout * 5 } else { stall_timeout };
                if last_change.elapsed() >= limit {
                    return Err(AttemptError::Stalled);
                }
            }
        }
    }
}
