//! Writing, committing and reading blobs.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;

use common::*;
use hoist_oci::media;
use hoist_store::{BlobWriter, Descriptor, Store, StoreError};

#[test]
fn handles_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Store>();
    send_sync::<hoist_store::Lease>();
    send::<hoist_store::BlobWriter>();
}

#[test]
fn written_blobs_read_back_under_their_independently_computed_digest() {
    let (dir, store, lease) = open_store();
    // Empty, tiny, larger than the writer's buffer, and over twice the size after which the
    // writer starts writeback early, written in odd-sized chunks.
    let big: Vec<u8> = (0..1_000_003u32).map(|i| (i * 7 % 251) as u8).collect();
    let huge: Vec<u8> = (0..17_000_011u32).map(|i| (i * 13 % 253) as u8).collect();
    for bytes in [&b""[..], b"hello", &big, &huge] {
        let mut writer = store.blob_writer(&lease).unwrap();
        for chunk in bytes.chunks(65_537) {
            writer.write_all(chunk).unwrap();
        }
        assert_eq!(writer.written(), bytes.len() as u64);
        let (digest, size) = writer.commit(None).unwrap();
        assert_eq!(digest, sha256(bytes));
        assert_eq!(size, bytes.len() as u64);

        assert!(store.has_blob(&digest));
        assert_eq!(store.blob_size(&digest), Some(size));
        assert_eq!(store.read_blob(&digest, size).unwrap(), bytes);
        let mut read = Vec::new();
        store
            .open_blob(&digest)
            .unwrap()
            .read_to_end(&mut read)
            .unwrap();
        assert_eq!(read, bytes);
        assert_eq!(
            store.blob_path(&digest),
            dir.path().join("blobs/sha256").join(digest.hex())
        );
        let mode = std::fs::metadata(store.blob_path(&digest))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o222, 0, "committed blobs are read-only");
    }
    assert_eq!(ingest_entries(dir.path()), 0);
}

#[test]
fn committing_with_the_expected_digest_and_again_is_idempotent() {
    let (dir, store, lease) = open_store();
    let want = sha256(b"same bytes");
    for _ in 0..2 {
        let mut writer = store.blob_writer(&lease).unwrap();
        writer.write_all(b"same bytes").unwrap();
        assert_eq!(writer.commit(Some(&want)).unwrap(), (want.clone(), 10));
    }
    assert_eq!(
        store.put_blob(&lease, b"same bytes").unwrap(),
        (want.clone(), 10)
    );
    assert_eq!(
        blobs_on_disk(dir.path()).into_iter().collect::<Vec<_>>(),
        [want]
    );
    assert_eq!(ingest_entries(dir.path()), 0);
}

