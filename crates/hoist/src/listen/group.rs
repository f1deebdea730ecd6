//! Giving the API's unix sockets their group (`-G`/`--group`, dockerd's `group`): members may use
//! the daemon without being root.

use std::ffi::CString;
use std::path::Path;

use anyhow::{Context, bail};

use crate::config::SocketGroup;

impl SocketGroup {
    /// Gives `path` this group. As dockerd: an empty name leaves the daemon's own group, a
    /// number is a group ID, and a missing group is an error unless it is the default, which
    /// is only warned about.
    pub fn apply(&self, path: &Path) -> anyhow::Result<()> {
        if self.name.is_empty() {
            return Ok(());
        }
        let gid = match self.name.parse::<libc::gid_t>() {
            Ok(gid) => gid,
            Err(_) => match lookup_group(&self.name)? {
                Some(gid) => gid,
                None if self.explicit => bail!("group {} not found", self.name),
                None => {
                    tracing::warn!(
                        group = %self.name,
                        "the default socket group does not exist; the socket keeps the daemon's group"
                    );
                    return Ok(());
                }
            },
        };
        std::os::unix::fs::chown(path, None, Some(gid))
            .with_context(|| format!("cannot give {} the group {}", path.display(), self.name))
    }
}

/// The ID of group `name`, through the system's group database (NSS).
fn lookup_group(name: &str) -> anyhow::Result<Option<libc::gid_t>> {
    let c_name = CString::new(name).with_context(|| format!("invalid group name {name:?}"))?;
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    loop {
        // SAFETY: an all-zero `group` is a valid value of this plain C struct; it is only read
        // after getgrnam_r filled it.
        let mut group: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call: the name is NUL-terminated, `group` and
        // `found` are exclusively borrowed locals, and `buffer` is writable for its length.
        let rc = unsafe {
            libc::getgrnam_r(
                c_name.as_ptr(),
                &mut group,
                buffer.as_mut_ptr(),
                buffer.len(),
                &mut found,
            )
        };
        if rc == libc::ERANGE && buffer.len() < 1 << 20 {
            buffer.resize(buffer.len() * 4, 0);
            continue;
        }
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc))
                .with_context(|| format!("cannot look up group {name}"));
        }
        return Ok((!found.is_null()).then_some(group.gr_gid));
    }
}
