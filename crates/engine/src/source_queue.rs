//! Blob homes waiting to be recorded. Uploads that end together share one metadata commit
//! instead of one each: the first to arrive drains the queue on the blocking pool,
//! recording everything queued in one commit per round until it is empty; the others wait for
//! the commit that holds theirs (`provenance`).

use std::sync::{Arc, Mutex, PoisonError};

use hoist_reference::Digest;
use tokio::sync::oneshot;

/// Cheap to clone; clones share the queue.
#[derive(Clone, Default)]
pub(crate) struct SourceQueue(Arc<Mutex<Queue>>);

#[derive(Default)]
struct Queue {
    waiting: Vec<PendingSource>,
    /// Someone is draining the queue.
    draining: bool,
}

/// One blob's new home, and who waits for it to be recorded.
pub(crate) struct PendingSource {
    pub host: String,
    pub repository: String,
    pub digest: Digest,
    pub recorded: oneshot::Sender<Result<(), String>>,
}

impl SourceQueue {
    /// Queues a record; true when the caller must start draining (nobody is), and the outcome
    /// of the commit that will hold it.
    pub fn push(
        &self,
        host: &str,
        repository: &str,
        digest: &Digest,
    ) -> (bool, oneshot::Receiver<Result<(), String>>) {
        let (recorded, outcome) = oneshot::channel();
        let mut queue = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        queue.waiting.push(PendingSource {
            host: host.to_owned(),
            repository: repository.to_owned(),
            digest: digest.clone(),
            recorded,
        });
        let lead = !std::mem::replace(&mut queue.draining, true);
        (lead, outcome)
    }

    /// For a drainer that panicked: the next record starts a new one, rather than waiting for
    /// a drainer that is gone.
    pub fn abandon(&self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .draining = false;
    }

    /// Everything queued, for the drainer; None (and draining over) once nothing is.
    pub fn take(&self) -> Option<Vec<PendingSource>> {
        let mut queue = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if queue.waiting.is_empty() {
            queue.draining = false;
            return None;
        }
        Some(std::mem::take(&mut queue.waiting))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> Digest {
        Digest::sha256_from_bytes(&[n; 32])
    }

    #[test]
    fn the_first_record_leads_and_later_ones_join_its_next_round() {
        let queue = SourceQueue::default();
        let (lead, _first) = queue.push("h", "a", &digest(1));
        assert!(lead, "nobody drains: the first record starts");
        let (lead, _second) = queue.push("h", "b", &digest(2));
        assert!(!lead, "a drainer is already on its way");
        let batch = queue.take().expect("two records queued");
        assert_eq!(batch.len(), 2);
        // Arriving while the drainer commits: taken in its next round, no new drainer.
        let (lead, _third) = queue.push("h", "c", &digest(3));
        assert!(!lead);
        assert_eq!(queue.take().map(|b| b.len()), Some(1));
        assert!(queue.take().is_none(), "empty: draining ends");
        let (lead, _fourth) = queue.push("h", "d", &digest(4));
        assert!(
            lead,
            "after the drainer stopped, the next record leads again"
        );
    }

    #[test]
    fn an_abandoned_drain_lets_the_next_record_lead() {
        let queue = SourceQueue::default();
        let (lead, _first) = queue.push("h", "a", &digest(1));
        assert!(lead);
        queue.abandon();
        let (lead, _second) = queue.push("h", "b", &digest(2));
        assert!(lead);
    }
}
