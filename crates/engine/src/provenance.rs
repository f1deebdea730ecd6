//! Where blobs are known to live in registries, as containerd records it: a blob label
//! `containerd.io/distribution.source.<host>` listing the repositories of that registry that hold
//! the blob. Pushes and pulls record it, for manifests (an index pulled or pushed whole) as for
//! configs and layers; a push mounts a blob from one of them instead of uploading it again, and
//! completes a partly pulled index from where the index is.

use std::collections::BTreeSet;

use hoist_reference::Digest;

use crate::{Engine, EngineError};

/// What every source label's key starts with; the registry's host follows.
const SOURCE_LABEL_PREFIX: &str = "containerd.io/distribution.source.";

/// The label naming the repositories of `host` that hold a blob.
fn source_label(host: &str) -> String {
    format!("{SOURCE_LABEL_PREFIX}{host}")
}

impl Engine {
    /// Records that `repository` of registry `host` holds each of `blobs`.
    pub(crate) fn record_sources(
        &self,
        host: &str,
        repository: &str,
        blobs: &[Digest],
    ) -> Result<(), EngineError> {
        let key = source_label(host);
        let mut changes = Vec::new();
        for digest in blobs {
            let mut repos = self.known_sources(host, digest);
            if repos.insert(repository.to_owned()) {
                let value = repos.into_iter().collect::<Vec<_>>().join(",");
                changes.push((digest.clone(), key.clone(), Some(value)));
            }
        }
        self.store.set_blob_labels(changes)?;
        Ok(())
    }

    /// Every (registry host, repository) known to hold `digest`, in label order.
    pub(crate) fn sources_of(&self, digest: &Digest) -> Vec<(String, String)> {
        let mut sources = Vec::new();
        for (key, value) in self.store.blob_labels(digest) {
            let Some(host) = key.strip_prefix(SOURCE_LABEL_PREFIX) else {
                continue;
            };
            for path in value.split(',').filter(|s| !s.is_empty()) {
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
            .map(|v| {
                v.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}
