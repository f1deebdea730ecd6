//! The memory allocator's policy for a daemon that streams blobs.
//!
//! Downloads and uploads pass buffers of a few hundred KiB between threads (the HTTP client's
//! read buffers, the store writer's chunks). With glibc's defaults such a buffer is first served
//! by `mmap` and, once the dynamic threshold has grown, from a thread's arena that is trimmed back
//! to the kernel as soon as the top of it is free; either way the next buffer faults its pages in
//! again and the kernel zeroes them. On a 1 GiB pull that is about 0.13 CPU-seconds of page faults
//! and `madvise` calls. Fixing both thresholds keeps such buffers in the arenas and leaves up to
//! [`TRIM_THRESHOLD`] free at an arena's top before giving it back.

/// Allocations at least this large are served by `mmap` and unmapped when freed.
const MMAP_THRESHOLD: i32 = 4 * 1024 * 1024;

/// Free memory at the top of an arena beyond this is returned to the kernel.
const TRIM_THRESHOLD: i32 = 64 * 1024 * 1024;

/// Applies the policy; call first in `main`, before other threads exist.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt takes two integers and only changes glibc's allocation parameters; it
        // is called before any other thread is started. A rejected value (return 0) leaves
        // glibc's default, which is correct, only slower.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        }
    }
}
