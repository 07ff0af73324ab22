//! The headless run shared by `gasbench run` and `gasbench repro`: the VM
//! flags, the bus recorded to the run directory with live progress on
//! stderr and folded into a `RunSummary`, stopping on signals (see
//! [`signals`]) and on a log that cannot be written, and the results files.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gasbench_engine::device_host::DeviceHost;
use gasbench_engine::interrupt::Interrupt;
use gasbench_engine::pipeline::{AccelPref, RunSettings};
use gasbench_env::Runtime;
use gasbench_events::run::{Outcome, RunEvent};
use gasbench_events::{Event, EventBody, EventSink};
use gasbench_trace::kcidb::Checkout;
use gasbench_trace::{RunDir, RunSummary};
use miette::IntoDiagnostic;

use crate::Globals;
use crate::cmd::signals::{self, Signal, Signals, Stop};

/// How the VM runs, whatever it runs.
/// Guest RAM when `--memory` is not given (doctor reports the limits
/// that follow from it).
pub const DEFAULT_MEMORY_MIB: u32 = 512;
/// Guest CPUs when `--cpus` is not given.
pub const DEFAULT_CPUS: u32 = 2;

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
    #[arg(long, default_value_t = DEFAULT_MEMORY_MIB, value_name = "MIB",
          value_parser = clap::value_parser!(u32).range(128..=65536))]
    pub memory: u32,
    /// Guest CPUs (q35 without x2APIC: at most 64 here).
    #[arg(long, default_value_t = DEFAULT_CPUS, value_parser = clap::value_parser!(u32).range(1..=64))]
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
    /// The most the guest may put in events.jsonl and in console.log
    /// (each: 4096, 64M, 1G); past it, what it sends is counted, not
    /// recorded, and a note says so. The run's own events and verdicts
    /// are always recorded.
    #[arg(long, value_name = "SIZE", default_value = "1G",
          value_parser = gasbench_device::parse_size)]
    pub guest_log_cap: u64,
    /// Also write the run's KCIDB v5.3 submission here (every run
    /// directory has it as kcidb.json).
    #[arg(long, value_name = "FILE")]
    pub kcidb: Option<PathBuf>,
    /// Run only slice K of N of the scenario × profile matrix (for CI
    /// machines in parallel; `gasbench merge` joins the run directories).
    #[arg(long, value_name = "K/N")]
    pub shard: Option<super::shard::Shard>,
}

impl VmArgs {
    /// The scenarios of `all` in this run's shard (all without one).
    pub fn shard_of(
        &self,
        all: Vec<gasbench_scenario::Compiled>,
    ) -> Vec<gasbench_scenario::Compiled> {
        let Some(shard) = self.shard else {
            return all;
        };
        let names: Vec<&str> = all.iter().map(|c| c.plan.scenario.as_str()).collect();
        let mine = super::shard::cells(&[PROFILE], &names, Some(shard));
        let keep: Vec<String> = mine.into_iter().map(|c| c.scenario).collect();
        eprintln!(
            "gasbench: shard {}/{}: {} of {} scenario(s): {}",
            shard.k,
            shard.n,
            keep.len(),
            all.len(),
            keep.join(", ")
        );
        all.into_iter()
            .filter(|c| keep.contains(&c.plan.scenario))
            .collect()
    }
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
            guest_log_cap: self.guest_log_cap,
        }
    }
}

/// What [`record`] leaves: the summary of everything the bus carried,
/// and how the run was stopped, if it was.
pub struct Recorded {
    pub summary: RunSummary,
    /// The first signal that stopped the run.
    pub signal: Option<Signal>,
    /// Why the event log is incomplete (it could not be written).
    pub log_error: Option<String>,
}

impl Recorded {
    /// The exit status: 128 + the signal's number for a run a signal
    /// stopped (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP), else
    /// `otherwise`.
    pub fn exit_code(&self, otherwise: u8) -> ExitCode {
        ExitCode::from(self.signal.map_or(otherwise, Signal::exit_code))
    }
}

