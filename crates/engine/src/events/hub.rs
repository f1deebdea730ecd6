//! The broadcast: a bounded history for replay and a bounded buffer per subscriber.

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::{Action, Event, EventFilter, EventType, HISTORY_LEN, SUBSCRIBER_BUFFER, SharedEvent};

/// What a subscriber asks for. Times are nanoseconds since the Unix epoch.
#[derive(Clone, Debug, Default)]
pub struct EventQuery {
    /// Replay the kept events from this time on.
    pub since: Option<i128>,
    /// Replay the kept events up to this time, and end the stream then: at once when it is
    /// already past.
    pub until: Option<i128>,
    pub filter: EventFilter,
}

/// The engine's events service. Cheap to clone; clones share everything.
#[derive(Clone)]
pub(crate) struct Events {
    hub: Arc<Mutex<Hub>>,
}

struct Hub {
    history: VecDeque<SharedEvent>,
    subscribers: Vec<Subscriber>,
    buffer: usize,
    next_id: u64,
}

struct Subscriber {
    id: u64,
    filter: EventFilter,
    sender: mpsc::Sender<SharedEvent>,
}

impl Events {
    pub fn new() -> Events {
        Events::with_buffer(SUBSCRIBER_BUFFER)
    }

    fn with_buffer(buffer: usize) -> Events {
        Events {
            hub: Arc::new(Mutex::new(Hub {
                history: VecDeque::with_capacity(HISTORY_LEN),
                subscribers: Vec::new(),
                buffer,
                next_id: 0,
            })),
        }
    }

    /// Records an event and hands it to every subscriber whose filter takes it, without waiting
    /// for any of them.
    pub fn publish(
        &self,
        event_type: EventType,
        action: Action,
        actor_id: String,
        attributes: BTreeMap<String, String>,
    ) {
        let mut hub = lock(&self.hub);
        // Stamped under the lock, so the history is in time order.
        let event = Arc::new(Event {
            event_type,
            action,
            actor_id,
            attributes,
            time_nano: now_nanos(),
        });
        if hub.history.len() == HISTORY_LEN {
            hub.history.pop_front();
        }
        hub.history.push_back(Arc::clone(&event));
        hub.subscribers.retain(|subscriber| {
            if !subscriber.filter.includes(&event) {
                return true;
            }
            match subscriber.sender.try_send(Arc::clone(&event)) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    tracing::warn!(
                        "an events subscriber fell {} events behind; ending its stream",
                        subscriber.sender.max_capacity()
                    );
                    false
                }
                Err(TrySendError::Closed(_)) => false,
            }
        });
    }

    /// The kept events the query's time window and filter select, then (unless `until` is
    /// past) the new ones as they happen, until `until`.
    pub fn subscribe(&self, query: EventQuery) -> EventStream {
        let mut hub = lock(&self.hub);
        let now = i128::from(now_nanos());
        let replay = if query.since.is_none() && query.until.is_none() {
            VecDeque::new()
        } else {
            let since = query.since.unwrap_or(i128::MIN);
            let until = query.until.unwrap_or(i128::MAX);
            let mut selected: VecDeque<SharedEvent> = hub
                .history
                .iter()
                .rev()
                .take_while(|e| i128::from(e.time_nano) >= since)
                .filter(|e| i128::from(e.time_nano) <= until && query.filter.includes(e))
                .cloned()
                .collect();
            selected.make_contiguous().reverse();
            selected
        };
        let only_past = query.until.is_some_and(|until| until < now);
        let live = (!only_past).then(|| {
            let (sender, receiver) = mpsc::channel(hub.buffer);
            let id = hub.next_id;
            hub.next_id += 1;
            hub.subscribers.push(Subscriber {
                id,
                filter: query.filter.clone(),
                sender,
            });
            Live {
                receiver,
                id,
                hub: Arc::downgrade(&self.hub),
            }
        });
        let deadline = match query.until {
            Some(until) if !only_past => {
                let wait = u64::try_from(until - now).unwrap_or(u64::MAX);
                Some(Box::pin(tokio::time::sleep(Duration::from_nanos(wait))))
            }
            _ => None,
        };
        EventStream {
            replay,
            live,
            deadline,
        }
    }

    /// Drops every subscriber: their streams end once drained.
    pub fn end_streams(&self) {
        lock(&self.hub).subscribers.clear();
    }

    #[cfg(test)]
    fn subscriber_count(&self) -> usize {
        lock(&self.hub).subscribers.len()
    }
}

/// The events a subscriber gets, in order. Ends at `until`, or when the subscriber fell too far
/// behind.
pub struct EventStream {
    replay: VecDeque<SharedEvent>,
    live: Option<Live>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// A registration with the hub, removed when the stream goes.
struct Live {
    receiver: mpsc::Receiver<SharedEvent>,
    id: u64,
    hub: Weak<Mutex<Hub>>,
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            lock(&hub).subscribers.retain(|s| s.id != self.id);
        }
    }
}

