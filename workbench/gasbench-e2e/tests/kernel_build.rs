//! The real kernel build through gasbench-kbuild: base tree, series and
//! port applied, configured, built, headers, the static kselftest; then
//! the same request again, answered from the cache; then a boot of the
//! result under QEMU with a busybox initramfs, checking that init runs,
//! the goldfish driver is registered and mkdirat2 works.
//!
//! Minutes of CPU from an empty cache (about ten on 2 cores).
//!
//! And `gasbench kernel build` interrupted while make runs: make and its
//! jobs stop, the exit status says so, the cache stays consistent.

#[path = "support/processes.rs"]
mod processes;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use gasbench_env::HostProgram;
use gasbench_events::kernel::{ApplyStatus, KernelEvent, PatchRole};
use gasbench_events::run::{Outcome, RunEvent, Stage};
use gasbench_events::{Event, EventBody};
use gasbench_kbuild::selftest::{ElfKind, elf_kind};
use gasbench_kbuild::{KernelArtifacts, KernelRequest, ensure_kernel};

fn kernel_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../kernel")
}

fn build() -> (KernelArtifacts, Vec<Event>, Duration) {
    let (cache, rt) = gasbench_e2e::runtime();
    let req = KernelRequest {
        kernel_dir: Some(kernel_dir()),
        ..KernelRequest::default()
    };
    let (sink, mut stream) = gasbench_events::bus();
    let start = Instant::now();
    let art = ensure_kernel(&req, &rt, &cache, &sink)
        .unwrap_or_else(|e| panic!("{e}\nhelp: {}", e.help()));
    let took = start.elapsed();
    drop(sink);
    let mut events = Vec::new();
    while let Ok(e) = stream.try_recv() {
        events.push(e);
    }
    (art, events, took)
}

fn stage_outcomes(events: &[Event]) -> Vec<(Stage, Outcome)> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Run(RunEvent::StageEnd { stage, outcome, .. }) => Some((*stage, *outcome)),
            _ => None,
        })
        .collect()
}

