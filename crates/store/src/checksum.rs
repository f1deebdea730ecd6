//! The checksum a blob file carries from the moment it is written: a CRC-32 of its bytes in the
//! file's extended attribute `user.hoist.crc32`, set on the temp file before it is made durable,
//! so it reaches the disk and `blobs/` together with the bytes.
//!
//! It exists to check a blob on its way out cheaply. The blob's name, its sha256, is computed
//! when it is written anyway; checking it again costs ~0.6 CPU-s per GiB, the largest part of a
//! `docker save`. The CRC costs ~0.04 and catches what the re-check is for, a disk or a hand
//! that changed the bytes (someone able to rewrite blobs at will can rewrite the metadata too).
//! Where it disagrees, the sha256 decides, so a damaged attribute never condemns a whole blob.
//! A file without the attribute (a filesystem without user extended attributes, a blob written
//! by an earlier version) is checked by its sha256.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

const ATTRIBUTE: &CStr = c"user.hoist.crc32";

/// The running checksum of bytes as they are written or read.
#[derive(Clone, Default)]
pub(crate) struct Checksum(crc32fast::Hasher);

impl Checksum {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn value(&self) -> u32 {
        self.0.clone().finalize()
    }
}

/// Sets the attribute on a file being written. A filesystem without user extended attributes
/// refuses; that file is then checked by its sha256, so the refusal is only logged.
pub(crate) fn record(file: &File, value: u32) {
    let bytes = value.to_le_bytes();
    // SAFETY: the name is a NUL-terminated constant, the value a live 4-byte buffer whose length
    // is passed with it, and the descriptor belongs to `file`, open for the whole call.
    let rc = unsafe {
        libc::fsetxattr(
            file.as_raw_fd(),
            ATTRIBUTE.as_ptr(),
            bytes.as_ptr().cast(),
            bytes.len(),
            0,
        )
    };
    if rc != 0 {
        tracing::debug!(
            error = %io::Error::last_os_error(),
            "cannot set a blob's checksum attribute; it will be checked by its sha256"
        );
    }
}

/// The attribute of a stored blob's file, if it has one.
pub(crate) fn recorded(file: &File) -> Option<u32> {
    let mut bytes = [0u8; 4];
    // SAFETY: as in `record`; the kernel writes at most `bytes.len()` bytes into `bytes`.
    let n = unsafe {
        libc::fgetxattr(
            file.as_raw_fd(),
            ATTRIBUTE.as_ptr(),
            bytes.as_mut_ptr().cast(),
            bytes.len(),
        )
    };
    (n == bytes.len() as isize).then(|| u32::from_le_bytes(bytes))
}
