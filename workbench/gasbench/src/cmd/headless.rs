//! The headless run shared by `gasbench run` and `gasbench repro`: the VM
//! flags, the bus recorded to the run directory with live progress on
//! stderr and folded into a `RunSummary`, and the results files.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gasbench_engine::device_host::DeviceHost;
use gasbench_engine::interrupt::Interrupt;
use gasbench_engine::pipeline::{AccelPref, RunSettings};
use gasbench_env::Runtime;
use gasbench_events::run::{Outcome, RunEvent};
use gasbench_events::{Event, EventBody, EventSink};
use gasbench_trace::{RunDir, RunSummary};
use miette::IntoDiagnostic;

use crate::Globals;

/// How the VM runs, whatever it runs.
#[derive(clap::Args, Clone, Debug)]
pub struct VmArgs {
    /// Boot a fresh VM for every scenario.
    #[arg(long)]
    pub isolate: bool,
    /// kvm, tcg, or auto (KVM only when it really runs a kernel).
    #[arg(long, default_value = "auto", value_parser = ["auto", "kvm", "tcg"])]
    pub accel: String,
    /// Where run directories go [default: <cache>/runs]
    #[arg(long, value_name = "DIR")]
    pub runs: Option<PathBuf>,
    /// Guest RAM in MiB.
    #[arg(long, default_value_t = 512, value_name = "MIB",
          value_parser = clap::value_parser!(u32).range(128..=65536))]
    pub memory: u32,
    /// Guest CPUs (q35 without x2APIC: at most 64 here).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub cpus: u32,
    /// Seconds the guest may take from QEMU start to the agent's Ready.
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub ready_timeout: u64,
    /// Put busybox in the guest (a shell for debugging).
    #[arg(long)]
    pub busybox: bool,
    /// Run the goldfish device server as a child process (`gasbench device
    /// serve`) rather than a thread: it can be killed or debugged on its
    /// own, at one more pipe round trip per register access.
    #[arg(long)]
    pub device_process: bool,
}

impl VmArgs {
    /// Where this run's directory goes.
    pub fn runs_dir(&self, g: &Globals) -> PathBuf {
        self.runs
            .clone()
            .unwrap_or_else(|| g.cache.root().join("runs"))
    }

    pub fn settings(&self, g: &Globals, runtime: Runtime, run_dir: &RunDir) -> RunSettings {
        RunSettings {
            isolate: self.isolate,
            accel: match self.accel.as_str() {
                "kvm" => AccelPref::Kvm,
                "tcg" => AccelPref::Tcg,
                _ => AccelPref::Auto,
            },
            memory_mib: self.memory,
            cpus: self.cpus,
            ready_timeout: Duration::from_secs(self.ready_timeout),
            cache: g.cache.clone(),
            runtime,
            run_dir: run_dir.path().to_path_buf(),
            busybox: self.busybox,
            device_host: if self.device_process {
                // This very binary serves the device; should its path be
                // unknown, the spawn error names what was tried.
                DeviceHost::Process {
                    program: std::env::current_exe().unwrap_or_else(|_| "gasbench".into()),
                }
            } else {
                DeviceHost::InProcess
            },
        }
    }
}

/// Run `work` on a fresh bus whose every event is recorded to the run
/// directory's events.jsonl (progress on stderr) and folded into the
/// summary that is returned. `work` says whether everything passed.
/// Ctrl-C sets the `Interrupt` it was given: the running scenario ends with
/// the verdicts it has and teardown runs. If that takes longer than
/// [`INTERRUPT_GRACE`], or on a second Ctrl-C, `work` is dropped (its VM
/// and device server are torn down by their Drop). Either way the run is
/// recorded as interrupted. `kernel_detail` also prints patches that did
/// not apply cleanly and per-patch build results.
pub fn record<F, Fut>(
    run_dir: &RunDir,
    label: &str,
    kernel_detail: bool,
    work: F,
) -> miette::Result<RunSummary>
where
    F: FnOnce(EventSink, Interrupt) -> Fut,
    Fut: Future<Output = bool>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .into_diagnostic()?;
    Ok(rt.block_on(record_async(run_dir, label, kernel_detail, work)))
}

