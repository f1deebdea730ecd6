//! `GET /images/{name}/history`: the steps an image was made of.

use hoist_reference::{Digest, Reference};

use super::parse_rfc3339;
use crate::image_content::{best_for, describe_target, platform_not_provided, present_manifests};
use crate::names;
use crate::platform::{Matching, Platform};
use crate::{Engine, EngineError};

/// One step of an image's history, newest first.
#[derive(Debug)]
pub struct HistoryEntry {
    /// The image's ID on the newest step; None on older steps, which are no image of their own.
    pub id: Option<Digest>,
    /// Seconds since the Unix epoch; 0 when the step has no readable time.
    pub created: i64,
    pub created_by: String,
    /// The image's familiar tag references, on the newest step only.
    pub tags: Vec<String>,
    /// Bytes of the layer the step made; 0 for a step that made none.
    pub size: u64,
    pub comment: String,
}

impl Engine {
    /// `docker history [--platform P]`. A platform picks the manifest as moby's `Only` matcher
    /// does (the platform or one it can run); an image with none for it is a 404.
    pub async fn image_history(
        &self,
        name: &str,
        platform: Option<Platform>,
    ) -> Result<Vec<HistoryEntry>, EngineError> {
        let engine = self.clone();
        let name = name.to_owned();
        self.blocking(move || engine.history_blocking(&name, platform.as_ref()))
            .await
    }

    fn history_blocking(
        &self,
        name: &str,
        platform: Option<&Platform>,
    ) -> Result<Vec<HistoryEntry>, EngineError> {
        let (view, lookup) = names::resolve(&self.store, name)?;
        let image = match platform {
            None => describe_target(&self.store, &view.target, &self.host_platform)?,
            Some(wanted) => {
                let present = present_manifests(&self.store, &view.target)?;
                let best = best_for(&present, wanted, Matching::Compatible).ok_or_else(|| {
                    platform_not_provided(&names::record_display_name(&view, &lookup), wanted)
                })?;
                best.image.clone()
            }
        };
        let Some(image) = image else {
            return Ok(Vec::new());
        };
        let history = image
            .config
            .get("history")
            .and_then(serde_json::Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut layer_sizes = image.layers.iter().map(|l| l.size);
        let mut entries: Vec<HistoryEntry> = history
            .iter()
            .map(|h| {
                let empty = h
                    .get("empty_layer")
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(false);
                let text = |k: &str| {
                    h.get(k)
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                HistoryEntry {
                    id: None,
                    created: h
                        .get("created")
                        .and_then(serde_json::Value::as_str)
                        .and_then(parse_rfc3339)
                        .unwrap_or(0),
                    created_by: text("created_by"),
                    tags: Vec::new(),
                    size: if empty {
                        0
                    } else {
                        layer_sizes.next().unwrap_or(0)
                    },
                    comment: text("comment"),
                }
            })
            .collect();
        entries.reverse();
        if let Some(top) = entries.first_mut() {
            top.id = Some(view.id().clone());
            top.tags = view.tags.iter().map(Reference::familiar_string).collect();
        }
        Ok(entries)
    }
}
