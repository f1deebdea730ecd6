//! `meta.db`: image records and blob labels in redb, an embedded database of copy-on-write
//! B-trees with durable, atomic transactions (containerd keeps the same metadata in bbolt).
//!
//! A change writes only the pages it touches, so its cost grows with the logarithm of the number
//! of records, not with the records. A commit is durable when it returns; after a crash at any
//! instant, `kill -9` included, the database opens at its last commit, never at a mix of two.
//! Readers see a snapshot and never wait for a writer.
//!
//! Values are JSON, so a field can be added without a new format version; keys are record names
//! and digests, so a lookup is one B-tree descent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use hoist_reference::Digest;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use crate::descriptor::Descriptor;
use crate::error::StoreError;
use crate::images::ImageRecord;
use crate::layout::Layout;

/// Bump when the format changes incompatibly; an older hoistd then refuses the database instead
/// of misreading it.
const FORMAT_VERSION: u64 = 1;

/// Record name → [`StoredImage`] as JSON.
const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");
/// Blob digest → its labels as a JSON object.
const LABELS: TableDefinition<&str, &[u8]> = TableDefinition::new("labels");
/// Target digest → how many records point at it, so that a change leaving an image other names
/// knows at once that nothing became garbage.
const TARGETS: TableDefinition<&str, u64> = TableDefinition::new("targets");
/// Facts about the database itself.
const INFO: TableDefinition<&str, u64> = TableDefinition::new("info");
const FORMAT_VERSION_KEY: &str = "format_version";

/// redb caches pages it read; the metadata of a large store is tens of MiB.
const CACHE_BYTES: usize = 64 << 20;

pub(crate) type Labels = BTreeMap<String, String>;

/// An image record as stored: its name is the key.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct StoredImage {
    pub target: Descriptor,
    pub created_unix_nanos: u64,
    pub updated_unix_nanos: u64,
}

impl StoredImage {
    pub fn of(record: &ImageRecord) -> StoredImage {
        StoredImage {
            target: record.target.clone(),
            created_unix_nanos: unix_nanos(record.created_at),
            updated_unix_nanos: unix_nanos(record.updated_at),
        }
    }

    pub fn into_record(self, name: String) -> ImageRecord {
        ImageRecord {
            name,
            target: self.target,
            created_at: from_unix_nanos(self.created_unix_nanos),
            updated_at: from_unix_nanos(self.updated_unix_nanos),
        }
    }
}

/// A stored record as GC sees it: its target, or, when its value cannot be decoded, the raw
/// bytes (which still name digests that must be kept).
pub(crate) struct RecordRoot {
    pub name: String,
    pub target: Result<Descriptor, Vec<u8>>,
}

pub(crate) struct Metadata {
    db: RwLock<OpenDatabase>,
    path: PathBuf,
}

/// The open database, and how many times it was opened: a caller that saw it fail re-opens it
/// only if nobody did since.
struct OpenDatabase {
    /// `None` only when re-opening failed; every later call tries again.
    db: Option<redb::Database>,
    generation: u64,
}

impl Metadata {
    /// Opens (creating if needed) `meta.db`. A database left by a crash is repaired by redb to its
    /// last commit; one altered outside redb fails to open instead of being trusted.
    pub fn open(layout: &Layout) -> Result<Metadata, StoreError> {
        let path = layout.database.clone();
        let db = open_database(&path)?;
        let meta = Metadata {
            db: RwLock::new(OpenDatabase {
                db: Some(db),
                generation: 0,
            }),
            path,
        };
        meta.check_format()?;
        Ok(meta)
    }