impl Stream for EventStream {
    type Item = SharedEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<SharedEvent>> {
        if let Some(event) = self.replay.pop_front() {
            return Poll::Ready(Some(event));
        }
        if let Some(deadline) = self.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            self.live = None;
            self.deadline = None;
        }
        match self.live.as_mut() {
            Some(live) => live.receiver.poll_recv(cx),
            None => Poll::Ready(None),
        }
    }
}

/// The hub's state stays consistent across a panic elsewhere (every change is one push or
/// retain), so a poisoned lock is used as it is.
fn lock(hub: &Mutex<Hub>) -> MutexGuard<'_, Hub> {
    hub.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    fn tag(events: &Events, id: &str) {
        events.publish(
            EventType::Image,
            Action::Tag,
            id.to_owned(),
            BTreeMap::new(),
        );
    }

    fn ids(events: &[SharedEvent]) -> Vec<&str> {
        events.iter().map(|e| e.actor_id.as_str()).collect()
    }

    #[tokio::test]
    async fn a_subscriber_that_does_not_read_is_dropped_and_never_waited_for() {
        let events = Events::with_buffer(4);
        let mut slow = events.subscribe(EventQuery::default());
        let mut reader = events.subscribe(EventQuery::default());
        let mut seen = Vec::new();
        for i in 0..10 {
            // Publishing returns at once whatever the slow subscriber does; a publish that
            // waited would hang this single-threaded test.
            tag(&events, &i.to_string());
            seen.push(reader.next().await.expect("the reading subscriber stays"));
        }
        assert_eq!(
            ids(&seen),
            ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
        );
        assert_eq!(events.subscriber_count(), 1, "the slow subscriber is gone");
        // The slow one gets what its buffer held, then its stream ends.
        let drained: Vec<SharedEvent> = slow.by_ref().collect().await;
        assert_eq!(ids(&drained), ["0", "1", "2", "3"]);
    }

    #[tokio::test]
    async fn a_dropped_stream_unsubscribes() {
        let events = Events::new();
        let stream = events.subscribe(EventQuery::default());
        assert_eq!(events.subscriber_count(), 1);
        drop(stream);
        assert_eq!(events.subscriber_count(), 0);
    }

    #[tokio::test]
    async fn the_history_keeps_the_last_events_and_replays_a_window() {
        let events = Events::new();
        for i in 0..HISTORY_LEN + 10 {
            tag(&events, &i.to_string());
        }
        let kept: Vec<SharedEvent> = lock(&events.hub).history.iter().cloned().collect();
        assert_eq!(kept.len(), HISTORY_LEN);
        assert_eq!(kept[0].actor_id, "10");
        let since = i128::from(kept[100].time_nano);
        let until = i128::from(kept[102].time_nano);
        let replayed: Vec<SharedEvent> = events
            .subscribe(EventQuery {
                since: Some(since),
                until: Some(until),
                filter: EventFilter::default(),
            })
            .collect()
            .await;
        // Stamps may repeat at a coarse clock; the window holds exactly the events stamped in it.
        let expected: Vec<&str> = kept
            .iter()
            .filter(|e| (since..=until).contains(&i128::from(e.time_nano)))
            .map(|e| e.actor_id.as_str())
            .collect();
        assert!(ids(&replayed).contains(&"110") && ids(&replayed).contains(&"112"));
        assert_eq!(
            ids(&replayed),
            expected,
            "a past `until` ends after the replay"
        );
    }

    #[tokio::test]
    async fn without_since_or_until_nothing_is_replayed() {
        let events = Events::new();
        tag(&events, "before");
        let mut stream = events.subscribe(EventQuery::default());
        tag(&events, "after");
        assert_eq!(stream.next().await.expect("live event").actor_id, "after");
    }

    #[tokio::test]
    async fn ended_streams_finish_with_what_they_hold() {
        let events = Events::new();
        let stream = events.subscribe(EventQuery::default());
        tag(&events, "held");
        events.end_streams();
        let got: Vec<SharedEvent> = stream.collect().await;
        assert_eq!(ids(&got), ["held"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_future_until_ends_the_live_stream_then() {
        let events = Events::new();
        let until = i128::from(now_nanos()) + 60 * 1_000_000_000;
        let stream = events.subscribe(EventQuery {
            since: None,
            until: Some(until),
            filter: EventFilter::default(),
        });
        tag(&events, "within");
        let got: Vec<SharedEvent> = stream.collect().await;
        assert_eq!(ids(&got), ["within"]);
        assert_eq!(events.subscriber_count(), 0);
    }
}
