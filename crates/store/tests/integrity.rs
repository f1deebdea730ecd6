//! Blobs read out through `open_verified_blob` (what `docker save` sends): checked against the
//! CRC-32 recorded in the file's `user.hoist.crc32` attribute when it was written, by sha256
//! where there is none, and by sha256 again wherever the CRC disagrees.

mod common;

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use hoist_store::{Digest, Lease, Store, StoreError};

const ATTRIBUTE: &str = "user.hoist.crc32";

fn attribute(path: &Path) -> Option<Vec<u8>> {
    let path = CString::new(path.as_os_str().as_bytes()).unwrap();
    let name = CString::new(ATTRIBUTE).unwrap();
    let mut value = [0u8; 16];
    // SAFETY: NUL-terminated path and name; the buffer's length is passed with it.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    (n >= 0).then(|| value[..n as usize].to_vec())
}

fn set_attribute(path: &Path, value: Option<&[u8]>) {
    let path = CString::new(path.as_os_str().as_bytes()).unwrap();
    let name = CString::new(ATTRIBUTE).unwrap();
    // SAFETY: as above.
    let rc = unsafe {
        match value {
            Some(value) => libc::setxattr(
                path.as_ptr(),
                name.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            ),
            None => libc::removexattr(path.as_ptr(), name.as_ptr()),
        }
    };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
}

/// A store holding one 3 MiB blob (under a lease, which keeps it), its digest and its file.
fn stored(dir: &Path) -> (Store, Lease, Digest, Vec<u8>, std::path::PathBuf) {
    let store = Store::open(dir).unwrap();
    let bytes: Vec<u8> = (0..3_000_017u32).map(|i| (i * 31 % 241) as u8).collect();
    let lease = store.lease();
    let mut writer = store.blob_writer(&lease).unwrap();
    writer.write_all(&bytes).unwrap();
    let (digest, _) = writer.commit(None).unwrap();
    let path = store.blob_path(&digest);
    (store, lease, digest, bytes, path)
}

/// Reads the blob out whole; the store error of the read that reached its end, if any.
fn read_out(store: &Store, digest: &Digest) -> (Vec<u8>, Result<(), StoreError>) {
    let mut blob = store.open_verified_blob(digest).unwrap();
    let mut out = Vec::new();
    let result = blob
        .read_to_end(&mut out)
        .map(drop)
        .map_err(|e| StoreError::from_io(e).unwrap_or_else(|e| panic!("not a store error: {e}")));
    (out, result)
}

/// Rewrites the file in place (the inode, and so its attribute, stays), one byte flipped.
fn damage(path: &Path, bytes: &[u8]) -> Digest {
    let mut damaged = bytes.to_vec();
    damaged[1_234_567] ^= 0x40;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(path, &damaged).unwrap();
    sha256(&damaged)
}

#[test]
fn a_written_blob_carries_the_crc32_of_its_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _lease, digest, bytes, path) = stored(dir.path());
    assert_eq!(
        attribute(&path),
        Some(crc32fast::hash(&bytes).to_le_bytes().to_vec())
    );
    let (out, result) = read_out(&store, &digest);
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(out, bytes);
}

#[test]
fn damaged_bytes_are_refused_with_or_without_the_attribute() {
    for keep_attribute in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let (store, _lease, digest, bytes, path) = stored(dir.path());
        if !keep_attribute {
            set_attribute(&path, None);
        }
        let actual = damage(&path, &bytes);
        assert_eq!(attribute(&path).is_some(), keep_attribute);
        let (out, result) = read_out(&store, &digest);
        assert_eq!(out.len(), bytes.len(), "every byte read before the end");
        match result {
            Err(StoreError::CorruptBlob {
                digest: named,
                actual: found,
            }) => {
                assert_eq!(named, digest);
                assert_eq!(found, actual, "the damaged bytes' own digest");
            }
            other => panic!("attribute kept: {keep_attribute}: {other:?}"),
        }
    }
}

#[test]
fn a_wrong_attribute_on_whole_bytes_lets_the_sha256_decide() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _lease, digest, bytes, path) = stored(dir.path());
    set_attribute(&path, Some(&[1, 2, 3, 4]));
    let (out, result) = read_out(&store, &digest);
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(out, bytes);
}

#[test]
fn bytes_that_changed_while_read_are_refused_even_if_the_file_is_whole_again() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _lease, digest, bytes, path) = stored(dir.path());
    damage(&path, &bytes);
    let mut blob = store.open_verified_blob(&digest).unwrap();
    let mut out = vec![0u8; bytes.len()];
    blob.read_exact(&mut out).unwrap();
    assert_ne!(out, bytes, "the damaged bytes were read out");
    // Whole again before the read that reaches the end: the bytes sent were still not the blob.
    std::fs::write(&path, &bytes).unwrap();
    let error = blob.read(&mut [0u8; 1]).unwrap_err();
    let error = StoreError::from_io(error).unwrap_or_else(|e| panic!("not a store error: {e}"));
    assert!(
        error.to_string().contains("changed while they were read"),
        "{error}"
    );
}