    /// Starts a transaction with `begin`. After a failed write (a full disk) redb refuses every
    /// later transaction of that handle with `PreviousIo` until the database is closed: it is
    /// then re-opened, which repairs it to its last commit, so that one failed write does not
    /// stop every later one once there is room again.
    fn begin<T>(
        &self,
        doing: &str,
        begin: impl Fn(&redb::Database) -> Result<T, redb::TransactionError>,
    ) -> Result<T, StoreError> {
        let generation = {
            let open = self.db.read().unwrap_or_else(PoisonError::into_inner);
            match open.db.as_ref().map(&begin) {
                Some(Err(redb::TransactionError::Storage(redb::StorageError::PreviousIo)))
                | None => open.generation,
                Some(result) => return result.map_err(|e| self.error(doing, e)),
            }
        };
        self.reopen(generation)?;
        let open = self.db.read().unwrap_or_else(PoisonError::into_inner);
        match open.db.as_ref() {
            Some(db) => begin(db).map_err(|e| self.error(doing, e)),
            None => Err(self.error(doing, redb::StorageError::DatabaseClosed)),
        }
    }

    /// Closes and re-opens the database unless it was re-opened since `failed_generation`.
    fn reopen(&self, failed_generation: u64) -> Result<(), StoreError> {
        let mut open = self.db.write().unwrap_or_else(PoisonError::into_inner);
        if open.generation != failed_generation && open.db.is_some() {
            return Ok(());
        }
        tracing::warn!(path = %self.path.display(), "re-opening the metadata database after a failed write");
        // Closed first: the file stays locked while the old handle lives.
        drop(open.db.take());
        open.db = Some(open_database(&self.path)?);
        open.generation += 1;
        Ok(())
    }

    /// Creates the tables and the version on first use; refuses a newer format.
    fn check_format(&self) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        let found = {
            let mut info = txn.open_table(INFO).map_err(|e| self.error("opening", e))?;
            txn.open_table(IMAGES)
                .map_err(|e| self.error("opening", e))?;
            txn.open_table(LABELS)
                .map_err(|e| self.error("opening", e))?;
            let found = info
                .get(FORMAT_VERSION_KEY)
                .map_err(|e| self.error("reading", e))?
                .map(|v| v.value());
            if found.is_none() {
                info.insert(FORMAT_VERSION_KEY, FORMAT_VERSION)
                    .map_err(|e| self.error("writing", e))?;
            }
            found
        };
        match found {
            Some(found) if found > FORMAT_VERSION => Err(StoreError::UnsupportedMetadataVersion {
                path: self.path.clone(),
                found,
                supported: FORMAT_VERSION,
            }),
            Some(_) => Ok(()),
            None => txn.commit().map_err(|e| self.error("committing", e)),
        }
    }

    pub fn image(&self, name: &str) -> Result<Option<ImageRecord>, StoreError> {
        let txn = self.begin_read()?;
        let table = txn
            .open_table(IMAGES)
            .map_err(|e| self.error("opening", e))?;
        let Some(value) = table.get(name).map_err(|e| self.error("reading", e))? else {
            return Ok(None);
        };
        self.decode_image(name, value.value()).map(Some)
    }

    /// Every record that decodes, sorted by name; one that does not is logged and left out.
    pub fn images(&self) -> Result<Vec<ImageRecord>, StoreError> {
        let mut records = Vec::new();
        self.for_each_image(|name, bytes| match self.decode_image(name, bytes) {
            Ok(record) => records.push(record),
            Err(e) => tracing::warn!(image = %name, error = %e, "skipping an image record"),
        })?;
        Ok(records)
    }

    /// Every record's target, for marking what is live.
    pub fn image_roots(&self) -> Result<Vec<RecordRoot>, StoreError> {
        let mut roots = Vec::new();
        self.for_each_image(|name, bytes| {
            let target = serde_json::from_slice::<StoredImage>(bytes)
                .map(|stored| stored.target)
                .map_err(|_| bytes.to_vec());
            roots.push(RecordRoot {
                name: name.to_owned(),
                target,
            });
        })?;
        Ok(roots)
    }

    fn for_each_image(&self, mut each: impl FnMut(&str, &[u8])) -> Result<(), StoreError> {
        let txn = self.begin_read()?;
        let table = txn
            .open_table(IMAGES)
            .map_err(|e| self.error("opening", e))?;
        for entry in table.iter().map_err(|e| self.error("reading", e))? {
            let (name, value) = entry.map_err(|e| self.error("reading", e))?;
            each(name.value(), value.value());
        }
        Ok(())
    }

    pub fn labels(&self, digest: &Digest) -> Result<Labels, StoreError> {
        let txn = self.begin_read()?;
        let table = txn
            .open_table(LABELS)
            .map_err(|e| self.error("opening", e))?;
        let value = table
            .get(digest.as_str())
            .map_err(|e| self.error("reading", e))?;
        match value {
            Some(value) => self.decode_labels(digest.as_str(), value.value()),
            None => Ok(Labels::new()),
        }
    }

    /// Digests that carry labels.
    pub fn labelled(&self) -> Result<Vec<String>, StoreError> {
        let txn = self.begin_read()?;
        let table = txn
            .open_table(LABELS)
            .map_err(|e| self.error("opening", e))?;
        let mut digests = Vec::new();
        for entry in table.iter().map_err(|e| self.error("reading", e))? {
            let (digest, _) = entry.map_err(|e| self.error("reading", e))?;
            digests.push(digest.value().to_owned());
        }
        Ok(digests)
    }

    /// A write transaction: nothing it does is visible, nor durable, before
    /// [`MetadataWrite::commit`]; dropping it discards everything.
    pub fn write(&self) -> Result<MetadataWrite<'_>, StoreError> {
        Ok(MetadataWrite {
            txn: self.begin_write()?,
            meta: self,
        })
    }

    fn begin_read(&self) -> Result<redb::ReadTransaction, StoreError> {
        self.begin("starting a read of", |db| db.begin_read())
    }

    fn begin_write(&self) -> Result<redb::WriteTransaction, StoreError> {
        self.begin("starting a write to", |db| db.begin_write())
    }

    fn decode_image(&self, name: &str, bytes: &[u8]) -> Result<ImageRecord, StoreError> {
        serde_json::from_slice::<StoredImage>(bytes)
            .map(|stored| stored.into_record(name.to_owned()))
            .map_err(|e| self.corrupt(format!("image record {name:?}: {e}")))
    }

    fn decode_labels(&self, digest: &str, bytes: &[u8]) -> Result<Labels, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| self.corrupt(format!("labels of {digest}: {e}")))
    }

    fn corrupt(&self, reason: String) -> StoreError {
        StoreError::CorruptMetadata {
            path: self.path.clone(),
            reason,
        }
    }

    fn error(&self, doing: &str, e: impl Into<redb::Error>) -> StoreError {
        StoreError::database(format!("{doing} {}", self.path.display()), e)
    }
}

