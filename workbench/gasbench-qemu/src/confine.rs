//! How this VM's host processes are confined, decided once per launch:
//! QEMU under its seccomp filter, as the unprivileged VM user, in an
//! empty network namespace, with rlimits; virtiofsd in its namespace
//! sandbox under its own seccomp filter, serving the share read-only; and
//! the report of every protection, in force or not (a `Confinement` event
//! per boot, and `gasbench doctor`).

use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use gasbench_confine::identity::{self, Identity};
use gasbench_confine::{Confinement, Limits, report};
use gasbench_env::{HostProgram, Runtime};
use gasbench_events::vm::Protection;

use crate::spec::{Accel, QEMU_SANDBOX, VirtiofsdSandbox, VmSpec};
use crate::vm::LOG_CAP;

/// What to start and how, for one VM.
#[derive(Clone, Debug)]
pub struct Plan {
    /// QEMU's confinement (its inherited descriptors are added at launch).
    pub qemu: Confinement,
    /// Whether QEMU gets `-sandbox` ([`QEMU_SANDBOX`]).
    pub qemu_seccomp: bool,
    pub virtiofsd: Confinement,
    pub virtiofsd_sandbox: VirtiofsdSandbox,
    pub protections: Vec<Protection>,
}

fn on(name: &str, detail: impl Into<String>) -> Protection {
    Protection {
        name: name.into(),
        active: true,
        detail: detail.into(),
    }
}

fn off(name: &str, detail: impl Into<String>) -> Protection {
    Protection {
        name: name.into(),
        active: false,
        detail: detail.into(),
    }
}

/// The plan for `spec` on `rt`.
pub fn plan(spec: &VmSpec, rt: &Runtime) -> Plan {
    plan_for(rt, spec.memory_mib, spec.cpus, spec.accel)
}

/// The plan for a VM with `memory_mib` of RAM and `cpus` vCPUs under
/// `accel` (doctor asks with `gasbench run`'s defaults).
pub fn plan_for(rt: &Runtime, memory_mib: u32, cpus: u32, accel: Accel) -> Plan {
    let mut protections = Vec::new();
    let root = gasbench_confine::running_as_root();

    let seccomp = gasbench_env::checks::qemu_seccomp(rt);
    protections.push(match &seccomp {
        Ok(()) => on("QEMU seccomp", format!("-sandbox {QEMU_SANDBOX}")),
        Err(why) => off("QEMU seccomp", format!("this QEMU refuses -sandbox: {why}")),
    });

    // Under KVM QEMU needs /dev/kvm, usually group kvm.
    let extra_groups: Vec<u32> = match accel {
        Accel::Kvm => std::fs::metadata("/dev/kvm")
            .map(|m| vec![m.gid()])
            .unwrap_or_default(),
        Accel::Tcg => Vec::new(),
    };
    let choice = identity::vm_identity();
    let identity = match choice.identity {
        Some(id) => match qemu_reachable_by(rt, &id, &extra_groups) {
            Ok(()) => {
                protections.push(on(
                    "QEMU user",
                    format!("switched before exec, no capabilities: {}", choice.reason),
                ));
                Some(id)
            }
            Err(why) => {
                protections.push(off("QEMU user", format!("QEMU runs as root: {why}")));
                None
            }
        },
        None => {
            protections.push(on("QEMU user", choice.reason));
            None
        }
    };
    protections.push(if root {
        on(
            "QEMU network",
            "an empty network and IPC namespace of its own: no IP, none of the host's abstract unix sockets",
        )
    } else {
        off(
            "QEMU network",
            "needs root: QEMU shares gasbench's network namespace",
        )
    });

    let sandbox = virtiofsd_sandbox_support(root);
    protections.push(match &sandbox {
        Ok(()) => on(
            "virtiofsd sandbox",
            "--sandbox=namespace --seccomp=kill: its own mount, pid and network namespaces with the share as its root",
        ),
        Err(why) => off("virtiofsd sandbox", format!("--sandbox=none: {why}")),
    });
    protections.push(on(
        "share read-only",
        "virtiofsd --readonly: the guest cannot create, change or remove anything in the share the host writes bundles into; there is no writable share",
    ));

    let qemu_limits = Limits::qemu(memory_mib, cpus);
    let virtiofsd_limits = Limits::virtiofsd(memory_mib);
    protections.push(on(
        "resource limits",
        format!(
            "rlimits: QEMU {}; virtiofsd {}, 4096 open files",
            qemu_limits.describe(),
            virtiofsd_limits.describe()
        ),
    ));
    let cg = report::cgroup_v2().protection();
    protections.push(Protection {
        name: cg.name,
        active: cg.active,
        detail: cg.detail,
    });
    protections.push(on(
        "log caps",
        format!("qemu.log and virtiofsd.log stop at {} MiB", LOG_CAP >> 20),
    ));

    Plan {
        qemu: Confinement {
            identity,
            extra_groups,
            limits: qemu_limits,
            own_network: root,
            inherit: Vec::new(),
        },
        qemu_seccomp: seccomp.is_ok(),
        virtiofsd: Confinement {
            limits: virtiofsd_limits,
            ..Confinement::default()
        },
        virtiofsd_sandbox: if sandbox.is_ok() {
            VirtiofsdSandbox::Namespace
        } else {
            VirtiofsdSandbox::None
        },
        protections,
    }
}

