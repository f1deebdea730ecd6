//! Helpers shared by the integration tests: independent hashing and tiny synthetic images.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::Path;

use hoist_oci::media;
use hoist_store::{Descriptor, Digest, ImageChange, Lease, Store};
use sha2::{Digest as _, Sha256};

pub const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// Computed with sha2 and hex directly, not through the store or `Digest::sha256_from_bytes`.
pub fn sha256(bytes: &[u8]) -> Digest {
    Digest::parse(&format!("sha256:{}", hex::encode(Sha256::digest(bytes)))).unwrap()
}

pub fn descriptor(media_type: &str, bytes: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.to_owned(),
        digest: sha256(bytes),
        size: bytes.len() as u64,
    }
}

pub fn manifest_bytes(config: &Descriptor, layers: &[Descriptor]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": config,
        "layers": layers,
    }))
    .unwrap()
}

pub fn index_bytes(manifests: &[Descriptor]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": manifests,
    }))
    .unwrap()
}

/// The blobs of one single-platform image, bytes included.
pub struct Image {
    pub layers: Vec<(Descriptor, Vec<u8>)>,
    pub config: (Descriptor, Vec<u8>),
    pub manifest: (Descriptor, Vec<u8>),
}

impl Image {
    /// An image whose layers are the given byte strings (shared strings give shared layers).
    pub fn new(tag: &str, layers: &[&[u8]]) -> Image {
        let layers: Vec<_> = layers
            .iter()
            .map(|bytes| (descriptor(LAYER, bytes), bytes.to_vec()))
            .collect();
        let config_bytes = format!(r#"{{"architecture":"amd64","os":"linux","tag":"{tag}"}}"#);
        let config = (
            descriptor(CONFIG, config_bytes.as_bytes()),
            config_bytes.into_bytes(),
        );
        let layer_descs: Vec<_> = layers.iter().map(|(d, _)| d.clone()).collect();
        let manifest_bytes = manifest_bytes(&config.0, &layer_descs);
        let manifest = (
            descriptor(media::OCI_MANIFEST, &manifest_bytes),
            manifest_bytes,
        );
        Image {
            layers,
            config,
            manifest,
        }
    }

    pub fn digests(&self) -> BTreeSet<Digest> {
        self.layers
            .iter()
            .chain([&self.config, &self.manifest])
            .map(|(d, _)| d.digest.clone())
            .collect()
    }

    /// Loads it like the engine does: blobs under a lease, then the record, then the lease goes.
    pub fn load(&self, store: &Store, name: &str) {
        let lease = store.lease();
        for (desc, bytes) in self.layers.iter().chain([&self.config]) {
            let mut writer = store.blob_writer(&lease).unwrap();
            // Small chunks, as a tar reader would hand them over.
            for chunk in bytes.chunks(7) {
                writer.write_all(chunk).unwrap();
            }
            assert_eq!(writer.commit(Some(&desc.digest)).unwrap().0, desc.digest);
        }
        let (digest, _) = store.put_blob(&lease, &self.manifest.1).unwrap();
        assert_eq!(digest, self.manifest.0.digest);
        store
            .apply(vec![ImageChange::Put {
                name: name.to_owned(),
                target: self.manifest.0.clone(),
            }])
            .unwrap();
    }
}

/// Digests of every file under `blobs/sha256`.
pub fn blobs_on_disk(root: &Path) -> BTreeSet<Digest> {
    fs::read_dir(root.join("blobs/sha256"))
        .unwrap()
        .map(|e| {
            Digest::parse(&format!(
                "sha256:{}",
                e.unwrap().file_name().to_str().unwrap()
            ))
            .unwrap()
        })
        .collect()
}

pub fn ingest_entries(root: &Path) -> usize {
    fs::read_dir(root.join("ingest")).unwrap().count()
}

pub fn put(name: &str, target: &Descriptor) -> ImageChange {
    ImageChange::Put {
        name: name.to_owned(),
        target: target.clone(),
    }
}

pub fn delete(name: &str) -> ImageChange {
    ImageChange::Delete {
        name: name.to_owned(),
    }
}

/// `meta.json` as hoistd kept it before its database: one record per `(name, target)`, planted
/// for the store to migrate on open.
pub fn legacy_metadata(records: &[(&str, &Descriptor)]) -> String {
    let images: serde_json::Map<String, serde_json::Value> = records
        .iter()
        .map(|(name, target)| {
            let record = serde_json::json!({
                "target": target,
                "created_unix_nanos": 1_700_000_000_000_000_000u64,
                "updated_unix_nanos": 1_700_000_000_000_000_001u64,
            });
            ((*name).to_owned(), record)
        })
        .collect();
    serde_json::json!({"version": 1, "images": images, "labels": {}}).to_string()
}

/// Writes a blob straight into a data root, as an earlier hoistd left it.
pub fn write_blob(root: &Path, bytes: &[u8]) {
    fs::create_dir_all(root.join("blobs/sha256")).unwrap();
    fs::write(root.join("blobs/sha256").join(sha256(bytes).hex()), bytes).unwrap();
}

/// A store in a fresh temporary directory and a lease on it: the directory goes when dropped.
pub fn open_store() -> (tempfile::TempDir, Store, Lease) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let lease = store.lease();
    (dir, store, lease)
}
