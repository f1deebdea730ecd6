//! A counting semaphore that hands permits to the waiter of highest priority first, and among
//! equal priorities to the earliest.
//!
//! Uploads ask with their blob size: starting the largest first shortens the tail of a push, as
//! small blobs fill the gaps while big ones run. Downloads all ask with the same priority and are
//! served first come first served. tokio's Semaphore is FIFO only, hence this small one.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

pub(crate) struct PrioritySemaphore {
    state: Mutex<State>,
}

struct State {
    available: usize,
    /// Permits to retire as they come back, after the number of slots was lowered while more
    /// than the new number were held: transfers running are never interrupted for it.
    retiring: usize,
    /// The number of slots.
    total: usize,
    waiters: BinaryHeap<Waiter>,
    next_seq: u64,
}

struct Waiter {
    priority: u64,
    seq: u64,
    grant: oneshot::Sender<PriorityPermit>,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiter {
    // Highest priority first; among equals, the earliest arrival.
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// How busy the slots are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotLoad {
    /// Transfers holding a slot.
    pub running: usize,
    /// Transfers waiting for one.
    pub queued: usize,
}

/// Held while a transfer runs; dropping it passes the slot to the best waiter.
pub(crate) struct PriorityPermit {
    semaphore: Arc<PrioritySemaphore>,
}

impl Drop for PriorityPermit {
    fn drop(&mut self) {
        self.semaphore.release();
    }
}

impl PrioritySemaphore {
    pub fn new(permits: usize) -> Arc<PrioritySemaphore> {
        Arc::new(PrioritySemaphore {
            state: Mutex::new(State {
                available: permits.max(1),
                retiring: 0,
                total: permits.max(1),
                waiters: BinaryHeap::new(),
                next_seq: 0,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A permit at once if one is free and nobody is queued ahead.
    pub fn try_acquire(self: &Arc<Self>) -> Option<PriorityPermit> {
        let mut s = self.lock();
        if s.available > 0 && s.waiters.is_empty() {
            s.available -= 1;
            return Some(PriorityPermit {
                semaphore: Arc::clone(self),
            });
        }
        None
    }

    /// Waits for a permit; larger `priority` is served first. Cancel-safe: a permit granted to a
    /// waiter that has gone away is dropped with its receiver, which releases it again.
    pub async fn acquire(self: &Arc<Self>, priority: u64) -> PriorityPermit {
        let rx = {
            let mut s = self.lock();
            if s.available > 0 && s.waiters.is_empty() {
                s.available -= 1;
                return PriorityPermit {
                    semaphore: Arc::clone(self),
                };
            }
            let (tx, rx) = oneshot::channel();
            let seq = s.next_seq;
            s.next_seq += 1;
            s.waiters.push(Waiter {
                priority,
                seq,
                grant: tx,
            });
            rx
        };
        match rx.await {
            Ok(permit) => permit,
            // The semaphore lives as long as `self`, so the sender is never dropped unsent except
            // by `release`, which always sends; this arm is unreachable in practice.
            Err(_) => Box::pin(self.acquire(priority)).await,
        }
    }

    /// Changes the number of slots to `permits` (at least 1). More slots go to waiters at once;
    /// fewer take free slots away first, then retire held ones as their transfers end.
    pub fn resize(self: &Arc<Self>, permits: usize) {
        let permits = permits.max(1);
        let added = {
            let mut s = self.lock();
            let old = s.total;
            s.total = permits;
            if permits < old {
                let remove = old - permits;
                let free = remove.min(s.available);
                s.available -= free;
                s.retiring += remove - free;
                0
            } else {
                let add = permits - old;
                let unretired = add.min(s.retiring);
                s.retiring -= unretired;
                add - unretired
            }
        };
        for _ in 0..added {
            self.release();
        }
    }

    fn release(self: &Arc<Self>) {
        let mut s = self.lock();
        if s.retiring > 0 {
            s.retiring -= 1;
            return;
        }
        while let Some(waiter) = s.waiters.pop() {
            let permit = PriorityPermit {
                semaphore: Arc::clone(self),
            };
            match waiter.grant.send(permit) {
                Ok(()) => return,
                // The waiter gave up; do not run this permit's Drop under our lock.
                Err(permit) => std::mem::forget(permit),
            }
        }
        s.available += 1;
    }

    /// Permits held, and waiters still waiting (one that gave up stays queued, unseen here,
    /// until a release skips it).
    pub fn load(&self) -> SlotLoad {
        let s = self.lock();
        SlotLoad {
            // Slots in use are those not free, plus the ones to retire once given back.
            running: (s.total + s.retiring).saturating_sub(s.available),
            queued: s.waiters.iter().filter(|w| !w.grant.is_closed()).count(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn largest_waiter_goes_first() {
        let sem = PrioritySemaphore::new(1);
        let held = sem.try_acquire().expect("free permit");
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for size in [10u64, 300, 20, 200] {
            let (sem, order) = (Arc::clone(&sem), Arc::clone(&order));
            tasks.push(tokio::spawn(async move {
                let _p = sem.acquire(size).await;
                order.lock().unwrap().push(size);
            }));
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![300, 200, 20, 10]);
    }

    #[tokio::test]
    async fn equal_priorities_go_in_order_of_arrival() {
        let sem = PrioritySemaphore::new(1);
        let held = sem.try_acquire().expect("free permit");
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for n in [1u32, 2, 3] {
            let (sem, order) = (Arc::clone(&sem), Arc::clone(&order));
            tasks.push(tokio::spawn(async move {
                let _p = sem.acquire(0).await;
                order.lock().unwrap().push(n);
            }));
            tokio::task::yield_now().await;
        }
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![1, 2, 3]);
    }

    #[tokio::test]
    async fn resizing_keeps_held_permits_and_changes_what_is_handed_out() {
        let sem = PrioritySemaphore::new(2);
        let a = sem.try_acquire().unwrap();
        let b = sem.try_acquire().unwrap();
        sem.resize(1);
        drop(a);
        assert!(sem.try_acquire().is_none(), "the returned slot was retired");
        drop(b);
        let c = sem.try_acquire().expect("one slot left");
        assert!(sem.try_acquire().is_none());
        let waiter = {
            let sem = Arc::clone(&sem);
            tokio::spawn(async move { sem.acquire(1).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        sem.resize(3);
        let _granted = waiter.await.expect("a new slot went to the waiter");
        assert!(sem.try_acquire().is_some(), "and one is free");
        drop(c);
    }

    #[tokio::test]
    async fn cancelled_waiter_does_not_leak_a_permit() {
        let sem = PrioritySemaphore::new(1);
        let held = sem.try_acquire().unwrap();
        let waiting = {
            let sem = Arc::clone(&sem);
            tokio::spawn(async move { sem.acquire(5).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        waiting.abort();
        let _ = waiting.await;
        drop(held);
        assert!(sem.try_acquire().is_some(), "permit came back");
    }
}
