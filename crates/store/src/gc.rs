//! Garbage collection: mark everything reachable from image targets and live leases, remove the
//! blobs (and their labels) that are not.
//!
//! Runs with the state lock held, so the roots cannot change under it: a writer registers its
//! digest with its lease (under the lock) before renaming the blob into place, hence a blob that
//! GC finds in `blobs/` is either reachable from a root it sees or truly garbage.

use std::collections::HashSet;
use std::fs;
use std::io;

use hoist_reference::Digest;
use tracing::{debug, info};

use crate::descriptor::Descriptor;
use crate::error::{IoContext, StoreError};
use crate::manifest::ManifestKind;
use crate::store::{Inner, State, Store};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcStats {
    pub removed_blobs: usize,
    pub removed_bytes: u64,
}

/// A starting point of a walk.
pub(crate) enum Node {
    /// Reached through a descriptor: its media type says how to read it.
    Typed(Descriptor),
    /// A lease root, known by digest only: its content says how to read it.
    Untyped(Digest),
}

/// Which blobs a collection may remove (if unreachable).
pub(crate) enum Scope {
    /// Every blob on disk.
    Everything,
    /// Only these: what a released lease or image reached. Saves listing the blob directory when
    /// we know what could have become garbage.
    Only(HashSet<Digest>),
}

impl Store {
    /// Removes every blob not reachable from an image target or a live lease, and its labels.
    ///
    /// Walks children by media type, skipping absent blobs (an index may be partial). If a
    /// reachable manifest cannot be parsed, nothing is removed: the graph is unknown.
    pub fn gc(&self) -> Result<GcStats, StoreError> {
        let mut state = self.inner.state();
        self.inner.collect(&mut state, Scope::Everything)
    }
}

impl Inner {
    /// Every digest reachable from `roots`, absent ones included.
    pub fn closure(&self, roots: Vec<Node>) -> Result<HashSet<Digest>, StoreError> {
        let mut seen = HashSet::new();
        self.walk(roots, &mut seen)?;
        Ok(seen)
    }

    fn walk(&self, mut stack: Vec<Node>, seen: &mut HashSet<Digest>) -> Result<(), StoreError> {
        while let Some(node) = stack.pop() {
            let children = match node {
                Node::Typed(desc) => {
                    let Some(kind) = ManifestKind::of_media_type(&desc.media_type) else {
                        seen.insert(desc.digest);
                        continue;
                    };
                    if seen.contains(&desc.digest) {
                        continue;
                    }
                    let children = self.children.of_kind(&self.layout, &desc.digest, kind);
                    seen.insert(desc.digest);
                    children
                }
                Node::Untyped(digest) => {
                    if seen.contains(&digest) {
                        continue;
                    }
                    let children = self.children.of_unknown(&self.layout, &digest);
                    seen.insert(digest);
                    children
                }
            };
            match children {
                Ok(children) => stack.extend(children.iter().cloned().map(Node::Typed)),
                // Absent content is a leaf: a partial index, or a pull still in progress.
                Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn live(&self, state: &State) -> Result<HashSet<Digest>, StoreError> {
        let mut live = HashSet::new();
        // Typed roots first: a digest is walked once, and its media type beats a guess.
        let images = state.meta.images.values();
        self.walk(
            images.map(|r| Node::Typed(r.target.clone())).collect(),
            &mut live,
        )?;
        let leased = state.leases.values().flatten();
        self.walk(leased.cloned().map(Node::Untyped).collect(), &mut live)?;
        Ok(live)
    }

    pub fn collect(&self, state: &mut State, scope: Scope) -> Result<GcStats, StoreError> {
        let live = self.live(state)?;
        let (candidates, everything) = match scope {
            Scope::Everything => (self.blobs_on_disk()?, true),
            Scope::Only(candidates) => (candidates, false),
        };

        let mut stats = GcStats::default();
        let mut gone = HashSet::new();
        for digest in candidates {
            if live.contains(&digest) {
                continue;
            }
            let path = self.layout.blob_path(&digest);
            let size = match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_file() => meta.len(),
                // Not ours to remove: we only ever create regular files there.
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    gone.insert(digest);
                    continue;
                }
                Err(e) => return Err(e).context(|| format!("inspecting {}", path.display())),
            };
            match fs::remove_file(&path) {
                Ok(()) => {
                    debug!(%digest, size, "collected blob");
                    stats.removed_blobs += 1;
                    stats.removed_bytes += size;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).context(|| format!("removing {}", path.display())),
            }
            self.children.forget(&digest);
            gone.insert(digest);
        }
        // No directory fsync after the unlinks: a blob that reappears after a crash is garbage
        // again and goes at the next open.

        let stale_labels = |digest: &Digest| {
            gone.contains(digest) || (everything && !self.layout.blob_path(digest).is_file())
        };
        if state.meta.labels.keys().any(stale_labels) {
            let mut labels = state.meta.labels.clone();
            labels.retain(|digest, _| !stale_labels(digest));
            let old_labels = std::mem::replace(&mut state.meta.labels, labels);
            if let Err(e) = state.meta.persist(&self.layout) {
                state.meta.labels = old_labels;
                return Err(e);
            }
        }

        if stats.removed_blobs > 0 {
            info!(
                blobs = stats.removed_blobs,
                bytes = stats.removed_bytes,
                "garbage collected"
            );
        }
        Ok(stats)
    }

    /// Digests of the regular files under `blobs/sha256/`; names that are not digests are not
    /// ours and are left alone.
    fn blobs_on_disk(&self) -> Result<HashSet<Digest>, StoreError> {
        let dir = &self.layout.sha256_blobs;
        let listing_error = || format!("listing {}", dir.display());
        let mut digests = HashSet::new();
        for entry in fs::read_dir(dir).context(listing_error)? {
            let entry = entry.context(listing_error)?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if let Ok(digest) = Digest::parse(&format!("sha256:{name}")) {
                digests.insert(digest);
            }
        }
        Ok(digests)
    }
}
