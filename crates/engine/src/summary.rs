//! How a push, pull or load ended: its duration and result for the observer, and for a push or
//! pull one summary line at info with what it moved. An operation dropped before its end (the
//! client went away) is reported as cancelled.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::error::EngineError;
use crate::observe::{FailureCause, ObserverHandle, Operation};

/// What one push or pull moved, counted as its blob transfers end. Shared transfers count for
/// every operation that watched them.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Bytes of the blobs this operation's transfers uploaded or downloaded.
    bytes: AtomicU64,
    /// Blobs uploaded (push) or downloaded (pull).
    transferred: AtomicU64,
    /// Push: blobs the registry had. Pull: blobs the store had.
    present: AtomicU64,
    /// Push: blobs mounted from another repository.
    mounted: AtomicU64,
    /// Waits before another attempt, of the transfers watched.
    retries: AtomicU64,
}

impl Tally {
    pub fn transferred(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.transferred.fetch_add(1, Ordering::Relaxed);
    }

    pub fn present(&self, blobs: u64) {
        self.present.fetch_add(blobs, Ordering::Relaxed);
    }

    pub fn mounted(&self) {
        self.mounted.fetch_add(1, Ordering::Relaxed);
    }

    pub fn retried(&self, times: u32) {
        self.retries.fetch_add(u64::from(times), Ordering::Relaxed);
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Times one operation from its start; reports when finished or dropped.
pub(crate) struct OperationReport {
    operation: Operation,
    started: Instant,
    observer: ObserverHandle,
    /// For a push or pull: what the summary line names, and what it counts.
    summary: Option<SummaryLine>,
    finished: bool,
}

struct SummaryLine {
    /// The reference as given, fully qualified: no credentials ever appear in one.
    reference: String,
    registry: String,
    tally: Arc<Tally>,
}

impl OperationReport {
    /// A load: duration and result only.
    pub fn start(operation: Operation, observer: ObserverHandle) -> OperationReport {
        OperationReport {
            operation,
            started: Instant::now(),
            observer,
            summary: None,
            finished: false,
        }
    }

    /// A push or pull, whose end is also logged as one line.
    pub fn start_logged(
        operation: Operation,
        observer: ObserverHandle,
        reference: String,
        registry: String,
        tally: Arc<Tally>,
    ) -> OperationReport {
        let mut report = OperationReport::start(operation, observer);
        report.summary = Some(SummaryLine {
            reference,
            registry,
            tally,
        });
        report
    }

    pub fn finish<T>(mut self, result: &Result<T, EngineError>) {
        self.finished = true;
        let outcome = match result {
            Ok(_) => Ok(()),
            Err(e) => Err((FailureCause::of(e), e.to_string())),
        };
        self.report(outcome);
    }

    fn report(&self, outcome: Result<(), (FailureCause, String)>) {
        let elapsed = self.started.elapsed();
        self.observer.finished(
            self.operation,
            elapsed,
            outcome.as_ref().map(|_| ()).map_err(|(cause, _)| *cause),
        );
        let Some(line) = &self.summary else {
            return;
        };
        let (result, error) = match &outcome {
            Ok(()) => ("success", None),
            Err((FailureCause::Cancelled, _)) => ("cancelled", None),
            Err((_, message)) => ("failure", Some(message.as_str())),
        };
        let cause = outcome.as_ref().err().map(|(cause, _)| cause.as_str());
        let t = &line.tally;
        let duration_seconds = elapsed.as_secs_f64();
        match self.operation {
            Operation::Push => tracing::info!(
                reference = %line.reference,
                registry = %line.registry,
                bytes = Tally::get(&t.bytes),
                blobs_uploaded = Tally::get(&t.transferred),
                blobs_skipped = Tally::get(&t.present),
                blobs_mounted = Tally::get(&t.mounted),
                retries = Tally::get(&t.retries),
                duration_seconds,
                result,
                cause,
                error,
                "push finished"
            ),
            Operation::Pull | Operation::Load => tracing::info!(
                reference = %line.reference,
                registry = %line.registry,
                bytes = Tally::get(&t.bytes),
                blobs_downloaded = Tally::get(&t.transferred),
                blobs_present = Tally::get(&t.present),
                retries = Tally::get(&t.retries),
                duration_seconds,
                result,
                cause,
                error,
                "pull finished"
            ),
        }
    }
}

impl Drop for OperationReport {
    fn drop(&mut self) {
        if !self.finished {
            self.report(Err((FailureCause::Cancelled, String::new())));
        }
    }
}
