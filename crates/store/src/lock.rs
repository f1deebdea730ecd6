//! One daemon per data root. Two daemons sharing a store would each garbage-collect the other's
//! in-flight blobs and overwrite each other's records.
//!
//! The lock is an `flock` on `hoistd.lock`, held by an open file for as long as the store lives;
//! the kernel releases it when the process dies, so a crash never leaves a stale lock. The file
//! also carries the holder's pid, for the error message only.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{IoContext, StoreError};

#[derive(Debug)]
pub(crate) struct DataRootLock {
    /// Never read: holding the open file is what holds the lock.
    _file: File,
}

impl DataRootLock {
    pub fn acquire(root: &Path, lock_path: &Path) -> Result<DataRootLock, StoreError> {
        // No truncate on open: until we hold the lock, the pid in there is the holder's.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(lock_path)
            .context(|| format!("opening lock file {}", lock_path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    root: root.to_owned(),
                    pid: read_pid(&mut file),
                });
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).context(|| format!("locking {}", lock_path.display()));
            }
        }
        let pid = format!("{}\n", std::process::id());
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(pid.as_bytes()))
            .context(|| format!("writing pid to {}", lock_path.display()))?;
        Ok(DataRootLock { _file: file })
    }
}

/// Best effort: the holder may not have written its pid yet, or may be an older build.
fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_in_the_same_process_is_refused_with_our_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hoistd.lock");
        let held = DataRootLock::acquire(dir.path(), &path).unwrap();
        let err = DataRootLock::acquire(dir.path(), &path).unwrap_err();
        let StoreError::Locked { pid, .. } = &err else {
            panic!("expected Locked, got {err:?}");
        };
        assert_eq!(*pid, Some(std::process::id()));
        drop(held);
        DataRootLock::acquire(dir.path(), &path).unwrap();
    }
}
