//! One upload of a blob per registry, whatever the repository.
//!
//! Pushes of one blob to different repositories of a registry would each send every byte. The
//! first such upload leads; an upload of the same blob to another repository of that registry
//! started while the leader runs follows it: it waits for the leader to end and then mounts the
//! blob from the leader's repository, a request with no body. If the leader failed or the mount
//! is refused, the follower uploads on its own. A follower is never a leader, so no upload waits
//! on one that waits on it.

use std::sync::{Arc, Mutex, Weak};

use hoist_reference::Digest;

use crate::transfer::{Handles, Transfer};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct BlobAtRegistry {
    host: String,
    digest: Digest,
}

struct Leader<P, O> {
    repository: String,
    upload: Weak<Transfer<P, O>>,
}

/// The leader a follower waits for: the repository that will hold the blob, and a handle on its
/// upload. Holding the handle keeps the leader going even when its own clients leave, since the
/// follower still needs the blob there.
pub(super) struct Lead<P, O> {
    pub repository: String,
    pub upload: Arc<Transfer<P, O>>,
}

/// The leading upload of each blob, per registry; `P` and `O` are the uploads' phase and outcome.
pub(super) struct Leaders<P, O> {
    active: Mutex<Handles<BlobAtRegistry, Leader<P, O>>>,
}

impl<P, O> Default for Leaders<P, O> {
    fn default() -> Self {
        Leaders {
            active: Mutex::new(Handles::default()),
        }
    }
}

impl<P, O> Leaders<P, O> {
    /// Decides, atomically with starting it, how an upload of `digest` to `repository` of
    /// `host` begins: `start` is called with the leader to follow, if one is running for another
    /// repository, and returns the upload; an upload that found no leader becomes the leader.
    pub fn start(
        &self,
        host: &str,
        repository: &str,
        digest: &Digest,
        start: impl FnOnce(Option<Lead<P, O>>) -> Arc<Transfer<P, O>>,
    ) -> Arc<Transfer<P, O>> {
        let mut handles = self.active.lock().unwrap_or_else(|e| e.into_inner());
        let active = handles.swept(|leader| leader.upload.strong_count() > 0);
        let key = BlobAtRegistry {
            host: host.to_owned(),
            digest: digest.clone(),
        };
        let lead = active.get(&key).and_then(|leader| {
            let upload = leader.upload.upgrade()?;
            (leader.repository != repository && !upload.has_failed()).then(|| Lead {
                repository: leader.repository.clone(),
                upload,
            })
        });
        let following = lead.is_some();
        let upload = start(lead);
        if !following {
            active.insert(
                key,
                Leader {
                    repository: repository.to_owned(),
                    upload: Arc::downgrade(&upload),
                },
            );
        }
        upload
    }
}