/// Run `work` on a fresh bus whose every event is recorded to the run
/// directory's events.jsonl (progress on stderr) and folded into the
/// summary that is returned. `work` says whether everything passed.
///
/// SIGINT (Ctrl-C), SIGTERM and SIGHUP, and an event log that cannot be
/// written (a full disk), set the `Interrupt` `work` was given: the
/// running scenario ends with the verdicts it has and teardown runs. If
/// that takes longer than [`INTERRUPT_GRACE`], or on a second signal,
/// `work` is dropped (its VM and device server are killed by their Drop,
/// the kernel stage's tools by `gasbench_env::process::kill_tools`).
/// Either way the run is recorded as stopped, and the summary keeps every
/// verdict that reached the bus. `kernel_detail` also prints patches that
/// did not apply cleanly and per-patch build results.
pub fn record<F, Fut>(
    run_dir: &RunDir,
    label: &str,
    kernel_detail: bool,
    guest_log_cap: u64,
    work: F,
) -> miette::Result<Recorded>
where
    F: FnOnce(EventSink, Interrupt) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut signals = Signals::install().into_diagnostic()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .into_diagnostic()?;
    let recorded = rt.block_on(record_async(
        run_dir,
        label,
        kernel_detail,
        guest_log_cap,
        work,
        &mut signals,
    ));
    // Whatever is still running on the runtime (a kernel stage whose make
    // was killed, a task still holding a dropped VM) is not waited for.
    rt.shutdown_timeout(SHUTDOWN_WAIT);
    Ok(recorded)
}

async fn record_async<F, Fut>(
    run_dir: &RunDir,
    label: &str,
    kernel_detail: bool,
    guest_log_cap: u64,
    work: F,
    signals: &mut Signals,
) -> Recorded
where
    F: FnOnce(EventSink, Interrupt) -> Fut,
    Fut: Future<Output = bool>,
{
    let (sink, rx) = gasbench_events::bus();
    let summary = Arc::new(Mutex::new(RunSummary::default()));
    let mut recorder = {
        let path = run_dir.events();
        let summary = summary.clone();
        let mut last_build_line = std::time::Instant::now();
        let stop = signals.sender();
        tokio::spawn(async move {
            gasbench_trace::log::record_capped(
                rx,
                &path,
                guest_log_cap,
                |ev| {
                    print_progress(ev, kernel_detail, &mut last_build_line);
                    summary.lock().unwrap_or_else(|p| p.into_inner()).apply(ev);
                },
                // A log that cannot be written stops the run, which keeps
                // its verdicts in the summary all the same.
                move |e| {
                    say!("gasbench: {e}");
                    let _ = stop.send(Stop::Failure(e.to_string()));
                },
            )
            .await
        })
    };
    sink.emit(RunEvent::Started {
        run_dir: run_dir.path().display().to_string(),
        command: label.to_string(),
    });
    let started = std::time::Instant::now();
    let (interrupter, interrupt) = Interrupt::new();
    let ending = signals::supervise(
        work(sink.clone(), interrupt),
        &mut signals.stops,
        &interrupter,
        INTERRUPT_GRACE,
        // Never a panic here: a closed terminal must not stop the stop.
        |text| say!("gasbench: {text}"),
    )
    .await;
    if let Some(why) = &ending.dropped {
        // The work is gone, and with it the VM and the device server;
        // make and friends are not ours to drop.
        gasbench_env::process::kill_tools();
        let cause = ending.cause.as_deref().unwrap_or("interrupted");
        sink.emit(RunEvent::Error {
            text: format!("{cause}: {why}; the run was stopped at once"),
        });
    }
    // The engine has said itself why a run it finished did not pass.
    let passed = ending.output.unwrap_or(false) && ending.cause.is_none();
    sink.emit(RunEvent::Finished {
        passed,
        elapsed_ms: started.elapsed().as_millis() as u64,
    });
    drop(sink);
    // The bus closes when the last part holding it has gone; a part that
    // was dropped at once may take a moment, one that hangs is not waited
    // for (what reached the recorder is on disk within its tick).
    let log_error = match tokio::time::timeout(RECORDER_DRAIN, &mut recorder).await {
        Ok(Ok(Ok(_))) => None,
        Ok(Ok(Err(e))) => Some(e.to_string()),
        Ok(Err(e)) => Some(format!("the event recorder failed: {e}")),
        Err(_) => {
            recorder.abort();
            None
        }
    };
    if let Some(e) = &log_error {
        eprintln!("gasbench: the event log is incomplete: {e}");
    }
    Recorded {
        summary: summary.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        signal: ending.signal,
        log_error,
    }
}

/// How long an interrupted run may take to end its scenario and tear
/// down before it is dropped.
pub const INTERRUPT_GRACE: Duration = Duration::from_secs(15);
/// How long the recorder gets to write what is left once the run is over.
const RECORDER_DRAIN: Duration = Duration::from_secs(5);
/// How long tasks still on the runtime get when the command returns.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// The profile every run builds today; the matrix's profile axis.
pub const PROFILE: &str = "default";

/// The checkout a run's KCIDB submission describes.
pub const CHECKOUT: &str = "checkout.json";

