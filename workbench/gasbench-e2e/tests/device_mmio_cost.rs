//! What a register access costs the guest through vfio-user, against an
//! MMIO register QEMU emulates itself, measured in the same guest in the
//! same run: a static probe maps each BAR through /dev/mem and times
//! 20 000 32-bit reads, three rounds each. The figures are printed, not
//! asserted (the machine is shared); the test asserts that the reads went
//! through `device serve` and returned what the device holds.

#[path = "support/processes.rs"]
mod processes;

use std::process::{Command, Stdio};
use std::time::Duration;

use gasbench_env::HostProgram;
use processes::*;

const READS: u64 = 20_000;
const ROUNDS: u64 = 3;

const PROBE_C: &str = r#"
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
int main(int argc, char **argv) {
	if (argc != 5) { fprintf(stderr, "usage: %s PHYS OFFSET COUNT LABEL\n", argv[0]); return 2; }
	uint64_t phys = strtoull(argv[1], 0, 0);
	unsigned long off = strtoul(argv[2], 0, 0);
	long n = atol(argv[3]);
	int fd = open("/dev/mem", O_RDWR | O_SYNC);
	if (fd < 0) { perror("open /dev/mem"); return 1; }
	volatile uint32_t *p = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, phys);
	if (p == MAP_FAILED) { perror("mmap"); return 1; }
	struct timespec a, b;
	uint32_t first = p[off / 4], acc = 0;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (long i = 0; i < n; i++) acc += p[off / 4];
	clock_gettime(CLOCK_MONOTONIC, &b);
	double ns = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n;
	printf("GASBENCH-MMIO %s %.0f value=0x%x sum=%u\n", argv[4], ns, first, acc);
	return 0;
}
"#;

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs dev /dev
for d in /sys/bus/pci/devices/*; do
  id="$(/bin/busybox cat $d/vendor):$(/bin/busybox cat $d/device)"
  set -- $(/bin/busybox sed -n 1p $d/resource)
  [ "$id" = 0x607d:0xf153 ] && goldfish=$1
  [ "$id" = 0x1234:0x11e8 ] && edu=$1
done
echo "GASBENCH-BARS goldfish=$goldfish edu=$edu"
for round in $(/bin/busybox seq ROUNDS); do
  /bin/mmio_probe $edu 0 READS qemu-edu
  /bin/mmio_probe $goldfish 8 READS vfio-user
done
echo GASBENCH-DONE
/bin/busybox reboot -f
"#;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[test]
fn mmio_through_device_serve_costs_a_socket_round_trip_per_access() {
    let (_cache, rt) = gasbench_e2e::runtime();
    let kernel = gasbench_env::probe_kernel(&rt, None)
        .expect("no kernel in the runtime's /boot: run `gasbench setup`");
    let bin = gasbench_binary();
    let dir = tempfile::tempdir().unwrap();

    // A static probe, built with the runtime's compiler.
    std::fs::write(dir.path().join("mmio_probe.c"), PROBE_C).unwrap();
    let mut cc = rt.build_command(
        &["gcc", "-static", "-O2", "-o", "mmio_probe", "mmio_probe.c"],
        &[dir.path().to_path_buf()],
        dir.path(),
    );
    let out = cc.output().expect("cannot run gcc");
    assert!(
        out.status.success(),
        "gcc -static failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let initrd = dir.path().join("initrd.cpio");
    let init = INIT
        .replace("ROUNDS", &ROUNDS.to_string())
        .replace("READS", &READS.to_string());
    let mut img = gasbench_initramfs::Initramfs::new();
    img.file_from("bin/busybox", 0o755, &rt.file("/usr/bin/busybox"))
        .unwrap();
    img.file_from("bin/mmio_probe", 0o755, &dir.path().join("mmio_probe"))
        .unwrap();
    img.char_dev("dev/console", 0o600, 5, 1).unwrap();
    img.file("init", 0o755, init.into_bytes()).unwrap();
    img.write_to(std::fs::File::create(&initrd).unwrap())
        .unwrap();

    let sock = dir.path().join("gas.sock");
    let trace = dir.path().join("trace.jsonl");
    let serve_log = dir.path().join("serve.log");
    let mut serve = Guarded::spawn(
        "gasbench device serve",
        Command::new(&bin)
            .args(["device", "serve", "--socket"])
            .arg(&sock)
            .arg("--trace")
            .arg(&trace)
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&serve_log).unwrap()),
    );
    wait_for_path(&sock, &mut serve, Duration::from_secs(20), &serve_log);

    let console = dir.path().join("console.log");
    let device = format!(
        r#"{{"driver":"vfio-user-pci","socket":{{"type":"unix","path":"{}"}},"x-no-posted-writes":true}}"#,
        sock.display()
    );
    let mut qemu_cmd = rt.host_program(HostProgram::Qemu);
    qemu_cmd
        .args(["-accel", "tcg", "-m", "256M", "-nic", "none"])
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
        .args(["-device", "edu", "-device", &device])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut qemu = Guarded::spawn("qemu", &mut qemu_cmd);
    let status = qemu
        .wait(Duration::from_secs(600))
        .expect("QEMU finished within 600 s");
    let text = String::from_utf8_lossy(&std::fs::read(&console).unwrap()).into_owned();
    assert!(
        status.success() && text.contains("GASBENCH-DONE"),
        "{status}\n{text}"
    );

    let mut internal = Vec::new();
    let mut vfio = Vec::new();
    for line in text.lines() {
        let Some(at) = line.find("GASBENCH-MMIO") else {
            continue;
        };
        let f: Vec<&str> = line[at..].split_whitespace().collect();
        let ns: f64 = f[2].parse().unwrap();
        match f[1] {
            "qemu-edu" => {
                assert_eq!(f[3], "value=0x10000ed", "edu's identification register");
                internal.push(ns);
            }
            "vfio-user" => {
                assert_eq!(
                    f[3], "value=0x1000",
                    "GUEST_PAGE_SIZE as the device holds it"
                );
                vfio.push(ns);
            }
            _ => {}
        }
    }
    assert_eq!(
        (internal.len(), vfio.len()),
        (ROUNDS as usize, ROUNDS as usize),
        "{text}"
    );
    let stopped = serve
        .terminate(Duration::from_secs(10))
        .expect("device serve stops");
    assert!(stopped.success());
    // Every guest read reached the server and is in its trace.
    let reads = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .filter(|l| {
            l.contains(r#""type":"reg""#)
                && l.contains(r#""reg":"GUEST_PAGE_SIZE""#)
                && l.contains(r#""access":"read""#)
        })
        .count() as u64;
    assert!(
        reads >= ROUNDS * (READS + 1),
        "{reads} GUEST_PAGE_SIZE reads in the trace"
    );
    let log = std::fs::read_to_string(&serve_log).unwrap();
    let server_us: f64 = log
        .lines()
        .find_map(|l| {
            l.split(", ")
                .nth(1)?
                .strip_suffix(" µs each in the server on average")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no per-message figure in: {log}"));
    let (i, v) = (median(internal.clone()), median(vfio.clone()));
    eprintln!("32-bit MMIO read from the guest (TCG), median of {ROUNDS} × {READS}:");
    eprintln!(
        "  QEMU-emulated register (edu)        {:8.0} ns   rounds {internal:?}",
        i
    );
    eprintln!(
        "  through vfio-user + device serve    {:8.0} ns   rounds {vfio:?}",
        v
    );
    eprintln!("  ratio                               ×{:.0}", v / i);
    eprintln!(
        "  of which in device serve (read → reply, this build) {:.2} µs per message; the rest is QEMU's vfio-user client and the socket",
        server_us
    );
}
