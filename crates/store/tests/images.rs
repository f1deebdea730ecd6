//! Image records, labels and garbage collection.

mod common;

use std::collections::BTreeSet;
use std::time::SystemTime;

use common::*;
use hoist_oci::media;
use hoist_store::{Descriptor, Digest, Durability, GcStats, ImageChange, Store, StoreError};

#[test]
fn put_and_delete_return_what_was_there_and_keep_creation_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (a, b) = (Image::new("a", &[b"a"]), Image::new("b", &[b"b"]));
    let before = SystemTime::now();
    a.load(&store, "docker.io/library/x:1");
    b.load(&store, "docker.io/library/b:latest");

    let first = store.image("docker.io/library/x:1").unwrap();
    assert_eq!(first.target, a.manifest.0);
    assert!(first.created_at >= before && first.updated_at == first.created_at);

    // Re-pointing keeps created_at and moves updated_at; a no-op Put changes nothing.
    let previous = store
        .apply(vec![
            put("docker.io/library/x:1", &b.manifest.0),
            put("docker.io/library/x:1", &b.manifest.0),
            put("docker.io/library/x:2", &a.manifest.0),
            delete("never-existed"),
        ])
        .unwrap();
    assert_eq!(previous.len(), 4);
    assert_eq!(previous[0].as_ref(), Some(&first));
    let repointed = store.image("docker.io/library/x:1").unwrap();
    assert_eq!(previous[1].as_ref(), Some(&repointed));
    assert_eq!(previous[2], None);
    assert_eq!(previous[3], None);
    assert_eq!(repointed.target, b.manifest.0);
    assert_eq!(repointed.created_at, first.created_at);
    assert!(repointed.updated_at >= first.updated_at);

    let names: Vec<_> = store.images().into_iter().map(|r| r.name).collect();
    assert_eq!(
        names,
        [
            "docker.io/library/b:latest",
            "docker.io/library/x:1",
            "docker.io/library/x:2"
        ]
    );

    let previous = store.apply(vec![delete("docker.io/library/x:2")]).unwrap();
    assert_eq!(previous[0].as_ref().map(|r| &r.target), Some(&a.manifest.0));
    assert_eq!(store.image("docker.io/library/x:2"), None);
}

#[test]
fn a_batch_with_one_bad_put_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = Image::new("a", &[b"layer"]);
    image.load(&store, "keep");
    let records_before = store.images();
    let absent = descriptor(media::OCI_MANIFEST, b"never written");

    let err = store
        .apply(vec![
            delete("keep"),
            put("new", &image.manifest.0),
            put("bad", &absent),
        ])
        .unwrap_err();
    assert!(matches!(err, StoreError::MissingBlob(d) if d == absent.digest));

    assert_eq!(store.images().len(), 1);
    assert_eq!(store.image("keep").unwrap().target, image.manifest.0);
    drop(store);
    assert_eq!(Store::open(dir.path()).unwrap().images(), records_before);
    // Nothing was collected either: the delete never happened.
    assert_eq!(blobs_on_disk(dir.path()), image.digests());
}

#[test]
fn deleting_the_last_name_collects_exactly_what_became_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let shared: &[u8] = b"shared base layer";
    let a = Image::new("a", &[shared, b"only in a"]);
    let b = Image::new("b", &[shared, b"only in b"]);
    a.load(&store, "a:1");
    a.load(&store, "a:2");
    b.load(&store, "b");
    let all: BTreeSet<Digest> = a.digests().union(&b.digests()).cloned().collect();
    assert_eq!(blobs_on_disk(dir.path()), all);

    // Another name still reaches a: nothing goes.
    store.apply(vec![delete("a:1")]).unwrap();
    assert_eq!(blobs_on_disk(dir.path()), all);

    store.apply(vec![delete("a:2")]).unwrap();
    assert_eq!(
        blobs_on_disk(dir.path()),
        b.digests(),
        "shared layer must survive"
    );
    assert_eq!(store.gc().unwrap(), GcStats::default());

    // Re-pointing the last name away from b collects b's own blobs.
    a.load(&store, "a:3");
    store.apply(vec![put("b", &a.manifest.0)]).unwrap();
    assert_eq!(blobs_on_disk(dir.path()), a.digests());
}

