//! Daemon-wide blob transfers to registries.
//!
//! Every blob upload runs as one task keyed by (registry, repository, digest); concurrent pushes
//! of the same blob to the same repository watch the same task, so it is uploaded once. A task
//! lives while someone watches it: when the last watcher goes (its client disconnected), the task
//! is cancelled and its HTTP requests are dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use hoist_reference::Digest;
use hoist_registry::{
    BlobSource, MountOutcome, Progress, RegistryError, Repository, UploadMode, UploadSession,
};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use super::retry::{RetryPolicy, countdown};
use super::scheduler::{PriorityPermit, PrioritySemaphore};
use crate::EngineError;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct TransferKey {
    host: String,
    repository: String,
    digest: Digest,
}

/// What a watcher sees of a transfer. Only the latest state is kept; watchers may skip some.
#[derive(Clone, Debug)]
pub(crate) enum TransferState {
    Checking,
    Waiting,
    /// An upload attempt is sending bytes; `attempt` distinguishes retries.
    Uploading {
        attempt: u32,
    },
    Retrying {
        seconds: u64,
    },
    Done(BlobOutcome),
    Failed(Arc<EngineError>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BlobOutcome {
    AlreadyExists,
    Mounted { from: String },
    Pushed,
}

/// A watcher's handle on a transfer. Dropping the last one cancels the transfer.
pub(crate) struct Transfer {
    pub state: watch::Receiver<TransferState>,
    pub progress: Progress,
    cancel: CancellationToken,
}

impl Drop for Transfer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Everything a blob upload needs.
pub(crate) struct BlobJob {
    pub repository: Repository,
    pub blob: BlobSource,
    /// Ask the registry whether it has the blob before anything else (see `existence`).
    pub check_existing: bool,
    /// Other repositories on the same registry known to hold the blob, best candidate first.
    pub mount_from: Vec<String>,
    /// Set when the registry is configured for chunked uploads.
    pub chunk_size: Option<u64>,
}

#[derive(Clone, Debug)]
pub(crate) struct TransferSettings {
    pub retry: RetryPolicy,
    /// An attempt whose byte counter has not moved for this long is aborted and retried.
    pub stall_timeout: Duration,
    /// Chunk size used after a single PUT of a blob failed mid-body.
    pub fallback_chunk_size: u64,
}

pub(crate) struct TransferManager {
    uploads: Arc<PrioritySemaphore>,
    /// Existence checks and mounts are cheap; they get their own, wider lane so that they never
    /// queue behind uploads.
    checks: Arc<Semaphore>,
    active: Mutex<HashMap<TransferKey, Weak<Transfer>>>,
    settings: TransferSettings,
}

impl TransferManager {
    pub fn new(max_uploads: usize, settings: TransferSettings) -> TransferManager {
        TransferManager {
            uploads: PrioritySemaphore::new(max_uploads),
            checks: Arc::new(Semaphore::new(16)),
            active: Mutex::new(HashMap::new()),
            settings,
        }
    }

    /// Joins the running transfer of this blob to this repository, or starts one.
    pub fn upload(&self, job: BlobJob) -> Arc<Transfer> {
        let key = TransferKey {
            host: job.repository.host().to_owned(),
            repository: job.repository.path().to_owned(),
            digest: job.blob.digest.clone(),
        };
        let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        active.retain(|_, w| w.strong_count() > 0);
        if let Some(existing) = active.get(&key).and_then(Weak::upgrade)
            && !matches!(*existing.state.borrow(), TransferState::Failed(_))
        {
            return existing;
        }
        let (tx, rx) = watch::channel(TransferState::Checking);
        let cancel = CancellationToken::new();
        let progress = Progress::default();
        let transfer = Arc::new(Transfer {
            state: rx,
            progress: progress.clone(),
            cancel: cancel.clone(),
        });
        active.insert(key, Arc::downgrade(&transfer));
        let worker = BlobWorker {
            job,
            state: tx,
            progress,
            uploads: Arc::clone(&self.uploads),
            checks: Arc::clone(&self.checks),
            settings: self.settings.clone(),
        };
        tokio::spawn(async move {
            let state = worker.state.clone();
            match cancel.run_until_cancelled(worker.run()).await {
                Some(Ok(outcome)) => {
                    let _ = state.send(TransferState::Done(outcome));
                }
                Some(Err(e)) => {
                    let _ = state.send(TransferState::Failed(Arc::new(e)));
                }
                None => tracing::debug!("blob transfer cancelled: no client is waiting for it"),
            }
        });
        transfer
    }
}

struct BlobWorker {
    job: BlobJob,
    state: watch::Sender<TransferState>,
    progress: Progress,
    uploads: Arc<PrioritySemaphore>,
    checks: Arc<Semaphore>,
    settings: TransferSettings,
}

/// Why an upload attempt ended without success.
enum AttemptError {
    Registry(RegistryError),
    Stalled,
}

impl BlobWorker {
    async fn run(self) -> Result<BlobOutcome, EngineError> {
        let digest = self.job.blob.digest.clone();
        let mut session = match self.check_and_mount().await? {
            Ok(outcome) => return Ok(outcome),
            Err(session) => session,
        };
        let mut permit = Some(self.upload_permit().await);
        let mut chunked = self.job.chunk_size;
        let policy = &self.settings.retry;
        let mut attempt = 1;
        loop {
            let _ = self.state.send(TransferState::Uploading { attempt });
            let outcome = self.attempt(session.take(), chunked).await;
            let err = match outcome {
                Ok(()) => return Ok(BlobOutcome::Pushed),
                Err(e) => e,
            };
            // "Failed mid-body": the attempt sent part of the blob, whichever way the failure
            // surfaced (a write error, a reset seen while reading, a proxy's 5xx).
            let sent = self.progress.get();
            let part_sent = sent > 0 && sent < self.job.blob.size;
            let (retryable, retry_after, interrupted, message) = match &err {
                AttemptError::Registry(e) => (
                    e.is_retryable() || e.is_upload_unknown(),
                    e.retry_after(),
                    e.body_interrupted() || part_sent,
                    e.to_string(),
                ),
                AttemptError::Stalled => (
                    true,
                    None,
                    part_sent,
                    format!(
                        "upload of {digest} made no progress for {:?}",
                        self.settings.stall_timeout
                    ),
                ),
            };
            if !retryable || attempt >= policy.max_attempts {
                return Err(match err {
                    AttemptError::Registry(e) => EngineError::Registry(e),
                    AttemptError::Stalled => EngineError::Internal(message),
                });
            }
            tracing::info!(%digest, attempt, error = %message, "blob upload failed; retrying");
            if interrupted && chunked.is_none() {
                // A single PUT died mid-body: smaller requests get through flaky links and can
                // resume, so retry this blob in chunks.
                chunked = Some(self.settings.fallback_chunk_size);
            }
            let upload_unknown = matches!(&err, AttemptError::Registry(e) if e.is_upload_unknown());
            if !upload_unknown {
                // Give the slot to someone else while we wait.
                permit = None;
                let delay = policy.delay(attempt, retry_after);
                countdown(delay, |seconds| {
                    let _ = self.state.send(TransferState::Retrying { seconds });
                })
                .await;
            }
            if permit.is_none() {
                permit = Some(self.upload_permit().await);
            }
            attempt += 1;
        }
    }

    /// Ok(outcome) when nothing needs uploading; Err(session) with a session a mount opened.
    async fn check_and_mount(
        &self,
    ) -> Result<Result<BlobOutcome, Option<UploadSession>>, EngineError> {
        let repo = &self.job.repository;
        let digest = &self.job.blob.digest;
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
        if let Some(p) = self.uploads.try_acquire() {
            return p;
        }
        let _ = self.state.send(TransferState::Waiting);
        self.uploads.acquire(self.job.blob.size).await
    }

    async fn attempt(
        &self,
        session: Option<UploadSession>,
        chunked: Option<u64>,
    ) -> Result<(), AttemptError> {
        let repo = &self.job.repository;
        let session = match session {
            Some(s) => s,
            None => repo.start_upload().await.map_err(AttemptError::Registry)?,
        };
        let mode = match chunked {
            Some(chunk_size) => UploadMode::Chunked { chunk_size },
            None => UploadMode::Monolithic,
        };
        self.progress.set(0);
        let upload = repo.upload_blob(session, &self.job.blob, mode, &self.progress);
        watch_stalls(
            upload,
            &self.progress,
            self.job.blob.size,
            self.settings.stall_timeout,
        )
        .await
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
                    let delay = policy.delay(attempt, e.retry_after());
                    countdown(delay, |seconds| {
                        let _ = self.state.send(TransferState::Retrying { seconds });
                    })
                    .await;
                    let _ = self.state.send(TransferState::Checking);
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
