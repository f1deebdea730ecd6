//! Streaming bodies: nothing is buffered whole, since layers may be 1 GiB.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::sync::{Notify, mpsc};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub(crate) type ProxyBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

pub(crate) fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub(crate) fn empty() -> ProxyBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed()
}

/// The request body sent upstream, fed frame by frame by the pump task. A bounded channel of one
/// frame keeps the client's upload paced by the registry's reading.
pub(crate) struct ChannelBody {
    pub rx: mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
    /// The client's `Content-Length`, so upstream gets the same framing.
    pub length: Option<u64>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx.poll_recv(cx)
    }

    fn size_hint(&self) -> SizeHint {
        match self.length {
            Some(length) => SizeHint::with_exact(length),
            None => SizeHint::default(),
        }
    }
}

/// The upstream response body passed to the client, calling `on_end` once when it ends or is
/// dropped.
pub(crate) struct EndingBody<F: FnOnce() + Send + Unpin> {
    pub inner: Incoming,
    pub on_end: Option<F>,
}

impl<F: FnOnce() + Send + Unpin> EndingBody<F> {
    fn end(&mut self) {
        if let Some(on_end) = self.on_end.take() {
            on_end();
        }
    }
}

impl<F: FnOnce() + Send + Unpin> Body for EndingBody<F> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) | Poll::Ready(Some(Err(_))) = &polled {
            self.end();
        }
        polled.map(|frame| frame.map(|r| r.map_err(BoxError::from)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<F: FnOnce() + Send + Unpin> Drop for EndingBody<F> {
    fn drop(&mut self) {
        self.end();
    }
}

/// A response body cut after `limit` bytes: those are passed on, then the connection is reset
/// (through `abort`) and the body never ends, so the client sees a reset mid-body.
pub(crate) struct CutBody {
    inner: ProxyBody,
    remaining: u64,
    abort: Option<Arc<Notify>>,
}

/// How long the bytes before the cut get to reach the client's socket before the reset: the
/// connection is written by hyper, which may still hold them when the body says it is done.
const FLUSH_BEFORE_RESET: Duration = Duration::from_millis(100);

impl CutBody {
    pub(crate) fn new(inner: ProxyBody, limit: u64, abort: Arc<Notify>) -> CutBody {
        CutBody {
            inner,
            remaining: limit,
            abort: Some(abort),
        }
    }
}

impl Body for CutBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.remaining == 0 {
            if let Some(abort) = self.abort.take() {
                tokio::spawn(async move {
                    tokio::time::sleep(FLUSH_BEFORE_RESET).await;
                    abort.notify_one();
                });
            }
            return Poll::Pending;
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(mut data) => {
                    if data.len() as u64 > self.remaining {
                        data.truncate(self.remaining as usize);
                    }
                    self.remaining -= data.len() as u64;
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            other => other,
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