/// Can virtiofsd sandbox itself in namespaces here? As root it can; an
/// unprivileged virtiofsd needs user namespaces.
fn virtiofsd_sandbox_support(root: bool) -> Result<(), String> {
    if root {
        return Ok(());
    }
    let max = std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap_or_default();
    if max.trim().parse::<u64>().unwrap_or(0) == 0 {
        return Err(
            "not root, and user namespaces are disabled (user.max_user_namespaces = 0)".into(),
        );
    }
    let restricted =
        std::fs::read_to_string("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
            .unwrap_or_default();
    if restricted.trim() == "1" {
        return Err("not root, and AppArmor restricts unprivileged user namespaces".into());
    }
    Ok(())
}

/// Can `id` run QEMU: the runtime's program and every path it is started
/// with (a toolroot's loader and QEMU binary, firmware directories)?
fn qemu_reachable_by(rt: &Runtime, id: &Identity, groups: &[u32]) -> Result<(), String> {
    let cmd = rt.host_program(HostProgram::Qemu);
    let paths = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(Path::new)
        .filter(|p| p.is_absolute() && p.exists());
    for p in paths {
        identity::readable_by(p, id, groups)?;
    }
    Ok(())
}

/// `path` opened for QEMU to read through its descriptor. A file the VM
/// user may not read by its mode (a `--kernel` of mode 0600) is copied
/// into a memfd it may read.
pub fn open_for_qemu(path: &Path, plan: &Plan) -> std::io::Result<OwnedFd> {
    let mut file = std::fs::File::open(path)?;
    let Some(id) = &plan.qemu.identity else {
        return Ok(file.into());
    };
    if identity::may_read(&file.metadata()?, id, &plan.qemu.extra_groups) {
        return Ok(file.into());
    }
    // SAFETY: a valid NUL-terminated name; the result is checked.
    let fd = unsafe { libc::memfd_create(c"gasbench-qemu-input".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a new descriptor that we own.
    let mut copy = unsafe { std::fs::File::from_raw_fd(fd) };
    std::io::copy(&mut file, &mut copy)?;
    copy.flush()?;
    Ok(copy.into())
}

/// The device server's socket for QEMU: made connectable by the VM user's
/// group (only through the descriptor: the run directory stays 0700), and
/// opened O_PATH so QEMU connects through `/proc/self/fd/N`.
pub fn socket_for_qemu(path: &Path, plan: &Plan) -> std::io::Result<OwnedFd> {
    if let Some(id) = &plan.qemu.identity {
        std::os::unix::fs::chown(path, None, Some(id.gid))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(path)?;
    Ok(f.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn plan_as(id: Option<Identity>) -> Plan {
        let mut p = plan_for(&Runtime::Host, 512, 2, Accel::Tcg);
        p.qemu.identity = id;
        p
    }

    fn someone() -> Identity {
        Identity {
            name: "someone".into(),
            uid: 64_999,
            gid: 64_998,
        }
    }

    #[test]
    fn every_protection_is_reported_with_a_reason() {
        let p = plan_for(&Runtime::Host, 512, 2, Accel::Tcg);
        let names: Vec<&str> = p.protections.iter().map(|p| p.name.as_str()).collect();
        for n in [
            "QEMU seccomp",
            "QEMU user",
            "QEMU network",
            "virtiofsd sandbox",
            "share read-only",
            "resource limits",
            "cgroup v2 limits",
            "log caps",
        ] {
            assert!(names.contains(&n), "{n} in {names:?}");
        }
        assert!(p.protections.iter().all(|p| !p.detail.is_empty()));
        assert_eq!(p.qemu.limits, Limits::qemu(512, 2));
        assert_eq!(p.virtiofsd.identity, None, "virtiofsd sandboxes itself");
    }

    #[test]
    fn a_file_the_vm_user_cannot_read_is_handed_over_as_a_copy() {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("bzImage");
        std::fs::write(&k, b"kernel bytes").unwrap();
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
        let fd = open_for_qemu(&k, &plan_as(Some(someone()))).unwrap();
        let link = std::fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&fd)
        ))
        .unwrap();
        assert!(
            link.to_string_lossy()
                .starts_with("/memfd:gasbench-qemu-input"),
            "{link:?}"
        );
        // QEMU opens the descriptor's path afresh and reads from the start.
        let mut text = String::new();
        std::fs::File::open(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&fd)
        ))
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
        assert_eq!(text, "kernel bytes");
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o644)).unwrap();
        let fd = open_for_qemu(&k, &plan_as(Some(someone()))).unwrap();
        let link = std::fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&fd)
        ))
        .unwrap();
        assert_eq!(link, k, "a readable file is passed as it is");
    }

    #[test]
    fn the_device_socket_is_opened_for_the_vm_users_group_only() {
        if !gasbench_confine::running_as_root() {
            eprintln!("not root: chown to the VM user's group is not exercised");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("goldfish.sock");
        let _l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let fd = socket_for_qemu(&path, &plan_as(Some(someone()))).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.gid(), 64_998);
        assert_eq!(meta.mode() & 0o777, 0o660);
        // Connectable through the descriptor's path.
        let via = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
        std::os::unix::net::UnixStream::connect(via).unwrap();
    }
}
