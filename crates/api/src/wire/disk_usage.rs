//! `GET /system/df` (moby's `types.DiskUsage`), in its field order. Each section is null when
//! not asked for; hoist has no containers, volumes or build cache, so those are empty lists.

use serde::Serialize;

use crate::wire::images::Summary;

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DiskUsageAnswer {
    pub layers_size: u64,
    pub images: Option<Vec<Summary>>,
    /// Always empty (`[]`) when asked for: hoist has no containers.
    pub containers: Option<[(); 0]>,
    /// Always empty when asked for: hoist has no volumes.
    pub volumes: Option<[(); 0]>,
    /// Always empty when asked for: hoist builds nothing.
    pub build_cache: Option<[(); 0]>,
}