#[test]
fn gc_keeps_partial_indexes_and_reports_what_it_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let amd64 = Image::new("amd64", &[b"amd64 layer"]);
    let arm64 = Image::new("arm64", &[b"arm64 layer"]);
    let index = index_bytes(&[amd64.manifest.0.clone(), arm64.manifest.0.clone()]);
    let index_desc = descriptor(media::OCI_INDEX, &index);

    // Only amd64 is pulled; arm64's manifest is absent, which must not stop the walk.
    let lease = store.lease();
    for (_, bytes) in amd64.layers.iter().chain([&amd64.config, &amd64.manifest]) {
        store.put_blob(&lease, bytes).unwrap();
    }
    store.put_blob(&lease, &index).unwrap();
    let (garbage, _) = store.put_blob(&lease, b"unreferenced but leased").unwrap();
    store.apply(vec![put("multi", &index_desc)]).unwrap();
    drop(lease);

    let mut want = amd64.digests();
    want.insert(index_desc.digest.clone());
    assert_eq!(blobs_on_disk(dir.path()), want);
    assert!(!store.has_blob(&garbage));

    // An orphan that appeared behind our back is found by a full GC, with its size reported.
    let orphan = b"orphan";
    let orphan_path = store.blob_path(&sha256(orphan));
    std::fs::write(&orphan_path, orphan).unwrap();
    assert_eq!(
        store.gc().unwrap(),
        GcStats {
            removed_blobs: 1,
            removed_bytes: orphan.len() as u64
        }
    );
    assert_eq!(blobs_on_disk(dir.path()), want);
}

#[test]
fn docker_schema2_images_are_walked_too() {
    let (dir, store, lease) = open_store();
    let config = descriptor(
        "application/vnd.docker.container.image.v1+json",
        br#"{"config":{}}"#,
    );
    let layer = descriptor(
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        b"docker layer",
    );
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::DOCKER_MANIFEST,
        "config": config,
        "layers": [layer],
    }))
    .unwrap();
    let manifest_desc = descriptor(media::DOCKER_MANIFEST, &manifest);
    let list = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::DOCKER_MANIFEST_LIST,
        "manifests": [manifest_desc],
    }))
    .unwrap();
    let list_desc = descriptor(media::DOCKER_MANIFEST_LIST, &list);
    for bytes in [&br#"{"config":{}}"#[..], b"docker layer", &manifest, &list] {
        store.put_blob(&lease, bytes).unwrap();
    }
    store.apply(vec![put("docker", &list_desc)]).unwrap();
    drop(lease);
    assert_eq!(blobs_on_disk(dir.path()).len(), 4);
    store.apply(vec![delete("docker")]).unwrap();
    assert!(blobs_on_disk(dir.path()).is_empty());
}

#[test]
fn labels_persist_and_go_with_their_blob() {
    let dir = tempfile::tempdir().unwrap();
    let source = "containerd.io/distribution.source.registry.example:5000".to_owned();
    let image = Image::new("a", &[b"labelled layer"]);
    let layer = image.layers[0].0.digest.clone();
    {
        let store = Store::open(dir.path()).unwrap();
        image.load(&store, "a");
        store
            .set_blob_labels(
                vec![
                    (layer.clone(), source.clone(), Some("team/a,team/b".into())),
                    (layer.clone(), "drop-me".into(), Some("x".into())),
                    (layer.clone(), "drop-me".into(), None),
                ],
                Durability::Immediate,
            )
            .unwrap();
        assert_eq!(
            store.blob_labels(&layer).into_iter().collect::<Vec<_>>(),
            [(source.clone(), "team/a,team/b".to_owned())]
        );

        // Labelling an absent blob fails and, all or nothing, leaves the rest unchanged.
        let absent = sha256(b"absent");
        let err = store
            .set_blob_labels(
                vec![
                    (layer.clone(), source.clone(), None),
                    (absent.clone(), source.clone(), Some("x".into())),
                ],
                Durability::Immediate,
            )
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(d) if d == absent));
        assert_eq!(store.blob_labels(&layer).len(), 1);
        assert!(store.blob_labels(&absent).is_empty());
    }

    // Reopen: records and labels survived.
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.image("a").unwrap().target, image.manifest.0);
    assert_eq!(store.blob_labels(&layer)[&source], "team/a,team/b");

    // Collected with the blob, including on disk.
    store.apply(vec![delete("a")]).unwrap();
    assert!(!store.has_blob(&layer));
    assert!(store.blob_labels(&layer).is_empty());
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert!(store.blob_labels(&layer).is_empty());
}

#[test]
fn deferred_labels_are_visible_at_once_and_kept_by_the_next_durable_commit() {
    let dir = tempfile::tempdir().unwrap();
    let source = "containerd.io/distribution.source.registry.example:5000".to_owned();
    let image = Image::new("a", &[b"hinted layer"]);
    let layer = image.layers[0].0.digest.clone();
    {
        let store = Store::open(dir.path()).unwrap();
        image.load(&store, "a");
        for repository in ["team/a", "team/a,team/b"] {
            store
                .set_blob_labels(
                    vec![(layer.clone(), source.clone(), Some(repository.into()))],
                    Durability::Deferred,
                )
                .unwrap();
            assert_eq!(store.blob_labels(&layer)[&source], repository);
        }
        // Any durable commit carries the deferred ones with it.
        image.load(&store, "b");
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.blob_labels(&layer)[&source], "team/a,team/b");
    assert!(
        store.image("b").is_some(),
        "the durable commit itself survived"
    );
}