#[test]
fn kernel_builds_and_boots() {
    // ---- The build (or the cached one when this cache already has it).
    let (art, events, took) = build();
    eprintln!(
        "first ensure_kernel: {:.1} s (reused: {})",
        took.as_secs_f64(),
        art.reused
    );

    let stages: Vec<Stage> = stage_outcomes(&events).iter().map(|(s, _)| *s).collect();
    for s in [
        Stage::Apply,
        Stage::Configure,
        Stage::Build,
        Stage::Selftests,
    ] {
        assert!(stages.contains(&s), "no StageEnd for {s:?}: {stages:?}");
    }
    assert!(
        stage_outcomes(&events)
            .iter()
            .all(|(_, o)| *o != Outcome::Failed),
        "{:?}",
        stage_outcomes(&events)
    );

    // The apply report: every posted patch accounted for, and the port's
    // fixups applied after them.
    let patches: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Kernel(KernelEvent::Patch(p)) => Some(p.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(patches.len(), art.manifest.apply.patches.len());
    for (series, n) in [("mkdirat2-v2", 2), ("goldfish-address-space-v3", 6)] {
        for i in 1..=n {
            assert!(
                patches.iter().any(|p| p.series == series
                    && p.posted_index == Some(i)
                    && matches!(p.role, PatchRole::Posted | PatchRole::Reconstructed)),
                "{series} {i}/{n} not reported"
            );
        }
    }
    for p in patches
        .iter()
        .filter(|p| p.role == PatchRole::Posted && p.status == ApplyStatus::Failed)
    {
        assert!(
            patches.iter().any(|r| r.role == PatchRole::Replacement
                && r.series == p.series
                && r.posted_index == p.posted_index
                && r.status != ApplyStatus::Failed),
            "failed {} {:?} has no applied replacement",
            p.series,
            p.posted_index
        );
        assert!(
            !p.hunks.is_empty() && p.hunks.iter().any(|h| !h.applied),
            "no hunk report"
        );
    }
    assert!(
        patches
            .iter()
            .filter(|p| p.role == PatchRole::Fixup)
            .count()
            >= 3
    );

    // ---- The artifacts.
    let bz = std::fs::read(&art.bzimage).unwrap();
    assert!(bz.len() > 500_000, "bzImage is {} bytes", bz.len());
    assert_eq!(&bz[0x202..0x206], b"HdrS", "not an x86 boot image");
    let config = std::fs::read_to_string(&art.config).unwrap();
    for sym in [
        "CONFIG_RUST=y",
        "CONFIG_GOLDFISH_ADDRESS_SPACE=y",
        "CONFIG_VIRTIO_CONSOLE=y",
        "CONFIG_VIRTIO_FS=y",
        "CONFIG_HOTPLUG_PCI_PCIE=y",
        "CONFIG_DEVTMPFS_MOUNT=y",
        "CONFIG_KALLSYMS=y",
    ] {
        assert!(
            config.lines().any(|l| l == sym),
            "{sym} not in {}",
            art.config.display()
        );
    }
    assert!(config.lines().any(|l| l == "# CONFIG_MODULES is not set"));
    // mkdirat2 is in the syscall table and in the image.
    assert_eq!(
        art.mkdirat2_syscall,
        Some(472),
        "7.2.12 has 471 as its last syscall"
    );
    let map = std::fs::read_to_string(&art.system_map).unwrap();
    assert!(
        map.contains(" __x64_sys_mkdirat2\n"),
        "sys_mkdirat2 is not in System.map"
    );
    let selftest = art
        .selftest
        .as_ref()
        .expect("the full build has the selftest");
    assert_eq!(elf_kind(selftest).unwrap(), ElfKind::Static);
    assert!(art.headers.join("linux/goldfish_address_space.h").is_file());
    assert!(
        std::fs::read_to_string(art.headers.join("asm-generic/unistd.h"))
            .unwrap()
            .contains("#define __NR_mkdirat2 472")
    );
    assert!(art.manifest_path.is_file());
    assert!(art.release.starts_with("7.2.12"), "{}", art.release);
    // The rustc that built it is recorded, whichever the runtime has, and
    // it is one the kernel's Rust accepts (scripts/min-tool-version.sh:
    // 1.85 on x86 for this base).
    let rustc = &art.manifest.toolchain.versions["rustc"];
    let minor: u32 = rustc
        .strip_prefix("rustc 1.")
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("not a rustc version: {rustc}"));
    assert!(minor >= 85, "{rustc}");

    // ---- Nothing changed: the same request is answered from the cache.
    let (again, events, took) = build();
    eprintln!("unchanged ensure_kernel: {:.2} s", took.as_secs_f64());
    assert!(again.reused, "the unchanged request rebuilt");
    assert_eq!(again.bzimage, art.bzimage);
    assert!(stage_outcomes(&events).contains(&(Stage::Build, Outcome::Cached)));

    // ---- Boot: init runs, the driver is registered, mkdirat2 works.
    boot_check(&art);
}

