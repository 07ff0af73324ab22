//! Boot-to-ready and suite time, measured on the real pipeline.
//!
//! Baseline, measured in the same run, alternating with the thing measured
//! so that machine drift hits both: the same patched kernel booted under
//! the same QEMU with a busybox `/init` that prints one line (no agent, no
//! virtiofs, no device server). The ratio says what gasbench adds to a bare
//! boot. Then the default suite once with the device server on a thread
//! and once with it as a child process, against the boots they need.
//!
//! `cargo xtask bench` runs it (needs the provisioned runtime and root).

use std::time::{Duration, Instant};

#[path = "../tests/support/processes.rs"]
mod processes;

use gasbench_engine::agent_build::build_agent;
use gasbench_engine::device_host::DeviceHost;
use gasbench_engine::guest::Guest;
use gasbench_engine::guest_image::GuestImage;
use gasbench_engine::pipeline::{self, AccelPref, KernelArtifacts, RunOptions, RunSettings};
use gasbench_engine::session::BootSpec;
use gasbench_initramfs::Initramfs;
use gasbench_qemu::{Accel, Vm, VmSpec};

const ROUNDS: usize = 5;

fn stats(xs: &mut [f64]) -> (f64, f64, f64) {
    xs.sort_by(f64::total_cmp);
    (xs[0], xs[xs.len() / 2], xs[xs.len() - 1])
}