#[test]
fn reopen_keeps_records_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let image = Image::new("a", &[b"one", b"two"]);
    let records = {
        let store = Store::open(dir.path()).unwrap();
        image.load(&store, "docker.io/library/a:latest");
        image.load(&store, "localhost:5000/a@sha256");
        store.images()
    };
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.images(), records);
    assert_eq!(blobs_on_disk(dir.path()), image.digests());
}

#[test]
fn a_record_for_a_manifest_that_cannot_be_read_back_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = Image::new("a", &[b"layer"]);
    image.load(&store, "good");
    let lease = store.lease();
    let stored = |bytes: &[u8], media_type: &str| {
        let (digest, size) = store.put_blob(&lease, bytes).unwrap();
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
        }
    };
    // Valid JSON, but not a manifest; and a manifest one byte over the limit.
    let bogus = stored(b"{\"not\":\"a manifest\"}", media::OCI_MANIFEST);
    let limit = usize::try_from(hoist_oci::limits::MAX_MANIFEST_BYTES).unwrap();
    let over = stored(&manifest_of_len(&image, limit + 1), media::OCI_MANIFEST);
    // An index is refused for a bad manifest it lists, not for one that is absent.
    let absent = descriptor(media::OCI_MANIFEST, b"not stored");
    let bad_index = stored(
        &index_bytes(&[absent.clone(), over.clone()]),
        media::OCI_INDEX,
    );
    let partial_index = stored(
        &index_bytes(&[absent, image.manifest.0.clone()]),
        media::OCI_INDEX,
    );

    let too_large = "more than the 4194304 bytes a manifest may have";
    for (target, at_fault, reason) in [
        (&bogus, &bogus, "is malformed: missing field `config`"),
        (&over, &over, too_large),
        (&bad_index, &over, too_large),
    ] {
        let err = store
            .apply(vec![put("new", &image.manifest.0), put("bad", target)])
            .unwrap_err();
        let StoreError::UnreadableManifest { name, digest, .. } = &err else {
            panic!("expected UnreadableManifest, got {err:?}");
        };
        assert_eq!(name, "bad");
        // For an index, the manifest at fault is named.
        assert_eq!(digest, &at_fault.digest);
        assert!(err.to_string().contains(reason), "{err}");
    }
    // Nothing of the refused batches was applied.
    assert_eq!(
        store
            .images()
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        ["good"]
    );
    store.apply(vec![put("partial", &partial_index)]).unwrap();
}

#[test]
fn apply_reports_previous_records_even_for_an_empty_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = Image::new("a", &[b"layer"]);
    image.load(&store, "a");
    let database = std::fs::read(dir.path().join("meta.db")).unwrap();
    assert!(store.apply(Vec::<ImageChange>::new()).unwrap().is_empty());
    let previous = store.apply(vec![put("a", &image.manifest.0)]).unwrap();
    assert_eq!(previous[0].as_ref().unwrap().target, image.manifest.0);
    assert_eq!(
        std::fs::read(dir.path().join("meta.db")).unwrap(),
        database,
        "nothing changed, nothing written"
    );
}

/// A manifest of `len` bytes referencing `image`'s config and layers, padded by an annotation.
fn manifest_of_len(image: &Image, len: usize) -> Vec<u8> {
    let with_pad = |pad: &str| {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": image.config.0,
            "layers": image.layers.iter().map(|(d, _)| d).collect::<Vec<_>>(),
            "annotations": { "padding": pad },
        }))
        .unwrap()
    };
    let bytes = with_pad(&"x".repeat(len - with_pad("").len()));
    assert_eq!(bytes.len(), len);
    bytes
}

#[test]
fn gc_reads_every_manifest_a_pull_can_accept() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = Image::new("big", &[b"layer of a big manifest"]);
    let limit = usize::try_from(hoist_oci::limits::MAX_MANIFEST_BYTES).unwrap();
    let largest = manifest_of_len(&image, limit);
    let largest_desc = descriptor(media::OCI_MANIFEST, &largest);

    let lease = store.lease();
    for (_, bytes) in image.layers.iter().chain([&image.config]) {
        store.put_blob(&lease, bytes).unwrap();
    }
    store.put_blob(&lease, &largest).unwrap();
    let (garbage, _) = store.put_blob(&lease, b"referenced by nothing").unwrap();

    // Protected by the lease alone, the manifest is found by its content.
    let leased = store.lease();
    store.put_blob(&leased, &largest).unwrap();
    drop(lease);
    let mut kept = image.digests();
    kept.remove(&image.manifest.0.digest);
    kept.insert(largest_desc.digest.clone());
    assert_eq!(blobs_on_disk(dir.path()), kept);
    assert!(!store.has_blob(&garbage));

    // Recorded as an image, it is walked by its media type.
    store.apply(vec![put("big", &largest_desc)]).unwrap();
    drop(leased);
    store.gc().unwrap();
    assert_eq!(blobs_on_disk(dir.path()), kept);
    assert_eq!(
        store.children(&largest_desc).unwrap().len(),
        image.layers.len() + 1
    );
}
