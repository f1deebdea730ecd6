//! What the client sees of a pull. Only the API knows how these look on the wire.

use hoist_reference::Digest;

/// One line of a pull's progress stream.
#[derive(Clone, Debug, PartialEq)]
pub enum PullEvent {
    /// "<tag or reference>: Pulling from <repository path>".
    PullingFrom {
        id: String,
        repository: String,
    },
    Layer {
        id: String,
        state: PullLayerState,
    },
    /// Bytes of a layer received so far.
    Progress {
        id: String,
        current: u64,
        total: u64,
    },
    /// A free-form status line (warnings).
    Note(String),
    /// "Digest: <digest>" of the image pulled for one tag.
    Digest(Digest),
    /// The pull is complete: "Status: Downloaded newer image for <reference>" when a name now
    /// points at different content than before, else "Status: Image is up to date for …".
    Done {
        reference: String,
        newer: bool,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum PullLayerState {
    PullingFsLayer,
    Waiting,
    Retrying {
        seconds: u64,
    },
    VerifyingChecksum,
    DownloadComplete,
    /// The layer and every one below it are in the store.
    PullComplete,
    /// The store already had the layer.
    AlreadyExists,
}

impl PullEvent {
    pub fn progress(id: &str, current: u64, total: u64) -> PullEvent {
        PullEvent::Progress {
            id: id.to_owned(),
            current,
            total,
        }
    }
}
