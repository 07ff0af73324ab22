//! Resource limits on a VM's host processes (rlimits, set between fork
//! and exec so they hold from the first instruction). cgroup v2 would
//! bound memory and CPU more precisely; [`crate::report::cgroup_v2`] says
//! whether this host offers it.

use serde::Serialize;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Soft and hard limits (the same value, so the child cannot raise them).
/// `None` leaves a limit as inherited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// RLIMIT_AS, bytes of address space.
    pub address_space: Option<u64>,
    /// RLIMIT_CPU, seconds of CPU time (then SIGXCPU, then SIGKILL).
    pub cpu_seconds: Option<u64>,
    /// RLIMIT_FSIZE, the largest file the process may write or grow.
    pub file_size: Option<u64>,
    /// RLIMIT_NOFILE.
    pub open_files: Option<u64>,
}

/// CPU time a VM's process may use: far more than any suite takes (the
/// default suite uses under a minute under TCG), so only a runaway that
/// escaped every deadline meets it.
pub const VM_CPU_SECONDS: u64 = 4 * 3600;

impl Limits {
    /// QEMU with `memory_mib` of guest RAM and `cpus` vCPUs. Its address
    /// space holds the guest RAM, TCG's 1 GiB translation buffer, its
    /// libraries and worker threads (about 2 GiB at start with 512 MiB of
    /// RAM and 2 vCPUs): 3 GiB on top of the RAM, and 16 MiB per vCPU for
    /// its thread's stack (8 MiB) and state. Its only file is the guest
    /// RAM memfd (growing it counts against RLIMIT_FSIZE), so files may be
    /// as large as the RAM.
    pub fn qemu(memory_mib: u32, cpus: u32) -> Limits {
        let ram = u64::from(memory_mib) * MIB;
        Limits {
            address_space: Some(ram + 3 * GIB + u64::from(cpus) * 16 * MIB),
            cpu_seconds: Some(VM_CPU_SECONDS),
            file_size: Some(ram),
            open_files: Some(4096),
        }
    }

    /// virtiofsd serving a read-only share: it maps the guest RAM (for
    /// the virtqueues) and writes no file but its lock file.
    pub fn virtiofsd(memory_mib: u32) -> Limits {
        let ram = u64::from(memory_mib) * MIB;
        Limits {
            address_space: Some(ram + GIB),
            cpu_seconds: Some(VM_CPU_SECONDS),
            file_size: Some(MIB),
            open_files: None,
        }
    }

    /// The device server process: it writes no files (its log is its
    /// stderr) and holds a few descriptors (the socket, DMA regions, the
    /// INTx eventfd). Its address space is left alone: it maps as much
    /// guest RAM as the VM has.
    pub fn device_server() -> Limits {
        Limits {
            address_space: None,
            cpu_seconds: Some(VM_CPU_SECONDS),
            file_size: Some(MIB),
            open_files: Some(1024),
        }
    }

    pub(crate) fn rlimits(&self) -> Vec<(libc::__rlimit_resource_t, libc::rlim_t)> {
        [
            (libc::RLIMIT_AS, self.address_space),
            (libc::RLIMIT_CPU, self.cpu_seconds),
            (libc::RLIMIT_FSIZE, self.file_size),
            (libc::RLIMIT_NOFILE, self.open_files),
        ]
        .into_iter()
        .filter_map(|(r, v)| v.map(|v| (r, v as libc::rlim_t)))
        .collect()
    }

    /// `address space 3.5 GiB, CPU 14400 s, files 512 MiB, 4096 fds`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(v) = self.address_space {
            parts.push(format!("address space {}", bytes(v)));
        }
        if let Some(v) = self.cpu_seconds {
            parts.push(format!("CPU time {v} s"));
        }
        if let Some(v) = self.file_size {
            parts.push(format!("file size {}", bytes(v)));
        }
        if let Some(v) = self.open_files {
            parts.push(format!("{v} open files"));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

fn bytes(v: u64) -> String {
    if v >= GIB && v.is_multiple_of(GIB / 2) {
        let halves = v / (GIB / 2);
        if halves.is_multiple_of(2) {
            format!("{} GiB", halves / 2)
        } else {
            format!("{}.5 GiB", halves / 2)
        }
    } else if v >= MIB {
        format!("{} MiB", v / MIB)
    } else {
        format!("{v} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_gets_room_for_ram_and_translation_buffer_and_no_more() {
        let l = Limits::qemu(512, 2);
        assert_eq!(l.address_space, Some(512 * MIB + 3 * GIB + 32 * MIB));
        assert_eq!(l.file_size, Some(512 * MIB), "the RAM memfd must fit");
        assert_eq!(
            l.describe(),
            "address space 3616 MiB, CPU time 14400 s, file size 512 MiB, 4096 open files"
        );
        // A thread stack per vCPU: 64 vCPUs need a GiB more than one.
        assert_eq!(
            Limits::qemu(512, 64).address_space.unwrap()
                - Limits::qemu(512, 0).address_space.unwrap(),
            GIB
        );
        assert_eq!(l.rlimits().len(), 4);
        assert_eq!(Limits::default().describe(), "none");
        assert!(Limits::default().rlimits().is_empty());
        assert_eq!(Limits::virtiofsd(1024).address_space, Some(2 * GIB));
    }
}