/// results.json, junit.xml, results.ktap, kcidb.json and checkout.json in
/// the run directory (and the KCIDB submission at `--kcidb FILE`), each
/// written whole or not at all. Returns the JSON, and what could not be
/// written (the summary is printed either way: on a full disk it is the
/// only whole record of the verdicts).
pub fn write_results(
    run_dir: &RunDir,
    summary: &RunSummary,
    checkout: &Checkout,
    kcidb: Option<&Path>,
) -> (String, Vec<String>) {
    let results = serde_json::to_string_pretty(summary)
        .unwrap_or_else(|e| format!("{{\"error\": \"the summary cannot be serialised: {e}\"}}"));
    let submission =
        serde_json::to_string_pretty(&gasbench_trace::kcidb::to_kcidb(summary, checkout, PROFILE))
            .unwrap_or_else(|e| {
                format!("{{\"error\": \"the submission cannot be serialised: {e}\"}}")
            });
    // What was checked out, for `gasbench merge` to submit again.
    let checkout_json = serde_json::to_string_pretty(checkout)
        .unwrap_or_else(|e| format!("{{\"error\": \"the checkout cannot be serialised: {e}\"}}"));
    let mut files = vec![
        (run_dir.results(), results.clone()),
        (run_dir.junit(), gasbench_trace::junit::to_junit(summary)),
        (
            run_dir.results_ktap(),
            gasbench_trace::ktap::to_ktap(summary),
        ),
        (run_dir.kcidb(), submission.clone()),
        (run_dir.path().join(CHECKOUT), checkout_json),
    ];
    if let Some(path) = kcidb {
        files.push((path.to_path_buf(), submission));
    }
    let mut unwritten = Vec::new();
    for (path, text) in files {
        if let Err(e) = gasbench_trace::atomic::write(&path, text.as_bytes()) {
            unwritten.push(e.to_string());
        }
    }
    (results, unwritten)
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
                say!("[{t:7.2}] {:<10} {detail}", stage.name())
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
                say!(
                    "[{t:7.2}] {:<10} {o} ({:.1} s) {detail}",
                    stage.name(),
                    *elapsed_ms as f64 / 1000.0
                )
            }
            RunEvent::Accel(a) => say!(
                "[{t:7.2}] accel      {} — {}",
                a.accel.to_uppercase(),
                a.reason
            ),
            RunEvent::ScenarioEnd {
                scenario,
                passed,
                elapsed_ms,
            } => say!(
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
                say!("           ✗ {what}: expected {expected}, got {actual}")
            }
            RunEvent::StageProgress {
                stage,
                total: 0,
                detail,
                ..
            } if kernel_detail => say!("[{t:7.2}] {:<10} {detail}", stage.name()),
            RunEvent::Note { text } => say!("[{t:7.2}] note       {text}"),
            RunEvent::Error { text } => say!("[{t:7.2}] ERROR      {text}"),
            _ => {}
        },
        EventBody::Kernel(gasbench_events::kernel::KernelEvent::BuildProgress {
            done,
            total,
            current,
        }) if kernel_detail && last_build_line.elapsed().as_secs() >= 30 => {
            *last_build_line = std::time::Instant::now();
            say!("[{t:7.2}] build      {done}/{total} {current}");
        }
        EventBody::Kernel(k) if kernel_detail => print_kernel(t, k),
        EventBody::Vm(gasbench_events::vm::VmEvent::Console { line, severity })
            if *severity == gasbench_events::vm::ConsoleSeverity::Bug =>
        {
            say!("[{t:7.2}] kernel     {line}")
        }
        EventBody::Vm(gasbench_events::vm::VmEvent::ProcessExited {
            name,
            status,
            expected: false,
        }) => {
            say!("[{t:7.2}] DIED       {name}: {status}")
        }
        _ => {}
    }
}

/// The kernel stage's patch outcomes and per-patch builds (what a
/// reviewer waits for during a long build).
fn print_kernel(t: f64, k: &gasbench_events::kernel::KernelEvent) {
    use gasbench_events::kernel::{ApplyStatus, KernelEvent};
    match k {
        KernelEvent::Patch(p) if p.status != ApplyStatus::Applied => say!(
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
            say!(
                "[{t:7.2}] per-patch  {} after {subject}",
                if *builds { "builds" } else { "DOES NOT BUILD" }
            );
            if let Some(e) = first_error {
                say!("           {e}");
            }
            if let (Some(a), Some(e)) = (cross_arch, cross_error) {
                say!("           {a}: {e}");
            }
        }
        _ => {}
    }
}
