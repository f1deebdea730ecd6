//! Blob homes waiting to be recorded. A push learns a blob's new home with every upload; one
//! metadata commit each cost a push of 1,000 small layers a sixth of hoistd's CPU, so homes
//! are queued and committed together by one drainer (`provenance`). Until its commit, a queued
//! home is already seen by [`SourceQueue::homes_of`], so what readers see does not wait for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use hoist_reference::Digest;

/// Cheap to clone; clones share the queue.
#[derive(Clone, Default)]
pub(crate) struct SourceQueue(Arc<Mutex<Queue>>);

#[derive(Default)]
struct Queue {
    /// Not yet taken by the drainer.
    waiting: Vec<PendingSource>,
    /// Every home queued and not yet committed (or given up), taken or not, by blob.
    uncommitted: HashMap<Digest, Vec<(String, String)>>,
    /// Someone is draining the queue.
    draining: bool,
}

/// One blob's new home: `repository` of registry `host`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PendingSource {
    pub host: String,
    pub repository: String,
    pub digest: Digest,
}

impl SourceQueue {
    /// Queues a home, seen by [`SourceQueue::homes_of`] from now on; true when the caller must
    /// start draining (nobody is).
    pub fn push(&self, host: &str, repository: &str, digest: &Digest) -> bool {
        let mut queue = self.lock();
        queue
            .uncommitted
            .entry(digest.clone())
            .or_default()
            .push((host.to_owned(), repository.to_owned()));
        queue.waiting.push(PendingSource {
            host: host.to_owned(),
            repository: repository.to_owned(),
            digest: digest.clone(),
        });
        !std::mem::replace(&mut queue.draining, true)
    }

    /// The (host, repository) homes queued for `digest` and not yet committed. A reader asks
    /// this before the store: a home leaves the queue only after its commit.
    pub fn homes_of(&self, digest: &Digest) -> Vec<(String, String)> {
        self.lock()
            .uncommitted
            .get(digest)
            .cloned()
            .unwrap_or_default()
    }

    /// For a drainer that stopped unexpectedly: the next home starts a new one, rather than
    /// waiting for a drainer that is gone.
    pub fn abandon(&self) {
        self.lock().draining = false;
    }

    /// Everything waiting, for the drainer; None (and draining over) once nothing is. The
    /// homes stay seen until [`SourceQueue::settled`].
    pub fn take(&self) -> Option<Vec<PendingSource>> {
        let mut queue = self.lock();
        if queue.waiting.is_empty() {
            queue.draining = false;
            return None;
        }
        Some(std::mem::take(&mut queue.waiting))
    }

    /// The drainer is done with `batch`: committed, or given up.
    pub fn settled(&self, batch: &[PendingSource]) {
        let mut queue = self.lock();
        for pending in batch {
            let Some(homes) = queue.uncommitted.get_mut(&pending.digest) else {
                continue;
            };
            let home = (pending.host.clone(), pending.repository.clone());
            if let Some(at) = homes.iter().position(|h| *h == home) {
                homes.swap_remove(at);
            }
            if homes.is_empty() {
                queue.uncommitted.remove(&pending.digest);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> Digest {
        Digest::sha256_from_bytes(&[n; 32])
    }

    fn home(host: &str, repository: &str) -> (String, String) {
        (host.to_owned(), repository.to_owned())
    }

    #[test]
    fn the_first_home_leads_and_later_ones_join_its_next_round() {
        let queue = SourceQueue::default();
        assert!(
            queue.push("h", "a", &digest(1)),
            "nobody drains: the first starts"
        );
        assert!(!queue.push("h", "b", &digest(2)), "a drainer is on its way");
        let batch = queue.take().expect("two homes queued");
        assert_eq!(batch.len(), 2);
        // Arriving while the drainer commits: taken in its next round, no new drainer.
        assert!(!queue.push("h", "c", &digest(3)));
        assert_eq!(queue.take().map(|b| b.len()), Some(1));
        assert!(queue.take().is_none(), "empty: draining ends");
        assert!(
            queue.push("h", "d", &digest(4)),
            "after the drainer stopped, the next home leads again"
        );
    }

    #[test]
    fn a_home_is_seen_from_its_push_until_its_batch_settles() {
        let queue = SourceQueue::default();
        queue.push("h", "a", &digest(1));
        queue.push("h", "b", &digest(1));
        queue.push("h", "a", &digest(2));
        assert_eq!(queue.homes_of(&digest(1)), [home("h", "a"), home("h", "b")]);
        let batch = queue.take().expect("queued");
        assert_eq!(
            queue.homes_of(&digest(2)),
            [home("h", "a")],
            "taken, not committed"
        );
        // The same home again while the first is being committed: it stays until its own batch.
        queue.push("h", "a", &digest(2));
        queue.settled(&batch);
        assert!(queue.homes_of(&digest(1)).is_empty());
        assert_eq!(queue.homes_of(&digest(2)), [home("h", "a")]);
        let batch = queue.take().expect("queued again");
        queue.settled(&batch);
        assert!(queue.homes_of(&digest(2)).is_empty());
    }

    #[test]
    fn an_abandoned_drain_lets_the_next_home_lead() {
        let queue = SourceQueue::default();
        assert!(queue.push("h", "a", &digest(1)));
        queue.abandon();
        assert!(queue.push("h", "b", &digest(2)));
    }
}
