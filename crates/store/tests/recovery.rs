//! Opening a data root: the lock, crash recovery, durable metadata, and migrating an earlier
//! version's metadata.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::{env, fs};

use common::*;
use hoist_store::{Durability, Store, StoreError};

const HOLD_LOCK_ENV: &str = "HOIST_STORE_TEST_HOLD_LOCK";

#[test]
fn a_second_open_in_the_same_process_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { pid: Some(pid), .. } if pid == std::process::id()));
    assert_eq!(
        err.to_string(),
        format!(
            "data root {} is in use by another hoistd (pid {})",
            dir.path().display(),
            std::process::id()
        )
    );
    // Clones share the lock; the last drop releases it.
    let clone = store.clone();
    drop(store);
    assert!(matches!(
        Store::open(dir.path()),
        Err(StoreError::Locked { .. })
    ));
    drop(clone);
    Store::open(dir.path()).unwrap();
}

/// Not a test on its own: the child process of `another_process_holding_the_root_locks_us_out`.
#[test]
fn lock_holder_child() {
    let Some(root) = env::var_os(HOLD_LOCK_ENV) else {
        return;
    };
    let _store = Store::open(root.as_ref()).unwrap();
    println!("holding the lock");
    // Hold it until the parent closes our stdin (or kills us).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

#[test]
fn another_process_holding_the_root_locks_us_out_until_it_dies() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env::current_exe().unwrap())
        .args([
            "--exact",
            "lock_holder_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HOLD_LOCK_ENV, dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let ready = stdout
        .lines()
        .map(|line| line.unwrap())
        .any(|line| line.contains("holding the lock"));
    assert!(ready, "child exited before taking the lock");

    let err = Store::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, StoreError::Locked { pid: Some(pid), .. } if pid == child.id()),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&format!("(pid {})", child.id())),
        "{err}"
    );

    // kill -9: the kernel drops the lock with the process.
    child.kill().unwrap();
    child.wait().unwrap();
    Store::open(dir.path()).unwrap();
}

#[test]
fn open_creates_a_private_layout() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("nested/data-root");
    let store = Store::open(&root).unwrap();
    assert_eq!(store.root(), root);
    let mode = fs::metadata(&root).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode & 0o077,
        0,
        "root mode {mode:o} must not be group/other accessible"
    );
    for dir in ["blobs/sha256", "ingest"] {
        assert!(root.join(dir).is_dir(), "{dir}");
    }
    assert!(root.join("hoistd.lock").is_file());
}

#[test]
fn leftovers_of_a_crash_are_gone_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let image = Image::new("a", &[b"kept layer"]);
    {
        let store = Store::open(root).unwrap();
        image.load(&store, "a");
    }
    // What kill -9 mid-write leaves: half-written temp files (blob and metadata), even a
    // directory, and a blob renamed into place whose record was never written.
    fs::write(root.join("ingest/blob-half-written"), [0u8; 4096]).unwrap();
    fs::write(root.join("ingest/meta-XYZ"), b"{\"version\": 1, \"ima").unwrap();
    fs::create_dir_all(root.join("ingest/some/dir")).unwrap();
    let orphan = b"committed, never referenced";
    fs::write(root.join("blobs/sha256").join(sha256(orphan).hex()), orphan).unwrap();

    let store = Store::open(root).unwrap();
    assert_eq!(ingest_entries(root), 0);
    assert_eq!(blobs_on_disk(root), image.digests());
    assert_eq!(store.image("a").unwrap().target, image.manifest.0);
}

#[test]
fn a_record_whose_target_vanished_is_dropped_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (gone, kept) = (
        Image::new("gone", &[b"gone layer"]),
        Image::new("kept", &[b"kept"]),
    );
    {
        let store = Store::open(root).unwrap();
        gone.load(&store, "gone");
        kept.load(&store, "kept");
        let layer = gone.layers[0].0.digest.clone();
        store
            .set_blob_labels(
                vec![(layer, "k".into(), Some("v".into()))],
                Durability::Immediate,
            )
            .unwrap();
    }
    fs::remove_file(root.join("blobs/sha256").join(gone.manifest.0.digest.hex())).unwrap();

    let store = Store::open(root).unwrap();
    assert_eq!(store.image("gone"), None);
    assert!(store.image("kept").is_some());
    // What only the dropped record reached is collected, labels included.
    assert_eq!(blobs_on_disk(root), kept.digests());
    assert!(store.blob_labels(&gone.layers[0].0.digest).is_empty());
    drop(store);
    let store = Store::open(root).unwrap();
    let names: Vec<_> = store.images().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["kept"]);
}

/// Writes an image's blobs straight into a data root, as an earlier hoistd left them.
fn write_blobs(root: &std::path::Path, image: &Image) {
    for (_, bytes) in image.layers.iter().chain([&image.config, &image.manifest]) {
        write_blob(root, bytes);
    }
}

