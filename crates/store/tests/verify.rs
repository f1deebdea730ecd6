//! `Store::verify`: an offline check of a data root that reports, without changing anything,
//! blobs that no longer hash to their name and records whose content is missing or unreadable.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use hoist_oci::media;
use hoist_store::{Problem, Store, StoreError};

/// A data root with two images sharing nothing, and a partial index (one of its two manifests
/// present) under a third name; the store is closed again.
fn populated(root: &Path) -> (Image, Image) {
    let (one, two) = (
        Image::new("one", &[b"layer one a", b"layer one b"]),
        Image::new("two", &[b"layer two"]),
    );
    let absent = Image::new("absent", &[b"never stored"]);
    let index = index_bytes(&[two.manifest.0.clone(), absent.manifest.0.clone()]);
    let store = Store::open(root).unwrap();
    one.load(&store, "one:1");
    two.load(&store, "two:1");
    let lease = store.lease();
    store.put_blob(&lease, &index).unwrap();
    store
        .apply(vec![put("multi:1", &descriptor(media::OCI_INDEX, &index))])
        .unwrap();
    (one, two)
}

fn blob_file(root: &Path, bytes: &[u8]) -> std::path::PathBuf {
    root.join("blobs/sha256").join(sha256(bytes).hex())
}

#[test]
fn a_clean_store_has_no_problems_and_every_blob_is_hashed() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    let report = Store::verify(dir.path()).unwrap();
    assert_eq!(report.problems, []);
    assert!(report.is_clean());
    assert_eq!(report.blobs, blobs_on_disk(dir.path()).len());
    assert_eq!(report.blobs, 4 + 3 + 1);
    assert_eq!(report.images, 3);
    let bytes: u64 = fs::read_dir(dir.path().join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert_eq!(report.bytes, bytes);
}

#[test]
fn a_blob_that_no_longer_hashes_to_its_name_is_reported_with_what_it_hashes_to() {
    let dir = tempfile::tempdir().unwrap();
    let (one, _) = populated(dir.path());
    let (layer, bytes) = &one.layers[1];
    let path = blob_file(dir.path(), bytes);
    let mut damaged = bytes.clone();
    damaged[3] ^= 0x20;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&path, &damaged).unwrap();

    let report = Store::verify(dir.path()).unwrap();
    assert_eq!(
        report.problems,
        [Problem::CorruptBlob {
            digest: layer.digest.clone(),
            actual: sha256(&damaged),
        }]
    );
    assert_eq!(
        report.problems[0].to_string(),
        format!(
            "blob {} is corrupt: its content hashes to {}",
            layer.digest,
            sha256(&damaged)
        )
    );
    // Reporting changed nothing.
    assert_eq!(fs::read(&path).unwrap(), damaged);
}

#[test]
fn blobs_a_record_needs_are_reported_missing_but_absent_index_children_are_fine() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = populated(dir.path());
    fs::remove_file(blob_file(dir.path(), &one.layers[0].1)).unwrap();
    fs::remove_file(blob_file(dir.path(), &two.config.1)).unwrap();

    let report = Store::verify(dir.path()).unwrap();
    // The index reaching `two` does not need it whole; `two:1` itself does.
    assert_eq!(
        report.problems,
        [
            Problem::MissingBlob {
                image: "one:1".into(),
                digest: one.layers[0].0.digest.clone(),
            },
            Problem::MissingBlob {
                image: "two:1".into(),
                digest: two.config.0.digest.clone(),
            },
        ]
    );
    assert_eq!(
        report.problems[0].to_string(),
        format!("image one:1: blob {} is missing", one.layers[0].0.digest)
    );

    // A missing record target is reported too; opening the store later still repairs it.
    fs::remove_file(blob_file(dir.path(), &one.manifest.1)).unwrap();
    let report = Store::verify(dir.path()).unwrap();
    assert!(report.problems.contains(&Problem::MissingBlob {
        image: "one:1".into(),
        digest: one.manifest.0.digest.clone(),
    }));
}

#[test]
fn a_record_whose_manifest_cannot_be_parsed_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let good = Image::new("good", &[b"good layer"]);
    for (_, bytes) in good.layers.iter().chain([&good.config, &good.manifest]) {
        write_blob(root, bytes);
    }
    let garbage = b"{\"schemaVersion\":2,\"layers\":\"not a list\"}".to_vec();
    write_blob(root, &garbage);
    let garbage_desc = descriptor(media::OCI_MANIFEST, &garbage);
    fs::write(
        root.join("meta.json"),
        legacy_metadata(&[("good:1", &good.manifest.0), ("garbage:1", &garbage_desc)]),
    )
    .unwrap();
    // Migrates the records into the database, as a daemon start does.
    drop(Store::open(root).unwrap());

    let report = Store::verify(root).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let Problem::InvalidManifest { image, digest, .. } = &report.problems[0] else {
        panic!("{:?}", report.problems);
    };
    assert_eq!(
        (image.as_str(), digest),
        ("garbage:1", &garbage_desc.digest)
    );
    assert!(
        report.problems[0].to_string().starts_with(&format!(
            "image garbage:1: manifest {} cannot be read: ",
            garbage_desc.digest
        )),
        "{}",
        report.problems[0]
    );
}

#[test]
fn a_data_root_in_use_is_refused_and_a_missing_one_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    let store = Store::open(dir.path()).unwrap();
    let err = Store::verify(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    drop(store);
    assert!(Store::verify(dir.path()).unwrap().is_clean());

    assert!(Store::verify(&dir.path().join("nowhere")).is_err());
    assert!(!dir.path().join("nowhere").exists());
}
