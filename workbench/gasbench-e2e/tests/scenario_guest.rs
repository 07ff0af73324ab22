//! A scenario compiled by gasbench-scenario, run by the agent as PID 1 of
//! a real guest (any kernel with virtio-serial and virtiofs; the stock one
//! here), judged by the evaluator. A host step makes the agent stop at a
//! sync point until this test resumes it.

use std::time::{Duration, Instant};

use gasbench_abi::protocol::{AgentMsg, HostMsg};
use gasbench_engine::session::{BootSpec, Session};
use gasbench_qemu::Accel;
use gasbench_scenario::Evaluator;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_runs_in_the_guest_and_every_expectation_holds() {
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/guest_smoke.toml");
    let compiled = gasbench_scenario::load(&fixture).unwrap_or_else(|p| panic!("{p}"));
    let (cache, rt) = gasbench_e2e::runtime();
    let dir = tempfile::tempdir().unwrap();
    let initramfs = gasbench_e2e::agent_initramfs(&cache, dir.path());
    let kernel = gasbench_env::probe_kernel(&rt, None).unwrap();
    let run_dir = dir.path().join("run");
    let spec = BootSpec {
        kernel,
        initramfs,
        mkdirat2: None,
        accel: Accel::Tcg,
        memory_mib: 512,
        cpus: 1,
        goldfish_socket: None,
        run_dir: run_dir.clone(),
        cmdline: String::new(),
        guest_log_cap: gasbench_trace::log::DEFAULT_GUEST_LOG_CAP,
    };
    let (sink, _bus) = gasbench_events::bus();
    let mut session = Session::boot(&spec, &rt, &sink, Duration::from_secs(120))
        .await
        .expect("the agent says ready");
    let share = run_dir.join("share");
    std::fs::create_dir_all(share.join("bundles")).unwrap();
    std::fs::write(
        share.join("bundles/1.json"),
        serde_json::to_vec(&compiled.bundle).unwrap(),
    )
    .unwrap();
    session
        .send(&HostMsg::RunBundle {
            id: 1,
            path: "bundles/1.json".into(),
        })
        .unwrap();
    let mut ev = Evaluator::new(&compiled);
    let start = Instant::now();
    let mut syncs = 0;
    loop {
        let msg = session
            .next(Duration::from_secs(60), "running the bundle")
            .await
            .expect("the agent goes on");
        ev.agent(&msg);
        match msg {
            AgentMsg::SyncWait { bundle, sync, .. } => {
                syncs += 1;
                ev.host_action(sync, Ok(()));
                session.send(&HostMsg::Resume { bundle, sync }).unwrap();
            }
            AgentMsg::BundleEnd { .. } => break,
            _ => {}
        }
    }
    eprintln!("bundle ran in {:.2} s", start.elapsed().as_secs_f64());
    let report = ev.finish();
    let failures: Vec<String> = report
        .failures()
        .map(|v| {
            format!(
                "line {} {} [{}]: expected {}, got {}",
                v.line, v.step_name, v.what, v.expected, v.actual
            )
        })
        .collect();
    assert!(report.passed(), "{}", failures.join("\n"));
    assert_eq!(syncs, 1, "one host step, one stop");
    let how = session.shutdown().await;
    assert!(!how.contains("did not die"), "{how}");
}