fn main() {
    let (cache, rt) = gasbench_e2e::runtime();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (sink, mut bus) = gasbench_events::bus();
    // Nobody reads the bus here; keep it from growing without bound.
    tokio.spawn(async move { while bus.recv().await.is_some() {} });

    let k = gasbench_kbuild::ensure_kernel(&Default::default(), &rt, &cache, &sink)
        .unwrap_or_else(|e| panic!("the kernel stage: {e}"));
    let dir = tempfile::tempdir().unwrap();

    // Baseline image: busybox prints a line and powers off.
    let bare = dir.path().join("bare.cpio");
    let mut img = Initramfs::new();
    img.file_from("bin/busybox", 0o755, &rt.file("/usr/bin/busybox"))
        .unwrap();
    img.char_dev("dev/console", 0o600, 5, 1).unwrap();
    img.file(
        "init",
        0o755,
        b"#!/bin/busybox sh\necho bare-ready\n/bin/busybox reboot -f\n".to_vec(),
    )
    .unwrap();
    std::fs::write(&bare, img.to_bytes()).unwrap();

    let agent = build_agent(
        &gasbench_e2e::checkout(),
        &cache.root().join("agent-target"),
    )
    .unwrap();
    let agent_img = dir.path().join("agent.cpio");
    GuestImage {
        agent,
        selftests: KernelArtifacts::from_build(&k, String::new()).selftests,
        busybox: None,
    }
    .write(&agent_img)
    .unwrap();

    let mut base = Vec::new();
    let mut ours = Vec::new();
    for round in 0..ROUNDS {
        // Baseline: QEMU start to the init's line on the console.
        let run_dir = dir.path().join(format!("bare-{round}"));
        let spec = VmSpec {
            kernel: k.bzimage.clone(),
            initramfs: bare.clone(),
            cmdline: String::new(),
            memory_mib: 512,
            cpus: 2,
            accel: Accel::Tcg,
            run_dir,
            share: None,
            goldfish_socket: None,
            tsc_khz: gasbench_qemu::spec::host_tsc_khz(),
            console_log_cap: gasbench_trace::log::DEFAULT_GUEST_LOG_CAP,
        };
        let t = Instant::now();
        let secs = tokio.block_on(async {
            let vm = Vm::launch(&spec, &rt, &sink).await.expect("bare VM");
            let mut console = vm.console();
            tokio::time::timeout(Duration::from_secs(120), async {
                while let Ok(l) = console.recv().await {
                    if l.contains("bare-ready") {
                        break;
                    }
                }
            })
            .await
            .expect("the bare guest printed");
            let s = t.elapsed().as_secs_f64();
            vm.shutdown(Duration::from_secs(5)).await;
            s
        });
        base.push(secs);

        // gasbench: device server, virtiofs, agent port, to the agent's Ready.
        let boot = BootSpec {
            kernel: k.bzimage.clone(),
            initramfs: agent_img.clone(),
            mkdirat2: k.mkdirat2_syscall.map(i64::from),
            accel: Accel::Tcg,
            memory_mib: 512,
            cpus: 2,
            goldfish_socket: None,
            run_dir: dir.path().join(format!("ours-{round}")),
            cmdline: String::new(),
            guest_log_cap: gasbench_trace::log::DEFAULT_GUEST_LOG_CAP,
        };
        let t = Instant::now();
        let secs = tokio.block_on(async {
            let g = Guest::boot(
                &boot,
                Some((Default::default(), &DeviceHost::InProcess)),
                &rt,
                &sink,
                Duration::from_secs(120),
            )
            .await
            .expect("gasbench guest");
            let s = t.elapsed().as_secs_f64();
            g.shutdown().await;
            s
        });
        ours.push(secs);
    }
    let (b0, b1, b2) = stats(&mut base);
    let (o0, o1, o2) = stats(&mut ours);
    println!("boot to ready under TCG, {ROUNDS} rounds each, alternating (min / median / max):");
    println!("  baseline: kernel + busybox init   {b0:6.2} / {b1:6.2} / {b2:6.2} s");
    println!("  gasbench: + device, virtiofs, agent {o0:6.2} / {o1:6.2} / {o2:6.2} s");
    println!("  ratio of medians gasbench/baseline: {:.2}x", o1 / b1);

    // The default suite, once, against one boot.
    let files = {
        let mut v: Vec<_> = std::fs::read_dir(gasbench_e2e::checkout().join("scenarios"))
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        v.sort();
        v
    };
    let scenarios: Vec<_> = files
        .iter()
        .map(|f| gasbench_scenario::load(f).unwrap_or_else(|e| panic!("{e:?}")))
        .collect();
    let n = scenarios.len();
    let kernel = KernelArtifacts::from_build(&k, k.release.clone());
    // The suite with the device server on a thread (the default), then as
    // a child process: what the extra pipe round trip per access costs.
    let gasbench = processes::gasbench_binary();
    let mut suite_secs = Vec::new();
    for host in [
        DeviceHost::InProcess,
        DeviceHost::Process { program: gasbench },
    ] {
        let kernel = kernel.clone();
        let opts = RunOptions {
            scenarios: scenarios.clone(),
            kernel: std::sync::Arc::new(std::sync::Mutex::new(
                move |_: &gasbench_events::EventSink| Ok(kernel.clone()),
            )),
            settings: RunSettings {
                isolate: false,
                accel: AccelPref::Tcg,
                memory_mib: 512,
                cpus: 2,
                ready_timeout: Duration::from_secs(120),
                agent_source: gasbench_e2e::checkout(),
                cache: cache.clone(),
                runtime: rt.clone(),
                run_dir: dir.path().join(format!("suite-{}", suite_secs.len())),
                busybox: false,
                device_host: host.clone(),
                guest_log_cap: gasbench_trace::log::DEFAULT_GUEST_LOG_CAP,
            },
            explore: None,
        };
        let t = Instant::now();
        let out = tokio.block_on(pipeline::run(opts, sink.clone()));
        let suite = t.elapsed().as_secs_f64();
        let passed = out.reports.iter().filter(|r| r.passed()).count();
        let label = match host {
            DeviceHost::InProcess => "device on a thread",
            DeviceHost::Process { .. } => "device as a process",
        };
        println!(
            "default suite, {label}: {n} scenarios ({passed} passed) in {suite:.1} s = {:.1}x the median gasbench boot",
            suite / o1
        );
        if let Some(e) = out.error {
            println!("  the suite stopped: {e}");
        }
        suite_secs.push(suite);
    }
    println!(
        "  ratio device as a process / on a thread: {:.2}x",
        suite_secs[1] / suite_secs[0]
    );
}
