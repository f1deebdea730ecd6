//! `GET /system/df`: what images take on disk, as moby's containerd store reports it. hoist
//! keeps only content (no unpacked snapshots), so the layers size is the content of every image,
//! each blob counted once.

use std::collections::HashSet;

use crate::images::{ImageSummary, ListOptions, present_children};
use crate::{Engine, EngineError};

#[derive(Debug)]
pub struct DiskUsage {
    /// Bytes of every blob some image reaches, each once.
    pub layers_size: u64,
    /// Every image, with its shared size.
    pub images: Vec<ImageSummary>,
}

impl Engine {
    pub async fn disk_usage(&self) -> Result<DiskUsage, EngineError> {
        let engine = self.clone();
        self.blocking(move || engine.disk_usage_blocking()).await
    }

    fn disk_usage_blocking(&self) -> Result<DiskUsage, EngineError> {
        let images = self.list_images_blocking(&ListOptions {
            shared_size: true,
            ..ListOptions::default()
        })?;
        let mut seen = HashSet::new();
        let mut layers_size = 0;
        for record in self.store.images() {
            for blob in present_children(&self.store, &record.target)? {
                if seen.insert(blob.digest) {
                    layers_size += blob.size;
                }
            }
        }
        Ok(DiskUsage {
            layers_size,
            images,
        })
    }
}
