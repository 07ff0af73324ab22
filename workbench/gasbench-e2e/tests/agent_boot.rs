//! The guest agent as PID 1 of a real VM: built static, packed into an
//! initramfs, booted under QEMU; it finds its virtio-serial port, mounts
//! the virtiofs share, says Ready, and powers off when told.

use std::time::{Duration, Instant};

use gasbench_engine::session::{BootSpec, Session};
use gasbench_qemu::Accel;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_boots_mounts_the_share_and_says_ready() {
    let (cache, rt) = gasbench_e2e::runtime();
    let dir = tempfile::tempdir().unwrap();
    let initramfs = gasbench_e2e::agent_initramfs(&cache, dir.path());
    // Any kernel with virtio-serial and virtiofs built in will do here;
    // the stock one has both.
    let kernel = gasbench_env::probe_kernel(&rt, None).unwrap();
    let release = gasbench_e2e::release_of(&kernel);
    let run_dir = dir.path().join("run");
    let spec = BootSpec {
        kernel,
        initramfs,
        mkdirat2: Some(473),
        accel: Accel::Tcg,
        memory_mib: 512,
        cpus: 1,
        goldfish_socket: None,
        run_dir: run_dir.clone(),
        cmdline: String::new(),
        guest_log_cap: gasbench_trace::log::DEFAULT_GUEST_LOG_CAP,
    };
    let (sink, _bus) = gasbench_events::bus();
    let start = Instant::now();
    let session = Session::boot(&spec, &rt, &sink, Duration::from_secs(120))
        .await
        .expect("the agent says ready");
    eprintln!("boot to ready: {:.2} s", start.elapsed().as_secs_f64());
    let ready = &session.ready;
    // The agent reports the release of the kernel we booted.
    assert_eq!(ready.kernel_release, release);
    assert_eq!(ready.syscalls.get("mkdirat2"), Some(&473));
    assert!(
        ready.missing.is_empty(),
        "the agent lacks: {:?}",
        ready.missing
    );
    let how = session.shutdown().await;
    assert!(!how.contains("did not die"), "{how}");
}
