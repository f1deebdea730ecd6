//! Garbage collection: mark everything reachable from image targets and live leases, remove the
//! blobs (and their labels) that are not.
//!
//! Content that cannot be parsed never stops a collection and is never lost: a manifest that is
//! too large or malformed keeps every blob whose digest appears in its bytes (a superset of what it
//! references), and is logged with the record that reaches it.
//!
//! Runs with the state lock held, so the roots cannot change under it: a writer registers its
//! digest with its lease (under the lock) before renaming the blob into place, hence a blob that
//! GC finds in `blobs/` is either reachable from a root it sees or truly garbage.

use std::collections::HashSet;
use std::fs;
use std::io;

use hoist_reference::Digest;
use tracing::{debug, info, warn};

use crate::descriptor::Descriptor;
use crate::error::{IoContext, StoreError};
use crate::manifest::{ManifestKind, digests_named_in};
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
    /// Walks children by media type, skipping absent blobs (an index may be partial). A reachable
    /// manifest that cannot be parsed (too large, malformed) is kept along with every blob whose
    /// digest appears in its bytes, and logged with the record that reaches it; everything else is
    /// collected as usual. Only an I/O error stops a collection: then nothing is removed.
    pub fn gc(&self) -> Result<GcStats, StoreError> {
        let mut state = self.inner.state();
        self.inner.collect(&mut state, Scope::Everything)
    }
}

impl Inner {
    /// Every digest reachable from `roots`, absent ones included.
    pub fn closure(&self, roots: Vec<Node>) -> Result<HashSet<Digest>, StoreError> {
        let mut seen = HashSet::new();
        for root in roots {
            self.walk(root, None, &mut seen)?;
        }
        Ok(seen)
    }

    /// Adds to `seen` what `root` reaches. `origin` names the root in the log when part of its
    /// graph cannot be read (None: no log, the walk only gathers candidates).
    fn walk(
        &self,
        root: Node,
        origin: Option<&str>,
        seen: &mut HashSet<Digest>,
    ) -> Result<(), StoreError> {
        let mut stack = vec![root];
        while let Some(node) = stack.pop() {
            let (digest, children) = match node {
                Node::Typed(desc) => {
                    let Some(kind) = ManifestKind::of_media_type(&desc.media_type) else {
                        seen.insert(desc.digest);
                        continue;
                    };
                    if seen.contains(&desc.digest) {
                        continue;
                    }
                    let children = self.children.of_kind(&self.layout, &desc.digest, kind);
                    (desc.digest, children)
                }
                Node::Untyped(digest) => {
                    if seen.contains(&digest) {
                        continue;
                    }
                    let children = self.children.of_unknown(&self.layout, &digest);
                    (digest, children)
                }
            };
            match children {
                Ok(children) => stack.extend(children.iter().cloned().map(Node::Typed)),
                // Absent content is a leaf: a partial index, or a pull still in progress.
                Err(StoreError::NotFound(_)) => {}
                // What cannot be parsed still names what it references: keep every blob whose
                // digest appears in it, rather than give up collecting or lose what it needs.
                Err(e @ (StoreError::TooLarge { .. } | StoreError::InvalidManifest { .. })) => {
                    if let Some(origin) = origin {
                        warn!(
                            image = %origin,
                            manifest = %digest,
                            error = %e,
                            "cannot read a manifest of this image; keeping every blob it names"
                        );
                    }
                    let named = self.children.named_in(&self.layout, &digest)?;
                    stack.extend(named.iter().cloned().map(Node::Untyped));
                }
                Err(e) => return Err(e),
            }
            seen.insert(digest);
        }
        Ok(())
    }

    fn live(&self, state: &State) -> Result<HashSet<Digest>, StoreError> {
        let mut live = HashSet::new();
        // Typed roots first: a digest is walked once, and its media type beats a guess.
        let mut unreadable = Vec::new();
        for root in self.meta.image_roots()? {
            match root.target {
                Ok(target) => self.walk(Node::Typed(target), Some(&root.name), &mut live)?,
                Err(bytes) => unreadable.push((root.name, bytes)),
            }
        }
        for (name, bytes) in unreadable {
            warn!(
                image = %name,
                "cannot decode this image record; keeping every blob it names"
            );
            let named = digests_named_in(bytes.as_slice())
                .context(|| format!("reading the image record {name:?}"))?;
            for digest in named {
                self.walk(Node::Untyped(digest), Some(&name), &mut live)?;
            }
        }
        for digest in state.leases.values().flatten() {
            self.walk(Node::Untyped(digest.clone()), Some("(lease)"), &mut live)?;
        }
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

        self.drop_stale_labels(&gone, everything)?;

        if stats.removed_blobs > 0 {
            info!(
                blobs = stats.removed_blobs,
                bytes = stats.removed_bytes,
                "garbage collected"
            );
        }
        Ok(stats)
    }

    /// Removes the labels of blobs that are `gone`, and with `everything` of any blob missing
    /// from disk, in one transaction (none when no label is stale).
    fn drop_stale_labels(
        &self,
        gone: &HashSet<Digest>,
        everything: bool,
    ) -> Result<(), StoreError> {
        let stale: Vec<String> = if everything {
            let missing = |digest: &String| match Digest::parse(digest) {
                Ok(d) => gone.contains(&d) || !self.layout.blob_path(&d).is_file(),
                Err(_) => true,
            };
            self.meta.labelled()?.into_iter().filter(missing).collect()
        } else {
            let mut stale = Vec::new();
            for digest in gone {
                if !self.meta.labels(digest)?.is_empty() {
                    stale.push(digest.as_str().to_owned());
                }
            }
            stale
        };
        if stale.is_empty() {
            return Ok(());
        }
        let write = self.meta.write()?;
        for digest in &stale {
            write.set_labels(digest, &Default::default())?;
        }
        write.commit()
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
