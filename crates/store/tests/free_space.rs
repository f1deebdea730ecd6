//! Blob writes stop, with a typed error naming the data root, when the filesystem's free space
//! would fall under the store's reserve; nothing half-written stays behind.

mod common;

use std::io::Write;

use common::*;
use hoist_store::{FreeSpaceReserve, Store, StoreError, StoreOptions};

fn open_with_reserve(root: &std::path::Path, reserve: u64) -> Store {
    Store::open_with(
        root,
        &StoreOptions {
            min_free_space: FreeSpaceReserve::Bytes(reserve),
        },
    )
    .unwrap()
}

#[test]
fn a_write_that_would_eat_into_the_reserve_fails_with_no_space() {
    let dir = tempfile::tempdir().unwrap();
    // More than any filesystem has free.
    let store = open_with_reserve(dir.path(), u64::MAX / 2);
    let lease = store.lease();
    let mut writer = store.blob_writer(&lease).unwrap();
    let err = writer.write_all(b"some bytes").unwrap_err();
    let err = StoreError::from_io(err).expect("a store error inside the io::Error");
    let StoreError::NoSpace {
        root,
        available,
        reserve,
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(root, dir.path());
    assert_eq!(*reserve, u64::MAX / 2);
    assert_eq!(
        err.to_string(),
        format!(
            "not enough free space in {}: {available} bytes left, {reserve} reserved",
            dir.path().display()
        )
    );
    drop(writer);
    assert_eq!(ingest_entries(dir.path()), 0);
    assert!(store.put_blob(&lease, b"small").is_err());
    assert!(blobs_on_disk(dir.path()).is_empty());
}

#[test]
fn a_zero_reserve_and_the_default_let_ordinary_writes_through() {
    for options in [
        StoreOptions {
            min_free_space: FreeSpaceReserve::Bytes(0),
        },
        StoreOptions::default(),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), &options).unwrap();
        let image = Image::new("fits", &[b"a small layer"]);
        image.load(&store, "fits:1");
        assert_eq!(blobs_on_disk(dir.path()), image.digests());
    }
}
