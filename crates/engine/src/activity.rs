//! What the engine is doing and holding right now, read on demand (a metrics scrape): transfers
//! running and queued, and the size of the store.

use crate::engine::Engine;
use crate::error::EngineError;
use crate::names;

/// Blob transfers at this instant, daemon-wide.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransferActivity {
    /// Uploads sending bytes (each holds one of `max-concurrent-uploads` slots).
    pub uploads_running: usize,
    /// Uploads waiting for a slot.
    pub uploads_queued: usize,
    /// Downloads receiving bytes (each holds one of `max-concurrent-downloads` slots).
    pub downloads_running: usize,
    /// Downloads waiting for a slot.
    pub downloads_queued: usize,
}

/// What the store holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreUsage {
    /// Bytes of every stored blob.
    pub bytes: u64,
    /// Images, counted as `docker info` counts them.
    pub images: usize,
}

impl Engine {
    /// Cheap: two locks, no I/O.
    pub fn transfer_activity(&self) -> TransferActivity {
        let uploads = self.uploads.load();
        let downloads = self.downloads.load();
        TransferActivity {
            uploads_running: uploads.running,
            uploads_queued: uploads.queued,
            downloads_running: downloads.running,
            downloads_queued: downloads.queued,
        }
    }

    /// Reads the blob directory and the image records: blocking, for a blocking thread.
    pub fn store_usage_blocking(&self) -> Result<StoreUsage, EngineError> {
        Ok(StoreUsage {
            bytes: self.store.blob_bytes()?,
            images: names::all_images(&self.store).len(),
        })
    }
}
