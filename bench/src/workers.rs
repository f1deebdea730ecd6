//! The raw clients' transfer loop: N threads, each on its own kept-alive connection, taking
//! work items from a shared list until it is empty.

use std::sync::Mutex;

use anyhow::Result;

use crate::http::Conn;

/// Runs `work` on every item of `items` on `parallel` threads, each with one connection to
/// `registry`, taking items from the back (sort ascending to go largest first); the sum of what
/// `work` returned, or the first error.
pub fn drain<T: Send>(
    registry: &str,
    parallel: usize,
    items: Vec<T>,
    work: impl Fn(&mut Conn, T) -> Result<u64> + Sync,
) -> Result<u64> {
    let queue = Mutex::new(items);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..parallel)
            .map(|_| {
                scope.spawn(|| -> Result<u64> {
                    let mut conn = Conn::open(registry)?;
                    let mut total = 0;
                    loop {
                        let Some(item) = queue.lock().expect("queue lock").pop() else {
                            return Ok(total);
                        };
                        total += work(&mut conn, item)?;
                    }
                })
            })
            .collect();
        let mut total = 0;
        for worker in workers {
            total += worker.join().expect("worker panicked")?;
        }
        Ok(total)
    })
}