async fn record_async<F, Fut>(
    run_dir: &RunDir,
    label: &str,
    kernel_detail: bool,
    work: F,
) -> RunSummary
where
    F: FnOnce(EventSink, Interrupt) -> Fut,
    Fut: Future<Output = bool>,
{
    let (sink, rx) = gasbench_events::bus();
    let summary = Arc::new(Mutex::new(RunSummary::default()));
    let recorder = {
        let path = run_dir.events();
        let summary = summary.clone();
        let mut last_build_line = std::time::Instant::now();
        tokio::spawn(async move {
            gasbench_trace::log::record(rx, &path, |ev| {
                print_progress(ev, kernel_detail, &mut last_build_line);
                summary.lock().unwrap_or_else(|p| p.into_inner()).apply(ev);
            })
            .await
        })
    };
    sink.emit(RunEvent::Started {
        run_dir: run_dir.path().display().to_string(),
        command: label.to_string(),
    });
    let started = std::time::Instant::now();
    let (interrupter, interrupt) = Interrupt::new();
    let work = work(sink.clone(), interrupt);
    tokio::pin!(work);
    let outcome = tokio::select! {
        passed = &mut work => Some(passed),
        _ = tokio::signal::ctrl_c() => None,
    };
    let passed = match outcome {
        Some(p) => p,
        None => {
            eprintln!(
                "gasbench: interrupted; ending the scenario with the verdicts it has (Ctrl-C again to stop at once)"
            );
            interrupter.interrupt();
            let finished = tokio::select! {
                passed = &mut work => Some(passed),
                _ = tokio::time::sleep(INTERRUPT_GRACE) => None,
                _ = tokio::signal::ctrl_c() => None,
            };
            if finished.is_none() {
                sink.emit(RunEvent::Error {
                    text: gasbench_engine::pipeline::INTERRUPTED.into(),
                });
            }
            // The engine has said so itself when it finished.
            false
        }
    };
    sink.emit(RunEvent::Finished {
        passed,
        elapsed_ms: started.elapsed().as_millis() as u64,
    });
    drop(sink);
    match recorder.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => eprintln!("gasbench: the event log is incomplete: {e}"),
        Err(e) => eprintln!("gasbench: the event recorder failed: {e}"),
    }
    summary.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// How long an interrupted run may take to end its scenario and tear
/// down before it is dropped.
pub const INTERRUPT_GRACE: Duration = Duration::from_secs(15);

/// results.json and junit.xml in the run directory; returns the JSON.
pub fn write_results(run_dir: &RunDir, summary: &RunSummary) -> miette::Result<String> {
    let results = serde_json::to_string_pretty(summary).into_diagnostic()?;
    std::fs::write(run_dir.results(), &results).into_diagnostic()?;
    std::fs::write(run_dir.junit(), gasbench_trace::junit::to_junit(summary)).into_diagnostic()?;
    Ok(results)
}

/// A run that proved its profile's detectors (or failed to) is what
/// `gasbench doctor` reports next time.
pub fn record_proofs(g: &crate::Globals, run_dir: &RunDir, summary: &RunSummary) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if let Some(r) = gasbench_trace::proofs::from_run(summary, Some(run_dir.path()), now)
        && let Err(e) = gasbench_trace::proofs::save(&g.cache.state(), &r)
    {
        eprintln!("gasbench: could not record which detectors were proven: {e}");
    }
}

