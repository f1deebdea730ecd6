//! The store handle, its shared state, and opening a data root (lock, crash recovery).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use hoist_reference::Digest;
use tracing::{info, warn};

use crate::error::StoreError;
use crate::layout::Layout;
use crate::legacy;
use crate::lock::DataRootLock;
use crate::manifest::ChildrenCache;
use crate::metadata::Metadata;
use crate::space::{SpaceGuard, StoreOptions};

/// A content store rooted at one directory. Cheap to clone; all clones share one state.
///
/// The store is synchronous: calls that move blob bytes or collect garbage do disk I/O and belong
/// in `spawn_blocking` when called from async code.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub layout: Layout,
    /// Records and labels. Reads take no lock (each is a snapshot); every write holds `state`.
    pub meta: Metadata,
    /// Leases, and the right to change metadata: held by every metadata write and by GC, so GC
    /// sees a consistent set of roots and no commit can slip between its mark and its sweep.
    /// Blob bytes are never written while it is held.
    state: Mutex<State>,
    pub children: ChildrenCache,
    /// Keeps blob writes from eating the data root's last free space.
    pub space: SpaceGuard,
    /// Held for the life of the store; dropped last, after the database is closed.
    _lock: DataRootLock,
}

pub(crate) struct State {
    /// Live leases and the digests each one protects (committed through it or `protect`ed).
    pub leases: HashMap<u64, HashSet<Digest>>,
    pub next_lease_id: u64,
}

impl Inner {
    pub fn state(&self) -> MutexGuard<'_, State> {
        // Metadata changes are transactions that a panic aborts, and lease sets only grow by
        // single inserts, so a thread that panicked while holding the lock left nothing half-done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a root to a lease. Must happen before a blob appears under `blobs/`, so that no GC
    /// can see the blob without also seeing what protects it.
    pub fn add_to_lease(&self, lease_id: u64, digest: Digest) {
        if let Some(roots) = self.state().leases.get_mut(&lease_id) {
            roots.insert(digest);
        }
    }
}

impl Store {
    /// Opens (creating if needed) the store at `root` and recovers from any crash: removes
    /// leftovers of interrupted writes, drops records whose target blob is missing, and collects
    /// blobs that nothing reaches.
    ///
    /// Fails with [`StoreError::Locked`] while another store, in this process or another, has
    /// the same root open.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        Store::open_with(root, &StoreOptions::default())
    }

    /// [`Store::open`] with options other than the defaults.
    pub fn open_with(root: &Path, options: &StoreOptions) -> Result<Store, StoreError> {
        let layout = Layout::new(root);
        layout.create()?;
        let lock = DataRootLock::acquire(root, &layout.lock)?;

        let leftovers = layout.wipe_ingest()?;
        if leftovers > 0 {
            info!(
                count = leftovers,
                dir = %layout.ingest.display(),
                "removed leftovers of interrupted writes"
            );
        }

        let meta = Metadata::open(&layout)?;
        legacy::migrate(&layout, &meta)?;
        drop_dangling(&layout, &meta)?;

        let space = SpaceGuard::new(root, &layout.ingest, options.min_free_space);
        let store = Store {
            inner: Arc::new(Inner {
                space,
                layout,
                meta,
                state: Mutex::new(State {
                    leases: HashMap::new(),
                    next_lease_id: 0,
                }),
                children: ChildrenCache::default(),
                _lock: lock,
            }),
        };
        // A store that cannot collect is still a working store; the next GC will retry.
        if let Err(e) = store.gc() {
            warn!(error = %e, "garbage collection at startup failed");
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.inner.layout.root
    }
}

/// Records are written after their blobs, so a record with a missing target means the blob was
/// removed behind our back; keeping it would make every later use of the name fail obscurely.
/// Labels of missing blobs go too.
fn drop_dangling(layout: &Layout, meta: &Metadata) -> Result<(), StoreError> {
    let write = meta.write()?;
    let mut dropped = false;
    for root in meta.image_roots()? {
        let Ok(target) = root.target else {
            continue;
        };
        if !layout.blob_path(&target.digest).is_file() {
            warn!(
                image = %root.name,
                target = %target.digest,
                "dropping image record whose target blob is missing"
            );
            write.delete_image(&root.name)?;
            dropped = true;
        }
    }
    for digest in meta.labelled()? {
        let present = Digest::parse(&digest).is_ok_and(|d| layout.blob_path(&d).is_file());
        if !present {
            write.set_labels(&digest, &Default::default())?;
            dropped = true;
        }
    }
    if dropped {
        write.commit()?;
    }
    Ok(())
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.inner.layout.root)
            .finish_non_exhaustive()
    }
}
