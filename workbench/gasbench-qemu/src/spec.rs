//! What a VM is made of, and the command lines that make it. Pure
//! functions from a [`VmSpec`] to argument vectors, so they are tested
//! without starting anything.

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

/// The name the guest agent looks for under /sys/class/virtio-ports.
pub const AGENT_PORT_NAME: &str = "org.gasbench.agent";
/// The virtiofs tag the agent mounts.
pub const SHARE_TAG: &str = "gasbench";
/// The QEMU device id of the goldfish device (for QMP device_del).
pub const GOLDFISH_ID: &str = "goldfish";
/// The PCIe root port the goldfish device sits on, so it can be unplugged.
pub const GOLDFISH_PORT: &str = "goldfish-port";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// Everything needed to start one VM.
#[derive(Clone, Debug)]
pub struct VmSpec {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    /// Extra kernel command line, after gasbench's own.
    pub cmdline: String,
    pub memory_mib: u32,
    pub cpus: u32,
    pub accel: Accel,
    /// Private directory (0700) for sockets and logs.
    pub run_dir: PathBuf,
    /// Directory shared into the guest over virtiofs, if any.
    pub share: Option<PathBuf>,
    /// The goldfish device's vfio-user socket, if attached at boot.
    pub goldfish_socket: Option<PathBuf>,
    /// Under TCG: the TSC rate to give the guest (see [`host_tsc_khz`]).
    pub tsc_khz: Option<u64>,
    /// The most of console.log the guest may fill; what it prints past
    /// that is counted, not written.
    pub console_log_cap: u64,
}

/// The host's TSC rate in kHz, measured against CLOCK_MONOTONIC.
///
/// Under TCG the guest's TSC ticks at the host's rate, but a kernel
/// without ACPI has no HPET or PM timer to calibrate it against and often
/// fails to calibrate against the PIT on a busy host ("Marking TSC
/// unstable"); it then keeps jiffies as its clock, and every call the
/// agent times takes "0 ns" or a multiple of 4 ms. Telling the kernel the
/// rate (`tsc_early_khz=`) gives it a nanosecond clock.
pub fn host_tsc_khz() -> Option<u64> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::time::{Duration, Instant};
        // SAFETY: RDTSC has no preconditions on x86_64.
        let tsc = || unsafe { core::arch::x86_64::_rdtsc() };
        let t0 = Instant::now();
        let c0 = tsc();
        std::thread::sleep(Duration::from_millis(20));
        let c1 = tsc();
        let ns = t0.elapsed().as_nanos() as u64;
        let khz = (c1.wrapping_sub(c0)).checked_mul(1_000_000)? / ns.max(1);
        // Round to 1 MHz: the measurement's noise is far above that.
        let khz = (khz + 500) / 1000 * 1000;
        (100_000..20_000_000).contains(&khz).then_some(khz)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// The virtiofsd socket inside a VM's run directory (0700). virtiofsd
/// creates it; gasbench connects and hands the connection to QEMU.
pub fn virtiofsd_socket(run_dir: &Path) -> PathBuf {
    run_dir.join("virtiofsd.sock")
}

/// QEMU's seccomp filter: deny obsolete system calls, set*id, fork/exec
/// and resource control (the same set libvirt uses).
pub const QEMU_SANDBOX: &str =
    "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

/// What QEMU is handed as inherited descriptors instead of paths: QEMU
/// runs as an unprivileged user that cannot reach the 0700 run directory,
/// so gasbench opens everything and QEMU gets the descriptors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QemuFds {
    /// Connected stream sockets (socketpairs; gasbench holds the other end).
    pub qmp: RawFd,
    pub console: RawFd,
    pub agent: RawFd,
    /// A connection to virtiofsd, when there is a share.
    pub virtiofsd: Option<RawFd>,
    /// The kernel image and initramfs, open for reading.
    pub kernel: RawFd,
    pub initramfs: RawFd,
    /// An O_PATH descriptor of the goldfish device server's socket: QEMU
    /// connects through `/proc/self/fd/N` at boot and again on a later
    /// `device_add` (vfio-user-pci takes only a unix socket path).
    pub goldfish: Option<RawFd>,
}

impl QemuFds {
    /// Every descriptor, for the child to inherit.
    pub fn all(&self) -> Vec<RawFd> {
        let mut v = vec![
            self.qmp,
            self.console,
            self.agent,
            self.kernel,
            self.initramfs,
        ];
        v.extend(self.virtiofsd);
        v.extend(self.goldfish);
        v
    }
}