/// The live progress on stderr: stages, scenario verdicts, failures,
/// errors and kernel trouble; not every event.
fn print_progress(ev: &Event, kernel_detail: bool, last_build_line: &mut std::time::Instant) {
    let t = ev.t_us as f64 / 1e6;
    match &ev.body {
        EventBody::Run(r) => match r {
            RunEvent::StageBegin { stage, detail } => {
                eprintln!("[{t:7.2}] {:<10} {detail}", stage.name())
            }
            RunEvent::StageEnd {
                stage,
                outcome,
                detail,
                elapsed_ms,
            } => {
                let o = match outcome {
                    Outcome::Ok => "ok",
                    Outcome::Cached => "cached",
                    Outcome::Skipped => "skipped",
                    Outcome::Failed => "FAILED",
                };
                eprintln!(
                    "[{t:7.2}] {:<10} {o} ({:.1} s) {detail}",
                    stage.name(),
                    *elapsed_ms as f64 / 1000.0
                )
            }
            RunEvent::Accel(a) => eprintln!(
                "[{t:7.2}] accel      {} — {}",
                a.accel.to_uppercase(),
                a.reason
            ),
            RunEvent::ScenarioEnd {
                scenario,
                passed,
                elapsed_ms,
            } => eprintln!(
                "[{t:7.2}] {} {scenario} ({:.1} s)",
                if *passed { "PASS" } else { "FAIL" },
                *elapsed_ms as f64 / 1000.0
            ),
            RunEvent::Expectation {
                what,
                expected,
                actual,
                held: false,
                ..
            } => {
                eprintln!("           ✗ {what}: expected {expected}, got {actual}")
            }
            RunEvent::StageProgress {
                stage,
                total: 0,
                detail,
                ..
            } if kernel_detail => eprintln!("[{t:7.2}] {:<10} {detail}", stage.name()),
            RunEvent::Note { text } => eprintln!("[{t:7.2}] note       {text}"),
            RunEvent::Error { text } => eprintln!("[{t:7.2}] ERROR      {text}"),
            _ => {}
        },
        EventBody::Kernel(gasbench_events::kernel::KernelEvent::BuildProgress {
            done,
            total,
            current,
        }) if kernel_detail && last_build_line.elapsed().as_secs() >= 30 => {
            *last_build_line = std::time::Instant::now();
            eprintln!("[{t:7.2}] build      {done}/{total} {current}");
        }
        EventBody::Kernel(k) if kernel_detail => print_kernel(t, k),
        EventBody::Vm(gasbench_events::vm::VmEvent::Console { line, severity })
            if *severity == gasbench_events::vm::ConsoleSeverity::Bug =>
        {
            eprintln!("[{t:7.2}] kernel     {line}")
        }
        EventBody::Vm(gasbench_events::vm::VmEvent::ProcessExited {
            name,
            status,
            expected: false,
        }) => {
            eprintln!("[{t:7.2}] DIED       {name}: {status}")
        }
        _ => {}
    }
}

/// The kernel stage's patch outcomes and per-patch builds (what a
/// reviewer waits for during a long build).
fn print_kernel(t: f64, k: &gasbench_events::kernel::KernelEvent) {
    use gasbench_events::kernel::{ApplyStatus, KernelEvent};
    match k {
        KernelEvent::Patch(p) if p.status != ApplyStatus::Applied => eprintln!(
            "[{t:7.2}] patch      {} {}/{} {}: {}",
            p.series,
            p.index,
            p.total,
            p.status.name(),
            p.subject
        ),
        KernelEvent::PatchBuild {
            subject,
            builds,
            first_error,
            cross_arch,
            cross_error,
            ..
        } => {
            eprintln!(
                "[{t:7.2}] per-patch  {} after {subject}",
                if *builds { "builds" } else { "DOES NOT BUILD" }
            );
            if let Some(e) = first_error {
                eprintln!("           {e}");
            }
            if let (Some(a), Some(e)) = (cross_arch, cross_error) {
                eprintln!("           {a}: {e}");
            }
        }
        _ => {}
    }
}
