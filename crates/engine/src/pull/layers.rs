//! Fetching an image's config and layers, and reporting them as docker shows a pull: per layer
//! `Pulling fs layer` or `Already exists`, then `Waiting`, `Downloading`, `Verifying Checksum`,
//! `Download complete`, and `Pull complete` once the layer and every layer below it are in.

use std::sync::{Arc, Mutex};

use futures_util::future::try_join_all;
use hoist_store::{Descriptor, Lease};

use super::events::{PullEvent, PullLayerState};
use crate::downloads::{BlobRequest, Download, DownloadPhase, DownloadState, Source};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::progress::ProgressBoard;
use crate::summary::Tally;

/// Makes the configs and layers of the manifests pulled present in the store, protected by
/// `lease`: the layers of several manifests (every platform of an index) are shown as one list,
/// each blob once, bottom-up per manifest, one manifest after the other; `tally` counts what
/// was there and what was downloaded. When all of it is already there nothing is shown, as moby
/// shows no layer lines for an image it has.
pub(crate) async fn fetch_content(
    engine: &Engine,
    sources: &[Source],
    lease: &Lease,
    (configs, layers): (&[Descriptor], &[Descriptor]),
    board: &ProgressBoard<PullEvent>,
    tally: &Tally,
) -> Result<(), EngineError> {
    // A blob listed twice is fetched, and shown, once.
    let distinct = |descriptors: &[Descriptor]| {
        let mut seen = std::collections::HashSet::new();
        descriptors
            .iter()
            .filter(|d| seen.insert(&d.digest))
            .cloned()
            .collect::<Vec<Descriptor>>()
    };
    let (configs, shown) = (distinct(configs), distinct(layers));
    let present = {
        let (store, lease) = (engine.store.clone(), lease.clone());
        let digests: Vec<_> = configs
            .iter()
            .chain(&shown)
            .map(|d| d.digest.clone())
            .collect();
        engine
            .blocking(move || {
                // Protect first, then look: no collection can slip in between.
                Ok(digests
                    .iter()
                    .map(|d| {
                        lease.protect(d);
                        store.has_blob(d)
                    })
                    .collect::<Vec<bool>>())
            })
            .await?
    };
    tally.present(present.iter().filter(|p| **p).count() as u64);
    if present.iter().all(|p| *p) {
        return Ok(());
    }
    let (configs_present, layers_present) = present.split_at(configs.len());
    let ids: Vec<String> = shown
        .iter()
        .map(|l| l.digest.short_id().to_owned())
        .collect();
    for (id, present) in ids.iter().zip(layers_present) {
        let state = if *present {
            PullLayerState::AlreadyExists
        } else {
            PullLayerState::PullingFsLayer
        };
        board.post(PullEvent::Layer {
            id: id.clone(),
            state,
        });
    }
    let completion = Mutex::new(Completion {
        ids: ids.clone(),
        present: layers_present.to_vec(),
        done: layers_present.to_vec(),
        announced: 0,
    });
    let request = |desc: &Descriptor| BlobRequest {
        digest: desc.digest.clone(),
        size: desc.size,
        sources: sources.to_vec(),
    };
    let mut follows = Vec::new();
    for (config, present) in configs.iter().zip(configs_present) {
        if !present {
            // A config transfers like a layer but is not shown, as in docker.
            follows.push(follow(
                engine.downloads.fetch(request(config)),
                None,
                config.size,
                board,
                &completion,
                tally,
            ));
        }
    }
    for (index, layer) in shown.iter().enumerate() {
        if !layers_present[index] {
            follows.push(follow(
                engine.downloads.fetch(request(layer)),
                Some(index),
                layer.size,
                board,
                &completion,
                tally,
            ));
        }
    }
    // The first failure ends the pull; dropping the other handles cancels the downloads that
    // no other pull watches.
    try_join_all(follows).await?;
    Ok(())
}