/// The path under which a process reaches its own descriptor `fd`.
pub fn fd_path(fd: RawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{fd}"))
}

fn push(args: &mut Vec<OsString>, items: &[&str]) {
    args.extend(items.iter().map(OsString::from));
}

/// The kernel command line gasbench always passes.
pub fn base_cmdline() -> &'static str {
    // reboot=t + QEMU's -no-reboot: a guest `reboot` ends QEMU even
    // without ACPI; panic=-1 turns a panic into that same exit.
    "console=ttyS0 reboot=t panic=-1 loglevel=7"
}

/// The goldfish device as QEMU's JSON `-device` / `device_add` argument.
/// The JSON form is the only one that can express the socket address.
pub fn goldfish_device_json(socket: &Path) -> serde_json::Value {
    serde_json::json!({
        "driver": "vfio-user-pci",
        "id": GOLDFISH_ID,
        "bus": GOLDFISH_PORT,
        "socket": { "type": "unix", "path": socket.display().to_string() },
        // Make MMIO writes synchronous: the driver reads STATUS right
        // after writing COMMAND and must see the command's result.
        "x-no-posted-writes": true,
    })
}

/// QEMU's arguments. QEMU is handed connected sockets (QMP, console,
/// agent, virtiofsd) and open files as descriptors `fds`, so it needs no
/// path into the run directory and nothing it says is lost at start-up.
/// `sandbox`: whether to install QEMU's seccomp filter ([`QEMU_SANDBOX`]).
pub fn qemu_args(spec: &VmSpec, fds: &QemuFds, sandbox: bool) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    if sandbox {
        push(&mut a, &["-sandbox", QEMU_SANDBOX]);
    }
    push(
        &mut a,
        &[
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ],
    );
    push(&mut a, &["-name", "gasbench,debug-threads=on"]);
    let mem = format!("{}M", spec.memory_mib);
    // Shared guest RAM: virtiofsd and the vfio-user device server map it.
    push(
        &mut a,
        &[
            "-object",
            &format!("memory-backend-memfd,id=mem,size={mem},share=on"),
        ],
    );
    push(
        &mut a,
        &[
            "-machine",
            &format!("q35,accel={},memory-backend=mem", spec.accel.name()),
        ],
    );
    // q35 hands PCI hotplug to ACPI by default, and then its root ports
    // do not report a card present to the guest's native pciehp (it says
    // "Card not present", powers the slot off and ignores device_del).
    // With ACPI hotplug off, QEMU's _OSC grants the guest native PCIe
    // hotplug, which the hotplug scenarios are written against.
    push(
        &mut a,
        &[
            "-global",
            "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off",
        ],
    );
    if spec.accel == Accel::Kvm {
        push(&mut a, &["-cpu", "host"]);
    }
    push(&mut a, &["-m", &mem, "-smp", &spec.cpus.to_string()]);
    a.push("-kernel".into());
    a.push(fd_path(fds.kernel).into());
    a.push("-initrd".into());
    a.push(fd_path(fds.initramfs).into());
    let mut cmdline = base_cmdline().to_owned();
    if let (Accel::Tcg, Some(khz)) = (spec.accel, spec.tsc_khz) {
        // Under emulation the TSC is as steady as the host's: no watchdog.
        cmdline.push_str(&format!(" tsc_early_khz={khz} tsc=reliable"));
    }
    if !spec.cmdline.is_empty() {
        cmdline.push(' ');
        cmdline.push_str(&spec.cmdline);
    }
    push(&mut a, &["-append", &cmdline]);

    let sock = |id: &str, fd: RawFd| format!("socket,id={id},fd={fd}");
    push(
        &mut a,
        &[
            "-chardev",
            &sock("qmp", fds.qmp),
            "-mon",
            "chardev=qmp,mode=control",
        ],
    );
    push(
        &mut a,
        &[
            "-chardev",
            &sock("con", fds.console),
            "-serial",
            "chardev:con",
        ],
    );
    push(
        &mut a,
        &[
            "-device",
            // ioeventfd off: the guest's kick is handled in the vCPU
            // thread, so the agent's CallBegin is in our socket before the
            // vCPU runs the ioctl whose MMIO the device server sees. With
            // ioeventfd the main loop flushes it later, out of order.
            "virtio-serial-pci,id=vser,ioeventfd=off",
            "-chardev",
            &sock("agent", fds.agent),
            "-device",
            &format!("virtserialport,bus=vser.0,chardev=agent,name={AGENT_PORT_NAME}"),
        ],
    );
    if let Some(vfsd) = fds.virtiofsd {
        push(
            &mut a,
            &[
                "-chardev",
                &sock("vfsd", vfsd),
                "-device",
                &format!("vhost-user-fs-pci,chardev=vfsd,tag={SHARE_TAG}"),
            ],
        );
    }
    // The root port exists even without the device, so it can be
    // hot-plugged later with device_add.
    push(
        &mut a,
        &[
            "-device",
            &format!("pcie-root-port,id={GOLDFISH_PORT},bus=pcie.0,chassis=1,slot=1"),
        ],
    );
    if let Some(socket) = fds.goldfish {
        push(
            &mut a,
            &[
                "-device",
                &goldfish_device_json(&fd_path(socket)).to_string(),
            ],
        );
    }
    a
}

