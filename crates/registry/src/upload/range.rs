//! A range of a blob file as one request's body: how much of it went out, and what went wrong
//! reading it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::source::BlobSource;
use crate::RegistryError;

/// `len` bytes of a blob's file from `offset`: a request body, whichever way it is sent.
pub(crate) struct FileRange<'a> {
    pub(crate) source: &'a BlobSource,
    /// Within the blob: `offset + len` is at most its size.
    pub(crate) offset: u64,
    pub(crate) len: u64,
    /// Grows as the bytes are taken for sending.
    pub(crate) progress: &'a Progress,
    /// Where a failed read of the file is kept, since hyper reports it only as a body error.
    pub(crate) read_failure: &'a ReadFailure,
}

/// Bytes of one blob the registry has been sent (or has confirmed). Cheap to share and bump.
#[derive(Clone, Default, Debug)]
pub struct Progress(Arc<AtomicU64>);

impl Progress {
    pub fn new() -> Progress {
        Progress::default()
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    pub fn set(&self, bytes: u64) {
        self.0.store(bytes, Ordering::Relaxed);
    }

    pub(crate) fn add(&self, bytes: u64) {
        self.0.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// The first error from reading the local file, so an upload that failed because of our disk
/// is reported as such rather than as a network failure.
#[derive(Clone, Default)]
pub(crate) struct ReadFailure(Arc<Mutex<Option<std::io::Error>>>);

impl ReadFailure {
    pub(crate) fn record(&self, error: &std::io::Error) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(std::io::Error::new(error.kind(), error.to_string()));
        }
    }

    pub(crate) fn take(&self, source: &BlobSource) -> Option<RegistryError> {
        let error = self.0.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        Some(source.read_error(error))
    }
}
