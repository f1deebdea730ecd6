//! Keeping disk work off the async runtime's threads.
//!
//! Store calls read and fsync files and take the store's lock; on a runtime worker they would
//! stall every other request that worker serves. They run on tokio's blocking pool instead, and
//! so do drops that do such work (a store lease's release collects garbage).

use std::ops::Deref;

use crate::error::EngineError;

/// Runs `work` on the blocking pool and waits for it.
pub(crate) async fn run<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| EngineError::Internal(format!("background task failed: {e}")))?
}

/// Holds a value whose drop is disk work, such as a store lease. Dropped inside a tokio runtime
/// (a future cancelled because its client went away), the value is dropped on the blocking pool;
/// elsewhere, on the dropping thread. [`BlockingDrop::release`] drops it there and waits.
pub(crate) struct BlockingDrop<T: Send + 'static> {
    value: Option<T>,
}

impl<T: Send + 'static> BlockingDrop<T> {
    pub fn new(value: T) -> BlockingDrop<T> {
        BlockingDrop { value: Some(value) }
    }

    /// Drops the value on the blocking pool and waits until that is done, so that what the drop
    /// does (a garbage collection) is over when this returns.
    pub async fn release(mut self) {
        if let Some(value) = self.value.take()
            && let Err(error) = tokio::task::spawn_blocking(move || drop(value)).await
        {
            tracing::error!(%error, "releasing on the blocking pool failed");
        }
    }
}

impl<T: Send + 'static> Deref for BlockingDrop<T> {
    type Target = T;

    fn deref(&self) -> &T {
        match &self.value {
            Some(value) => value,
            // `value` is taken only by `release` and `drop`, which consume the holder.
            None => unreachable!("BlockingDrop read after release"),
        }
    }
}

impl<T: Send + 'static> Drop for BlockingDrop<T> {
    fn drop(&mut self) {
        let Some(value) = self.value.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            // A runtime shutting down drops the task unrun, and the value with it, on this thread.
            drop(runtime.spawn_blocking(move || drop(value)));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::thread::ThreadId;
    use std::time::Duration;

    use super::*;

    /// Records the thread it is dropped on.
    struct DropProbe(Arc<Mutex<Option<ThreadId>>>);

    impl Drop for DropProbe {
        fn drop(&mut self) {
            *self.0.lock().unwrap() = Some(std::thread::current().id());
        }
    }

    async fn dropped_on(seen: &Mutex<Option<ThreadId>>) -> ThreadId {
        for _ in 0..500 {
            if let Some(id) = *seen.lock().unwrap() {
                return id;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the value was never dropped");
    }

    #[tokio::test]
    async fn a_drop_in_a_runtime_runs_on_the_blocking_pool() {
        let seen = Arc::new(Mutex::new(None));
        let held = BlockingDrop::new(DropProbe(Arc::clone(&seen)));
        drop(held);
        assert_ne!(dropped_on(&seen).await, std::thread::current().id());
    }

    #[tokio::test]
    async fn a_dropped_future_releases_its_lease_off_the_runtime_thread() {
        let dir = tempfile::tempdir().unwrap();
        let store = hoist_store::Store::open(dir.path()).unwrap();
        let seen = Arc::new(Mutex::new(None));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let job = {
            let (store, seen) = (store.clone(), Arc::clone(&seen));
            tokio::spawn(async move {
                let lease = BlockingDrop::new((store.lease(), DropProbe(seen)));
                let (digest, _) = store.put_blob(&lease.0, b"unreferenced").unwrap();
                let _ = ready_tx.send(digest);
                std::future::pending::<()>().await;
            })
        };
        let digest = ready_rx.await.unwrap();
        assert!(store.has_blob(&digest));
        job.abort();
        let _ = job.await;
        assert_ne!(dropped_on(&seen).await, std::thread::current().id());
        // The lease went with the job, and what only it protected was collected.
        for _ in 0..500 {
            if !store.has_blob(&digest) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the lease's blob was not collected");
    }

    #[tokio::test]
    async fn release_waits_for_the_drop() {
        let seen = Arc::new(Mutex::new(None));
        BlockingDrop::new(DropProbe(Arc::clone(&seen)))
            .release()
            .await;
        assert!(seen.lock().unwrap().is_some());
    }

    #[test]
    fn outside_a_runtime_the_drop_is_immediate() {
        let seen = Arc::new(Mutex::new(None));
        drop(BlockingDrop::new(DropProbe(Arc::clone(&seen))));
        assert_eq!(*seen.lock().unwrap(), Some(std::thread::current().id()));
    }
}
