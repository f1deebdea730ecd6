//! Blob writes stop, with a typed error naming the data root, when the filesystem's free space
//! would fall under the store's reserve; a disk that fills all the same fails the blob with the
//! disk's own error; nothing half-written stays behind either way.

mod common;

use std::io::Write;

use common::*;
use hoist_store::{FreeSpaceReserve, Store, StoreError, StoreOptions};

fn open_with_reserve(root: &std::path::Path, reserve: u64) -> Store {
    Store::open_with(
        root,
        &StoreOptions {
            min_free_space: FreeSpaceReserve::Bytes(reserve),
        },
    )
    .unwrap()
}

#[test]
fn a_write_that_would_eat_into_the_reserve_fails_with_no_space() {
    let dir = tempfile::tempdir().unwrap();
    // More than any filesystem has free.
    let store = open_with_reserve(dir.path(), u64::MAX / 2);
    let lease = store.lease();
    let mut writer = store.blob_writer(&lease).unwrap();
    let err = writer.write_all(b"some bytes").unwrap_err();
    let err = StoreError::from_io(err).expect("a store error inside the io::Error");
    let StoreError::NoSpace {
        root,
        available,
        reserve,
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(root, dir.path());
    assert_eq!(*reserve, u64::MAX / 2);
    assert_eq!(
        err.to_string(),
        format!(
            "not enough free space in {}: {available} bytes left, {reserve} reserved",
            dir.path().display()
        )
    );
    drop(writer);
    assert_eq!(ingest_entries(dir.path()), 0);
    assert!(store.put_blob(&lease, b"small").is_err());
    assert!(blobs_on_disk(dir.path()).is_empty());
}

#[test]
fn a_zero_reserve_and_the_default_let_ordinary_writes_through() {
    for options in [
        StoreOptions {
            min_free_space: FreeSpaceReserve::Bytes(0),
        },
        StoreOptions::default(),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(dir.path(), &options).unwrap();
        let image = Image::new("fits", &[b"a small layer"]);
        image.load(&store, "fits:1");
        assert_eq!(blobs_on_disk(dir.path()), image.digests());
    }
}

/// A small ext4 filesystem in a file, loop-mounted (needs root, `mkfs.ext4` and `mount`): a
/// disk that reports its direct I/O alignment, so a large blob's bytes past its first 8 MiB are
/// written with `O_DIRECT`, and that fills up. Unmounted when dropped.
struct LoopDisk {
    _dir: tempfile::TempDir,
    mount: std::path::PathBuf,
}

impl LoopDisk {
    fn new(size: u64) -> LoopDisk {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(size)
            .unwrap();
        run(std::process::Command::new("mkfs.ext4")
            .arg("-q")
            .arg(&image));
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).unwrap();
        run(std::process::Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mount));
        LoopDisk { _dir: dir, mount }
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(&self.mount)
            .status();
    }
}

fn run(command: &mut std::process::Command) {
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(status.success(), "{command:?}: {status}");
}

#[test]
fn a_disk_that_fills_during_a_direct_write_fails_the_blob_and_keeps_the_store_working() {
    let disk = LoopDisk::new(48 * 1024 * 1024);
    let root = disk.mount.join("data");
    let store = open_with_reserve(&root, 0);
    let lease = store.lease();

    // More than the disk holds, in pieces the size of HTTP body chunks.
    let piece: Vec<u8> = (0..300_007u32).map(|i| (i % 251) as u8).collect();
    let mut writer = store.blob_writer(&lease).unwrap();
    let error = (0..64 * 1024 * 1024 / piece.len())
        .find_map(|_| writer.write_all(&piece).err())
        .expect("a write fails once the disk is full");
    assert_eq!(error.kind(), std::io::ErrorKind::StorageFull, "{error}");
    drop(writer);
    assert_eq!(ingest_entries(&root), 0);
    assert!(blobs_on_disk(&root).is_empty());

    // The space came back: a large blob fits again and reads back whole.
    let bytes: Vec<u8> = piece
        .iter()
        .cycle()
        .take(20 * 1024 * 1024 + 5)
        .copied()
        .collect();
    let mut writer = store.blob_writer(&lease).unwrap();
    writer.write_all(&bytes).unwrap();
    let (digest, size) = writer.commit(None).unwrap();
    assert_eq!(digest, sha256(&bytes));
    assert_eq!(store.read_blob(&digest, size).unwrap(), bytes);
}