fn boot_check(art: &KernelArtifacts) {
    let (_cache, rt) = gasbench_e2e::runtime();
    let busybox = rt.file("/usr/bin/busybox");
    let init = "#!/bin/busybox sh\n\
/bin/busybox mount -t proc proc /proc\n\
/bin/busybox mount -t sysfs sys /sys\n\
/bin/busybox mount -t devtmpfs dev /dev\n\
/bin/busybox mount -t tmpfs tmp /tmp\n\
echo \"E2E-INIT $(/bin/busybox uname -r)\"\n\
[ -d /sys/bus/pci/drivers/goldfish_address_space ] && echo E2E-GOLDFISH-DRIVER\n\
/selftest > /tmp/kselftest.txt 2>&1; echo \"E2E-SELFTEST-EXIT $?\"\n\
/bin/busybox cat /tmp/kselftest.txt\n\
/bin/busybox reboot -f\n";
    let mut img = gasbench_initramfs::Initramfs::new();
    img.file_from("bin/busybox", 0o755, &busybox).unwrap();
    img.file("init", 0o755, init.as_bytes().to_vec()).unwrap();
    img.file_from("selftest", 0o755, art.selftest.as_ref().unwrap())
        .unwrap();
    for d in ["proc", "sys", "dev", "tmp"] {
        img.dir(d, 0o755).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let initrd = dir.path().join("initrd.cpio");
    std::fs::write(&initrd, img.to_bytes()).unwrap();

    let mut qemu = rt.host_program(HostProgram::Qemu);
    qemu.args([
        "-M",
        "q35",
        "-m",
        "512",
        "-accel",
        "tcg",
        "-nographic",
        "-no-reboot",
    ])
    .arg("-kernel")
    .arg(&art.bzimage)
    .arg("-initrd")
    .arg(&initrd)
    .args(["-append", "console=ttyS0 reboot=t panic=-1"])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = qemu.spawn().expect("qemu starts");
    // The guest reboots (-no-reboot ends QEMU); give TCG a generous deadline.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let console = String::from_utf8_lossy(&out.stdout);
    eprintln!("boot took {:.2} s", start.elapsed().as_secs_f64());
    assert!(
        console.contains("E2E-INIT 7.2.12"),
        "init did not run:\n{console}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        console.contains("E2E-GOLDFISH-DRIVER"),
        "goldfish driver not registered:\n{console}"
    );
    assert!(console.contains("E2E-SELFTEST-EXIT "), "{console}");
    // The posted kselftest runs against the posted syscall (TAP output).
    assert!(console.contains("mkdirat2.returns_fd"), "{console}");
    assert!(console.contains("ok "), "{console}");
}

/// Processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let ps = std::process::Command::new("ps")
        .args(["-eo", "pid,args"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&ps.stdout)
        .lines()
        .filter(|l| l.contains(needle) && !l.contains(" ps -eo"))
        .map(str::to_string)
        .collect()
}

/// SIGINT to `gasbench kernel build` while make runs (a per-patch check:
/// it always builds): make and its jobs are stopped, none is left, the
/// command exits 130 saying what it stopped, and the cache is consistent:
/// no staging directory, every build directory whole, the tree unlocked.
#[test]
fn an_interrupted_kernel_build_stops_make_and_leaves_the_cache_consistent() {
    use std::io::BufRead;
    let (cache, _) = gasbench_e2e::runtime();
    let out_dir = "out-mkdirat2-v2";
    let mut cmd = std::process::Command::new(processes::gasbench_binary());
    cmd.args(["kernel", "build", "--per-patch", "--series", "mkdirat2-v2"])
        .arg("--kernel-dir")
        .arg(kernel_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut run = processes::Guarded::spawn("gasbench kernel build", &mut cmd);
    let stderr = run.child.as_mut().unwrap().stderr.take().unwrap();
    let lines = std::thread::spawn(move || {
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        assert!(Instant::now() < deadline, "make never started");
        assert!(run.exited().is_none(), "gasbench kernel build ended first");
        if processes_with("O=")
            .iter()
            .any(|l| l.contains(out_dir) && l.contains("make"))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Let it get going: make's jobs are running.
    std::thread::sleep(Duration::from_secs(3));
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(run.id() as i32, libc::SIGINT) };
    let status = run
        .wait(Duration::from_secs(180))
        .expect("the build ends after Ctrl-C");
    let text = lines.join().unwrap().join("\n");
    assert_eq!(status.code(), Some(130), "{text}");
    assert!(
        text.contains("interrupted (Ctrl-C): stopping make"),
        "{text}"
    );
    assert!(
        text.contains("interrupted:"),
        "the stage says it was interrupted:\n{text}"
    );
    let left = processes_with(out_dir);
    assert!(
        left.is_empty(),
        "make or its jobs outlived the build: {left:?}"
    );

    // The cache: nothing half-made is left where a build would use it.
    let builds = cache.kernel().join("builds");
    for e in std::fs::read_dir(&builds).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(
            !name.starts_with(".staging-"),
            "a staging directory was left: {name}"
        );
        if e.path().is_dir() {
            assert!(
                e.path().join("manifest.json").is_file(),
                "{name} has no manifest"
            );
        }
    }
    for e in std::fs::read_dir(cache.kernel().join("trees"))
        .unwrap()
        .flatten()
    {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "lock") {
            use std::os::fd::AsRawFd;
            let f = std::fs::File::open(&p).unwrap();
            // SAFETY: flock on a file we opened.
            let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            assert_eq!(rc, 0, "{} is still locked", p.display());
        }
    }
}
