//! QEMU (>= 10.1, TCG) attaches `gasbench device serve` with vfio-user-pci
//! and a guest sees the device: a stock Debian kernel boots an initramfs
//! whose /init prints /sys/bus/pci/devices/*/{vendor,device,revision,
//! resource} on the serial console and reboots (reboot=t, -no-reboot).
//! No goldfish driver is needed to see that 607d:f153 rev 01 is there with
//! BAR0 = 4 KiB and BAR1 = the configured size, 64-bit.

#[path = "support/processes.rs"]
mod processes;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gasbench_env::HostProgram;
use processes::*;

const BAR1: u64 = 32 << 20;

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
for d in /sys/bus/pci/devices/*; do
  b=$(/bin/busybox basename $d)
  echo "GASBENCH-PCI $b $(/bin/busybox cat $d/vendor) $(/bin/busybox cat $d/device) $(/bin/busybox cat $d/revision)"
  i=0
  while read start end flags; do
    echo "GASBENCH-RES $b $i $start $end $flags"
    i=$((i+1))
  done < $d/resource
done
echo GASBENCH-DONE
/bin/busybox reboot -f
"#;

struct Pci {
    vendor: String,
    device: String,
    revision: String,
    /// resource lines: (start, end, flags)
    res: Vec<(u64, u64, u64)>,
}

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
}

fn parse_console(text: &str) -> BTreeMap<String, Pci> {
    let mut devs: BTreeMap<String, Pci> = BTreeMap::new();
    for line in text.lines() {
        let Some(at) = line.find("GASBENCH-") else {
            continue;
        };
        let f: Vec<&str> = line[at..].split_whitespace().collect();
        match f.as_slice() {
            ["GASBENCH-PCI", bdf, v, d, r] => {
                devs.insert(
                    bdf.to_string(),
                    Pci {
                        vendor: v.to_string(),
                        device: d.to_string(),
                        revision: r.to_string(),
                        res: Vec::new(),
                    },
                );
            }
            ["GASBENCH-RES", bdf, _i, s, e, fl] => {
                if let Some(p) = devs.get_mut(*bdf) {
                    p.res.push((hex(s), hex(e), hex(fl)));
                }
            }
            _ => {}
        }
    }
    devs
}

#[test]
fn qemu_attaches_device_serve_and_the_guest_sees_607d_f153_rev1_with_its_bars() {
    let (_cache, rt) = gasbench_e2e::runtime();
    let kernel = gasbench_env::probe_kernel(&rt, None)
        .expect("no kernel in the runtime's /boot: run `gasbench setup`");
    let busybox = rt.file("/usr/bin/busybox");
    assert!(
        busybox.exists(),
        "{} is missing: run `gasbench setup`",
        busybox.display()
    );
    let bin = gasbench_binary();
    let dir = tempfile::tempdir().unwrap();

    let initrd = dir.path().join("initrd.cpio");
    let mut img = gasbench_initramfs::Initramfs::new();
    img.file_from("bin/busybox", 0o755, &busybox).unwrap();
    img.char_dev("dev/console", 0o600, 5, 1).unwrap();
    img.file("init", 0o755, INIT.as_bytes().to_vec()).unwrap();
    img.write_to(std::fs::File::create(&initrd).unwrap())
        .unwrap();

    let sock = dir.path().join("gas.sock");
    let trace = dir.path().join("trace.jsonl");
    let serve_log = dir.path().join("serve.log");
    let mut serve = Guarded::spawn(
        "gasbench device serve",
        Command::new(&bin)
            .args(["device", "serve", "--bar1-size", "32M", "--socket"])
            .arg(&sock)
            .arg("--trace")
            .arg(&trace)
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&serve_log).unwrap()),
    );
    // QEMU must find the socket listening.
    wait_for_path(&sock, &mut serve, Duration::from_secs(20), &serve_log);

    let console = dir.path().join("console.log");
    let qemu_err = dir.path().join("qemu.err");
    let device = format!(
        r#"{{"driver":"vfio-user-pci","socket":{{"type":"unix","path":"{}"}},"x-no-posted-writes":true}}"#,
        sock.display()
    );
    let mut qemu_cmd = rt.host_program(HostProgram::Qemu);
    qemu_cmd
        .args(["-accel", "tcg", "-m", "256M"])
        .args(["-object", "memory-backend-memfd,id=mem,size=256M,share=on"])
        .args(["-machine", "q35,memory-backend=mem"])
        .args(["-display", "none", "-monitor", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 reboot=t panic=-1 quiet"])
        .args(["-device", &device])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&qemu_err).unwrap());
    let started = Instant::now();
    let mut qemu = Guarded::spawn("qemu", &mut qemu_cmd);
    let status = qemu.wait(Duration::from_secs(300));
    let boot = started.elapsed();
    let console_text =
        String::from_utf8_lossy(&std::fs::read(&console).unwrap_or_default()).into_owned();
    let qemu_text = std::fs::read_to_string(&qemu_err).unwrap_or_default();
    let context = || {
        format!(
            "\n--- qemu stderr ---\n{qemu_text}\n--- console (tail) ---\n{}\n--- device serve ---\n{}",
            console_text
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n"),
            std::fs::read_to_string(&serve_log).unwrap_or_default()
        )
    };
    let status = status.unwrap_or_else(|| panic!("QEMU did not finish within 300 s{}", context()));
    assert!(status.success(), "QEMU exited {status}{}", context());
    assert!(
        console_text.contains("GASBENCH-DONE"),
        "the guest's /init did not finish{}",
        context()
    );
    eprintln!("QEMU start → power off: {:.1} s", boot.as_secs_f64());

    let devs = parse_console(&console_text);
    let (bdf, dev) = devs
        .iter()
        .find(|(_, p)| p.vendor == "0x607d" && p.device == "0xf153")
        .unwrap_or_else(|| panic!("no 607d:f153 in the guest's sysfs{}", context()));
    assert_eq!(dev.revision, "0x01", "{bdf}: revision");
    assert!(dev.res.len() >= 3, "{bdf}: resource lines {:?}", dev.res);
    const IORESOURCE_MEM: u64 = 0x200;
    const IORESOURCE_MEM_64: u64 = 0x0010_0000;
    let (s0, e0, f0) = dev.res[0];
    assert!(s0 != 0, "{bdf}: BAR0 assigned");
    assert_eq!(e0 - s0 + 1, 0x1000, "{bdf}: BAR0 is 4 KiB");
    assert!(
        f0 & IORESOURCE_MEM != 0 && f0 & IORESOURCE_MEM_64 == 0,
        "{bdf}: BAR0 32-bit memory, flags {f0:#x}"
    );
    let (s1, e1, f1) = dev.res[1];
    assert!(s1 != 0, "{bdf}: BAR1 assigned");
    assert_eq!(e1 - s1 + 1, BAR1, "{bdf}: BAR1 has the configured size");
    assert!(
        f1 & IORESOURCE_MEM != 0 && f1 & IORESOURCE_MEM_64 != 0,
        "{bdf}: BAR1 64-bit memory, flags {f1:#x}"
    );
    assert_eq!(dev.res[2], (0, 0, 0), "{bdf}: BAR2 is BAR1's upper half");

    // The server saw it all and leaves cleanly.
    let stopped = serve
        .terminate(Duration::from_secs(10))
        .expect("device serve stops on SIGTERM");
    assert!(
        stopped.success(),
        "device serve exited {stopped}{}",
        context()
    );
    assert!(!sock.exists(), "the socket is removed");
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ev = |t: &'static str| events.iter().filter(move |e| e["ev"]["type"] == t);
    assert_eq!(ev("connected").count(), 1, "QEMU negotiated once");
    assert!(
        ev("dma_map").any(|e| e["ev"]["mapped"] == true),
        "guest RAM came as a memfd the server mapped"
    );
    assert!(
        ev("reg").any(|e| e["ev"]["space"] == "config" && e["ev"]["decoded"] == "VENDOR_ID"),
        "config space was read through the server"
    );
    assert!(ev("disconnected").count() == 1);
}
