//! What the debug profile costs, as ratios against the default profile
//! measured in the same run: the kernel build (timed here when it is not
//! cached; else the time the cached build took, from its manifest),
//! boot to Ready, and the default suite.
//!
//! `cargo xtask bench` runs it (needs the provisioned runtime and root; a
//! cold debug kernel build takes most of an hour on two cores).

use std::time::{Duration, Instant};

#[path = "../tests/support/processes.rs"]
mod processes;

use gasbench_engine::device_host::DeviceHost;
use gasbench_engine::pipeline::{self, AccelPref, KernelArtifacts, RunOptions, RunSettings};
use gasbench_kbuild::KernelRequest;

const BOOTS: usize = 3;
const PROFILES: [&str; 2] = ["default", "debug"];

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// The run's view of a built kernel (as `gasbench run` makes it).
fn artifacts(a: &gasbench_kbuild::KernelArtifacts) -> KernelArtifacts {
    let m = &a.manifest;
    KernelArtifacts::from_build(
        a,
        format!("{} ({} profile)", m.kernel_release, m.profile.name),
    )
}

struct Measured {
    profile: &'static str,
    build_s: f64,
    build_how: String,
    boot_s: f64,
    suite_s: f64,
    scenarios: usize,
    skipped: usize,
}

fn main() {
    let (cache, rt) = gasbench_e2e::runtime();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (sink, mut bus) = gasbench_events::bus();
    let skipped = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let skipped = skipped.clone();
        tokio.spawn(async move {
            while let Some(e) = bus.recv().await {
                if matches!(
                    e.body,
                    gasbench_events::EventBody::Run(
                        gasbench_events::run::RunEvent::ScenarioSkipped { .. }
                    )
                ) {
                    skipped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
    }
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
    let dir = tempfile::tempdir().unwrap();
    let mut out = Vec::new();
    for profile in PROFILES {
        let req = KernelRequest {
            kernel_dir: Some(gasbench_e2e::checkout().join("kernel")),
            profile: profile.into(),
            ..Default::default()
        };
        let t = Instant::now();
        let k = gasbench_kbuild::ensure_kernel(&req, &rt, &cache, &sink)
            .unwrap_or_else(|e| panic!("the kernel stage ({profile}): {e}"));
        let (build_s, build_how) = if k.reused {
            (
                k.manifest.timings.build_ms as f64 / 1000.0,
                "cached; the build it reused took".to_string(),
            )
        } else {
            (t.elapsed().as_secs_f64(), "built now in".to_string())
        };
        let kernel = artifacts(&k);
        let settings = |name: String| RunSettings {
            isolate: false,
            accel: AccelPref::Tcg,
            memory_mib: 512,
            cpus: 2,
            ready_timeout: Duration::from_secs(600),
            agent_source: gasbench_e2e::checkout(),
            cache: cache.clone(),
            runtime: rt.clone(),
            run_dir: dir.path().join(name),
            busybox: false,
            device_host: DeviceHost::InProcess,
            guest_log_cap: gasbench_trace::log::DEFAULT_GUEST_LOG_CAP,
        };
        // Boot to Ready: a runner per round, one empty scenario list.
        let mut boots = Vec::new();
        for round in 0..BOOTS {
            let opts = pipeline::RunnerOptions {
                kernel: kernel.clone(),
                settings: settings(format!("{profile}-boot-{round}")),
            };
            let secs = tokio.block_on(async {
                let mut r = pipeline::Runner::prepare(opts, sink.clone())
                    .await
                    .expect("prepare");
                let t = Instant::now();
                r.boot().await.expect("boot");
                let s = t.elapsed().as_secs_f64();
                r.stop().await;
                s
            });
            boots.push(secs);
        }
        let before = skipped.load(std::sync::atomic::Ordering::Relaxed);
        let k2 = kernel.clone();
        let opts = RunOptions {
            scenarios: scenarios.clone(),
            kernel: std::sync::Arc::new(std::sync::Mutex::new(
                move |_: &gasbench_events::EventSink| Ok(k2.clone()),
            )),
            settings: settings(format!("{profile}-suite")),
            explore: None,
        };
        let t = Instant::now();
        let run = tokio.block_on(pipeline::run(opts, sink.clone()));
        let suite_s = t.elapsed().as_secs_f64();
        if let Some(e) = &run.error {
            println!("  {profile}: the suite stopped: {e}");
        }
        out.push(Measured {
            profile,
            build_s,
            build_how,
            boot_s: median(&mut boots),
            suite_s,
            scenarios: run.reports.len(),
            skipped: skipped.load(std::sync::atomic::Ordering::Relaxed) - before,
        });
    }
    let base = &out[0];
    println!("kernel profiles under TCG (boot: median of {BOOTS}):");
    for m in &out {
        println!(
            "  {:8} build {} {:7.1} s ({:.2}x) · boot to Ready {:6.2} s ({:.2}x) · suite {:7.1} s ({:.2}x), {} scenario(s) run, {} skipped",
            m.profile,
            m.build_how,
            m.build_s,
            m.build_s / base.build_s,
            m.boot_s,
            m.boot_s / base.boot_s,
            m.suite_s,
            m.suite_s / base.suite_s,
            m.scenarios,
            m.skipped
        );
    }
}
