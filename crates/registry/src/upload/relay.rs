//! A blob read from one registry as the body of an upload to another: checked against its size
//! and digest as it passes, so that the target can never be handed bytes other than the blob.
//!
//! Memory stays constant: chunks are pulled from the source only as the request body is
//! written, and one chunk is held back until the source has ended and the digest is known to
//! match. A mismatch, an overlong or short source, or a failing source fails the body instead
//! of ending it, so the target sees an interrupted request and never commits.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use hoist_reference::Digest;
use sha2::Digest as _;

use super::range::Progress;
use crate::RegistryError;

/// The bytes of a blob as another registry serves them.
pub(crate) type SourceStream = Pin<Box<dyn Stream<Item = Result<Bytes, RegistryError>> + Send>>;

/// Why the body stopped, kept for the caller: hyper only reports that the body failed.
#[derive(Clone, Default)]
pub(crate) struct RelayFailure(Arc<Mutex<Option<RegistryError>>>);

impl RelayFailure {
    fn record(&self, error: RegistryError) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(error);
    }

    pub(crate) fn take(&self) -> Option<RegistryError> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// The hash functions a digest may name.
enum Hasher {
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl Hasher {
    fn for_digest(digest: &Digest) -> Option<Hasher> {
        match digest.algorithm() {
            "sha256" => Some(Hasher::Sha256(sha2::Sha256::new())),
            "sha384" => Some(Hasher::Sha384(sha2::Sha384::new())),
            "sha512" => Some(Hasher::Sha512(sha2::Sha512::new())),
            _ => None,
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha384(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    fn hex(self) -> String {
        match self {
            Hasher::Sha256(h) => hex_of(&h.finalize()),
            Hasher::Sha384(h) => hex_of(&h.finalize()),
            Hasher::Sha512(h) => hex_of(&h.finalize()),
        }
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The source's chunks, verified, as a request body.
pub(crate) struct VerifiedBody {
    source: SourceStream,
    digest: Digest,
    size: u64,
    /// The origin's host, for messages.
    origin: String,
    hasher: Option<Hasher>,
    /// The last chunk read, sent only once the next one (or the verified end) is in.
    held: Option<Bytes>,
    received: u64,
    /// Grows as chunks are handed to the request.
    progress: Progress,
    failure: RelayFailure,
    finished: bool,
}

impl VerifiedBody {
    pub(crate) fn new(
        source: SourceStream,
        digest: Digest,
        size: u64,
        origin: String,
        progress: Progress,
        failure: RelayFailure,
    ) -> VerifiedBody {
        VerifiedBody {
            source,
            hasher: Hasher::for_digest(&digest),
            digest,
            size,
            origin,
            held: None,
            received: 0,
            progress,
            failure,
            finished: false,
        }
    }

    fn fail(&mut self, error: RegistryError) -> Poll<Option<Result<Bytes, std::io::Error>>> {
        let message = error.to_string();
        self.failure.record(error);
        self.finished = true;
        self.held = None;
        Poll::Ready(Some(Err(std::io::Error::other(message))))
    }

    fn invalid(&self, message: String) -> RegistryError {
        RegistryError::invalid_response("relay blob from", &self.origin, message)
    }

    fn hand_over(&self, chunk: Bytes) -> Poll<Option<Result<Bytes, std::io::Error>>> {
        self.progress.add(chunk.len() as u64);
        Poll::Ready(Some(Ok(chunk)))
    }

    /// The held chunk once the source has ended: only when size and digest are right.
    fn finish(&mut self) -> Poll<Option<Result<Bytes, std::io::Error>>> {
        if self.received != self.size {
            let message = format!(
                "blob {} ended after {} of {} bytes",
                self.digest, self.received, self.size
            );
            return self.fail(self.invalid(message));
        }
        let Some(hasher) = self.hasher.take() else {
            let message = format!("unsupported digest algorithm in {}", self.digest);
            return self.fail(self.invalid(message));
        };
        let actual = format!("{}:{}", self.digest.algorithm(), hasher.hex());
        if actual != self.digest.as_str() {
            let error = RegistryError::DigestMismatch {
                operation: "relay blob from".to_owned(),
                host: self.origin.clone(),
                expected: self.digest.clone(),
                actual,
            };
            return self.fail(error);
        }
        self.finished = true;
        match self.held.take() {
            Some(chunk) => self.hand_over(chunk),
            None => Poll::Ready(None),
        }
    }
}

impl Stream for VerifiedBody {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        loop {
            match this.source.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return this.fail(e),
                Poll::Ready(None) => return this.finish(),
                Poll::Ready(Some(Ok(chunk))) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    this.received += chunk.len() as u64;
                    if this.received > this.size {
                        let message = format!(
                            "blob {} is longer than its {} bytes",
                            this.digest, this.size
                        );
                        return this.fail(this.invalid(message));
                    }
                    if let Some(hasher) = &mut this.hasher {
                        hasher.update(&chunk);
                    }
                    if let Some(previous) = this.held.replace(chunk) {
                        return this.hand_over(previous);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    fn digest_of(bytes: &[u8]) -> Digest {
        Digest::sha256_from_bytes(&sha2::Sha256::digest(bytes).into())
    }

    fn body(chunks: Vec<&'static [u8]>, digest: Digest, size: u64) -> (VerifiedBody, RelayFailure) {
        let failure = RelayFailure::default();
        let source = futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, RegistryError>(Bytes::from_static(c))),
        );
        let body = VerifiedBody::new(
            Box::pin(source),
            digest,
            size,
            "origin:5000".into(),
            Progress::new(),
            failure.clone(),
        );
        (body, failure)
    }

    async fn collect(body: VerifiedBody) -> (Vec<u8>, bool) {
        let items: Vec<_> = body.collect().await;
        let failed = items.iter().any(|i| i.is_err());
        let bytes = items
            .into_iter()
            .filter_map(Result::ok)
            .flat_map(|b| b.to_vec())
            .collect();
        (bytes, failed)
    }

    #[tokio::test]
    async fn passes_the_blob_through_when_it_matches() {
        let (b, failure) = body(
            vec![b"hello ", b"", b"world"],
            digest_of(b"hello world"),
            11,
        );
        let progress = b.progress.clone();
        assert_eq!(collect(b).await, (b"hello world".to_vec(), false));
        assert_eq!(progress.get(), 11);
        assert!(failure.take().is_none());
    }

    #[tokio::test]
    async fn never_hands_over_the_last_chunk_of_a_wrong_blob() {
        let (b, failure) = body(vec![b"hello ", b"earth"], digest_of(b"hello world"), 11);
        let (bytes, failed) = collect(b).await;
        assert!(failed);
        assert_eq!(bytes, b"hello ");
        assert!(matches!(
            failure.take(),
            Some(RegistryError::DigestMismatch { .. })
        ));
    }

    #[tokio::test]
    async fn short_and_long_sources_fail() {
        let digest = digest_of(b"hello world");
        let (b, failure) = body(vec![b"hello"], digest.clone(), 11);
        assert!(collect(b).await.1);
        assert!(failure.take().unwrap().to_string().contains("5 of 11"));
        let (b, failure) = body(vec![b"hello world", b"!"], digest, 11);
        let (bytes, failed) = collect(b).await;
        assert!(
            failed && bytes.is_empty(),
            "nothing of an overlong blob goes out"
        );
        assert!(failure.take().unwrap().to_string().contains("longer"));
    }
}
