//! Daemon-wide shared transfers: one task per key, watched by everyone who needs it.
//!
//! Whoever asks for a key while its task runs watches that task, so the work is done once. A
//! task lives while someone watches it: when the last watcher goes (its client disconnected), the
//! task is cancelled and its requests are dropped. A limited number of slots is shared by all
//! tasks of one kind; a task holds one while it moves bytes and gives it up while it waits to
//! retry.

mod handles;
mod scheduler;

use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use hoist_registry::Progress;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub(crate) use handles::Handles;
pub(crate) use scheduler::{PriorityPermit, SlotLoad};

use crate::error::EngineError;
use crate::retry::countdown;
use scheduler::PrioritySemaphore;

/// What a watcher sees of a transfer. Only the latest state is kept; watchers may skip some.
#[derive(Clone, Debug)]
pub(crate) enum TransferState<P, O> {
    /// The task is working; `P` says at what.
    Active(P),
    /// Queued for a slot behind other transfers.
    Waiting,
    Retrying {
        seconds: u64,
    },
    Done(O),
    Failed(Arc<EngineError>),
}

impl<P, O> TransferState<P, O> {
    fn is_final(&self) -> bool {
        matches!(self, TransferState::Done(_) | TransferState::Failed(_))
    }
}

/// A watcher's handle on a transfer. Dropping the last one cancels the transfer.
pub(crate) struct Transfer<P, O> {
    state: watch::Receiver<TransferState<P, O>>,
    pub progress: Progress,
    /// Retries so far, for the summaries of the operations watching.
    retries: Arc<AtomicU32>,
    cancel: CancellationToken,
    what: &'static str,
}

impl<P, O> Drop for Transfer<P, O> {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl<P, O> Transfer<P, O> {
    /// True once the task has ended with an error.
    pub fn has_failed(&self) -> bool {
        matches!(*self.state.borrow(), TransferState::Failed(_))
    }
}

impl<P: Clone, O: Clone> Transfer<P, O> {
    /// How many times the task waited to try again.
    pub fn retries(&self) -> u32 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Calls `show` with each state seen, the final one included, and returns the outcome.
    pub async fn follow(
        &self,
        mut show: impl FnMut(&TransferState<P, O>),
    ) -> Result<O, EngineError> {
        let mut rx = self.state.clone();
        loop {
            let state = rx.borrow_and_update().clone();
            show(&state);
            match state {
                TransferState::Done(outcome) => return Ok(outcome),
                TransferState::Failed(e) => return Err(EngineError::Shared(e)),
                _ => {}
            }
            // The task ended; its last word is in the channel unless it was cancelled.
            if rx.changed().await.is_err() && !rx.borrow().is_final() {
                return Err(EngineError::Internal(format!(
                    "{} was cancelled",
                    self.what
                )));
            }
        }
    }
}

/// The task's side of a transfer: it reports states and progress, and takes slots.
pub(crate) struct Reporter<P, O> {
    state: watch::Sender<TransferState<P, O>>,
    pub progress: Progress,
    retries: Arc<AtomicU32>,
    slots: Arc<PrioritySemaphore>,
}

impl<P, O> Reporter<P, O> {
    pub fn show(&self, phase: P) {
        let _ = self.state.send(TransferState::Active(phase));
    }

    /// Shows `Waiting`: the task waits for something other than a slot.
    pub fn show_waiting(&self) {
        let _ = self.state.send(TransferState::Waiting);
    }

    /// A slot, at once when one is free; otherwise shows `Waiting` until one is. Larger
    /// `priority` is served first, equal ones in order of arrival.
    pub async fn slot(&self, priority: u64) -> PriorityPermit {
        if let Some(permit) = self.slots.try_acquire() {
            return permit;
        }
        let _ = self.state.send(TransferState::Waiting);
        self.slots.acquire(priority).await
    }

    /// Waits `delay` before a retry, showing the whole seconds left.
    pub async fn retry_countdown(&self, delay: Duration) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        countdown(delay, |seconds| {
            let _ = self.state.send(TransferState::Retrying { seconds });
        })
        .await;
    }
}

/// The running transfers of one kind, by key, and the slots they share.
pub(crate) struct SharedTransfers<K, P, O> {
    /// Names the transfer in messages: "blob download".
    what: &'static str,
    slots: Arc<PrioritySemaphore>,
    /// Fired when the daemon stops: every task ends at once with [`EngineError::ShuttingDown`].
    stop: CancellationToken,
    active: Mutex<Handles<K, Weak<Transfer<P, O>>>>,
}