pub(crate) struct MetadataWrite<'a> {
    txn: redb::WriteTransaction,
    meta: &'a Metadata,
}

impl MetadataWrite<'_> {
    /// The record as this transaction sees it, its own changes included.
    pub fn image(&self, name: &str) -> Result<Option<ImageRecord>, StoreError> {
        let table = self.images()?;
        let Some(value) = table.get(name).map_err(|e| self.meta.error("reading", e))? else {
            return Ok(None);
        };
        self.meta.decode_image(name, value.value()).map(Some)
    }

    /// Writes a record, replacing any record of that name.
    pub fn put_image(&self, record: &ImageRecord) -> Result<(), StoreError> {
        let bytes = encode(&StoredImage::of(record));
        let old = {
            let mut table = self.images()?;
            let old = table
                .insert(record.name.as_str(), bytes.as_slice())
                .map_err(|e| self.meta.error("writing", e))?;
            old.map(|old| old.value().to_vec())
        };
        if let Some(old) = old {
            self.count_reference(&old, -1)?;
        }
        self.count_reference(&bytes, 1)
    }

    /// Removes a record; returns whether there was one. The old value is not decoded: a record
    /// that cannot be read can still be deleted.
    pub fn delete_image(&self, name: &str) -> Result<bool, StoreError> {
        let old = {
            let mut table = self.images()?;
            let old = table
                .remove(name)
                .map_err(|e| self.meta.error("writing", e))?;
            old.map(|old| old.value().to_vec())
        };
        match old {
            Some(old) => self.count_reference(&old, -1).map(|()| true),
            None => Ok(false),
        }
    }

    /// How many records point at `digest`, this transaction's changes included.
    pub fn references(&self, digest: &Digest) -> Result<u64, StoreError> {
        let table = self.target_table()?;
        let count = table
            .get(digest.as_str())
            .map_err(|e| self.meta.error("reading", e))?;
        Ok(count.map_or(0, |c| c.value()))
    }

    /// Counts one record more or less for the target of a stored record's value. A value that does
    /// not decode names no target it could be counted under: its target only ever counts high,
    /// which delays collection until a full GC walks the records themselves.
    fn count_reference(&self, stored: &[u8], delta: i64) -> Result<(), StoreError> {
        let Ok(stored) = serde_json::from_slice::<StoredImage>(stored) else {
            return Ok(());
        };
        let digest = stored.target.digest.as_str();
        let mut table = self.target_table()?;
        let current = table
            .get(digest)
            .map_err(|e| self.meta.error("reading", e))?
            .map_or(0, |c| c.value());
        let result = match current.checked_add_signed(delta) {
            Some(0) | None => table.remove(digest).map(drop),
            Some(count) => table.insert(digest, count).map(drop),
        };
        result.map_err(|e| self.meta.error("writing", e))
    }

    pub fn labels(&self, digest: &Digest) -> Result<Labels, StoreError> {
        let table = self.label_table()?;
        let value = table
            .get(digest.as_str())
            .map_err(|e| self.meta.error("reading", e))?;
        match value {
            Some(value) => self.meta.decode_labels(digest.as_str(), value.value()),
            None => Ok(Labels::new()),
        }
    }

    /// Replaces a blob's labels; an empty set removes the entry.
    pub fn set_labels(&self, digest: &str, labels: &Labels) -> Result<(), StoreError> {
        let mut table = self.label_table()?;
        let result = if labels.is_empty() {
            table.remove(digest).map(drop)
        } else {
            table.insert(digest, encode(labels).as_slice()).map(drop)
        };
        result.map_err(|e| self.meta.error("writing", e))
    }

    /// Makes every change durable and visible at once.
    pub fn commit(self) -> Result<(), StoreError> {
        self.txn
            .commit()
            .map_err(|e| self.meta.error("committing to", e))
    }

    /// Makes every change visible at once and durable with the next durable commit, without
    /// waiting for the disk: a crash before that commit loses these changes, never the earlier
    /// ones, and never leaves them half applied.
    pub fn commit_deferred(mut self) -> Result<(), StoreError> {
        self.txn
            .set_durability(redb::Durability::None)
            .map_err(|e| self.meta.error("deferring a commit to", e))?;
        self.commit()
    }

    fn images(&self) -> Result<redb::Table<'_, &'static str, &'static [u8]>, StoreError> {
        self.txn
            .open_table(IMAGES)
            .map_err(|e| self.meta.error("opening", e))
    }

    fn target_table(&self) -> Result<redb::Table<'_, &'static str, u64>, StoreError> {
        self.txn
            .open_table(TARGETS)
            .map_err(|e| self.meta.error("opening", e))
    }

    fn label_table(&self) -> Result<redb::Table<'_, &'static str, &'static [u8]>, StoreError> {
        self.txn
            .open_table(LABELS)
            .map_err(|e| self.meta.error("opening", e))
    }
}

