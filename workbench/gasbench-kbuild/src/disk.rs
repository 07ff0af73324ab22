//! Free space, checked before the big writes (unpacking a tree, building)
//! so that a full disk is a clear error up front rather than a truncated
//! file later.

use std::path::Path;

use crate::KbuildError;

/// MiB available to unprivileged writers on the file system holding
/// `path` (or its nearest existing ancestor).
pub fn free_mib(path: &Path) -> Option<u64> {
    let mut p = path;
    while !p.exists() {
        p = p.parent()?;
    }
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe {
        // SAFETY: statvfs is plain data; all-zero is a valid value that the
        // call below overwrites.
        std::mem::zeroed()
    };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a valid, writable
    // statvfs for the duration of the call.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return None;
    }
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64) / (1024 * 1024))
}

/// Fail with [`KbuildError::DiskFull`] when less than `needed_mib` is free.
pub fn require(path: &Path, needed_mib: u64, what: &str) -> Result<(), KbuildError> {
    match free_mib(path) {
        Some(free) if free < needed_mib => Err(KbuildError::DiskFull {
            what: what.to_string(),
            path: path.to_path_buf(),
            available_mib: free,
            needed_mib,
        }),
        _ => Ok(()),
    }
}

/// True when a tool's output says the disk is full.
pub fn output_says_full(text: &str) -> bool {
    text.contains("No space left on device")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_of_a_path_that_does_not_exist_yet() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        assert!(free_mib(&deep).is_some());
        let err = require(&deep, u64::MAX, "a kernel tree").unwrap_err();
        assert!(matches!(err, KbuildError::DiskFull { .. }), "{err}");
        assert!(err.to_string().contains("a kernel tree"));
        require(&deep, 0, "nothing").unwrap();
        assert!(output_says_full("cc1: error: No space left on device"));
    }
}