impl<K, P, O> SharedTransfers<K, P, O>
where
    K: Eq + Hash + std::fmt::Debug,
    P: Send + Sync + 'static,
    O: Send + Sync + 'static,
{
    /// Tasks holding a slot, and tasks waiting for one.
    pub fn load(&self) -> SlotLoad {
        self.slots.load()
    }

    pub fn new(
        what: &'static str,
        slots: usize,
        stop: CancellationToken,
    ) -> SharedTransfers<K, P, O> {
        SharedTransfers {
            what,
            slots: PrioritySemaphore::new(slots),
            stop,
            active: Mutex::new(Handles::default()),
        }
    }

    /// Changes how many tasks move bytes at once; running ones carry on (see
    /// [`PrioritySemaphore::resize`]).
    pub fn resize(&self, slots: usize) {
        self.slots.resize(slots);
    }

    /// Joins the running transfer of `key`, or starts `work` as a task showing `first`. A failed
    /// transfer is not joined: asking again starts over.
    pub fn join_or_start<F, Fut>(&self, key: K, first: P, work: F) -> Arc<Transfer<P, O>>
    where
        F: FnOnce(Reporter<P, O>) -> Fut,
        Fut: Future<Output = Result<O, EngineError>> + Send + 'static,
    {
        let mut handles = self.active.lock().unwrap_or_else(|e| e.into_inner());
        let active = handles.swept(|w| w.strong_count() > 0);
        if let Some(existing) = active.get(&key).and_then(Weak::upgrade)
            && !existing.has_failed()
        {
            return existing;
        }
        let (tx, rx) = watch::channel(TransferState::Active(first));
        let cancel = CancellationToken::new();
        let progress = Progress::default();
        let retries = Arc::new(AtomicU32::new(0));
        let transfer = Arc::new(Transfer {
            state: rx,
            progress: progress.clone(),
            retries: Arc::clone(&retries),
            cancel: cancel.clone(),
            what: self.what,
        });
        let cancelled = format!(
            "{} of {key:?} cancelled: no client is waiting for it",
            self.what
        );
        active.insert(key, Arc::downgrade(&transfer));
        let state = tx.clone();
        let stop = self.stop.clone();
        // Boxed where it is made: the work's future is large (a whole upload, its requests
        // included), and unboxed it would be copied again into the task below and into its
        // first poll, a cost paid for every blob of a push.
        let task = Box::pin(work(Reporter {
            state: tx,
            progress,
            retries,
            slots: Arc::clone(&self.slots),
        }));
        tokio::spawn(async move {
            let outcome = tokio::select! {
                outcome = cancel.run_until_cancelled(task) => outcome,
                () = stop.cancelled() => Some(Err(EngineError::ShuttingDown)),
            };
            match outcome {
                Some(Ok(outcome)) => {
                    let _ = state.send(TransferState::Done(outcome));
                }
                Some(Err(e)) => {
                    let _ = state.send(TransferState::Failed(Arc::new(e)));
                }
                None => tracing::debug!("{cancelled}"),
            }
        });
        transfer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Tasks = SharedTransfers<&'static str, u32, u32>;

    #[tokio::test]
    async fn one_task_per_key_while_watched() {
        let tasks = Tasks::new("test transfer", 2, CancellationToken::new());
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let first = tasks.join_or_start("a", 0, |reporter| async move {
            let _slot = reporter.slot(0).await;
            reporter.show(1);
            let _ = released.await;
            Ok(7)
        });
        let second = tasks.join_or_start("a", 0, |_| async { Ok(8) });
        assert!(Arc::ptr_eq(&first, &second), "joined the running task");
        let _ = release.send(());
        assert_eq!(second.follow(|_| {}).await.unwrap(), 7);
    }

    #[tokio::test]
    async fn a_failed_transfer_is_started_again() {
        let tasks = Tasks::new("test transfer", 1, CancellationToken::new());
        let failed = tasks.join_or_start("a", 0, |_| async {
            Err(EngineError::Internal("boom".into()))
        });
        assert!(failed.follow(|_| {}).await.is_err());
        let again = tasks.join_or_start("a", 0, |_| async { Ok(1) });
        assert_eq!(again.follow(|_| {}).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn stopping_ends_every_task() {
        let stop = CancellationToken::new();
        let tasks = Tasks::new("test transfer", 1, stop.clone());
        let running = tasks.join_or_start("a", 0, |_| async {
            std::future::pending::<()>().await;
            Ok(0)
        });
        stop.cancel();
        let error = running.follow(|_| {}).await.unwrap_err();
        assert!(error.to_string().contains("shutting down"), "{error}");
    }

    #[tokio::test]
    async fn dropping_the_last_watcher_cancels_the_task() {
        let tasks = Tasks::new("test transfer", 1, CancellationToken::new());
        let (dropped_tx, dropped_rx) = tokio::sync::oneshot::channel::<()>();
        struct OnDrop(Option<tokio::sync::oneshot::Sender<()>>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                if let Some(tx) = self.0.take() {
                    let _ = tx.send(());
                }
            }
        }
        let transfer = tasks.join_or_start("a", 0, move |_| async move {
            let _guard = OnDrop(Some(dropped_tx));
            std::future::pending::<()>().await;
            Ok(0)
        });
        tokio::task::yield_now().await;
        drop(transfer);
        dropped_rx.await.expect("the task's future was dropped");
    }
}
