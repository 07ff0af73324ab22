//! The VM runner against real QEMU and virtiofsd: a stock kernel boots
//! with gasbench's sockets, console, QMP and virtiofs wired, and teardown
//! leaves no process and no socket behind.

use std::time::Duration;

use gasbench_initramfs::Initramfs;
use gasbench_qemu::{Accel, Vm, VmSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_kernel_boots_under_the_runner_and_everything_is_torn_down() {
    let (_cache, rt) = gasbench_e2e::runtime();
    let kernel = gasbench_env::probe_kernel(&rt, None).expect("the toolroot has a stock kernel");
    let busybox = rt.file("/usr/bin/busybox");
    let dir = tempfile::tempdir().unwrap();

    // A guest that says hello on the console and powers off.
    let mut img = Initramfs::new();
    img.file_from("bin/busybox", 0o755, &busybox).unwrap();
    img.char_dev("dev/console", 0o600, 5, 1).unwrap();
    img.file(
        "init",
        0o755,
        b"#!/bin/busybox sh\n/bin/busybox mkdir -p /proc\n/bin/busybox mount -t proc proc /proc\n\
          echo gasbench-guest-alive $(/bin/busybox cat /proc/sys/kernel/osrelease)\n\
          /bin/busybox sleep 1\n/bin/busybox reboot -f\n"
            .to_vec(),
    )
    .unwrap();
    let initramfs = dir.path().join("initramfs.cpio");
    std::fs::write(&initramfs, img.to_bytes()).unwrap();

    let run_dir = dir.path().join("run");
    let spec = VmSpec {
        kernel,
        initramfs,
        cmdline: String::new(),
        memory_mib: 512,
        cpus: 1,
        accel: Accel::Tcg,
        run_dir: run_dir.clone(),
        share: Some(dir.path().join("share")),
        goldfish_socket: None,
        tsc_khz: None,
        console_log_cap: gasbench_trace::log::DEFAULT_GUEST_LOG_CAP,
    };
    let (sink, mut bus) = gasbench_events::bus();
    let mut vm = Vm::launch(&spec, &rt, &sink).await.expect("the VM starts");
    assert_eq!(vm.qmp.qemu_version.split('.').next(), Some("11"));
    let mut console = vm.console();

    // Wait for the guest's line; a boot under TCG takes seconds.
    let line = tokio::time::timeout(Duration::from_secs(90), async {
        loop {
            let l = console.recv().await.expect("console open");
            if l.contains("gasbench-guest-alive") {
                return l;
            }
        }
    })
    .await
    .expect("the guest printed within 90 s");
    let release = gasbench_e2e::release_of(&spec.kernel);
    assert!(
        line.ends_with(&format!("gasbench-guest-alive {release}")),
        "{line}"
    );

    // The guest reboots with reboot=t and -no-reboot: QEMU exits by itself.
    let how = tokio::time::timeout(Duration::from_secs(60), vm.died())
        .await
        .expect("QEMU exits after the guest's reboot");
    assert!(how.contains("QEMU exited"), "{how}");
    vm.shutdown(Duration::from_secs(5)).await;

    // Everything observed is in the run directory and on the bus.
    let log = std::fs::read_to_string(run_dir.join("console.log")).unwrap();
    assert!(log.contains("Linux version"), "console.log has the boot");
    let mut saw_shutdown = false;
    let mut virtiofsd_exited = false;
    while let Ok(ev) = bus.try_recv() {
        if let gasbench_events::EventBody::Vm(v) = ev.body {
            match v {
                gasbench_events::vm::VmEvent::Qmp { name, .. } if name == "SHUTDOWN" => {
                    saw_shutdown = true
                }
                gasbench_events::vm::VmEvent::ProcessExited { name, .. } if name == "virtiofsd" => {
                    virtiofsd_exited = true
                }
                _ => {}
            }
        }
    }
    assert!(saw_shutdown, "QMP reported SHUTDOWN");
    assert!(virtiofsd_exited, "virtiofsd was reaped");
    let leftovers: Vec<_> = std::fs::read_dir(&run_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".sock"))
        .collect();
    assert!(leftovers.is_empty(), "stale sockets: {leftovers:?}");
}

/// QEMU that connects to its sockets and then refuses the machine (too
/// many CPUs for q35 without x2APIC): the error is QEMU's own words, not
/// "QMP closed", and nothing is left in the run directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qemu_that_dies_during_start_up_is_named_with_its_words_and_leaves_nothing() {
    let (_cache, rt) = gasbench_e2e::runtime();
    let kernel = gasbench_env::probe_kernel(&rt, None).expect("the toolroot has a stock kernel");
    let dir = tempfile::tempdir().unwrap();
    let initramfs = dir.path().join("initramfs.cpio");
    std::fs::write(&initramfs, Initramfs::new().to_bytes()).unwrap();
    let run_dir = dir.path().join("run");
    let spec = VmSpec {
        kernel,
        initramfs,
        cmdline: String::new(),
        memory_mib: 256,
        cpus: 1000,
        accel: Accel::Tcg,
        run_dir: run_dir.clone(),
        share: Some(dir.path().join("share")),
        goldfish_socket: None,
        tsc_khz: None,
        console_log_cap: gasbench_trace::log::DEFAULT_GUEST_LOG_CAP,
    };
    let (sink, _bus) = gasbench_events::bus();
    let err = match Vm::launch(&spec, &rt, &sink).await {
        Ok(_) => panic!("QEMU accepted 1000 CPUs on q35"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("QEMU exited"), "{err}");
    assert!(err.contains("x2APIC"), "QEMU's own reason: {err}");
    let left: Vec<String> = std::fs::read_dir(&run_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".sock"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
