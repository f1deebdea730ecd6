//! Prometheus metrics: the registry and its families, filled by the engine's reports (as its
//! [`Observer`]), by the API's request layer, and at each scrape from the engine's current state;
//! served on `--metrics-addr` (`serve`).
//!
//! Labels only ever carry bounded values: registry hosts, route templates, methods, statuses
//! and the engine's closed vocabularies of causes. Never an image name, digest or raw path.

mod api;
mod serve;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hoist_engine::{Direction, Engine, FailureCause, Observer, Operation, RetryCause, SkipReason};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

pub use api::record_api_requests;
pub use serve::bind;

/// Upper bounds of the duration buckets, in seconds: from a cached pull of a small image to a
/// push of many GiB.
const DURATION_BUCKETS: [f64; 14] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Transfer {
    registry: String,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Skip {
    registry: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Retry {
    registry: String,
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Failure {
    operation: &'static str,
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Finished {
    operation: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiRequest {
    /// The route template (`/images/{name}/push`), or `unmatched`.
    route: String,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Build {
    version: String,
    commit: String,
}

/// Distinct `registry` label values kept; hosts seen after these are counted as `other`.
const MAX_REGISTRY_LABELS: usize = 64;

/// The `registry` label: hosts as image names give them, up to [`MAX_REGISTRY_LABELS`] distinct
/// ones, then `other`, so that clients naming ever new hosts (typos, a scan) cannot grow the
/// series without bound.
#[derive(Debug, Default)]
struct RegistryLabels {
    seen: Mutex<HashSet<String>>,
}

impl RegistryLabels {
    fn label(&self, host: &str) -> String {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(host) {
            return host.to_owned();
        }
        if seen.len() < MAX_REGISTRY_LABELS {
            seen.insert(host.to_owned());
            return host.to_owned();
        }
        "other".to_owned()
    }
}

/// Every metric hoistd exports, and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    registry_labels: RegistryLabels,
    transferred_bytes: Family<Transfer, Counter>,
    blobs_transferred: Family<Transfer, Counter>,
    blobs_skipped: Family<Skip, Counter>,
    retries: Family<Retry, Counter>,
    failures: Family<Failure, Counter>,
    durations: Family<Finished, Histogram>,
    api_requests: Family<ApiRequest, Counter>,
    uploads_in_flight: Gauge,
    uploads_queued: Gauge,
    downloads_in_flight: Gauge,
    downloads_queued: Gauge,
    store_bytes: Gauge,
    images: Gauge,
}

impl Metrics {
    pub fn new(version: &str, commit: &str) -> Metrics {
        let build = Info::new(Build {
            version: version.to_owned(),
            commit: commit.to_owned(),
        });

        let mut metrics = Metrics {
            transferred_bytes: Family::default(),
            blobs_transferred: Family::default(),
            blobs_skipped: Family::default(),
            retries: Family::default(),
            failures: Family::default(),
            durations: Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS)),
            api_requests: Family::default(),
            uploads_in_flight: Gauge::default(),
            uploads_queued: Gauge::default(),
            downloads_in_flight: Gauge::default(),
            downloads_queued: Gauge::default(),
            store_bytes: Gauge::default(),
            images: Gauge::default(),
            registry: Registry::default(),
            registry_labels: RegistryLabels::default(),
        };
        let registry = &mut metrics.registry;
        registry.register(
            "hoist_build",
            "hoistd's version and commit; always 1",
            build,
        );
        registry.register_with_unit(
            "hoist_transferred",
            "Bytes of blobs pushed to (direction=push) or pulled from (direction=pull) a registry, counted once per blob transferred",
            Unit::Bytes,
            metrics.transferred_bytes.clone(),
        );
        registry.register(
            "hoist_blobs_transferred",
            "Blobs pushed to (direction=push) or pulled from (direction=pull) a registry",
            metrics.blobs_transferred.clone(),
        );
        registry.register(
            "hoist_blobs_skipped",
            "Blobs a push did not upload: the registry had them (reason=exists) or mounted them from another repository (reason=mounted)",
            metrics.blobs_skipped.clone(),
        );
        registry.register(
            "hoist_retries",
            "Registry requests tried again, by cause",
            metrics.retries.clone(),
        );
        registry.register(
            "hoist_failures",
            "Pushes, pulls and loads that failed, by cause",
            metrics.failures.clone(),
        );
        registry.register_with_unit(
            "hoist_operation_duration",
            "How long pushes, pulls and loads took, by result (success, failure, cancelled)",
            Unit::Seconds,
            metrics.durations.clone(),
        );
        registry.register(
            "hoist_api_requests",
            "Engine API requests answered, by route template, method and status",
            metrics.api_requests.clone(),
        );
        registry.register(
            "hoist_uploads_in_flight",
            "Blob uploads sending bytes now (each holds a max-concurrent-uploads slot)",
            metrics.uploads_in_flight.clone(),
        );
        registry.register(
            "hoist_uploads_queued",
            "Blob uploads waiting for a max-concurrent-uploads slot",
            metrics.uploads_queued.clone(),
        );
        registry.register(
            "hoist_downloads_in_flight",
            "Blob downloads receiving bytes now (each holds a max-concurrent-downloads slot)",
            metrics.downloads_in_flight.clone(),
        );
        registry.register(
            "hoist_downloads_queued",
            "Blob downloads waiting for a max-concurrent-downloads slot",
            metrics.downloads_queued.clone(),
        );
        registry.register_with_unit(
            "hoist_store_size",
            "Bytes of every blob in the content store",
            Unit::Bytes,
            metrics.store_bytes.clone(),
        );
        registry.register(
            "hoist_images",
            "Images in the store, as docker info counts them",
            metrics.images.clone(),
        );
        metrics
    }

    /// Reads what is measured at scrape time: transfers now, and the store (blocking I/O).
    fn refresh(&self, engine: &Engine) {
        let activity = engine.transfer_activity();
        self.uploads_in_flight.set(gauge(activity.uploads_running));
        self.uploads_queued.set(gauge(activity.uploads_queued));
        self.downloads_in_flight
            .set(gauge(activity.downloads_running));
        self.downloads_queued.set(gauge(activity.downloads_queued));
        match engine.store_usage_blocking() {
            Ok(usage) => {
                self.store_bytes
                    .set(i64::try_from(usage.bytes).unwrap_or(i64::MAX));
                self.images.set(gauge(usage.images));
            }
            Err(e) => tracing::warn!(error = %e, "measuring the store for metrics failed"),
        }
    }
}

fn gauge(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

impl Observer for Metrics {
    fn blob_transferred(&self, direction: Direction, registry: &str, bytes: u64) {
        let labels = Transfer {
            registry: self.registry_labels.label(registry),
            direction: direction.as_str(),
        };
        self.transferred_bytes.get_or_create(&labels).inc_by(bytes);
        self.blobs_transferred.get_or_create(&labels).inc();
    }

    fn blob_skipped(&self, registry: &str, reason: SkipReason) {
        self.blobs_skipped
            .get_or_create(&Skip {
                registry: self.registry_labels.label(registry),
                reason: reason.as_str(),
            })
            .inc();
    }

    fn retried(&self, registry: &str, cause: RetryCause) {
        self.retries
            .get_or_create(&Retry {
                registry: self.registry_labels.label(registry),
                cause: cause.as_str(),
            })
            .inc();
    }

    fn finished(&self, operation: Operation, elapsed: Duration, result: Result<(), FailureCause>) {
        let outcome = match result {
            Ok(()) => "success",
            Err(FailureCause::Cancelled) => "cancelled",
            Err(_) => "failure",
        };
        self.durations
            .get_or_create(&Finished {
                operation: operation.as_str(),
                result: outcome,
            })
            .observe(elapsed.as_secs_f64());
        if let Err(cause) = result {
            self.failures
                .get_or_create(&Failure {
                    operation: operation.as_str(),
                    cause: cause.as_str(),
                })
                .inc();
        }
    }
}

/// The shared handle main hands to the engine, the API layer and the server.
pub type SharedMetrics = Arc<Metrics>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_labels_stop_growing_at_their_bound() {
        let labels = RegistryLabels::default();
        for i in 0..MAX_REGISTRY_LABELS {
            assert_eq!(
                labels.label(&format!("r{i}.example")),
                format!("r{i}.example")
            );
        }
        assert_eq!(labels.label("one-more.example"), "other");
        assert_eq!(
            labels.label("r0.example"),
            "r0.example",
            "a known host keeps its label"
        );
    }
}
