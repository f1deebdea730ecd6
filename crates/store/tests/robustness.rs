//! One record whose content cannot be read (a manifest over the size limit, or not a manifest at
//! all) must not stop listing or garbage collection for everything else. The store refuses to
//! create such records, so these tests plant them as an earlier hoistd could have left them: in
//! the `meta.json` that the store migrates on open.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use hoist_oci::media;
use hoist_store::{Descriptor, Store, StoreError};

/// A manifest over the limit that references `image`'s config and layers.
fn oversized_manifest(image: &Image) -> Vec<u8> {
    let limit = usize::try_from(hoist_oci::limits::MAX_MANIFEST_BYTES).unwrap();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": image.config.0,
        "layers": image.layers.iter().map(|(d, _)| d).collect::<Vec<_>>(),
        "annotations": { "padding": "x".repeat(limit) },
    }))
    .unwrap()
}

struct Planted {
    /// Blobs the unreadable records name, which must never be collected.
    named: Image,
    oversized: Descriptor,
    corrupt: Descriptor,
}

/// A data root with a good image, an over-limit manifest record and a record whose manifest is
/// not JSON, and the blobs of a deleted image that nothing references any more.
fn plant(root: &Path, good: &Image, deleted: &Image) -> Planted {
    let named = Image::new("named by the oversized manifest", &[b"big 1", b"big 2"]);
    let oversized_bytes = oversized_manifest(&named);
    let oversized = descriptor(media::OCI_MANIFEST, &oversized_bytes);
    let corrupt_bytes = b"\x1f\x8b this is no manifest".to_vec();
    let corrupt = descriptor(media::DOCKER_MANIFEST, &corrupt_bytes);
    for image in [good, deleted, &named] {
        for (_, bytes) in image.layers.iter().chain([&image.config, &image.manifest]) {
            write_blob(root, bytes);
        }
    }
    write_blob(root, &oversized_bytes);
    write_blob(root, &corrupt_bytes);
    fs::write(
        root.join("meta.json"),
        legacy_metadata(&[
            ("docker.io/library/good:1", &good.manifest.0),
            ("docker.io/library/oversized:1", &oversized),
            ("docker.io/library/corrupt:1", &corrupt),
        ]),
    )
    .unwrap();
    Planted {
        named,
        oversized,
        corrupt,
    }
}

#[test]
fn unreadable_records_keep_what_they_name_and_everything_else_is_collected() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (good, deleted) = (
        Image::new("good", &[b"good layer"]),
        Image::new("deleted", &[b"deleted layer"]),
    );
    let planted = plant(root, &good, &deleted);

    // The collection at open goes through: the deleted image's blobs go, the rest stays.
    let store = Store::open(root).unwrap();
    let mut kept = &good.digests() | &planted.named.digests();
    kept.remove(&planted.named.manifest.0.digest);
    kept.insert(planted.oversized.digest.clone());
    kept.insert(planted.corrupt.digest.clone());
    assert_eq!(blobs_on_disk(root), kept);
    assert_eq!(store.images().len(), 3);

    // Deleting an image later collects its blobs too.
    let later = Image::new("later", &[b"later layer"]);
    later.load(&store, "later");
    store.apply(vec![delete("later")]).unwrap();
    assert_eq!(blobs_on_disk(root), kept);
    store.gc().unwrap();
    assert_eq!(blobs_on_disk(root), kept);

    // Reading the bad ones fails, clearly; the good one reads.
    assert!(matches!(
        store.children(&planted.oversized),
        Err(StoreError::TooLarge { .. })
    ));
    assert!(matches!(
        store.children(&planted.corrupt),
        Err(StoreError::InvalidManifest { .. })
    ));
    assert_eq!(store.children(&good.manifest.0).unwrap().len(), 2);

    // The bad records can be deleted, and then what only they kept goes.
    store
        .apply(vec![
            delete("docker.io/library/oversized:1"),
            delete("docker.io/library/corrupt:1"),
        ])
        .unwrap();
    store.gc().unwrap();
    assert_eq!(blobs_on_disk(root), good.digests());
}

#[test]
fn a_new_name_for_unreadable_content_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (good, deleted) = (Image::new("good", &[b"g"]), Image::new("deleted", &[b"d"]));
    let planted = plant(dir.path(), &good, &deleted);
    let store = Store::open(dir.path()).unwrap();
    let err = store
        .apply(vec![put("docker.io/library/copy:1", &planted.oversized)])
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::UnreadableManifest { name, .. } if name == "docker.io/library/copy:1"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "image docker.io/library/copy:1 refused: manifest {} is {} bytes, more than the 4194304 bytes a manifest may have",
            planted.oversized.digest, planted.oversized.size
        )
    );
}
