//! What a VM is made of, and the command lines that make it. Pure
//! functions from a [`VmSpec`] to argument vectors, so they are tested
//! without starting anything.

use std::ffi::OsString;
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

/// Where a VM's sockets live inside its run directory.
#[derive(Clone, Debug)]
pub struct Sockets {
    pub qmp: PathBuf,
    pub console: PathBuf,
    pub agent: PathBuf,
    pub virtiofsd: PathBuf,
}

impl Sockets {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            qmp: dir.join("qmp.sock"),
            console: dir.join("console.sock"),
            agent: dir.join("agent.sock"),
            virtiofsd: dir.join("virtiofsd.sock"),
        }
    }
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

/// QEMU's arguments. QEMU connects to sockets gasbench already listens
/// on (QMP, console, agent), so nothing it says before we accept is lost
/// and there is no race on socket creation.
pub fn qemu_args(spec: &VmSpec, sockets: &Sockets) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
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
    // do not report a card present to a guest without ACPI: the guest's
    // pciehp says "Card not present", powers the slot off and ignores
    // device_del. Native PCIe hotplug works with or without ACPI.
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
    a.push(spec.kernel.clone().into());
    a.push("-initrd".into());
    a.push(spec.initramfs.clone().into());
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

    let sock = |id: &str, path: &Path| format!("socket,id={id},path={}", path.display());
    push(
        &mut a,
        &[
            "-chardev",
            &sock("qmp", &sockets.qmp),
            "-mon",
            "chardev=qmp,mode=control",
        ],
    );
    push(
        &mut a,
        &[
            "-chardev",
            &sock("con", &sockets.console),
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
            &sock("agent", &sockets.agent),
            "-device",
            &format!("virtserialport,bus=vser.0,chardev=agent,name={AGENT_PORT_NAME}"),
        ],
    );
    if spec.share.is_some() {
        push(
            &mut a,
            &[
                "-chardev",
                &sock("vfsd", &sockets.virtiofsd),
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
    if let Some(socket) = &spec.goldfish_socket {
        push(
            &mut a,
            &["-device", &goldfish_device_json(socket).to_string()],
        );
    }
    a
}

/// virtiofsd's arguments: serve `share` on `socket`.
pub fn virtiofsd_args(share: &Path, socket: &Path) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    a.push(format!("--socket-path={}", socket.display()).into());
    a.push(format!("--shared-dir={}", share.display()).into());
    // The host side writes bundles and reads results while the guest runs:
    // no caching, so each side sees the other's writes at once.
    push(
        &mut a,
        &["--cache=never", "--sandbox=none", "--log-level=warn"],
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
        let a = strings(qemu_args(&spec(), &Sockets::in_dir(Path::new("/run/x"))));
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
        let append = value_after(&a, "-append", "console=");
        assert!(append.starts_with("console=ttyS0 reboot=t panic=-1"));
        assert!(append.ends_with(" gasbench.mkdirat2=473"));
        assert!(
            append.contains(" tsc_early_khz=2600000 tsc=reliable "),
            "{append}"
        );
    }

    #[test]
    fn every_socket_is_a_client_chardev_into_the_run_dir() {
        let a = strings(qemu_args(&spec(), &Sockets::in_dir(Path::new("/run/x"))));
        for (id, file) in [
            ("qmp", "qmp.sock"),
            ("con", "console.sock"),
            ("agent", "agent.sock"),
            ("vfsd", "virtiofsd.sock"),
        ] {
            let v = value_after(&a, "-chardev", &format!("id={id},"));
            assert_eq!(v, format!("socket,id={id},path=/run/x/{file}"));
            assert!(!v.contains("server"), "gasbench listens, QEMU connects");
        }
        assert!(a.contains(
            &"virtserialport,bus=vser.0,chardev=agent,name=org.gasbench.agent".to_string()
        ));
        assert!(a.contains(&"vhost-user-fs-pci,chardev=vfsd,tag=gasbench".to_string()));
    }

    #[test]
    fn the_goldfish_device_is_json_on_a_hotpluggable_root_port() {
        let a = strings(qemu_args(&spec(), &Sockets::in_dir(Path::new("/run/x"))));
        let port = a
            .iter()
            .position(|s| s.starts_with("pcie-root-port,id=goldfish-port"))
            .unwrap();
        let dev = a.iter().position(|s| s.starts_with('{')).unwrap();
        assert!(port < dev, "the port must exist before the device");
        let json: serde_json::Value = serde_json::from_str(&a[dev]).unwrap();
        assert_eq!(json["driver"], "vfio-user-pci");
        assert_eq!(json["bus"], GOLDFISH_PORT);
        assert_eq!(json["socket"]["path"], "/run/x/goldfish.sock");
        assert_eq!(json["x-no-posted-writes"], true);

        let mut s = spec();
        s.goldfish_socket = None;
        s.share = None;
        s.accel = Accel::Kvm;
        let a = strings(qemu_args(&s, &Sockets::in_dir(Path::new("/run/x"))));
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
    fn virtiofsd_serves_the_share_uncached() {
        let a = strings(virtiofsd_args(Path::new("/s"), Path::new("/r/v.sock")));
        assert_eq!(a[0], "--socket-path=/r/v.sock");
        assert_eq!(a[1], "--shared-dir=/s");
        assert!(a.contains(&"--cache=never".to_string()));
    }
}
