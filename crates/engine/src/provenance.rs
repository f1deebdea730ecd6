//! Where blobs are known to live in registries, as containerd records it: a blob label
//! `containerd.io/distribution.source.<host>` listing the repositories of that registry that hold
//! the blob. Pushes and pulls record it, for manifests (an index pulled or pushed whole) as for
//! configs and layers; a push mounts a blob from one of them instead of uploading it again, and
//! completes a partly pulled index from where the index is.

use std::collections::{BTreeMap, BTreeSet};

use hoist_reference::Digest;
use hoist_store::Durability;

use crate::source_queue::{PendingSource, SourceQueue};
use crate::{Engine, EngineError};

/// What every source label's key starts with; the registry's host follows.
const SOURCE_LABEL_PREFIX: &str = "containerd.io/distribution.source.";

/// The label naming the repositories of `host` that hold a blob.
fn source_label(host: &str) -> String {
    format!("{SOURCE_LABEL_PREFIX}{host}")
}

impl Engine {
    /// Records that `repository` of registry `host` holds each of `blobs`, durably when it
    /// returns, with every deferred record before it.
    pub(crate) fn record_sources(
        &self,
        host: &str,
        repository: &str,
        blobs: &[Digest],
    ) -> Result<(), EngineError> {
        self.record_many(
            blobs.iter().map(|d| (host, repository, d)),
            Durability::Immediate,
        )
    }

    /// Records that `repository` of `host` holds `digest`, visible to every later push when it
    /// returns, in a commit shared with the records other uploads asked for meanwhile. The commit
    /// is deferred (no fsync): a record is a hint whose loss in a crash costs a later push an
    /// upload instead of a mount, and the push's own last record (`record_sources`) makes it
    /// durable; an fsync per blob cost a push of 1,000 small layers a quarter of hoistd's CPU.
    pub(crate) async fn record_source(
        &self,
        host: &str,
        repository: &str,
        digest: &Digest,
    ) -> Result<(), EngineError> {
        let (lead, outcome) = self.pending_sources.push(host, repository, digest);
        if lead {
            // Not tied to this caller: the others' records go on if it is cancelled.
            let engine = self.clone();
            tokio::task::spawn_blocking(move || engine.drain_pending_sources());
        }
        match outcome.await {
            Ok(result) => result.map_err(EngineError::Internal),
            Err(_) => Err(EngineError::Internal(
                "recording where a blob went stopped unexpectedly".into(),
            )),
        }
    }

    /// Records what is queued, in one commit per round, until the queue is empty. A round that
    /// fails (a blob removed meanwhile) is recorded again blob by blob, so that one blob's
    /// failure is only its own.
    fn drain_pending_sources(&self) {
        struct Abandon<'a>(&'a SourceQueue);
        impl Drop for Abandon<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    self.0.abandon();
                }
            }
        }
        let _abandon = Abandon(&self.pending_sources);
        fn home(p: &PendingSource) -> (&str, &str, &Digest) {
            (p.host.as_str(), p.repository.as_str(), &p.digest)
        }
        while let Some(batch) = self.pending_sources.take() {
            if batch.len() > 1
                && self
                    .record_many(batch.iter().map(home), Durability::Deferred)
                    .is_ok()
            {
                for pending in batch {
                    let _ = pending.recorded.send(Ok(()));
                }
                continue;
            }
            for pending in batch {
                let result = self
                    .record_many(std::iter::once(home(&pending)), Durability::Deferred)
                    .map_err(|e| e.to_string());
                let _ = pending.recorded.send(result);
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

    /// Every (registry host, repository) known to hold `digest`, in label order.
    pub(crate) fn sources_of(&self, digest: &Digest) -> Vec<(String, String)> {
        let mut sources = Vec::new();
        for (key, value) in self.store.blob_labels(digest) {
            let Some(host) = key.strip_prefix(SOURCE_LABEL_PREFIX) else {
                continue;
            };
            for path in repositories_in(&value) {
                sources.push((host.to_owned(), path.to_owned()));
            }
        }
        sources
    }

    /// The repositories of registry `host` known to hold `digest`.
    pub(crate) fn known_sources(&self, host: &str, digest: &Digest) -> BTreeSet<String> {
        self.store
            .blob_labels(digest)
            .get(&source_label(host))
            .map(|v| repositories_in(v).map(str::to_owned).collect())
            .unwrap_or_default()
    }
}

/// The repositories a source label's value lists, comma-separated.
fn repositories_in(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').filter(|s| !s.is_empty())
}