#[test]
fn digest_mismatch_reports_both_digests_and_leaves_nothing() {
    let (dir, store, lease) = open_store();
    let mut writer = store.blob_writer(&lease).unwrap();
    writer.write_all(b"tampered").unwrap();
    let expected = sha256(b"original");
    match writer.commit(Some(&expected)) {
        Err(StoreError::DigestMismatch {
            expected: e,
            actual,
        }) => {
            assert_eq!(e, expected);
            assert_eq!(actual, sha256(b"tampered"));
        }
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
    assert!(blobs_on_disk(dir.path()).is_empty());
    assert_eq!(ingest_entries(dir.path()), 0);
    assert!(!store.has_blob(&sha256(b"tampered")));
}

#[test]
fn dropped_writer_leaves_nothing() {
    let (dir, store, lease) = open_store();
    let mut writer = store.blob_writer(&lease).unwrap();
    writer.write_all(&[1; 100_000]).unwrap();
    assert_eq!(ingest_entries(dir.path()), 1);
    drop(writer);
    assert_eq!(ingest_entries(dir.path()), 0);
    assert!(blobs_on_disk(dir.path()).is_empty());
}

#[test]
fn reads_of_absent_or_oversized_blobs_fail_with_typed_errors() {
    let (_dir, store, lease) = open_store();
    let absent = sha256(b"absent");
    assert!(!store.has_blob(&absent));
    assert_eq!(store.blob_size(&absent), None);
    assert!(matches!(store.read_blob(&absent, 10), Err(StoreError::NotFound(d)) if d == absent));
    assert!(matches!(store.open_blob(&absent), Err(StoreError::NotFound(d)) if d == absent));

    let (digest, _) = store.put_blob(&lease, b"0123456789").unwrap();
    assert_eq!(store.read_blob(&digest, 10).unwrap(), b"0123456789");
    match store.read_blob(&digest, 9) {
        Err(StoreError::TooLarge {
            digest: d,
            size: 10,
            limit: 9,
        }) => assert_eq!(d, digest),
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn a_lease_from_another_store_is_refused() {
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (one, two) = (
        Store::open(one.path()).unwrap(),
        Store::open(two.path()).unwrap(),
    );
    let foreign = two.lease();
    assert!(matches!(
        one.blob_writer(&foreign),
        Err(StoreError::ForeignLease { .. })
    ));
    assert!(matches!(
        one.put_blob(&foreign, b"x"),
        Err(StoreError::ForeignLease { .. })
    ));
}

#[test]
fn children_follow_media_types() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = Image::new("a", &[b"layer one", b"layer two"]);
    image.load(&store, "a");

    let children = store.children(&image.manifest.0).unwrap();
    let want: Vec<Descriptor> = [&image.config]
        .into_iter()
        .chain(&image.layers)
        .map(|(d, _)| d.clone())
        .collect();
    assert_eq!(children, want);

    // Docker schema2 and list types are walked the same way.
    let lease = store.lease();
    let docker_manifest = Descriptor {
        media_type: media::DOCKER_MANIFEST.into(),
        ..image.manifest.0.clone()
    };
    assert_eq!(store.children(&docker_manifest).unwrap(), want);
    let index = index_bytes(std::slice::from_ref(&image.manifest.0));
    store.put_blob(&lease, &index).unwrap();
    let list = descriptor(media::DOCKER_MANIFEST_LIST, &index);
    assert_eq!(
        store.children(&list).unwrap(),
        std::slice::from_ref(&image.manifest.0)
    );

    // Leaves have none; absent blobs and wrong shapes are errors.
    assert!(store.children(&image.layers[0].0).unwrap().is_empty());
    let absent = descriptor(LAYER, b"not stored");
    assert!(matches!(
        store.children(&absent),
        Err(StoreError::NotFound(_))
    ));
    let absent = descriptor(media::OCI_INDEX, b"not stored");
    assert!(matches!(
        store.children(&absent),
        Err(StoreError::NotFound(_))
    ));
    let config_as_manifest = Descriptor {
        media_type: media::OCI_MANIFEST.into(),
        ..image.config.0.clone()
    };
    match store.children(&config_as_manifest) {
        Err(StoreError::InvalidManifest { digest, .. }) => {
            assert_eq!(digest, image.config.0.digest)
        }
        other => panic!("expected InvalidManifest, got {other:?}"),
    }
    let manifest_as_index = Descriptor {
        media_type: media::OCI_INDEX.into(),
        ..image.manifest.0.clone()
    };
    assert!(matches!(
        store.children(&manifest_as_index),
        Err(StoreError::InvalidManifest { .. })
    ));
}

fn staged_writer(store: &Store, lease: &hoist_store::Lease, bytes: &[u8]) -> BlobWriter {
    let mut writer = store.blob_writer(lease).unwrap();
    writer.write_all(bytes).unwrap();
    writer
}

#[test]
fn staged_blobs_are_invisible_until_their_batch_commits() {
    let (dir, store, lease) = open_store();
    let mut staged = store.staged_blobs(&lease).unwrap();
    let contents: Vec<Vec<u8>> = (0..50u32)
        .map(|i| {
            format!("small blob {i}")
                .repeat(i as usize + 1)
                .into_bytes()
        })
        .collect();
    for bytes in &contents {
        let writer = staged_writer(&store, &lease, bytes);
        let (digest, size) = staged.add(writer, Some(&sha256(bytes))).unwrap();
        assert_eq!((digest.clone(), size), (sha256(bytes), bytes.len() as u64));
        assert!(!store.has_blob(&digest), "a staged blob is not visible yet");
    }
    assert_eq!(staged.len(), contents.len());
    assert_eq!(ingest_entries(dir.path()), contents.len());

    assert_eq!(staged.commit().unwrap(), contents.len());
    for bytes in &contents {
        let digest = sha256(bytes);
        assert_eq!(store.read_blob(&digest, 1 << 20).unwrap(), *bytes);
        let mode = std::fs::metadata(store.blob_path(&digest))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o222, 0, "committed blobs are read-only");
    }
    assert_eq!(ingest_entries(dir.path()), 0);
    // The lease protects them: a GC while it lives keeps them all.
    store.gc().unwrap();
    assert_eq!(blobs_on_disk(dir.path()).len(), contents.len());
}

#[test]
fn a_staged_blob_with_the_wrong_digest_is_refused_and_removed() {
    let (dir, store, lease) = open_store();
    let mut staged = store.staged_blobs(&lease).unwrap();
    let writer = staged_writer(&store, &lease, b"actual");
    let err = staged.add(writer, Some(&sha256(b"expected"))).unwrap_err();
    assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err:?}");
    assert!(staged.is_empty());
    assert_eq!(ingest_entries(dir.path()), 0);
    assert_eq!(staged.commit().unwrap(), 0);
    assert!(blobs_on_disk(dir.path()).is_empty());
}

