//! A reserve of free space on the data root's filesystem. Content arrives from outside (a
//! compressed archive can unpack to a thousand times its size), and a full disk breaks more than
//! the write that filled it, so blob writes stop while a reserve is still free.

use std::ffi::CString;
use std::io;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, StoreError};

/// The default reserve's cap, and its share of the filesystem: small filesystems keep a
/// proportionate reserve instead of refusing every write.
const DEFAULT_RESERVE_CAP: u64 = 1 << 30;
const DEFAULT_RESERVE_PERCENT: u64 = 5;

/// How much free space blob writes leave on the data root's filesystem.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FreeSpaceReserve {
    /// 1 GiB or 5% of the filesystem's size, whichever is smaller.
    #[default]
    Default,
    /// Exactly this many bytes; 0 turns the check off.
    Bytes(u64),
}

impl FreeSpaceReserve {
    /// The reserve on a filesystem of `total` bytes.
    fn bytes(self, total: u64) -> u64 {
        match self {
            FreeSpaceReserve::Bytes(bytes) => bytes,
            FreeSpaceReserve::Default => {
                let share = u128::from(total) * u128::from(DEFAULT_RESERVE_PERCENT) / 100;
                DEFAULT_RESERVE_CAP.min(u64::try_from(share).unwrap_or(u64::MAX))
            }
        }
    }
}

/// How a store is opened.
#[derive(Clone, Debug, Default)]
pub struct StoreOptions {
    pub min_free_space: FreeSpaceReserve,
}

/// Checks the free space of the filesystem holding `dir`, against a reserve.
#[derive(Debug)]
pub(crate) struct SpaceGuard {
    /// Named in the error: the operator knows the data root, not its `ingest/`.
    root: PathBuf,
    dir: PathBuf,
    reserve: FreeSpaceReserve,
}

impl SpaceGuard {
    pub fn new(root: &Path, dir: &Path, reserve: FreeSpaceReserve) -> SpaceGuard {
        SpaceGuard {
            root: root.to_owned(),
            dir: dir.to_owned(),
            reserve,
        }
    }

    /// How many more bytes may be written before free space would fall under the reserve;
    /// fails with [`StoreError::NoSpace`] when not even `at_least` may.
    pub fn allowance(&self, at_least: u64) -> Result<u64, StoreError> {
        if self.reserve == FreeSpaceReserve::Bytes(0) {
            return Ok(u64::MAX);
        }
        let usage = filesystem_usage(&self.dir)
            .context(|| format!("reading the free space of {}", self.dir.display()))?;
        let reserve = self.reserve.bytes(usage.total);
        let allowed = usage.available.saturating_sub(reserve);
        if allowed < at_least {
            return Err(StoreError::NoSpace {
                root: self.root.clone(),
                available: usage.available,
                reserve,
            });
        }
        Ok(allowed)
    }
}

struct Usage {
    /// Bytes an unprivileged writer may still use.
    available: u64,
    total: u64,
}

// The statvfs fields are u64 on 64-bit Linux but narrower elsewhere: the conversions stay.
#[allow(clippy::useless_conversion)]
fn filesystem_usage(path: &Path) -> io::Result<Usage> {
    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    let mut stat = MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a valid NUL-terminated string and `stat` points at writable memory of
    // the right type, which statvfs fills on success.
    if unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialised `stat`.
    let stat = unsafe { stat.assume_init() };
    let fragment = u64::from(stat.f_frsize);
    Ok(Usage {
        available: u64::from(stat.f_bavail).saturating_mul(fragment),
        total: u64::from(stat.f_blocks).saturating_mul(fragment),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_reserve_is_5_percent_up_to_1_gib() {
        let gib = 1u64 << 30;
        assert_eq!(FreeSpaceReserve::Default.bytes(10 * gib), gib / 2);
        assert_eq!(FreeSpaceReserve::Default.bytes(20 * gib), gib);
        assert_eq!(FreeSpaceReserve::Default.bytes(4000 * gib), gib);
        assert_eq!(FreeSpaceReserve::Default.bytes(64 << 20), (64 << 20) / 20);
        assert_eq!(FreeSpaceReserve::Bytes(7).bytes(4000 * gib), 7);
    }

    #[test]
    fn the_filesystem_of_a_directory_has_a_size_and_free_space() {
        let dir = tempfile::tempdir().unwrap();
        let usage = filesystem_usage(dir.path()).unwrap();
        assert!(usage.total > 0 && usage.available <= usage.total);
        assert!(filesystem_usage(&dir.path().join("absent")).is_err());
    }
}
