//! Leases: protection from GC while work is in progress, and cleanup when it ends.

mod common;

use std::io::Write;

use common::*;
use hoist_oci::media;
use hoist_store::{Descriptor, Store};

#[test]
fn a_failed_load_leaves_nothing_once_its_lease_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = Image::new("a", &[b"layer 1", b"layer 2"]);
    let lease = store.lease();
    for (_, bytes) in image.layers.iter().chain([&image.config, &image.manifest]) {
        store.put_blob(&lease, bytes).unwrap();
    }
    // Protected from a full GC while the lease lives.
    assert_eq!(store.gc().unwrap().removed_blobs, 0);
    assert_eq!(blobs_on_disk(dir.path()), image.digests());
    // The load fails before any record is written.
    drop(lease);
    assert!(blobs_on_disk(dir.path()).is_empty());
}

#[test]
fn releasing_a_lease_spares_what_others_still_reach() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let kept = Image::new("kept", &[b"common"]);
    kept.load(&store, "kept");

    let first = store.lease();
    let second = store.lease();
    let (common, _) = store.put_blob(&first, b"common").unwrap();
    let (shared, _) = store.put_blob(&first, b"in both leases").unwrap();
    store.put_blob(&second, b"in both leases").unwrap();
    let (own, _) = store.put_blob(&first, b"only first").unwrap();

    drop(first);
    assert!(store.has_blob(&common), "reachable from an image");
    assert!(store.has_blob(&shared), "still leased");
    assert!(!store.has_blob(&own));
    drop(second);
    assert!(!store.has_blob(&shared));
    assert_eq!(blobs_on_disk(dir.path()), kept.digests());
}

#[test]
fn protecting_a_manifest_protects_what_it_references() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = Image::new("a", &[b"pushed layer"]);
    image.load(&store, "a");

    // A push protects the image, then an rmi races with it.
    let push = store.lease();
    push.protect(&image.manifest.0.digest);
    store.apply(vec![delete("a")]).unwrap();
    assert_eq!(store.gc().unwrap().removed_blobs, 0);
    assert_eq!(blobs_on_disk(dir.path()), image.digests());

    // The push ends: what the rmi freed goes now.
    drop(push);
    assert!(blobs_on_disk(dir.path()).is_empty());
}

#[test]
fn protection_walks_indexes_and_manifests_without_a_media_type_field() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = Image::new("a", &[b"layer"]);
    // OCI lets manifests and indexes omit mediaType; protection must still see their children.
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "config": image.config.0,
        "layers": [image.layers[0].0],
    }))
    .unwrap();
    let manifest_desc = descriptor(media::OCI_MANIFEST, &manifest);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [manifest_desc],
    }))
    .unwrap();

    let loader = store.lease();
    for bytes in [&image.layers[0].1, &image.config.1, &manifest, &index] {
        store.put_blob(&loader, bytes).unwrap();
    }
    let protector = store.lease();
    protector.protect(&sha256(&index));
    drop(loader);
    assert_eq!(blobs_on_disk(dir.path()).len(), 4);
    drop(protector);
    assert!(blobs_on_disk(dir.path()).is_empty());
}

#[test]
fn a_clone_or_an_open_writer_keeps_the_lease_alive() {
    let (_dir, store, lease) = open_store();
    let clone = lease.clone();
    let (first, _) = store.put_blob(&lease, b"first").unwrap();
    let mut writer = store.blob_writer(&lease).unwrap();
    drop(lease);
    store.gc().unwrap();
    assert!(store.has_blob(&first));

    drop(clone);
    writer.write_all(b"second").unwrap();
    store.gc().unwrap();
    assert!(store.has_blob(&first), "the writer still holds the lease");
    let (second, _) = writer.commit(None).unwrap();
    // The writer was the last holder: committing released the lease, which collected both.
    assert!(!store.has_blob(&first));
    assert!(!store.has_blob(&second));
}

#[test]
fn protect_then_check_reuses_content_safely() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let base = Image::new("base", &[b"base layer"]);
    base.load(&store, "base");
    let base_layer: &Descriptor = &base.layers[0].0;

    // A load that finds the base layer already stored reuses it instead of writing it.
    let load = store.lease();
    load.protect(&base_layer.digest);
    assert!(store.has_blob(&base_layer.digest));
    store.apply(vec![delete("base")]).unwrap();
    let derived = Image::new("derived", &[b"base layer", b"top layer"]);
    store.put_blob(&load, &derived.layers[1].1).unwrap();
    store.put_blob(&load, &derived.config.1).unwrap();
    store.put_blob(&load, &derived.manifest.1).unwrap();
    store
        .apply(vec![put("derived", &derived.manifest.0)])
        .unwrap();
    drop(load);
    assert_eq!(blobs_on_disk(dir.path()), derived.digests());
}
