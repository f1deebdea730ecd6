//! `POST /images/prune`: removing the images nothing uses, as moby's containerd store does.
//! hoist runs no containers, so with `dangling=false` every image is unused.
//!
//! Records go one at a time, in name order; each removal lets the store collect what only that
//! record reached. Content an in-flight load, pull or push holds is under a lease, which the
//! store's collection respects: such blobs stay until the lease ends, and are not reported here.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hoist_store::ImageChange;

use crate::images::{ListFilters, RecordFilter, present_children};
use crate::names::{self, RecordName};
use crate::{Engine, EngineError};

/// One line of the report, in the order moby gives them.
#[derive(Debug, PartialEq, Eq)]
pub enum PrunedItem {
    /// A record removed, by its familiar name (a dangling image by its ID).
    Untagged(String),
    /// A blob gone with it.
    Deleted(String),
}

#[derive(Debug, Default)]
pub struct PruneReport {
    pub items: Vec<PrunedItem>,
    /// Bytes of the blobs deleted.
    pub space_reclaimed: u64,
}

impl Engine {
    /// Removes dangling images, or every image when `dangling_only` is false, that pass
    /// `filters` (`until`, `label`, `label!`). One prune at a time, as in moby.
    pub async fn prune_images(
        &self,
        filters: ListFilters,
        dangling_only: bool,
    ) -> Result<PruneReport, EngineError> {
        if self.prune_running.swap(true, Ordering::AcqRel) {
            return Err(EngineError::Conflict(
                "a prune operation is already running".into(),
            ));
        }
        let engine = self.clone();
        // Cleared when the prune ends, also when the caller stops waiting for it.
        let running = self.prune_running.clone();
        let report = self
            .blocking(move || {
                let _running = RunningFlag(running);
                engine.prune_blocking(&filters, dangling_only)
            })
            .await?;
        Ok(report)
    }

    fn prune_blocking(
        &self,
        filters: &ListFilters,
        dangling_only: bool,
    ) -> Result<PruneReport, EngineError> {
        let _guard = self
            .names_lock
            .lock()
            .map_err(|_| EngineError::Internal("names lock poisoned".into()))?;
        let mut filter = RecordFilter::new(&self.store, &self.host_platform, filters)?;
        let mut doomed = Vec::new();
        for record in self.store.images() {
            let dangling = matches!(names::classify(&record.name), RecordName::Dangling);
            if (!dangling_only || dangling) && filter.passes(&record)? {
                doomed.push(record);
            }
        }
        let mut report = PruneReport::default();
        for record in doomed {
            let blobs = present_children(&self.store, &record.target)?;
            self.store.apply(vec![ImageChange::Delete {
                name: record.name.clone(),
            }])?;
            report
                .items
                .push(PrunedItem::Untagged(match names::classify(&record.name) {
                    RecordName::Dangling => record.target.digest.to_string(),
                    _ => names::familiar_record_name(&record.name),
                }));
            for blob in blobs {
                if !self.store.has_blob(&blob.digest) {
                    report
                        .items
                        .push(PrunedItem::Deleted(blob.digest.to_string()));
                    report.space_reclaimed += blob.size;
                }
            }
        }
        Ok(report)
    }
}

/// Clears the "prune running" flag when dropped.
struct RunningFlag(Arc<AtomicBool>);

impl Drop for RunningFlag {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}
