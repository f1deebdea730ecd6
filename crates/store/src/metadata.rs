//! `meta.json`: every image record and blob label, in one small versioned file that is replaced
//! whole on each change.
//!
//! Metadata is kilobytes, so rewriting it whole keeps the crash story trivial: write a temp file in
//! `ingest/`, fsync it, rename it over `meta.json`, fsync the root directory. After a crash the
//! file is either the old or the new version, never a mix, and the temp file is wiped on open.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use hoist_reference::Digest;

use crate::descriptor::Descriptor;
use crate::error::{IoContext, StoreError};
use crate::images::ImageRecord;
use crate::layout::{Layout, sync_dir};

/// Bump when the format changes incompatibly; an older hoistd then refuses the file instead of
/// misreading it.
const FORMAT_VERSION: u64 = 1;

pub(crate) type Labels = BTreeMap<String, String>;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Metadata {
    pub images: BTreeMap<String, ImageRecord>,
    pub labels: BTreeMap<Digest, Labels>,
}

#[derive(serde::Deserialize)]
struct VersionProbe {
    version: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct MetadataFile<I, L> {
    version: u64,
    images: I,
    labels: L,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredImage<T> {
    target: T,
    created_unix_nanos: u64,
    updated_unix_nanos: u64,
}

type OwnedFile = MetadataFile<BTreeMap<String, StoredImage<Descriptor>>, BTreeMap<Digest, Labels>>;
type BorrowedFile<'a> =
    MetadataFile<BTreeMap<&'a str, StoredImage<&'a Descriptor>>, &'a BTreeMap<Digest, Labels>>;

impl Metadata {
    /// Reads `meta.json`; a missing file is a fresh store.
    pub fn load(layout: &Layout) -> Result<Metadata, StoreError> {
        let path = &layout.metadata;
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Metadata::default()),
            Err(e) => return Err(e).context(|| format!("reading {}", path.display())),
        };
        let corrupt = |reason: String| StoreError::CorruptMetadata {
            path: path.clone(),
            reason,
        };
        let probe: VersionProbe =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if probe.version > FORMAT_VERSION {
            return Err(StoreError::UnsupportedMetadataVersion {
                path: path.clone(),
                found: probe.version,
                supported: FORMAT_VERSION,
            });
        }
        if probe.version != FORMAT_VERSION {
            return Err(corrupt(format!("unknown version {}", probe.version)));
        }
        let file: OwnedFile = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let images = file
            .images
            .into_iter()
            .map(|(name, stored)| {
                let record = ImageRecord {
                    name: name.clone(),
                    target: stored.target,
                    created_at: from_unix_nanos(stored.created_unix_nanos),
                    updated_at: from_unix_nanos(stored.updated_unix_nanos),
                };
                (name, record)
            })
            .collect();
        Ok(Metadata {
            images,
            labels: file.labels,
        })
    }

    /// Replaces `meta.json` atomically and durably; on error the old file is untouched.
    pub fn persist(&self, layout: &Layout) -> Result<(), StoreError> {
        let file: BorrowedFile<'_> = MetadataFile {
            version: FORMAT_VERSION,
            images: self
                .images
                .iter()
                .map(|(name, record)| {
                    let stored = StoredImage {
                        target: &record.target,
                        created_unix_nanos: unix_nanos(record.created_at),
                        updated_unix_nanos: unix_nanos(record.updated_at),
                    };
                    (name.as_str(), stored)
                })
                .collect(),
            labels: &self.labels,
        };
        let mut bytes = serde_json::to_vec_pretty(&file)
            .map_err(io::Error::other)
            .context(|| format!("encoding {}", layout.metadata.display()))?;
        bytes.push(b'\n');
        atomic_write(layout, &bytes)
    }
}

fn atomic_write(layout: &Layout, bytes: &[u8]) -> Result<(), StoreError> {
    let path = &layout.metadata;
    let mut temp = tempfile::Builder::new()
        .prefix("meta-")
        .tempfile_in(&layout.ingest)
        .context(|| format!("creating a temp file in {}", layout.ingest.display()))?;
    temp.write_all(bytes)
        .and_then(|()| temp.as_file().sync_all())
        .context(|| format!("writing {}", temp.path().display()))?;
    temp.persist(path)
        .map_err(|e| e.error)
        .context(|| format!("renaming a temp file onto {}", path.display()))?;
    sync_dir(&layout.root)
}

fn unix_nanos(time: SystemTime) -> u64 {
    // Times before 1970 or after 2554 do not occur for records we create; clamp rather than fail.
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn from_unix_nanos(nanos: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> (tempfile::TempDir, Layout) {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        layout.create().unwrap();
        (dir, layout)
    }

    fn digest(byte: u8) -> Digest {
        Digest::sha256_from_bytes(&[byte; 32])
    }

    #[test]
    fn missing_file_is_an_empty_store() {
        let (_dir, layout) = layout();
        assert_eq!(Metadata::load(&layout).unwrap(), Metadata::default());
    }

    #[test]
    fn round_trips_records_with_nanosecond_times_and_labels() {
        let (_dir, layout) = layout();
        let mut meta = Metadata::default();
        let created = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        meta.images.insert(
            "docker.io/library/foo:latest".into(),
            ImageRecord {
                name: "docker.io/library/foo:latest".into(),
                target: Descriptor {
                    media_type: hoist_oci::media::OCI_MANIFEST.into(),
                    digest: digest(1),
                    size: 42,
                },
                created_at: created,
                updated_at: created + Duration::from_nanos(1),
            },
        );
        meta.labels.insert(
            digest(2),
            Labels::from([(
                "containerd.io/distribution.source.docker.io".into(),
                "library/foo".into(),
            )]),
        );
        meta.persist(&layout).unwrap();
        assert_eq!(Metadata::load(&layout).unwrap(), meta);
        assert_eq!(
            fs::read_dir(&layout.ingest).unwrap().count(),
            0,
            "temp file left behind"
        );
    }

    #[test]
    fn refuses_newer_versions_and_garbage_without_panicking() {
        let (_dir, layout) = layout();
        fs::write(
            &layout.metadata,
            r#"{"version": 2, "images": {}, "labels": {}}"#,
        )
        .unwrap();
        assert!(matches!(
            Metadata::load(&layout),
            Err(StoreError::UnsupportedMetadataVersion { found: 2, .. })
        ));
        for garbage in [
            "",
            "{",
            "[]",
            r#"{"version": 1}"#,
            r#"{"version": 1, "images": {"x": 1}, "labels": {}}"#,
        ] {
            fs::write(&layout.metadata, garbage).unwrap();
            assert!(
                matches!(
                    Metadata::load(&layout),
                    Err(StoreError::CorruptMetadata { .. })
                ),
                "{garbage:?}"
            );
        }
    }
}
