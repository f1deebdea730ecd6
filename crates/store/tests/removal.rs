//! Removing chosen blobs that an index still lists (one platform of a multi-platform image).

mod common;

use common::*;
use hoist_oci::media;
use hoist_store::{BlobRemoval, Store, StoreError};

/// Two platform images sharing their first layer, under one index named `name`.
fn two_platforms(store: &Store, name: &str) -> (Image, Image, hoist_store::Descriptor) {
    let amd = Image::new("amd", &[b"shared", b"amd only"]);
    let arm = Image::new("arm", &[b"shared", b"arm only"]);
    amd.load(store, "amd-staging");
    arm.load(store, "arm-staging");
    let index = index_bytes(&[amd.manifest.0.clone(), arm.manifest.0.clone()]);
    let lease = store.lease();
    let (digest, size) = store.put_blob(&lease, &index).unwrap();
    let target = hoist_store::Descriptor {
        media_type: media::OCI_INDEX.to_owned(),
        digest,
        size,
    };
    store
        .apply(vec![
            put(name, &target),
            delete("amd-staging"),
            delete("arm-staging"),
        ])
        .unwrap();
    (amd, arm, target)
}

#[test]
fn removing_a_listed_manifest_collects_what_only_it_used() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (amd, arm, index) = two_platforms(&store, "multi");

    let removal = store
        .remove_blobs(std::slice::from_ref(&arm.manifest.0.digest))
        .unwrap();
    assert_eq!(
        removal,
        BlobRemoval {
            blobs: vec![arm.manifest.0.digest.clone()],
            records: Vec::new(),
        }
    );
    let mut expected = amd.digests();
    expected.insert(index.digest.clone());
    assert_eq!(blobs_on_disk(dir.path()), expected, "shared layer kept");
    assert_eq!(store.image("multi").unwrap().target, index);

    // Absent already: nothing to report.
    let again = store
        .remove_blobs(std::slice::from_ref(&arm.manifest.0.digest))
        .unwrap();
    assert_eq!(again, BlobRemoval::default());

    // Reopening keeps the partial index.
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.image("multi").unwrap().target, index);
    assert_eq!(blobs_on_disk(dir.path()), expected);
}

#[test]
fn a_record_targeting_a_removed_blob_goes_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let single = Image::new("single", &[b"one"]);
    single.load(&store, "single:1");
    single.load(&store, "single:2");

    let removal = store
        .remove_blobs(std::slice::from_ref(&single.manifest.0.digest))
        .unwrap();
    assert_eq!(removal.blobs, vec![single.manifest.0.digest.clone()]);
    assert_eq!(
        removal.records,
        vec!["single:1".to_owned(), "single:2".to_owned()]
    );
    assert!(store.images().is_empty());
    assert!(blobs_on_disk(dir.path()).is_empty());
}

#[test]
fn a_leased_blob_is_not_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (_, arm, _) = two_platforms(&store, "multi");
    let lease = store.lease();
    lease.protect(&arm.manifest.0.digest);

    let err = store
        .remove_blobs(std::slice::from_ref(&arm.manifest.0.digest))
        .unwrap_err();
    assert!(matches!(err, StoreError::InUse(d) if d == arm.manifest.0.digest));
    assert!(store.has_blob(&arm.manifest.0.digest));
    drop(lease);
    assert!(
        store.has_blob(&arm.manifest.0.digest),
        "the index still lists it"
    );
}
