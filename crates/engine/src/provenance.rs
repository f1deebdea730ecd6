//! Where blobs are known to live in registries, as containerd records it: a blob label
//! `containerd.io/distribution.source.<host>` listing the repositories of that registry that hold
//! the blob. Pushes and pulls record it, for manifests (an index pulled or pushed whole) as for
//! configs and layers; a push mounts a blob from one of them instead of uploading it again, and
//! completes a partly pulled index from where the index is.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hoist_reference::Digest;
use hoist_store::Durability;

use crate::source_queue::{PendingSource, SourceQueue};
use crate::{Engine, EngineError};

/// What every source label's key starts with; the registry's host follows.
const SOURCE_LABEL_PREFIX: &str = "containerd.io/distribution.source.";

/// How long homes gather in the queue before they are committed together: long enough that a
/// push of many small layers commits tens of homes at a time, short enough that a crash loses
/// little. Readers do not wait for it.
const GATHER: Duration = Duration::from_millis(50);

/// The label naming the repositories of `host` that hold a blob.
fn source_label(host: &str) -> String {
    format!("{SOURCE_LABEL_PREFIX}{host}")
}

impl Engine {
    /// Records that `repository` of registry `host` holds each of `blobs`: `Immediate`, durably
    /// when it returns, with every deferred record before it; `Deferred` for a caller whose own
    /// durable store write follows at once.
    pub(crate) fn record_sources(
        &self,
        host: &str,
        repository: &str,
        blobs: &[Digest],
        durability: Durability,
    ) -> Result<(), EngineError> {
        self.record_many(blobs.iter().map(|d| (host, repository, d)), durability)
    }

    /// Records that `repository` of `host` holds `digest`, seen by every later push at once
    /// (through the queue) and committed within [`GATHER`], together with the other homes
    /// pushes learned meanwhile. The commit is deferred (no fsync): a home is a hint whose loss
    /// in a crash costs a later push an upload instead of a mount, and the push's own last
    /// record (`record_sources`) makes it durable.
    pub(crate) fn record_source(&self, host: &str, repository: &str, digest: &Digest) {
        if self.pending_sources.push(host, repository, digest) {
            // Not tied to the caller: the queued homes are committed if it is cancelled.
            tokio::spawn(self.clone().drain_pending_sources());
        }
    }

    /// Commits what is queued, a batch every [`GATHER`], until the queue is empty. A batch that
    /// fails (a blob removed meanwhile) is recorded again blob by blob, so that one blob's
    /// failure is only its own.
    async fn drain_pending_sources(self) {
        loop {
            tokio::time::sleep(GATHER).await;
            let Some(batch) = self.pending_sources.take() else {
                return;
            };
            let engine = self.clone();
            let committed = tokio::task::spawn_blocking(move || {
                // Settled however the commit ends, a panic included: the homes of a batch that
                // was not recorded are hints lost, as in a crash.
                let _settle = Settle(&engine.pending_sources, &batch);
                engine.commit_sources(&batch);
            })
            .await;
            if committed.is_err() {
                self.pending_sources.abandon();
                return;
            }
        }
    }

    fn commit_sources(&self, batch: &[PendingSource]) {
        fn home(p: &PendingSource) -> (&str, &str, &Digest) {
            (p.host.as_str(), p.repository.as_str(), &p.digest)
        }
        if batch.len() > 1
            && self
                .record_many(batch.iter().map(home), Durability::Deferred)
                .is_ok()
        {
            return;
        }
        for pending in batch {
            if let Err(e) = self.record_many(std::iter::once(home(pending)), Durability::Deferred) {
                tracing::warn!(error = %e, digest = %pending.digest, "could not record where a pushed blob went");
            }
        }
    }

    /// Records each (host, repository, digest) in one metadata transaction; several
    /// repositories of one blob on one host are merged into its one label.
    fn record_many<'a>(
        &self,
        homes: impl Iterator<Item = (&'a str, &'a str, &'a Digest)>,
        durability: Durability,
    ) -> Result<(), EngineError> {
        let mut added: BTreeMap<&Digest, BTreeMap<&str, BTreeSet<&str>>> = BTreeMap::new();
        for (host, repository, digest) in homes {
            added
                .entry(digest)
                .or_default()
                .entry(host)
                .or_default()
                .insert(repository);
        }
        let digests: Vec<Digest> = added.keys().map(|d| (*d).clone()).collect();
        let merge = |digest: &Digest, labels: &mut BTreeMap<String, String>| {
            for (host, repositories) in added.get(digest).into_iter().flatten() {
                let key = source_label(host);
                let mut repos: BTreeSet<&str> = labels
                    .get(&key)
                    .map(|v| repositories_in(v).collect())
                    .unwrap_or_default();
                let before = repos.len();
                repos.extend(repositories);
                if repos.len() != before {
                    let value = repos.into_iter().collect::<Vec<_>>().join(",");
                    labels.insert(key, value);
                }
            }
        };
        self.store.update_blob_labels(&digests, merge, durability)?;
        Ok(())
    }

    /// Every (registry host, repository) known to hold `digest`: queued homes first, then the
    /// labels' in their order.
    pub(crate) fn sources_of(&self, digest: &Digest) -> Vec<(String, String)> {
        // The queue before the store: a home leaves the queue only once committed.
        let mut sources = self.pending_sources.homes_of(digest);
        for (key, value) in self.store.blob_labels(digest) {
            let Some(host) = key.strip_prefix(SOURCE_LABEL_PREFIX) else {
                continue;
            };
            for path in repositories_in(&value) {
                let source = (host.to_owned(), path.to_owned());
                if !sources.contains(&source) {
                    sources.push(source);
                }
            }
        }
        sources
    }

    /// The repositories of registry `host` known to hold `digest`.
    pub(crate) fn known_sources(&self, host: &str, digest: &Digest) -> BTreeSet<String> {
        // The queue before the store: a home leaves the queue only once committed.
        let mut known: BTreeSet<String> = (self.pending_sources.homes_of(digest).into_iter())
            .filter(|(h, _)| h == host)
            .map(|(_, repository)| repository)
            .collect();
        if let Some(value) = self.store.blob_labels(digest).get(&source_label(host)) {
            known.extend(repositories_in(value).map(str::to_owned));
        }
        known
    }
}

/// Tells the queue, when dropped, that the drainer is done with a batch.
struct Settle<'a>(&'a SourceQueue, &'a [PendingSource]);

impl Drop for Settle<'_> {
    fn drop(&mut self) {
        self.0.settled(self.1);
    }
}

/// The repositories a source label's value lists, comma-separated.
fn repositories_in(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').filter(|s| !s.is_empty())
}