fn encode(value: &impl serde::Serialize) -> Vec<u8> {
    // Plain structs and string maps always serialise.
    serde_json::to_vec(value).unwrap_or_default()
}

fn open_database(path: &Path) -> Result<redb::Database, StoreError> {
    redb::Builder::new()
        .set_cache_size(CACHE_BYTES)
        .set_check_integrity_on_open(true)
        .create(path)
        .map_err(|e| StoreError::database(format!("opening {}", path.display()), e))
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
    use redb::ReadableTableMetadata;

    use super::*;

    fn open() -> (tempfile::TempDir, Metadata) {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        layout.create().unwrap();
        let meta = Metadata::open(&layout).unwrap();
        (dir, meta)
    }

    fn record(name: &str) -> ImageRecord {
        let created = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        ImageRecord {
            name: name.into(),
            target: Descriptor {
                media_type: hoist_oci::media::OCI_MANIFEST.into(),
                digest: Digest::sha256_from_bytes(&[1; 32]),
                size: 42,
            },
            created_at: created,
            updated_at: created + Duration::from_nanos(1),
        }
    }

    #[test]
    fn records_and_labels_round_trip_with_nanosecond_times() {
        let (_dir, meta) = open();
        let digest = Digest::sha256_from_bytes(&[2; 32]);
        let labels = Labels::from([("k".to_owned(), "v".to_owned())]);
        let write = meta.write().unwrap();
        write.put_image(&record("b")).unwrap();
        write.put_image(&record("a")).unwrap();
        write.set_labels(digest.as_str(), &labels).unwrap();
        assert_eq!(write.image("a").unwrap(), Some(record("a")));
        assert_eq!(meta.image("a").unwrap(), None, "visible before commit");
        write.commit().unwrap();

        assert_eq!(meta.images().unwrap(), [record("a"), record("b")]);
        assert_eq!(meta.labels(&digest).unwrap(), labels);
        assert_eq!(meta.labelled().unwrap(), [digest.as_str()]);
    }

    #[test]
    fn counts_the_records_pointing_at_each_target() {
        let (_dir, meta) = open();
        let digest = record("a").target.digest;
        let mut elsewhere = record("b");
        elsewhere.target.digest = Digest::sha256_from_bytes(&[9; 32]);
        let write = meta.write().unwrap();
        write.put_image(&record("a")).unwrap();
        write.put_image(&record("b")).unwrap();
        assert_eq!(write.references(&digest).unwrap(), 2);
        write.put_image(&record("a")).unwrap();
        assert_eq!(write.references(&digest).unwrap(), 2, "same record again");
        write.put_image(&elsewhere).unwrap();
        assert_eq!(write.references(&digest).unwrap(), 1);
        assert_eq!(write.references(&elsewhere.target.digest).unwrap(), 1);
        assert!(write.delete_image("a").unwrap());
        assert!(!write.delete_image("a").unwrap());
        assert_eq!(write.references(&digest).unwrap(), 0);
        assert_eq!(
            write.target_table().unwrap().len().unwrap(),
            1,
            "zero counts go"
        );
    }

    #[test]
    fn an_uncommitted_write_leaves_nothing() {
        let (_dir, meta) = open();
        let write = meta.write().unwrap();
        write.put_image(&record("a")).unwrap();
        drop(write);
        assert!(meta.images().unwrap().is_empty());
    }

    #[test]
    fn a_record_that_does_not_decode_is_left_out_of_the_list_but_still_a_root() {
        let (_dir, meta) = open();
        let write = meta.write().unwrap();
        write.put_image(&record("good")).unwrap();
        let target = Digest::sha256_from_bytes(&[3; 32]);
        let garbage = format!("{{\"target\": \"{target}\"");
        write
            .images()
            .unwrap()
            .insert("bad", garbage.as_bytes())
            .unwrap();
        write.commit().unwrap();

        assert_eq!(meta.images().unwrap(), [record("good")]);
        assert!(matches!(
            meta.image("bad"),
            Err(StoreError::CorruptMetadata { .. })
        ));
        let roots = meta.image_roots().unwrap();
        assert_eq!(roots[0].name, "bad");
        assert_eq!(roots[0].target.as_ref().unwrap_err(), garbage.as_bytes());
    }

    #[test]
    fn refuses_a_newer_format() {
        let (dir, meta) = open();
        let write = meta.write().unwrap();
        write
            .txn
            .open_table(INFO)
            .unwrap()
            .insert(FORMAT_VERSION_KEY, FORMAT_VERSION + 1)
            .unwrap();
        write.commit().unwrap();
        drop(meta);
        let err = Metadata::open(&Layout::new(dir.path()))
            .err()
            .expect("a newer format opens");
        assert!(
            matches!(err, StoreError::UnsupportedMetadataVersion { found: 2, .. }),
            "{err:?}"
        );
    }
}