/// How virtiofsd isolates itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VirtiofsdSandbox {
    /// Its own mount, pid and network namespaces with the share as its
    /// root (as root; with a user namespace otherwise).
    Namespace,
    /// None: only when namespaces cannot be had (see the run's report).
    None,
}

/// virtiofsd's arguments: serve `share` read-only on `socket`, sandboxed
/// and under its seccomp filter (kill on a system call outside its list).
/// The guest cannot write into the share: what the host puts there
/// (bundles) is never something the guest made.
pub fn virtiofsd_args(share: &Path, socket: &Path, sandbox: VirtiofsdSandbox) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    a.push(format!("--socket-path={}", socket.display()).into());
    a.push(format!("--shared-dir={}", share.display()).into());
    let sandbox = match sandbox {
        VirtiofsdSandbox::Namespace => "--sandbox=namespace",
        VirtiofsdSandbox::None => "--sandbox=none",
    };
    // The host writes bundles while the guest runs: no caching, so the
    // guest sees each new bundle at once.
    push(
        &mut a,
        &[
            "--readonly",
            sandbox,
            "--seccomp=kill",
            "--cache=never",
            "--log-level=warn",
            // Descriptors the guest can make it hold (one per open file).
            "--rlimit-nofile=4096",
        ],
    );
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> VmSpec {
        VmSpec {
            kernel: "/k/bzImage".into(),
            initramfs: "/k/initramfs.cpio".into(),
            cmdline: "gasbench.mkdirat2=473".into(),
            memory_mib: 512,
            cpus: 2,
            accel: Accel::Tcg,
            run_dir: "/run/x".into(),
            share: Some("/run/x/share".into()),
            goldfish_socket: Some("/run/x/goldfish.sock".into()),
            tsc_khz: Some(2_600_000),
            console_log_cap: 1 << 30,
        }
    }

    fn fds() -> QemuFds {
        QemuFds {
            qmp: 10,
            console: 11,
            agent: 12,
            virtiofsd: Some(13),
            kernel: 14,
            initramfs: 15,
            goldfish: Some(16),
        }
    }

    fn strings(a: Vec<OsString>) -> Vec<String> {
        a.into_iter().map(|s| s.into_string().unwrap()).collect()
    }

    fn value_after(args: &[String], flag: &str, containing: &str) -> String {
        args.windows(2)
            .find(|w| w[0] == flag && w[1].contains(containing))
            .map(|w| w[1].clone())
            .unwrap_or_else(|| panic!("no {flag} … {containing} in {args:?}"))
    }

    #[test]
    fn guest_ram_is_shared_memfd_and_the_machine_uses_it() {
        let a = strings(qemu_args(&spec(), &fds(), true));
        assert_eq!(
            value_after(&a, "-object", "memfd"),
            "memory-backend-memfd,id=mem,size=512M,share=on"
        );
        assert_eq!(
            value_after(&a, "-machine", "q35"),
            "q35,accel=tcg,memory-backend=mem"
        );
        assert!(
            !a.contains(&"-cpu".to_string()),
            "TCG keeps QEMU's default CPU"
        );
        assert_eq!(value_after(&a, "-kernel", "/"), "/proc/self/fd/14");
        assert_eq!(value_after(&a, "-initrd", "/"), "/proc/self/fd/15");
        let append = value_after(&a, "-append", "console=");
        assert!(append.starts_with("console=ttyS0 reboot=t panic=-1"));
        assert!(append.ends_with(" gasbench.mkdirat2=473"));
        assert!(
            append.contains(" tsc_early_khz=2600000 tsc=reliable "),
            "{append}"
        );
    }

    #[test]
    fn every_socket_is_an_inherited_connected_descriptor_not_a_path() {
        let a = strings(qemu_args(&spec(), &fds(), true));
        for (id, fd) in [("qmp", 10), ("con", 11), ("agent", 12), ("vfsd", 13)] {
            let v = value_after(&a, "-chardev", &format!("id={id},"));
            assert_eq!(v, format!("socket,id={id},fd={fd}"));
            assert!(!v.contains("server"), "the descriptor is already connected");
        }
        assert!(
            !a.iter().any(|x| x.contains("/run/x")),
            "QEMU is given no path into the run directory: {a:?}"
        );
        assert_eq!(fds().all(), [10, 11, 12, 14, 15, 13, 16]);
        assert!(a.contains(
            &"virtserialport,bus=vser.0,chardev=agent,name=org.gasbench.agent".to_string()
        ));
        assert!(a.contains(&"vhost-user-fs-pci,chardev=vfsd,tag=gasbench".to_string()));
    }

    #[test]
    fn the_goldfish_device_is_json_on_a_hotpluggable_root_port() {
        let a = strings(qemu_args(&spec(), &fds(), true));
        let port = a
            .iter()
            .position(|s| s.starts_with("pcie-root-port,id=goldfish-port"))
            .unwrap();
        let dev = a.iter().position(|s| s.starts_with('{')).unwrap();
        assert!(port < dev, "the port must exist before the device");
        let json: serde_json::Value = serde_json::from_str(&a[dev]).unwrap();
        assert_eq!(json["driver"], "vfio-user-pci");
        assert_eq!(json["bus"], GOLDFISH_PORT);
        assert_eq!(json["socket"]["path"], "/proc/self/fd/16");
        assert_eq!(json["x-no-posted-writes"], true);

        let mut s = spec();
        s.goldfish_socket = None;
        s.share = None;
        s.accel = Accel::Kvm;
        let mut f = fds();
        f.goldfish = None;
        f.virtiofsd = None;
        let a = strings(qemu_args(&s, &f, true));
        assert!(!a.iter().any(|x| x.contains("vfio-user")));
        assert!(!a.iter().any(|x| x.contains("vhost-user-fs")));
        assert!(a.iter().any(|x| x.starts_with("pcie-root-port")));
        assert_eq!(value_after(&a, "-cpu", "host"), "host");
    }

    #[test]
    fn the_host_tsc_rate_is_measured_plausibly() {
        let khz = host_tsc_khz().expect("an x86_64 host has a TSC");
        assert!((100_000..20_000_000).contains(&khz));
        assert_eq!(khz % 1000, 0);
    }

    #[test]
    fn qemu_runs_under_its_seccomp_filter_denying_privileges_and_spawning() {
        let a = strings(qemu_args(&spec(), &fds(), true));
        assert_eq!(a[0], "-sandbox", "installed before anything else is parsed");
        assert_eq!(
            a[1],
            "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
        );
        assert!(
            !a.iter().any(|x| x.starts_with("-run-with")),
            "the user is switched before exec: -run-with cannot with elevateprivileges=deny"
        );
        let a = strings(qemu_args(&spec(), &fds(), false));
        assert!(!a.contains(&"-sandbox".to_string()));
    }

    #[test]
    fn virtiofsd_serves_the_share_read_only_uncached_in_its_sandbox() {
        let a = strings(virtiofsd_args(
            Path::new("/s"),
            Path::new("/r/v.sock"),
            VirtiofsdSandbox::Namespace,
        ));
        assert_eq!(a[0], "--socket-path=/r/v.sock");
        assert_eq!(a[1], "--shared-dir=/s");
        for flag in [
            "--readonly",
            "--sandbox=namespace",
            "--seccomp=kill",
            "--cache=never",
            "--rlimit-nofile=4096",
        ] {
            assert!(a.contains(&flag.to_string()), "{flag} in {a:?}");
        }
        assert!(!a.iter().any(|x| x.contains("none")));
        let a = strings(virtiofsd_args(
            Path::new("/s"),
            Path::new("/r/v.sock"),
            VirtiofsdSandbox::None,
        ));
        assert!(a.contains(&"--sandbox=none".to_string()));
        assert!(
            a.contains(&"--readonly".to_string()),
            "read-only regardless"
        );
    }
}
