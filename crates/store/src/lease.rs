//! Leases: GC roots for work in progress.
//!
//! A load writes layers before the manifest that references them, and a push reads blobs that a
//! concurrent `rmi` could make unreachable; a lease keeps such blobs alive until the work is done.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use hoist_reference::Digest;
use tracing::warn;

use crate::gc::{Node, Scope};
use crate::store::{Inner, Store};

/// Protects from GC every blob committed through a writer under this lease, every digest given
/// to [`Lease::protect`], and everything reachable from them.
///
/// Dropping the last clone of the lease (writers created under it count as clones) releases it
/// and collects what it protected that nothing else reaches, so a failed load leaves nothing
/// behind. That collection does disk I/O on the dropping thread.
#[derive(Clone)]
pub struct Lease {
    pub(crate) handle: Arc<LeaseHandle>,
}

pub(crate) struct LeaseHandle {
    pub id: u64,
    pub inner: Arc<Inner>,
}

impl Lease {
    /// Protects `digest` and what it reaches for the life of the lease. To reuse content that is
    /// already in the store, protect it first and check `has_blob` after: the other way round, a
    /// GC could remove it in between.
    pub fn protect(&self, digest: &Digest) {
        self.handle
            .inner
            .add_to_lease(self.handle.id, digest.clone());
    }
}

impl Store {
    pub fn lease(&self) -> Lease {
        let mut state = self.inner.state();
        let id = state.next_lease_id;
        state.next_lease_id += 1;
        state.leases.insert(id, HashSet::new());
        Lease {
            handle: Arc::new(LeaseHandle {
                id,
                inner: self.inner.clone(),
            }),
        }
    }

    /// Leases are tied to the store that made them; a lease from another store would protect
    /// nothing here.
    pub(crate) fn check_lease(&self, lease: &Lease) -> Result<(), crate::StoreError> {
        if Arc::ptr_eq(&lease.handle.inner, &self.inner) {
            Ok(())
        } else {
            Err(crate::StoreError::ForeignLease {
                root: self.root().to_owned(),
            })
        }
    }
}

impl Drop for LeaseHandle {
    fn drop(&mut self) {
        let inner = &self.inner;
        let mut state = inner.state();
        let Some(roots) = state.leases.remove(&self.id) else {
            return;
        };
        if roots.is_empty() {
            return;
        }
        let collected = inner
            .closure(roots.into_iter().map(Node::Untyped).collect())
            .and_then(|candidates| inner.collect(&mut state, Scope::Only(candidates)));
        if let Err(e) = collected {
            warn!(error = %e, "garbage collection after releasing a lease failed");
        }
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("id", &self.handle.id)
            .finish_non_exhaustive()
    }
}
