//! A pull-based progress board between transfers and the client stream.
//!
//! Transfers only bump an atomic byte counter per chunk and post a handful of discrete events per
//! blob, so they never wait on the client. The client side pulls: queued events first, in order,
//! then for each active bar a progress sample at most every 100 ms, and only when it moved. A slow
//! client therefore sees fewer samples, never a backlog, and never slows an upload.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hoist_registry::Progress;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How often a bar may be sampled: about ten updates per second per layer, as moby rate-limits.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

pub struct ProgressBoard<E> {
    state: Mutex<BoardState<E>>,
    wake: Notify,
    /// Cancelled by `close`, for a client that waits on purpose and must not wait past the end.
    closed: CancellationToken,
    make_progress: fn(&str, u64, u64) -> E,
}

struct BoardState<E> {
    queue: VecDeque<E>,
    bars: Vec<Bar>,
    /// Where the next scan of `bars` starts, so every bar gets its turn.
    cursor: usize,
    closed: bool,
}

struct Bar {
    id: String,
    counter: Progress,
    total: u64,
    last_reported: Option<u64>,
    last_at: Option<Instant>,
}

impl<E> ProgressBoard<E> {
    pub fn new(make_progress: fn(&str, u64, u64) -> E) -> ProgressBoard<E> {
        ProgressBoard {
            state: Mutex::new(BoardState {
                queue: VecDeque::new(),
                bars: Vec::new(),
                cursor: 0,
                closed: false,
            }),
            wake: Notify::new(),
            closed: CancellationToken::new(),
            make_progress,
        }
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut BoardState<E>) -> T) -> T {
        // A panic while holding this lock cannot leave the queue inconsistent, so recover it.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut state)
    }

    pub fn post(&self, event: E) {
        self.with_state(|s| s.queue.push_back(event));
        self.wake.notify_one();
    }

    /// Starts (or restarts, after a retry) sampling `counter` for `id`.
    pub fn start_bar(&self, id: &str, counter: Progress, total: u64) {
        self.with_state(|s| {
            s.bars.retain(|b| b.id != id);
            s.bars.push(Bar {
                id: id.to_owned(),
                counter,
                total,
                last_reported: None,
                last_at: None,
            });
        });
        self.wake.notify_one();
    }

    /// Stops sampling `id` and queues `event` in the same step, so no stale sample can follow it.
    pub fn finish_bar(&self, id: &str, event: E) {
        self.with_state(|s| {
            s.bars.retain(|b| b.id != id);
            s.queue.push_back(event);
        });
        self.wake.notify_one();
    }

    /// No more events will be posted; `next` returns None once the queue is drained.
    pub fn close(&self) {
        self.with_state(|s| {
            s.closed = true;
            s.bars.clear();
        });
        self.closed.cancel();
        self.wake.notify_one();
    }

    /// Completes once `close` was called.
    pub async fn closed(&self) {
        self.closed.cancelled().await
    }

    /// Every event ready now, in order, waiting for at least one; None when closed and drained.
    pub async fn next_batch(&self) -> Option<Vec<E>> {
        let first = self.next().await?;
        let mut batch = vec![first];
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        batch.extend(s.queue.drain(..));
        while let Some(sample) = self.sample(&mut s) {
            batch.push(sample);
        }
        Some(batch)
    }

    /// The next event for the client, waiting as needed; None when closed and drained.
    pub async fn next(&self) -> Option<E> {
        loop {
            let sleep_for = {
                let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(event) = s.queue.pop_front() {
                    return Some(event);
                }
                if let Some(event) = self.sample(&mut s) {
                    return Some(event);
                }
                if s.closed {
                    return None;
                }
                (!s.bars.is_empty()).then_some(SAMPLE_INTERVAL / 2)
            };
            match sleep_for {
                Some(d) => {
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(d) => {}
                    }
                }
                None => self.wake.notified().await,
            }
        }
    }

    fn sample(&self, s: &mut BoardState<E>) -> Option<E> {
        let now = Instant::now();
        let n = s.bars.len();
        for step in 0..n {
            let i = (s.cursor + step) % n;
            let bar = &mut s.bars[i];
            let current = bar.counter.get().min(bar.total);
            let due = bar
                .last_at
                .is_none_or(|t| now.duration_since(t) >= SAMPLE_INTERVAL);
            if due
                && bar.last_reported != Some(current)
                && (current > 0 || bar.last_reported.is_none())
            {
                bar.last_reported = Some(current);
                bar.last_at = Some(now);
                s.cursor = i + 1;
                return Some((self.make_progress)(&bar.id, current, bar.total));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum Ev {
        Note(&'static str),
        Bytes(String, u64, u64),
    }

    fn board() -> ProgressBoard<Ev> {
        ProgressBoard::new(|id, c, t| Ev::Bytes(id.to_owned(), c, t))
    }

    #[tokio::test]
    async fn queued_events_come_in_order_then_close() {
        let b = board();
        b.post(Ev::Note("a"));
        b.post(Ev::Note("b"));
        b.close();
        assert_eq!(b.next().await, Some(Ev::Note("a")));
        assert_eq!(b.next().await, Some(Ev::Note("b")));
        assert_eq!(b.next().await, None);
    }

    #[tokio::test]
    async fn progress_is_coalesced_and_never_follows_finish() {
        let b = board();
        let p = Progress::default();
        b.start_bar("l1", p.clone(), 100);
        // Many bumps between two pulls give one sample with the latest value.
        for _ in 0..50 {
            p.set(p.get() + 1);
        }
        assert_eq!(b.next().await, Some(Ev::Bytes("l1".into(), 50, 100)));
        p.set(p.get() + 50);
        b.finish_bar("l1", Ev::Note("pushed"));
        assert_eq!(b.next().await, Some(Ev::Note("pushed")));
        b.close();
        assert_eq!(b.next().await, None);
    }

    #[tokio::test]
    async fn a_batch_holds_every_ready_event_and_each_moved_bar_once() {
        let b = board();
        let (p1, p2, p3) = (
            Progress::default(),
            Progress::default(),
            Progress::default(),
        );
        b.start_bar("l1", p1.clone(), 10);
        b.start_bar("l2", p2.clone(), 10);
        b.start_bar("l3", p3.clone(), 10);
        p1.set(3);
        p3.set(7);
        b.post(Ev::Note("a"));
        b.post(Ev::Note("b"));
        let batch = b.next_batch().await.expect("open board");
        assert_eq!(
            batch,
            vec![
                Ev::Note("a"),
                Ev::Note("b"),
                Ev::Bytes("l1".into(), 3, 10),
                Ev::Bytes("l2".into(), 0, 10),
                Ev::Bytes("l3".into(), 7, 10),
            ]
        );
        b.close();
        b.closed().await;
        assert_eq!(b.next_batch().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn samples_are_rate_limited() {
        let b = board();
        let p = Progress::default();
        b.start_bar("l1", p.clone(), 10);
        p.set(p.get() + 1);
        assert_eq!(b.next().await, Some(Ev::Bytes("l1".into(), 1, 10)));
        p.set(p.get() + 1);
        let start = tokio::time::Instant::now();
        assert_eq!(b.next().await, Some(Ev::Bytes("l1".into(), 2, 10)));
        assert!(start.elapsed() >= SAMPLE_INTERVAL / 2);
    }
}
