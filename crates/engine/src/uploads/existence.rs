//! Deciding whether a push asks the registry for each blob before uploading it.
//!
//! A `HEAD` per blob is what lets a push skip what the registry already has, but it is a round
//! trip and costs the registry about as much as opening the upload itself, which adds up for an
//! image of many small layers. A repository without a tag
//! holds nothing a push can reuse, except blobs left behind by a push that never finished. So a
//! push to a repository without tags skips the checks, unless this daemon knows of such a push
//! there: one that failed, was cancelled or is still running. dockerd goes further and never
//! checks a layer it has no record of.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

type RepositoryKey = (String, String);

/// Repositories (host, path) where a push of this daemon is running or ended without success.
/// Clones share the set.
#[derive(Clone, Default)]
pub(crate) struct UnsettledPushes {
    repositories: Arc<Mutex<HashSet<RepositoryKey>>>,
}

impl UnsettledPushes {
    /// Marks a push to `host`/`path` as started. True when another push there was already
    /// running or had ended without success.
    pub fn begin(&self, host: &str, path: &str) -> (bool, PushSettlement) {
        let key = (host.to_owned(), path.to_owned());
        let was_unsettled = !self.lock().insert(key.clone());
        let settlement = PushSettlement {
            repositories: Arc::clone(&self.repositories),
            key,
            succeeded: false,
        };
        (was_unsettled, settlement)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<RepositoryKey>> {
        self.repositories.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Settles a push's repository when the push succeeded; leaves it unsettled otherwise, whether
/// the push failed or its future was dropped (the client went away).
pub(crate) struct PushSettlement {
    repositories: Arc<Mutex<HashSet<RepositoryKey>>>,
    key: RepositoryKey,
    succeeded: bool,
}

impl PushSettlement {
    pub fn succeeded(mut self) {
        self.succeeded = true;
    }
}

impl Drop for PushSettlement {
    fn drop(&mut self) {
        let mut repositories = self.repositories.lock().unwrap_or_else(|e| e.into_inner());
        if self.succeeded {
            // Every blob of this push is referenced by a tag now. A push still running there
            // re-marks the repository if it fails.
            repositories.remove(&self.key);
        } else {
            repositories.insert(self.key.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_or_running_push_leaves_the_repository_unsettled() {
        let pushes = UnsettledPushes::default();
        let (before, first) = pushes.begin("reg", "a");
        assert!(!before);
        // Running: a second push sees it.
        let (before, second) = pushes.begin("reg", "a");
        assert!(before);
        // Another repository is independent.
        assert!(!pushes.begin("reg", "b").0);
        assert!(!pushes.begin("other", "a").0);

        first.succeeded();
        drop(second); // failed
        let (before, third) = pushes.begin("reg", "a");
        assert!(before, "the failed push left blobs behind");
        third.succeeded();
        let (before, _fourth) = pushes.begin("reg", "a");
        assert!(!before, "a success settles the repository");
    }
}
