//! A store with 100,000 image records: one tag must cost what one record costs, not what all of
//! them do. Measured in bytes handed to the kernel (`/proc/self/io`, `wchar`), not in time, so the
//! test means the same on any machine; it is alone in its binary so that nothing else writes.

mod common;

use common::*;
use hoist_store::{ImageChange, Store};

const RECORDS: usize = 100_000;
const BATCH: usize = 25_000;

/// Bytes this process has passed to write(2) and its kin so far.
fn bytes_written() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap();
    io.lines()
        .find_map(|line| line.strip_prefix("wchar: "))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn one_tag_among_100k_records_writes_a_few_pages_not_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = Image::new("a", &[b"layer"]);
    image.load(&store, "seed");
    for batch in 0..RECORDS / BATCH {
        let changes: Vec<ImageChange> = (0..BATCH)
            .map(|i| {
                let name = format!("registry.example/team/repo-{batch}-{i}:tag");
                put(&name, &image.manifest.0)
            })
            .collect();
        store.apply(changes).unwrap();
    }
    assert_eq!(store.images().len(), RECORDS + 1);
    let database = std::fs::metadata(dir.path().join("meta.db")).unwrap().len();
    // What rewriting every record would write, at the least.
    let all_records = (RECORDS * 60) as u64;
    assert!(
        database > all_records,
        "{database} bytes for {RECORDS} records"
    );

    let before = bytes_written();
    store
        .apply(vec![put(
            "docker.io/library/one-more:latest",
            &image.manifest.0,
        )])
        .unwrap();
    let one_tag = bytes_written() - before;
    assert!(
        one_tag < 256 * 1024 && one_tag * 20 < all_records,
        "one tag wrote {one_tag} bytes; the database holds {database}"
    );

    // Untagging is as local, and the record is gone for good.
    let before = bytes_written();
    store
        .apply(vec![delete("registry.example/team/repo-1-7:tag")])
        .unwrap();
    let one_untag = bytes_written() - before;
    assert!(one_untag < 256 * 1024, "one untag wrote {one_untag} bytes");
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.images().len(), RECORDS + 1);
    assert!(store.image("docker.io/library/one-more:latest").is_some());
    assert!(store.image("registry.example/team/repo-1-7:tag").is_none());
}
