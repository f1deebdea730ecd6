//! Daemon-wide blob downloads.
//!
//! Every download is one task keyed by digest: concurrent pulls needing the same blob (from any
//! repository) watch the same task, so it is fetched once. At most `max-concurrent-downloads`
//! tasks transfer at once, first come first served, as in moby's download manager; a task waiting
//! for a retry gives its slot up. A task lives while someone watches it: when the last watcher
//! goes (its client disconnected), the task is cancelled and its half-written file removed.
//!
//! Bytes are verified as they are written: the store's writer hashes while writing and refuses
//! to commit anything but the expected digest, so an unverified blob is never stored.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use hoist_reference::Digest;
use hoist_registry::{Progress, RegistryError};
use hoist_store::{Lease, Store, StoreError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::errors::verification_failed;
use super::source::Source;
use crate::EngineError;
use crate::push::{RetryPolicy, countdown};

/// A download that received nothing for this long is aborted and retried: without it a dead
/// connection would hang the pull forever.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// What a watcher sees of a download. Only the latest state is kept; watchers may skip some.
#[derive(Clone, Debug)]
pub(crate) enum DownloadState {
    Starting,
    /// Queued behind `max-concurrent-downloads` others.
    Waiting,
    /// An attempt is receiving bytes; `attempt` tells retries apart.
    Downloading {
        attempt: u32,
    },
    Retrying {
        seconds: u64,
    },
    /// Every byte is in; the digest is being checked and the blob made durable.
    Verifying,
    Done,
    Failed(Arc<EngineError>),
}

/// A watcher's handle on a download. Dropping the last one cancels the download.
pub(crate) struct Download {
    pub state: watch::Receiver<DownloadState>,
    pub progress: Progress,
    cancel: CancellationToken,
}

impl Drop for Download {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// One blob to fetch.
pub(crate) struct BlobRequest {
    pub digest: Digest,
    pub size: u64,
    /// Tried in order: mirrors first, the origin last.
    pub sources: Vec<Source>,
}

pub(crate) struct DownloadManager {
    slots: Arc<Semaphore>,
    active: Mutex<HashMap<Digest, Weak<Download>>>,
    store: Store,
    retry: RetryPolicy,
}

impl DownloadManager {
    pub fn new(store: Store, max_downloads: usize, retry: RetryPolicy) -> DownloadManager {
        DownloadManager {
            slots: Arc::new(Semaphore::new(max_downloads.max(1))),
            active: Mutex::new(HashMap::new()),
            store,
            retry,
        }
    }

    /// Joins the running download of this blob, or starts one. The caller protects the digest
    /// in its own lease first: the download's own lease ends with the task.
    pub fn fetch(&self, request: BlobRequest) -> Arc<Download> {
        let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        active.retain(|_, w| w.strong_count() > 0);
        if let Some(existing) = active.get(&request.digest).and_then(Weak::upgrade)
            && !matches!(*existing.state.borrow(), DownloadState::Failed(_))
        {
            return existing;
        }
        let (tx, rx) = watch::channel(DownloadState::Starting);
        let cancel = CancellationToken::new();
        let progress = Progress::default();
        let download = Arc::new(Download {
            state: rx,
            progress: progress.clone(),
            cancel: cancel.clone(),
        });
        active.insert(request.digest.clone(), Arc::downgrade(&download));
        let worker = Worker {
            request,
            state: tx,
            progress,
            slots: Arc::clone(&self.slots),
            store: self.store.clone(),
            retry: self.retry.clone(),
        };
        tokio::spawn(async move {
            let state = worker.state.clone();
            let digest = worker.request.digest.clone();
            match cancel.run_until_cancelled(worker.run()).await {
                Some(Ok(())) => {
                    let _ = state.send(DownloadState::Done);
                }
                Some(Err(e)) => {
                    tracing::info!(%digest, error = %e, "blob download failed");
                    let _ = state.send(DownloadState::Failed(Arc::new(e)));
                }
                None => {
                    tracing::debug!(%digest, "blob download cancelled: no pull is waiting for it")
                }
            }
        });
        download
    }
}

struct Worker {
    request: BlobRequest,
    state: watch::Sender<DownloadState>,
    progress: Progress,
    slots: Arc<Semaphore>,
    store: Store,
    retry: RetryPolicy,
}

/// Why one attempt failed.
enum AttemptError {
    /// Worth another attempt (connection trouble, 5xx, 429, a stall).
    Transient {
        error: EngineError,
        retry_after: Option<Duration>,
    },
    /// The same on every attempt (4xx, verification failure, local disk trouble).
    Fatal(EngineError),
}

impl From<RegistryError> for AttemptError {
    fn from(e: RegistryError) -> AttemptError {
        if e.is_retryable() {
            AttemptError::Transient {
                retry_after: e.retry_after(),
                error: EngineError::Registry(e),
            }
        } else {
            AttemptError::Fatal(EngineError::Registry(e))
        }
    }
}

impl Worker {
    async fn run(self) -> Result<(), EngineError> {
        // What this task commits stays protected until the task ends; the watchers' own
        // leases keep it after that.
        let lease = self.store.lease();
        let mut slot = None;
        let mut result = Err(EngineError::Internal("no registry to download from".into()));
        for source in &self.request.sources {
            result = self.fetch_from(source, &lease, &mut slot).await;
            match &result {
                Ok(()) => break,
                Err(e) if source.mirror => tracing::info!(
                    digest = %self.request.digest,
                    mirror = source.repository.host(),
                    error = %e,
                    "download from a mirror failed; trying the next source"
                ),
                Err(_) => {}
            }
        }
        drop(slot);
        // Releasing a lease may collect garbage, which is disk work.
        let _ = tokio::task::spawn_blocking(move || drop(lease)).await;
        result
    }

    async fn acquire_slot(&self) -> Result<OwnedSemaphorePermit, EngineError> {
        if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            return Ok(permit);
        }
        let _ = self.state.send(DownloadState::Waiting);
        Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .map_err(|_| EngineError::Internal("download slots closed".into()))
    }

    /// Fetches from one source. Mirrors get one attempt (the next source is the better retry);
    /// the origin gets the retry policy, showing the countdown.
    async fn fetch_from(
        &self,
        source: &Source,
        lease: &Lease,
        slot: &mut Option<OwnedSemaphorePermit>,
    ) -> Result<(), EngineError> {
        let policy = &self.retry;
        let mut attempt = 1;
        loop {
            if slot.is_none() {
                *slot = Some(self.acquire_slot().await?);
            }
            let _ = self.state.send(DownloadState::Downloading { attempt });
            let (error, retry_after) = match self.attempt(source, lease).await {
                Ok(()) => return Ok(()),
                Err(AttemptError::Fatal(e)) => return Err(e),
                Err(AttemptError::Transient { error, retry_after }) => (error, retry_after),
            };
            if source.mirror || attempt >= policy.max_attempts {
                return Err(error);
            }
            tracing::info!(digest = %self.request.digest, attempt, %error, "blob download failed; retrying");
            // Give the slot to someone else while we wait.
            *slot = None;
            countdown(policy.delay(attempt, retry_after), |seconds| {
                let _ = self.state.send(DownloadState::Retrying { seconds });
            })
            .await;
            attempt += 1;
        }
    }

    async fn attempt(&self, source: &Source, lease: &Lease) -> Result<(), AttemptError> {
        let digest = &self.request.digest;
        let expected = self.request.size;
        let mut body = source.repository.get_blob(digest).await?;
        let mut sink = BlobSink::open(self.store.clone(), lease.clone());
        self.progress.set(0);
        let mut received = 0u64;
        loop {
            let chunk = match tokio::time::timeout(STALL_TIMEOUT, body.next()).await {
                Err(_) => {
                    return Err(AttemptError::Transient {
                        error: EngineError::Internal(format!(
                            "download of {digest} received nothing for {STALL_TIMEOUT:?}"
                        )),
                        retry_after: None,
                    });
                }
                Ok(None) => break,
                Ok(Some(chunk)) => chunk?,
            };
            received += chunk.len() as u64;
            if received > expected {
                // More than the descriptor says cannot hash to its digest.
                return Err(AttemptError::Fatal(verification_failed(digest)));
            }
            sink.write(chunk).await.map_err(AttemptError::Fatal)?;
            self.progress.set(received);
        }
        if received < expected {
            return Err(AttemptError::Transient {
                error: EngineError::Internal(format!(
                    "download of {digest} from {} ended after {received} of {expected} bytes",
                    source.repository.host()
                )),
                retry_after: None,
            });
        }
        let _ = self.state.send(DownloadState::Verifying);
        sink.commit(digest).await.map_err(AttemptError::Fatal)
    }
}

/// A store blob writer driven from async code: the writer (file I/O, hashing, fsync) runs on a
/// blocking thread, fed chunks over a small channel. Dropped without `commit`, the writer and
/// its temp file go away.
struct BlobSink {
    chunks: Option<mpsc::Sender<Bytes>>,
    commit: Option<tokio::sync::oneshot::Sender<Digest>>,
    task: tokio::task::JoinHandle<Result<(), EngineError>>,
}

impl BlobSink {
    fn open(store: Store, lease: Lease) -> BlobSink {
        let (chunk_tx, mut chunk_rx) = mpsc::channel::<Bytes>(8);
        let (commit_tx, commit_rx) = tokio::sync::oneshot::channel::<Digest>();
        let task = tokio::task::spawn_blocking(move || {
            let mut writer = store.blob_writer(&lease)?;
            while let Some(chunk) = chunk_rx.blocking_recv() {
                writer
                    .write_all(&chunk)
                    .map_err(|e| EngineError::io("writing a downloaded blob", e))?;
            }
            // The chunks are all in; commit only if asked to, else abandon.
            let Ok(expected) = commit_rx.blocking_recv() else {
                return Err(EngineError::Internal("download abandoned".into()));
            };
            match writer.commit(Some(&expected)) {
                Ok(_) => Ok(()),
                Err(StoreError::DigestMismatch { expected, .. }) => {
                    Err(verification_failed(&expected))
                }
                Err(e) => Err(e.into()),
            }
        });
        BlobSink {
            chunks: Some(chunk_tx),
            commit: Some(commit_tx),
            task,
        }
    }

    async fn write(&mut self, chunk: Bytes) -> Result<(), EngineError> {
        let sent = match &self.chunks {
            Some(tx) => tx.send(chunk).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The writer stopped: its error says why.
        self.chunks = None;
        self.commit = None;
        match (&mut self.task).await {
            Ok(Err(e)) => Err(e),
            Ok(Ok(())) => Err(EngineError::Internal("blob writer stopped early".into())),
            Err(e) => Err(EngineError::Internal(format!("blob writer failed: {e}"))),
        }
    }

    async fn commit(mut self, expected: &Digest) -> Result<(), EngineError> {
        self.chunks = None;
        if let Some(tx) = self.commit.take() {
            let _ = tx.send(expected.clone());
        }
        match (&mut self.task).await {
            Ok(result) => result,
            Err(e) => Err(EngineError::Internal(format!("blob writer failed: {e}"))),
        }
    }
}
