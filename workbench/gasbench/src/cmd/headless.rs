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

#[derive(clap::Args, Clone, Debug)]
pub struct VmArgs {
    /// Boot a fresh VM for every scenario.
    #[arg(long)]
    pub isolate: bool,
    /// kvm, tcg, or auto (KVM only when it really runs a kernel)
    /// [env: GASBENCH_ACCEL] [config: accel] [default: auto]
    #[arg(long, value_parser = ["auto", "kvm", "tcg"])]
    pub accel: Option<String>,
    /// Where run directories go [default: <cache>/runs]
    #[arg(long, value_name = "DIR")]
    pub runs: Option<PathBuf>,
    /// Guest RAM in MiB [env: GASBENCH_MEMORY] [config: memory_mib]
    /// [default: 512]
    #[arg(long, value_name = "MIB",
          value_parser = clap::value_parser!(u32).range(128..=65536))]
    pub memory: Option<u32>,
    /// Guest CPUs (q35 without x2APIC: at most 64 here) [env:
    /// GASBENCH_CPUS] [config: cpus] [default: 2]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub cpus: Option<u32>,
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
    #[command(flatten)]
    pub talk: super::progress::Talk,
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

/// Where the agent is built from: gasbench's data (found when the run
/// checked its scenarios; an empty path makes the agent build say what
/// is missing).
pub fn agent_source(g: &Globals) -> PathBuf {
    g.data()
        .map(|d| d.agent_source().to_path_buf())
        .unwrap_or_default()
}

/// `auto`, `kvm` or `tcg` as the engine's preference.
pub fn accel_pref(name: &str) -> AccelPref {
    match name {
        "kvm" => AccelPref::Kvm,
        "tcg" => AccelPref::Tcg,
        _ => AccelPref::Auto,
    }
}

impl VmArgs {
    /// accel, memory and cpus: these flags over the configuration.
    pub fn vm_config(
        &self,
        g: &Globals,
    ) -> (
        gasbench_config::Setting<String>,
        gasbench_config::Setting<u32>,
        gasbench_config::Setting<u32>,
    ) {
        let c = &g.config;
        (
            c.accel.clone().with_flag(self.accel.clone(), "--accel"),
            c.memory_mib.clone().with_flag(self.memory, "--memory"),
            c.cpus.clone().with_flag(self.cpus, "--cpus"),
        )
    }

    /// Where this run's directory goes.
    pub fn runs_dir(&self, g: &Globals) -> PathBuf {
        self.runs
            .clone()
            .unwrap_or_else(|| g.cache.root().join("runs"))
    }

    pub fn settings(&self, g: &Globals, runtime: Runtime, run_dir: &RunDir) -> RunSettings {
        RunSettings {
            isolate: self.isolate,
            accel: accel_pref(&self.vm_config(g).0.value),
            memory_mib: self.vm_config(g).1.value,
            cpus: self.vm_config(g).2.value,
            ready_timeout: Duration::from_secs(self.ready_timeout),
            agent_source: agent_source(g),
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
        let stop = signals.sender();
        tokio::spawn(async move {
            gasbench_trace::log::record_capped(
                rx,
                &path,
                guest_log_cap,
                |ev| {
                    print_progress(ev, kernel_detail);
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

/// The live progress on stderr, through the one reporter: stages (the
/// kernel build with its bar and ETA), scenario verdicts, failures,
/// errors and kernel trouble; not every event. `kernel_detail` (repro,
/// or `-v`) adds patches that did not apply cleanly and per-patch builds.
fn print_progress(ev: &Event, kernel_detail: bool) {
    let r = super::progress::reporter();
    let kernel_detail = kernel_detail || r.verbosity() == super::progress::Verbosity::Verbose;
    match &ev.body {
        EventBody::Run(run) => match run {
            RunEvent::StageBegin { stage, detail } => {
                r.line(&format!("{:<10} {detail}", stage.name()))
            }
            RunEvent::StageEnd {
                stage,
                outcome,
                detail,
                elapsed_ms,
            } => {
                r.end_build();
                let o = outcome.word();
                let text = format!(
                    "{:<10} {o} ({:.1} s) {detail}",
                    stage.name(),
                    *elapsed_ms as f64 / 1000.0
                );
                if *outcome == Outcome::Failed {
                    r.warn(&text)
                } else {
                    r.line(&text)
                }
            }
            RunEvent::Accel(a) => r.line(&format!(
                "accel      {} — {}",
                a.accel.to_uppercase(),
                a.reason
            )),
            RunEvent::ScenarioEnd {
                scenario,
                passed,
                elapsed_ms,
            } => {
                let text = format!(
                    "{} {scenario} ({:.1} s)",
                    if *passed { "PASS" } else { "FAIL" },
                    *elapsed_ms as f64 / 1000.0
                );
                if *passed {
                    r.line(&text)
                } else {
                    r.warn(&text)
                }
            }
            RunEvent::Expectation {
                line,
                step_name,
                what,
                expected,
                actual,
                held: false,
                ..
            } => r.warn(&format!(
                "  ✗ {}: expected {expected}, got {actual}",
                gasbench_events::run::expectation_title(*line, step_name, what)
            )),
            RunEvent::StageProgress {
                stage,
                total: 0,
                detail,
                ..
            } => {
                let text = format!("{:<10} {detail}", stage.name());
                if kernel_detail {
                    r.line(&text)
                } else {
                    r.detail(&text)
                }
            }
            RunEvent::Note { text } => r.line(&format!("note       {text}")),
            RunEvent::Error { text } => r.warn(&format!("ERROR      {text}")),
            _ => {}
        },
        EventBody::Kernel(gasbench_events::kernel::KernelEvent::BuildProgress {
            done,
            total,
            current,
        }) => r.build(*done, *total, current),
        EventBody::Kernel(k) if kernel_detail => print_kernel(k),
        EventBody::Vm(gasbench_events::vm::VmEvent::Console { line, severity })
            if *severity == gasbench_events::vm::ConsoleSeverity::Bug =>
        {
            r.warn(&format!("kernel     {line}"))
        }
        EventBody::Vm(gasbench_events::vm::VmEvent::ProcessExited {
            name,
            status,
            expected: false,
        }) => r.warn(&format!("DIED       {name}: {status}")),
        _ => {}
    }
}

/// The kernel stage's patch outcomes and per-patch builds (what a
/// reviewer waits for during a long build).
fn print_kernel(k: &gasbench_events::kernel::KernelEvent) {
    let r = super::progress::reporter();
    use gasbench_events::kernel::{ApplyStatus, KernelEvent};
    match k {
        KernelEvent::Patch(p) if p.status != ApplyStatus::Applied => r.warn(&format!(
            "patch      {} {}/{} {}: {}",
            p.series,
            p.index,
            p.total,
            p.status.name(),
            p.subject
        )),
        KernelEvent::PatchBuild {
            subject,
            builds,
            first_error,
            cross_arch,
            cross_error,
            ..
        } => {
            r.line(&format!(
                "per-patch  {} after {subject}",
                if *builds { "builds" } else { "DOES NOT BUILD" }
            ));
            if let Some(e) = first_error {
                r.warn(&format!("  {e}"));
            }
            if let (Some(a), Some(e)) = (cross_arch, cross_error) {
                r.warn(&format!("  {a}: {e}"));
            }
        }
        _ => {}
    }
}
