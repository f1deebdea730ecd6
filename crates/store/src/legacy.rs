//! `meta.json`, the metadata file of earlier hoistd versions (every record and label in one JSON
//! document, replaced whole on each change), and its migration into `meta.db`.
//!
//! Migration writes every record and label in one transaction and removes `meta.json` only after
//! that commit. A crash before the commit leaves the database without them and the file in place;
//! a crash between the commit and the removal leaves both, and writing the same records again is
//! harmless. Either way the next open simply migrates again.

use std::collections::BTreeMap;
use std::fs;
use std::io;

use hoist_reference::Digest;
use tracing::info;

use crate::error::{IoContext, StoreError};
use crate::layout::{Layout, sync_dir};
use crate::metadata::{Labels, Metadata, StoredImage};

/// The only version of `meta.json` there was.
const FORMAT_VERSION: u64 = 1;

#[derive(serde::Deserialize)]
struct VersionProbe {
    version: u64,
}

#[derive(serde::Deserialize)]
struct LegacyFile {
    images: BTreeMap<String, StoredImage>,
    labels: BTreeMap<Digest, Labels>,
}

/// Moves the records and labels of `meta.json`, if there is one, into the database.
pub(crate) fn migrate(layout: &Layout, meta: &Metadata) -> Result<(), StoreError> {
    let Some(file) = load(layout)? else {
        return Ok(());
    };
    let (records, labelled) = (file.images.len(), file.labels.len());
    let write = meta.write()?;
    for (name, stored) in file.images {
        write.put_image(&stored.into_record(name))?;
    }
    for (digest, labels) in &file.labels {
        write.set_labels(digest.as_str(), labels)?;
    }
    write.commit()?;
    let path = &layout.legacy_metadata;
    fs::remove_file(path).context(|| format!("removing {}", path.display()))?;
    sync_dir(&layout.root)?;
    info!(
        records,
        labelled,
        from = %path.display(),
        to = %layout.database.display(),
        "migrated image metadata"
    );
    Ok(())
}

/// Reads `meta.json`; None if there is none.
fn load(layout: &Layout) -> Result<Option<LegacyFile>, StoreError> {
    let path = &layout.legacy_metadata;
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context(|| format!("reading {}", path.display())),
    };
    let corrupt = |reason: String| StoreError::CorruptMetadata {
        path: path.clone(),
        reason,
    };
    let probe: VersionProbe = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
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
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descriptor::Descriptor;

    fn layout() -> (tempfile::TempDir, Layout) {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        layout.create().unwrap();
        (dir, layout)
    }

    #[test]
    fn a_missing_file_migrates_nothing() {
        let (_dir, layout) = layout();
        let meta = Metadata::open(&layout).unwrap();
        migrate(&layout, &meta).unwrap();
        assert!(meta.images().unwrap().is_empty());
    }

    #[test]
    fn migrates_records_with_their_times_and_labels_then_removes_the_file() {
        let (_dir, layout) = layout();
        let target = Digest::sha256_from_bytes(&[1; 32]);
        let layer = Digest::sha256_from_bytes(&[2; 32]);
        fs::write(
            &layout.legacy_metadata,
            format!(
                r#"{{"version": 1,
                    "images": {{"docker.io/library/foo:latest": {{
                        "target": {{"mediaType": "{}", "digest": "{target}", "size": 42}},
                        "created_unix_nanos": 1700000000123456789,
                        "updated_unix_nanos": 1700000000123456790}}}},
                    "labels": {{"{layer}": {{"k": "v"}}}}}}"#,
                hoist_oci::media::OCI_MANIFEST
            ),
        )
        .unwrap();
        let meta = Metadata::open(&layout).unwrap();
        migrate(&layout, &meta).unwrap();

        let record = meta.image("docker.io/library/foo:latest").unwrap().unwrap();
        assert_eq!(
            record.target,
            Descriptor {
                media_type: hoist_oci::media::OCI_MANIFEST.into(),
                digest: target,
                size: 42
            }
        );
        let nanos =
            |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        assert_eq!(nanos(record.created_at), 1_700_000_000_123_456_789);
        assert_eq!(nanos(record.updated_at), 1_700_000_000_123_456_790);
        assert_eq!(meta.labels(&layer).unwrap()["k"], "v");
        assert!(!layout.legacy_metadata.exists());
    }

    #[test]
    fn refuses_newer_versions_and_garbage_without_panicking() {
        let (_dir, layout) = layout();
        fs::write(
            &layout.legacy_metadata,
            r#"{"version": 2, "images": {}, "labels": {}}"#,
        )
        .unwrap();
        assert!(matches!(
            load(&layout),
            Err(StoreError::UnsupportedMetadataVersion { found: 2, .. })
        ));
        for garbage in [
            "",
            "{",
            "[]",
            r#"{"version": 1}"#,
            r#"{"version": 1, "images": {"x": 1}, "labels": {}}"#,
        ] {
            fs::write(&layout.legacy_metadata, garbage).unwrap();
            assert!(
                matches!(load(&layout), Err(StoreError::CorruptMetadata { .. })),
                "{garbage:?}"
            );
        }
    }
}
