//! How the host processes that serve a guest (QEMU, virtiofsd, the device
//! server process, the KVM probe's QEMU) are confined. The guest runs a
//! kernel built from patches anyone may post, as root; a bug in QEMU or
//! virtiofsd must not turn into root on the reviewer's machine.
//!
//! - [`identity`]: the unprivileged user the VM's processes run as
//!   (`gasbench-vm`, made by `gasbench setup`), and whether a path is
//!   reachable by it.
//! - [`limits`]: resource limits (rlimits) on what a guest can make its
//!   host processes consume.
//! - [`Confinement`]: both, plus a private network namespace and the
//!   descriptors a child inherits, applied to a `Command` between fork and
//!   exec. gasbench drops the child's privileges itself, before exec, as
//!   libvirt does: QEMU never runs as root, so its own seccomp filter can
//!   deny `set*id` (QEMU's `-run-with user=` switches user only after it
//!   installed that filter, and dies of SIGSYS with
//!   `elevateprivileges=deny`).
//! - [`report`]: which protections are in force and why the others are
//!   not, for `gasbench doctor` and a run's events.
//!
//! **Architecture invariant:** this crate knows nothing about QEMU's or
//! virtiofsd's command lines; callers say what to confine and how.

pub mod identity;
pub mod limits;
pub mod report;

use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

pub use identity::Identity;
pub use limits::Limits;
pub use report::Protection;

/// How one child process is confined.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Confinement {
    /// Switch to this user before exec (only when gasbench is root).
    pub identity: Option<Identity>,
    /// Supplementary groups besides the identity's own (the group of
    /// /dev/kvm under KVM).
    pub extra_groups: Vec<u32>,
    pub limits: Limits,
    /// Give the child a network (and SysV IPC) namespace of its own, with
    /// nothing in it: no TCP, and none of the host's abstract unix sockets.
    /// Needs root (CAP_SYS_ADMIN).
    pub own_network: bool,
    /// Descriptors the child inherits at the same numbers (their
    /// close-on-exec flag is cleared in the child only).
    pub inherit: Vec<RawFd>,
}

impl Confinement {
    /// Arrange for `cmd`'s child to be confined between fork and exec.
    /// Register this before any hook that must run with the final
    /// credentials (a parent-death signal is cleared by a change of uid).
    pub fn apply(&self, cmd: &mut Command) {
        let rlimits = self.limits.rlimits();
        let inherit = self.inherit.clone();
        let own_network = self.own_network;
        let ids = self.identity.as_ref().map(|id| {
            let mut groups: Vec<libc::gid_t> = vec![id.gid];
            groups.extend(self.extra_groups.iter().filter(|g| **g != id.gid));
            (id.uid, id.gid, groups)
        });
        // SAFETY: the hook makes only async-signal-safe system calls
        // (fcntl, setrlimit, unshare, setgroups, setres[ug]id, prctl) on
        // data allocated before the fork; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                let check = |r: libc::c_int| {
                    if r == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                };
                for fd in &inherit {
                    check(libc::fcntl(*fd, libc::F_SETFD, 0))?;
                }
                for (resource, value) in &rlimits {
                    let lim = libc::rlimit {
                        rlim_cur: *value,
                        rlim_max: *value,
                    };
                    check(libc::setrlimit(*resource, &lim))?;
                }
                if own_network {
                    check(libc::unshare(libc::CLONE_NEWNET | libc::CLONE_NEWIPC))?;
                }
                if let Some((uid, gid, groups)) = &ids {
                    check(libc::setgroups(groups.len(), groups.as_ptr()))?;
                    check(libc::setresgid(*gid, *gid, *gid))?;
                    check(libc::setresuid(*uid, *uid, *uid))?;
                }
                check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
                Ok(())
            });
        }
    }
}

/// Switch this whole process (every thread: glibc's set*id calls apply
/// to all of them) to `id`, for good, and forbid regaining privileges.
/// For a server that had to bind its socket as root first.
pub fn drop_privileges(id: &Identity) -> std::io::Result<()> {
    let check = |r: libc::c_int| {
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // SAFETY: plain system calls on values; the group list outlives them.
    unsafe {
        let groups = [id.gid];
        check(libc::setgroups(1, groups.as_ptr()))?;
        check(libc::setresgid(id.gid, id.gid, id.gid))?;
        check(libc::setresuid(id.uid, id.uid, id.uid))?;
        check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
    }
    Ok(())
}

/// Whether this process runs as root (and so can drop a child's
/// privileges, give it namespaces, and must).
pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn status_of(cmd: &mut Command) -> String {
        let out = cmd.output().expect("sh runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn limits_and_no_new_privs_reach_the_child() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "ulimit -f; ulimit -v; grep NoNewPrivs /proc/self/status",
        ]);
        Confinement {
            limits: Limits {
                file_size: Some(1 << 20),
                address_space: Some(3 << 30),
                ..Limits::default()
            },
            ..Confinement::default()
        }
        .apply(&mut cmd);
        let out = status_of(&mut cmd);
        let lines: Vec<&str> = out.lines().collect();
        // sh reports both in KiB (ulimit -f in 512-byte blocks on some
        // shells: dash uses KiB for -v and blocks for -f).
        assert!(lines[0] == "2048" || lines[0] == "1024", "file size {out}");
        assert_eq!(lines[1], (3u64 << 20).to_string(), "{out}");
        assert!(lines[2].ends_with("\t1"), "{out}");
    }

    #[test]
    fn an_inherited_descriptor_stays_open_and_others_close() {
        let dir = tempfile::tempdir().unwrap();
        let kept = std::fs::File::create(dir.path().join("kept")).unwrap();
        let closed = std::fs::File::create(dir.path().join("closed")).unwrap();
        let (k, c) = (kept.as_raw_fd(), closed.as_raw_fd());
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(format!(
            "test -e /proc/self/fd/{k} && echo kept; test -e /proc/self/fd/{c} || echo closed"
        ));
        Confinement {
            inherit: vec![k],
            ..Confinement::default()
        }
        .apply(&mut cmd);
        assert_eq!(status_of(&mut cmd), "kept\nclosed\n");
    }

    #[test]
    fn as_root_the_child_runs_as_the_identity_in_its_own_network() {
        if !running_as_root() {
            // Dropping privileges needs root; the fast tier runs as root
            // here and in CI, and says so when it does not.
            eprintln!("not root: the privilege drop is not exercised");
            return;
        }
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "id -u; id -g; id -G; readlink /proc/self/ns/net"]);
        Confinement {
            identity: Some(Identity {
                name: "test".into(),
                uid: 64_999,
                gid: 64_998,
            }),
            extra_groups: vec![64_997],
            own_network: true,
            ..Confinement::default()
        }
        .apply(&mut cmd);
        let out = status_of(&mut cmd);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "64999");
        assert_eq!(lines[1], "64998");
        assert_eq!(lines[2], "64998 64997");
        let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
        assert_ne!(lines[3], ours.to_str().unwrap(), "a network of its own");
    }
}