#[test]
fn a_large_blob_added_to_a_batch_is_committed_at_once() {
    let (_dir, store, lease) = open_store();
    let mut staged = store.staged_blobs(&lease).unwrap();
    let large: Vec<u8> = (0..9_000_001u32).map(|i| (i * 11 % 241) as u8).collect();
    let writer = staged_writer(&store, &lease, &large);
    let (digest, _) = staged.add(writer, None).unwrap();
    assert_eq!(digest, sha256(&large));
    assert!(
        store.has_blob(&digest),
        "over 8 MiB: durable and visible at once"
    );
    assert!(staged.is_empty());
}

#[test]
fn a_batch_dropped_or_lost_in_a_crash_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    {
        let store = Store::open(root).unwrap();
        let lease = store.lease();
        let mut staged = store.staged_blobs(&lease).unwrap();
        let writer = staged_writer(&store, &lease, b"dropped");
        staged.add(writer, None).unwrap();
        drop(staged);
        assert_eq!(
            ingest_entries(root),
            0,
            "dropping a batch removes its files"
        );

        // What kill -9 before the commit leaves: the staged temp files, nothing under blobs/.
        let mut staged = store.staged_blobs(&lease).unwrap();
        let writer = staged_writer(&store, &lease, b"crashed");
        staged.add(writer, None).unwrap();
        assert!(blobs_on_disk(root).is_empty());
        let leftovers: Vec<(std::path::PathBuf, Vec<u8>)> = std::fs::read_dir(root.join("ingest"))
            .unwrap()
            .map(|e| {
                let path = e.unwrap().path();
                let bytes = std::fs::read(&path).unwrap();
                (path, bytes)
            })
            .collect();
        assert_eq!(leftovers.len(), 1);
        drop(staged);
        drop(lease);
        drop(store);
        for (path, bytes) in leftovers {
            std::fs::write(path, bytes).unwrap();
        }
    }
    let store = Store::open(root).unwrap();
    assert_eq!(ingest_entries(root), 0);
    assert!(blobs_on_disk(root).is_empty());
    assert!(!store.has_blob(&sha256(b"crashed")));
}

#[test]
fn a_batch_refuses_a_writer_of_another_store() {
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (store_one, store_two) = (
        Store::open(one.path()).unwrap(),
        Store::open(two.path()).unwrap(),
    );
    let (lease_one, lease_two) = (store_one.lease(), store_two.lease());
    let mut staged = store_one.staged_blobs(&lease_one).unwrap();
    let writer = staged_writer(&store_two, &lease_two, b"elsewhere");
    let err = staged.add(writer, None).unwrap_err();
    assert!(matches!(err, StoreError::ForeignLease { .. }), "{err:?}");
    assert!(store_two.staged_blobs(&lease_one).is_err());
}
