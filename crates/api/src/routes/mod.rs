//! Route handlers, one file per area.

pub mod auth;
pub mod create;
pub mod disk_usage;
pub mod distribution;
pub mod events;
pub mod images;
pub mod list;
pub mod load;
pub mod prune;
pub mod push;
pub mod save;
pub mod search;
pub mod system;

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use hoist_engine::{EngineError, ProgressBoard};
use tokio::sync::mpsc::PermitIterator;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::io::StreamReader;
use tokio_util::sync::CancellationToken;

use crate::jsonmessage::JsonMessage;

/// A 200 response streaming JSON messages as they come, `Content-Type` exactly
/// `application/json` (the docker CLI renders the stream only then).
pub fn json_stream_response(
    messages: impl Stream<Item = JsonMessage> + Send + 'static,
) -> Response {
    let body = Body::from_stream(messages.map(|m| Ok::<_, std::convert::Infallible>(m.to_bytes())));
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The least time between two writes of a progress stream. Events that come sooner wait and go
/// out together in one write: a push of many small layers produces thousands of events, and a
/// write each cost hoistd and the client a wakeup per event (the docker CLI spent three times the
/// CPU reading them one by one). The end of the job is sent at once.
const PROGRESS_WRITE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

/// Runs a job that reports on a progress board (push, pull) in its own task and streams its
/// events as JSON messages. The response body holds the drop guard of the job's cancellation:
/// when the client goes away hyper drops the body and the job is cancelled. A job error after
/// the stream began ends it in-stream, with `errorDetail`.
pub fn progress_response<E, Job>(
    what: &'static str,
    make_progress: fn(&str, u64, u64) -> E,
    job: impl FnOnce(Arc<ProgressBoard<E>>) -> Job + Send + 'static,
    render: fn(E) -> Vec<JsonMessage>,
) -> Response
where
    E: Send + 'static,
    Job: Future<Output = Result<(), EngineError>> + Send + 'static,
{
    let board = Arc::new(ProgressBoard::new(make_progress));
    let cancel = CancellationToken::new();
    let guard = cancel.clone().drop_guard();
    let (result_tx, result_rx) = tokio::sync::oneshot::channel();
    let worker_board = Arc::clone(&board);
    tokio::spawn(async move {
        let outcome = tokio::select! {
            r = job(Arc::clone(&worker_board)) => r,
            _ = cancel.cancelled() => {
                tracing::info!("{what} cancelled: the client disconnected");
                return;
            }
        };
        let _ = result_tx.send(outcome);
        worker_board.close();
    });
    let state = (board, result_rx, guard, VecDeque::new(), None);
    let stream = futures_util::stream::unfold(Some(state), move |state| async move {
        let (board, result_rx, guard, mut pending, mut window_end) = state?;
        loop {
            if let Some(message) = pending.pop_front() {
                let state = (board, result_rx, guard, pending, window_end);
                return Some((message, Some(state)));
            }
            if let Some(end) = window_end {
                tokio::select! {
                    _ = tokio::time::sleep_until(end) => {}
                    _ = board.closed() => {}
                }
            }
            match board.next_batch().await {
                Some(events) => {
                    window_end = Some(tokio::time::Instant::now() + PROGRESS_WRITE_INTERVAL);
                    pending.extend(events.into_iter().flat_map(render));
                }
                // The board closes once the job ends; its result decides how the stream ends.
                None => {
                    return match result_rx.await {
                        Ok(Err(e)) => Some((JsonMessage::error(e.to_string()), None)),
                        _ => None,
                    };
                }
            }
        }
    });
    json_stream_response(stream)
}

/// Chunks of the request body that may wait for the engine.
const BODY_CHUNKS_AHEAD: usize = 32;
/// Free places the forwarder waits for before it reads on. An engine slower than the client
/// frees one place per chunk; waking the forwarder for each (a thread wakeup per ~32 KiB chunk
/// of a `docker load`) cost more CPU than moving the bytes, so it is woken once per this many.
const BODY_REFILL_CHUNKS: usize = BODY_CHUNKS_AHEAD / 2;

/// The request body as a reader for the engine. The body is always read to its end, even after
/// the engine stopped reading (a failed load or import), so that a client still uploading gets
/// to read the answer instead of a broken connection.
pub fn request_body_reader(body: Body) -> impl tokio::io::AsyncRead + Send + Unpin + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(BODY_CHUNKS_AHEAD);
    tokio::spawn(async move {
        let mut chunks = body.into_data_stream();
        let mut places = None;
        let mut forwarding = true;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(std::io::Error::other);
            let failed = chunk.is_err();
            if forwarding {
                if places
                    .as_ref()
                    .is_none_or(|left: &PermitIterator<'_, _>| left.len() == 0)
                {
                    places = tx.reserve_many(BODY_REFILL_CHUNKS).await.ok();
                }
                match places.as_mut().and_then(Iterator::next) {
                    Some(place) => place.send(chunk),
                    // The engine stopped reading.
                    None => forwarding = false,
                }
            }
            if failed {
                break;
            }
        }
    });
    StreamReader::new(ReceiverStream::new(rx))
}
