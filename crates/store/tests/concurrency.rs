//! Loads, deletes, pushes and GC at once, from many threads.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use common::*;
use hoist_store::{Descriptor, Digest, Store};

const LOADERS: usize = 4;

/// Stops the background threads even when a loader panics, so a failure fails instead of hanging.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
const IMAGES_PER_LOADER: usize = 12;

/// Every blob reachable from `target` (absent ones included).
fn reachable(store: &Store, target: &Descriptor) -> BTreeSet<Digest> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![target.clone()];
    while let Some(desc) = stack.pop() {
        if seen.insert(desc.digest.clone()) && store.has_blob(&desc.digest) {
            stack.extend(store.children(&desc).unwrap());
        }
    }
    seen
}

#[test]
fn loads_deletes_and_pushes_race_with_gc_without_losing_or_leaking_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let done = AtomicBool::new(false);

    thread::scope(|scope| {
        let gc = scope.spawn(|| {
            let mut runs = 0;
            while !done.load(Ordering::Relaxed) {
                store.gc().unwrap();
                runs += 1;
            }
            runs
        });

        // A pusher: protect whatever an image points at, then everything it reaches must stay
        // readable for as long as the lease lives, whatever the deleters do.
        let pusher = scope.spawn(|| {
            let mut pushed = 0;
            while !done.load(Ordering::Relaxed) {
                for record in store.images() {
                    let lease = store.lease();
                    lease.protect(&record.target.digest);
                    if !store.has_blob(&record.target.digest) {
                        continue; // deleted and collected before we protected it
                    }
                    for digest in reachable(&store, &record.target) {
                        store.read_blob(&digest, 1 << 20).unwrap();
                    }
                    pushed += 1;
                }
            }
            pushed
        });

        let stop = StopOnDrop(&done);
        let loaders: Vec<_> = (0..LOADERS)
            .map(|loader| {
                let store = &store;
                scope.spawn(move || {
                    for i in 0..IMAGES_PER_LOADER {
                        // Every image shares a base layer with all the others, and a middle
                        // layer with the other loaders' image of the same index.
                        let middle = format!("middle {i}");
                        let own = format!("own {loader}/{i}");
                        let image = Image::new(
                            &format!("{loader}/{i}"),
                            &[b"base", middle.as_bytes(), own.as_bytes()],
                        );
                        image.load(store, &format!("loader{loader}/image:{i}"));
                        // Delete every other one, some while other loaders still write them.
                        if i % 2 == 1 {
                            let name = format!("loader{loader}/image:{}", i - 1);
                            store.apply(vec![delete(&name)]).unwrap();
                        }
                    }
                })
            })
            .collect();
        for loader in loaders {
            loader.join().unwrap();
        }
        drop(stop);
        assert!(gc.join().unwrap() > 0);
        pusher.join().unwrap();
    });

    let records = store.images();
    assert_eq!(records.len(), LOADERS * IMAGES_PER_LOADER / 2);
    let mut wanted = BTreeSet::new();
    for record in &records {
        for digest in reachable(&store, &record.target) {
            assert!(store.has_blob(&digest), "{} lost {digest}", record.name);
            wanted.insert(digest);
        }
    }
    // Nothing leaked either: the collections after deletes and lease drops got everything.
    assert_eq!(blobs_on_disk(dir.path()), wanted);
    assert_eq!(store.gc().unwrap().removed_blobs, 0);
    assert_eq!(ingest_entries(dir.path()), 0);
}
