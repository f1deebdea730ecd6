//! Daemon-wide blob downloads.
//!
//! Every download is one shared transfer keyed by digest: concurrent pulls needing the same blob
//! (from any repository) watch the same task, so it is fetched once. At most
//! `max-concurrent-downloads` tasks transfer at once, first come first served, as in moby's
//! download manager; a task waiting for a retry gives its slot up. When the last watcher goes
//! (its client disconnected), the task is cancelled and its half-written file removed.
//!
//! Bytes are verified as they are written: the store's writer hashes while writing and refuses
//! to commit anything but the expected digest, so an unverified blob is never stored.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use hoist_reference::Digest;
use hoist_registry::{RegistryError, Repository};
use hoist_store::{Lease, Store, StoreError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::blocking::BlockingDrop;
use crate::error::EngineError;
use crate::observe::{Direction, RetryCause};
use crate::retry::RetryPolicy;
use crate::transfer::{
    PriorityPermit, Reporter, SharedTransfers, SlotLoad, Transfer, TransferState,
};

/// A download that received nothing for this long, neither the answer to its request nor a byte
/// of the blob, is aborted and retried: without it a dead connection would hang the pull forever.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Every download asks for a slot with the same priority: first come, first served.
const SLOT_PRIORITY: u64 = 0;

/// One registry a pull may fetch from.
#[derive(Clone, Debug)]
pub(crate) struct Source {
    pub repository: Repository,
    /// Mirrors are tried first and skipped on any failure. They get no credentials: the user's
    /// Docker Hub login is for Docker Hub (as moby's containerd store decides).
    pub mirror: bool,
}

/// What a download task is doing, beyond the states every transfer has.
#[derive(Clone, Debug)]
pub(crate) enum DownloadPhase {
    Starting,
    /// An attempt is receiving bytes; `attempt` tells retries apart.
    Downloading {
        attempt: u32,
    },
    /// Every byte is in; the digest is being checked and the blob made durable.
    Verifying,
}

pub(crate) type DownloadState = TransferState<DownloadPhase, ()>;

/// A watcher's handle on a download. Dropping the last one cancels the download.
pub(crate) type Download = Transfer<DownloadPhase, ()>;

/// One blob to fetch.
pub(crate) struct BlobRequest {
    pub digest: Digest,
    pub size: u64,
    /// Tried in order: mirrors first, the origin last.
    pub sources: Vec<Source>,
}

pub(crate) struct Downloads {
    transfers: SharedTransfers<Digest, DownloadPhase, ()>,
    store: Store,
    retry: RetryPolicy,
}

impl Downloads {
    pub fn new(
        store: Store,
        max_downloads: usize,
        retry: RetryPolicy,
        stop: CancellationToken,
    ) -> Downloads {
        Downloads {
            transfers: SharedTransfers::new("blob download", max_downloads, stop),
            store,
            retry,
        }
    }

    /// Downloads receiving bytes, and downloads waiting for a slot.
    pub fn load(&self) -> SlotLoad {
        self.transfers.load()
    }

    /// Changes `max-concurrent-downloads`; downloads running carry on.
    pub fn resize(&self, max_downloads: usize) {
        self.transfers.resize(max_downloads);
    }

    /// Joins the running download of this blob, or starts one. The caller protects the digest
    /// in its own lease first: the download's own lease ends with the task.
    pub fn fetch(&self, request: BlobRequest) -> Arc<Download> {
        let (store, retry) = (self.store.clone(), self.retry.clone());
        self.transfers.join_or_start(
            request.digest.clone(),
            DownloadPhase::Starting,
            |reporter| {
                let worker = Worker {
                    request,
                    reporter,
                    store,
                    retry,
                };
                async move {
                    let digest = worker.request.digest.clone();
                    let result = worker.run().await;
                    if let Err(e) = &result {
                        tracing::info!(%digest, error = %e, "blob download failed");
                    }
                    result
                }
            },
        )
    }
}

struct Worker {
    request: BlobRequest,
    reporter: Reporter<DownloadPhase, ()>,
    store: Store,
    retry: RetryPolicy,
}

/// Why one attempt failed.
enum AttemptError {
    /// Worth another attempt (connection trouble, 5xx, 429, a stall).
    Transient {
        error: EngineError,
        retry_after: Option<Duration>,
        cause: RetryCause,
    },
    /// The same on every attempt (4xx, verification failure, local disk trouble).
    Fatal(EngineError),
}

impl From<RegistryError> for AttemptError {
    fn from(e: RegistryError) -> AttemptError {
        if e.is_retryable() {
            AttemptError::Transient {
                retry_after: e.retry_after(),
                cause: RetryCause::of(&e),
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
        let lease = BlockingDrop::new(self.store.lease());
        let mut slot = None;
        let mut result = Err(EngineError::Internal("no registry to download from".into()));
        for source in &self.request.sources {
            result = self.fetch_from(source, &lease, &mut slot).await;
            match &result {
                Ok(()) => {
                    self.retry.observer.blob_transferred(
                        Direction::Pull,
                        source.repository.host(),
                        self.request.size,
                    );
                    break;
                }
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
        lease.release().await;
        result
    }

    /// Fetches from one source. Mirrors get one attempt (the next source is the better retry);
    /// the origin gets the retry policy, showing the countdown.
    async fn fetch_from(
        &self,
        source: &Source,
        lease: &Lease,
        slot: &mut Option<PriorityPermit>,
    ) -> Result<(), EngineError> {
        let policy = &self.retry;
        let mut attempt = 1;
        let mut first_failure = None;
        loop {
            if slot.is_none() {
                *slot = Some(self.reporter.slot(SLOT_PRIORITY).await);
            }
            self.reporter.show(DownloadPhase::Downloading { attempt });
            let (error, retry_after, cause) = match self.attempt(source, lease).await {
                Ok(()) => return Ok(()),
                Err(AttemptError::Fatal(e)) => return Err(e),
                Err(AttemptError::Transient {
                    error,
                    retry_after,
                    cause,
                }) => (error, retry_after, cause),
            };
            if source.mirror || attempt >= policy.max_attempts {
                return Err(EngineError::after_attempts(error, attempt, first_failure));
            }
            policy.note_retry(
                Direction::Pull,
                source.repository.host(),
                cause,
                attempt,
                &format!("download of {}", self.request.digest),
                &error,
            );
            first_failure.get_or_insert_with(|| error.to_string());
            // Give the slot to someone else while we wait.
            *slot = None;
            self.reporter
                .retry_countdown(policy.delay(attempt, retry_after))
                .await;
            attempt += 1;
        }
    }

    async fn attempt(&self, source: &Source, lease: &Lease) -> Result<(), AttemptError> {
        let digest = &self.request.digest;
        let expected = self.request.size;
        let mut body = tokio::time::timeout(STALL_TIMEOUT, source.repository.get_blob(digest))
            .await
            .map_err(|_| stalled(digest))??;
        let mut sink = BlobSink::open(self.store.clone(), lease.clone());
        self.reporter.progress.set(0);
        let mut received = 0u64;
        loop {
            let chunk = match tokio::time::timeout(STALL_TIMEOUT, body.next()).await {
                Err(_) => return Err(stalled(digest)),
                Ok(None) => break,
                Ok(Some(chunk)) => chunk?,
            };
            received += chunk.len() as u64;
            if received > expected {
                // More than the descriptor says cannot hash to its digest.
                return Err(AttemptError::Fatal(verification_failed(digest)));
            }
            sink.write(chunk).await.map_err(AttemptError::Fatal)?;
            self.reporter.progress.set(received);
        }
        if received < expected {
            return Err(AttemptError::Transient {
                error: EngineError::Internal(format!(
                    "download of {digest} from {} ended after {received} of {expected} bytes",
                    source.repository.host()
                )),
                retry_after: None,
                cause: RetryCause::Reset,
            });
        }
        self.reporter.show(DownloadPhase::Verifying);
        sink.commit(digest).await.map_err(AttemptError::Fatal)
    }
}

fn stalled(digest: &Digest) -> AttemptError {
    AttemptError::Transient {
        error: EngineError::Internal(format!(
            "download of {digest} received nothing for {STALL_TIMEOUT:?}"
        )),
        retry_after: None,
        cause: RetryCause::Stall,
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

/// What moby reports when a downloaded blob is not what its digest says.
pub(crate) fn verification_failed(digest: &Digest) -> EngineError {
    EngineError::Internal(format!(
        "filesystem layer verification failed for digest {digest}"
    ))
}
