//! Who the VM's host processes run as.
//!
//! When gasbench runs as root, QEMU and the device server process run as
//! the system user [`VM_USER`], which owns nothing and is used by nothing
//! else (so a compromised QEMU cannot signal or trace other daemons).
//! `gasbench setup` creates it. Without it, `nobody` is used and the run
//! says so. When gasbench is not root, its children run as its own user.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

/// The dedicated system user for the VM's processes.
pub const VM_USER: &str = "gasbench-vm";

/// A user to switch to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// Whom the VM's processes run as, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IdentityChoice {
    /// `None`: gasbench is not root, its children run as it does.
    pub identity: Option<Identity>,
    /// Whether it is the dedicated user (not a fallback).
    pub dedicated: bool,
    pub reason: String,
}

fn lookup(name: &str) -> Option<Identity> {
    let user = nix::unistd::User::from_name(name).ok()??;
    Some(Identity {
        name: name.to_owned(),
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
    })
}

/// The identity for the VM's processes on this host.
pub fn vm_identity() -> IdentityChoice {
    if !crate::running_as_root() {
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        return IdentityChoice {
            identity: None,
            dedicated: false,
            reason: format!(
                "gasbench runs as uid {uid}, not root: its VM processes run as that user"
            ),
        };
    }
    if let Some(id) = lookup(VM_USER) {
        return IdentityChoice {
            reason: format!("the system user {} ({}:{})", id.name, id.uid, id.gid),
            identity: Some(id),
            dedicated: true,
        };
    }
    // nobody is shared with other daemons, but still far better than root.
    let id = lookup("nobody").unwrap_or(Identity {
        name: "nobody".into(),
        uid: 65_534,
        gid: 65_534,
    });
    IdentityChoice {
        reason: format!(
            "no user {VM_USER} (`gasbench setup` creates it): using {} ({}:{}), which other daemons may share",
            id.name, id.uid, id.gid
        ),
        identity: Some(id),
        dedicated: false,
    }
}

/// The command that creates [`VM_USER`]: a system user with its own group,
/// no home and no login shell.
pub fn useradd_command() -> Command {
    let mut cmd = Command::new("useradd");
    cmd.args([
        "--system",
        "--user-group",
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--shell",
        "/usr/sbin/nologin",
        "--comment",
        "gasbench VM processes",
        VM_USER,
    ]);
    cmd
}

#[derive(Debug)]
pub enum EnsureUser {
    Existed(Identity),
    Created(Identity),
}

/// Create [`VM_USER`] unless it exists (needs root).
pub fn ensure_vm_user() -> Result<EnsureUser, String> {
    if let Some(id) = lookup(VM_USER) {
        return Ok(EnsureUser::Existed(id));
    }
    let out = useradd_command()
        .output()
        .map_err(|e| format!("cannot run useradd: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "useradd {VM_USER} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    lookup(VM_USER)
        .map(EnsureUser::Created)
        .ok_or_else(|| format!("useradd succeeded but {VM_USER} cannot be looked up"))
}

/// Whether `id` (with `groups`) may read a file with this metadata, by
/// its mode bits (a descriptor passed to it skips the directories).
pub fn may_read(meta: &std::fs::Metadata, id: &Identity, groups: &[u32]) -> bool {
    bits_for(meta, id, groups) & 0o4 != 0
}

/// Permission bits that apply to `id` (with `groups`) on a file.
fn bits_for(meta: &std::fs::Metadata, id: &Identity, groups: &[u32]) -> u32 {
    let mode = meta.mode();
    if id.uid == 0 {
        0o7
    } else if meta.uid() == id.uid {
        (mode >> 6) & 0o7
    } else if meta.gid() == id.gid || groups.contains(&meta.gid()) {
        (mode >> 3) & 0o7
    } else {
        mode & 0o7
    }
}

/// Can `id` reach `path` (search every directory on the way) and open it
/// for reading? Mode bits only (ACLs are not consulted). On failure, names
/// the first place that stops it.
pub fn readable_by(path: &Path, id: &Identity, groups: &[u32]) -> Result<(), String> {
    let full = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut dir = PathBuf::from("/");
    let parts: Vec<_> = full.components().skip(1).collect();
    for (i, part) in parts.iter().enumerate() {
        let meta = std::fs::metadata(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if bits_for(&meta, id, groups) & 0o1 == 0 {
            return Err(format!(
                "{} (mode {:o}, owner {}:{}) cannot be searched by {}",
                dir.display(),
                meta.mode() & 0o7777,
                meta.uid(),
                meta.gid(),
                id.name
            ));
        }
        dir.push(part);
        if i + 1 == parts.len() {
            let meta = std::fs::metadata(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            if bits_for(&meta, id, groups) & 0o4 == 0 {
                return Err(format!(
                    "{} (mode {:o}, owner {}:{}) cannot be read by {}",
                    dir.display(),
                    meta.mode() & 0o7777,
                    meta.uid(),
                    meta.gid(),
                    id.name
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn someone() -> Identity {
        Identity {
            name: "someone".into(),
            uid: 64_999,
            gid: 64_998,
        }
    }

    #[test]
    fn a_file_behind_a_private_directory_is_not_readable() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        let file = open.join("bzImage");
        std::fs::write(&file, b"k").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        // /tmp and its parents are searchable by everyone.
        assert_eq!(readable_by(&file, &someone(), &[]), Ok(()));

        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = readable_by(&file, &someone(), &[]).unwrap_err();
        assert!(e.contains("cannot be read by someone"), "{e}");

        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o700)).unwrap();
        let e = readable_by(&file, &someone(), &[]).unwrap_err();
        assert!(e.contains("mode 700"), "{e}");
        assert!(e.contains("cannot be searched"), "{e}");

        assert!(readable_by(&dir.path().join("absent"), &someone(), &[]).is_err());
    }

    #[test]
    fn the_user_is_made_as_a_system_user_without_a_login() {
        let cmd = useradd_command();
        let args: Vec<_> = cmd.get_args().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(cmd.get_program(), "useradd");
        assert!(args.contains(&"--system"));
        assert!(args.contains(&"/usr/sbin/nologin"));
        assert_eq!(args.last(), Some(&VM_USER));
    }

    #[test]
    fn the_choice_says_whom_and_why() {
        let c = vm_identity();
        assert!(!c.reason.is_empty());
        if crate::running_as_root() {
            let id = c.identity.expect("root drops to someone");
            assert_ne!(id.uid, 0);
            assert_eq!(c.dedicated, id.name == VM_USER);
        } else {
            assert!(c.identity.is_none());
        }
    }
}