/// Which layers are in, and how many from the bottom have been announced `Pull complete`.
struct Completion {
    ids: Vec<String>,
    /// In the store before the pull: these count as complete but are not announced.
    present: Vec<bool>,
    done: Vec<bool>,
    announced: usize,
}

impl Completion {
    fn finish(&mut self, index: usize, board: &ProgressBoard<PullEvent>) {
        self.done[index] = true;
        while self.announced < self.done.len() && self.done[self.announced] {
            if !self.present[self.announced] {
                board.post(PullEvent::Layer {
                    id: self.ids[self.announced].clone(),
                    state: PullLayerState::PullComplete,
                });
            }
            self.announced += 1;
        }
    }
}

/// Follows one download to its end, translating its states into layer lines when `layer` (an
/// index into the shown layers) is set.
async fn follow(
    download: Arc<Download>,
    layer: Option<usize>,
    size: u64,
    board: &ProgressBoard<PullEvent>,
    completion: &Mutex<Completion>,
    tally: &Tally,
) -> Result<(), EngineError> {
    let id = layer.map(|i| completion.lock().unwrap_or_else(|e| e.into_inner()).ids[i].clone());
    let show = |state: PullLayerState| {
        id.as_ref().map(|id| PullEvent::Layer {
            id: id.clone(),
            state,
        })
    };
    let mut waiting_shown = false;
    let mut verifying_shown = false;
    let mut bar_attempt = None;
    let outcome = download
        .follow(|state| match state {
            DownloadState::Active(DownloadPhase::Starting) | DownloadState::Failed(_) => {}
            DownloadState::Waiting => {
                if let Some(event) = show(PullLayerState::Waiting).filter(|_| !waiting_shown) {
                    board.post(event);
                    waiting_shown = true;
                }
            }
            DownloadState::Active(DownloadPhase::Downloading { attempt }) => {
                if let Some(id) = &id
                    && bar_attempt != Some(*attempt)
                {
                    board.start_bar(id, download.progress.clone(), size);
                    bar_attempt = Some(*attempt);
                }
            }
            DownloadState::Retrying { seconds } => {
                let event = show(PullLayerState::Retrying { seconds: *seconds });
                if let (Some(id), Some(event)) = (&id, event) {
                    board.finish_bar(id, event);
                    bar_attempt = None;
                }
            }
            DownloadState::Active(DownloadPhase::Verifying) => {
                if let (Some(id), Some(event)) = (&id, show(PullLayerState::VerifyingChecksum)) {
                    board.finish_bar(id, event);
                    verifying_shown = true;
                }
            }
            DownloadState::Done(()) => {
                if let Some(id) = &id {
                    if !verifying_shown && let Some(event) = show(PullLayerState::VerifyingChecksum)
                    {
                        board.finish_bar(id, event);
                    }
                    if let Some(event) = show(PullLayerState::DownloadComplete) {
                        board.finish_bar(id, event);
                    }
                }
                if let Some(index) = layer {
                    completion
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .finish(index, board);
                }
            }
        })
        .await;
    tally.retried(download.retries());
    if outcome.is_ok() {
        tally.transferred(size);
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pull_complete_goes_bottom_up_and_skips_layers_already_there() {
        let board = ProgressBoard::new(PullEvent::progress);
        let mut completion = Completion {
            ids: vec!["a".into(), "b".into(), "c".into(), "d".into()],
            present: vec![false, true, false, false],
            done: vec![false, true, false, false],
            announced: 0,
        };
        // The top layer finishes first: nothing can be announced until the bottom one is in.
        completion.finish(3, &board);
        completion.finish(0, &board);
        completion.finish(2, &board);
        board.close();
        let mut announced = Vec::new();
        while let Some(event) = board.next().await {
            match event {
                PullEvent::Layer {
                    id,
                    state: PullLayerState::PullComplete,
                } => announced.push(id),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(announced, ["a", "c", "d"]);
    }
}