#[test]
fn a_data_root_of_an_earlier_version_is_migrated_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (a, b) = (Image::new("a", &[b"a"]), Image::new("b", &[b"b"]));
    write_blobs(root, &a);
    write_blobs(root, &b);
    fs::write(
        root.join("meta.json"),
        legacy_metadata(&[
            ("docker.io/library/a:1", &a.manifest.0),
            ("docker.io/library/b:1", &b.manifest.0),
        ]),
    )
    .unwrap();

    let store = Store::open(root).unwrap();
    let record = store.image("docker.io/library/a:1").unwrap();
    assert_eq!(record.target, a.manifest.0);
    assert_eq!(
        record.created_at,
        std::time::UNIX_EPOCH + std::time::Duration::from_nanos(1_700_000_000_000_000_000)
    );
    assert_eq!(store.images().len(), 2);
    assert!(!root.join("meta.json").exists(), "migrated, then removed");
    assert_eq!(blobs_on_disk(root), &a.digests() | &b.digests());

    // Later changes stay: nothing migrates twice.
    store.apply(vec![delete("docker.io/library/b:1")]).unwrap();
    drop(store);
    let store = Store::open(root).unwrap();
    assert_eq!(store.images().len(), 1);
    assert_eq!(blobs_on_disk(root), a.digests());
}

#[test]
fn a_crash_between_migrating_and_removing_the_old_file_migrates_again() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let a = Image::new("a", &[b"a"]);
    write_blobs(root, &a);
    let legacy = legacy_metadata(&[("a", &a.manifest.0)]);
    fs::write(root.join("meta.json"), &legacy).unwrap();
    let migrated = Store::open(root).unwrap().images();
    // What a crash after the commit leaves: the database written, the old file still there.
    fs::write(root.join("meta.json"), &legacy).unwrap();
    let store = Store::open(root).unwrap();
    assert_eq!(store.images(), migrated);
    assert!(!root.join("meta.json").exists());
}

#[test]
fn corrupt_legacy_metadata_refuses_to_open_without_losing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let image = Image::new("a", &[b"layer"]);
    write_blobs(root, &image);
    let good = legacy_metadata(&[("a", &image.manifest.0)]);
    fs::write(root.join("meta.json"), &good[..good.len() / 2]).unwrap();
    let err = Store::open(root).unwrap_err();
    assert!(matches!(err, StoreError::CorruptMetadata { .. }), "{err:?}");
    assert!(err.to_string().contains("meta.json"), "{err}");
    // Nothing was collected, and the lock was released with the failed open.
    assert_eq!(blobs_on_disk(root), image.digests());
    fs::write(root.join("meta.json"), &good).unwrap();
    assert!(Store::open(root).unwrap().image("a").is_some());
}

const TAGGER_ENV: &str = "HOIST_STORE_TEST_TAGGER";

/// Not a test on its own: the child process of `kill_9_while_tagging_loses_no_committed_tag`.
#[test]
fn tagger_child() {
    let Some(root) = env::var_os(TAGGER_ENV) else {
        return;
    };
    let store = Store::open(root.as_ref()).unwrap();
    let image = Image::new("a", &[b"layer"]);
    image.load(&store, "seed");
    for i in 0.. {
        store
            .apply(vec![put(&format!("tag-{i}"), &image.manifest.0)])
            .unwrap();
        println!("tagged {i}");
    }
}

#[test]
fn kill_9_while_tagging_loses_no_committed_tag() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env::current_exe().unwrap())
        .args(["--exact", "tagger_child", "--nocapture", "--test-threads=1"])
        .env(TAGGER_ENV, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut last = None;
    let mut line = String::new();
    while last.is_none_or(|n| n < 200) {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "tagger exited");
        if let Some(n) = line.trim().strip_prefix("tagged ") {
            last = Some(n.parse::<usize>().unwrap());
        }
    }
    // Mid-commit, most likely: the child commits back to back.
    child.kill().unwrap();
    child.wait().unwrap();
    let last = last.unwrap();

    let store = Store::open(dir.path()).unwrap();
    let image = Image::new("a", &[b"layer"]);
    for i in 0..=last {
        let record = store.image(&format!("tag-{i}"));
        assert_eq!(
            record.map(|r| r.target),
            Some(image.manifest.0.clone()),
            "tag-{i}"
        );
    }
    // At most the one tag in flight at the kill went further.
    assert!(store.images().len() <= last + 3, "{}", store.images().len());
    assert_eq!(blobs_on_disk(dir.path()), image.digests());
}

#[test]
fn the_data_root_holds_only_what_the_layout_says() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let store = Store::open(&root).unwrap();
    let image = Image::new("a", &[b"layer"]);
    image.load(&store, "seed");
    drop(store);

    assert_eq!(ingest_entries(&root), 0, "no temp files left behind");
    let mut entries: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    entries.sort();
    assert_eq!(entries, ["blobs", "hoistd.lock", "ingest", "meta.db"]);
}

#[test]
fn a_damaged_database_refuses_to_open_without_losing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let image = Image::new("a", &[b"layer"]);
    {
        let store = Store::open(root).unwrap();
        image.load(&store, "a");
    }
    let good = fs::read(root.join("meta.db")).unwrap();
    for damaged in [
        b"not a database at all".to_vec(),
        good[..good.len() / 2].to_vec(),
        good.iter()
            .enumerate()
            .map(|(i, b)| if i % 4096 == 100 { !b } else { *b })
            .collect(),
    ] {
        fs::write(root.join("meta.db"), &damaged).unwrap();
        let err = Store::open(root).unwrap_err();
        assert!(err.to_string().contains("meta.db"), "{err}");
        // Nothing was collected, and the lock was released with the failed open.
        assert_eq!(blobs_on_disk(root), image.digests());
    }
    fs::write(root.join("meta.db"), &good).unwrap();
    assert!(Store::open(root).unwrap().image("a").is_some());
}
