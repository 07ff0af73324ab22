//! `gasbench run [SCENARIO…]`: boot the patched kernel, run scenarios,
//! print a summary; exit 0 only if every expectation held.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gasbench_engine::pipeline::{self, AccelPref, RunOptions, RunSettings};
use gasbench_events::run::{Outcome, RunEvent};
use gasbench_events::{Event, EventBody};
use gasbench_trace::{RunDir, RunSummary};
use miette::{IntoDiagnostic, miette};

use crate::Globals;

#[derive(clap::Args)]
pub struct Args {
    /// Scenario files or directories [default: the default suite, scenarios/]
    #[arg(value_name = "SCENARIO")]
    scenarios: Vec<PathBuf>,
    #[command(flatten)]
    kernel: super::kernel_choice::KernelArgs,
    /// Boot a fresh VM for every scenario.
    #[arg(long)]
    isolate: bool,
    /// kvm, tcg, or auto (KVM only when it really runs a kernel).
    #[arg(long, default_value = "auto", value_parser = ["auto", "kvm", "tcg"])]
    accel: String,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Where run directories go [default: <cache>/runs]
    #[arg(long, value_name = "DIR")]
    runs: Option<PathBuf>,
    #[arg(long, default_value_t = 512, value_name = "MIB")]
    memory: u32,
    #[arg(long, default_value_t = 2)]
    cpus: u32,
    /// Seconds the guest may take from QEMU start to the agent's Ready.
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    ready_timeout: u64,
    /// Put busybox in the guest (a shell for debugging).
    #[arg(long)]
    busybox: bool,
}

fn default_suite() -> PathBuf {
    gasbench_engine::agent_build::source_root().join("scenarios")
}

pub fn run(g: &Globals, args: Args) -> miette::Result<ExitCode> {
    // Every scenario is checked before anything starts.
    let paths = if args.scenarios.is_empty() {
        vec![default_suite()]
    } else {
        args.scenarios.clone()
    };
    let files = super::scenario::expand(&paths);
    if files.is_empty() {
        return Err(miette!(
            "no scenario files in {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let scenarios = match super::scenario::load_all(&files) {
        Ok(s) => s,
        Err(bad) => {
            eprintln!("gasbench run: {bad} scenario file(s) have problems; nothing was started");
            return Ok(ExitCode::FAILURE);
        }
    };

    let runtime = super::setup::ready_runtime(g)?;

    // A given image is checked now; the patched kernel is built (or
    // found unchanged) as the run's first stage.
    args.kernel.prebuilt().map_err(|e| miette!("{e}"))?;
    let kernel = args.kernel.provider(&runtime, &g.cache);

    let runs = args
        .runs
        .clone()
        .unwrap_or_else(|| g.cache.root().join("runs"));
    let label = if args.scenarios.is_empty() {
        "run-default-suite".to_string()
    } else {
        format!(
            "run-{}",
            scenarios
                .iter()
                .map(|c| c.plan.scenario.as_str())
                .collect::<Vec<_>>()
                .join("-")
        )
    };
    let run_dir = RunDir::create(&runs, &label).into_diagnostic()?;
    eprintln!(
        "gasbench run: {} scenario(s); run directory {}",
        scenarios.len(),
        run_dir.path().display()
    );

    let opts = RunOptions {
        scenarios,
        kernel,
        settings: RunSettings {
            isolate: args.isolate,
            accel: match args.accel.as_str() {
                "kvm" => AccelPref::Kvm,
                "tcg" => AccelPref::Tcg,
                _ => AccelPref::Auto,
            },
            memory_mib: args.memory,
            cpus: args.cpus,
            ready_timeout: Duration::from_secs(args.ready_timeout),
            cache: g.cache.clone(),
            runtime,
            run_dir: run_dir.path().to_path_buf(),
            busybox: args.busybox,
        },
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .into_diagnostic()?;
    let summary = rt.block_on(run_async(opts, &run_dir, &label))?;

    let results = serde_json::to_string_pretty(&summary).into_diagnostic()?;
    std::fs::write(run_dir.results(), &results).into_diagnostic()?;
    std::fs::write(run_dir.junit(), gasbench_trace::junit::to_junit(&summary)).into_diagnostic()?;
    if args.json {
        println!("{results}");
    } else {
        print!("{}", gasbench_trace::table::summary_table(&summary));
        println!("run directory: {}", run_dir.path().display());
    }
    Ok(if summary.passed == Some(true) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn run_async(opts: RunOptions, run_dir: &RunDir, label: &str) -> miette::Result<RunSummary> {
    let (sink, rx) = gasbench_events::bus();
    let summary = Arc::new(Mutex::new(RunSummary::default()));
    let recorder = {
        let path = run_dir.events();
        let summary = summary.clone();
        tokio::spawn(async move {
            gasbench_trace::log::record(rx, &path, |ev| {
                print_progress(ev);
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
    let outcome = tokio::select! {
        o = pipeline::run(opts, sink.clone()) => Some(o),
        _ = tokio::signal::ctrl_c() => None,
    };
    // Ctrl-C dropped the pipeline: its guest, VM and device server are
    // torn down by their Drop (children are killed, sockets removed).
    let passed = match &outcome {
        Some(o) => o.passed(),
        None => {
            sink.emit(RunEvent::Error {
                text: "interrupted (Ctrl-C): the VM was stopped".into(),
            });
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
        Ok(Err(e)) => eprintln!("gasbench run: the event log is incomplete: {e}"),
        Err(e) => eprintln!("gasbench run: the event recorder failed: {e}"),
    }
    let s = summary.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(s)
}

/// The live progress on stderr: stages, scenario verdicts, failures,
/// errors and kernel trouble; not every event.
fn print_progress(ev: &Event) {
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
            RunEvent::Note { text } => eprintln!("[{t:7.2}] note       {text}"),
            RunEvent::Error { text } => eprintln!("[{t:7.2}] ERROR      {text}"),
            _ => {}
        },
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
