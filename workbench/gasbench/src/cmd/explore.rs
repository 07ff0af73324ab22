//! `gasbench explore`: boot the patched kernel and let the explorer
//! (gasbench-explore) search what nobody wrote a scenario for: random,
//! well-typed call sequences against the goldfish driver's ioctls and
//! mkdirat2 on every filesystem of the matrix, checked against reference
//! models, in batches on the guest. Divergences are shrunk and written as
//! scenario files under `reproducers/` in the run directory, with
//! explore.md and explore.json. Exit 0: no defect; 1: a defect was found.

use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gasbench_engine::explore_run::ExplorePlan;
use gasbench_engine::pipeline::{self, RunOptions};
use gasbench_explore::{Budget, ExploreReport, Kind};
use gasbench_trace::RunDir;
use miette::{IntoDiagnostic, miette};

use super::exit;
use crate::Globals;

#[derive(clap::Args)]
pub struct Args {
    /// The seed of the random sequences; the same seed on the same kernel
    /// runs the same sequences [default: from the clock, printed].
    #[arg(long)]
    seed: Option<u64>,
    /// What to explore: `goldfish`, `mkdirat2`; repeatable [default: both].
    #[arg(long, value_name = "DOMAIN", value_parser = ["goldfish", "mkdirat2"])]
    domain: Vec<String>,
    /// The filesystems mkdirat2 runs on (the matrix's rows); repeatable
    /// [default: all of them].
    #[arg(long = "fs", value_name = "NAME")]
    filesystems: Vec<String>,
    /// Calls the goldfish explorer may make, generation, shrinking and
    /// confirmation together.
    #[arg(long, default_value_t = 2000, value_name = "N")]
    calls: usize,
    /// Calls mkdirat2's explorer may make on each filesystem.
    #[arg(long, default_value_t = 400, value_name = "N")]
    fs_calls: usize,
    /// Stop every explorer after this many seconds (what was found is
    /// reported as far as it was shrunk).
    #[arg(long, value_name = "SECS")]
    time: Option<u64>,
    #[command(flatten)]
    kernel: super::kernel_choice::KernelArgs,
    #[command(flatten)]
    vm: super::headless::VmArgs,
    /// Print explore.json on stdout instead of explore.md.
    #[arg(long)]
    json: bool,
}

/// The explorer's plan from the flags.
fn plan(args: &Args, seed: u64) -> Result<ExplorePlan, String> {
    let all = ExplorePlan::all_filesystems();
    for f in &args.filesystems {
        if !all.contains(f) {
            return Err(format!(
                "no filesystem {f:?} in the matrix; it has {}",
                all.join(", ")
            ));
        }
    }
    let wants = |d: &str| args.domain.is_empty() || args.domain.iter().any(|x| x == d);
    Ok(ExplorePlan {
        seed,
        goldfish: wants("goldfish").then(|| Budget {
            calls: args.calls,
            ..Budget::default()
        }),
        mkdirat2: if !wants("mkdirat2") {
            Vec::new()
        } else if args.filesystems.is_empty() {
            all
        } else {
            args.filesystems.clone()
        },
        mkdirat2_budget: Budget {
            calls: args.fs_calls,
            ..Budget::default()
        },
        time: args.time.map(Duration::from_secs),
    })
}

/// A seed from the clock, for a run that did not ask for one.
pub fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs() ^ u64::from(d.subsec_nanos()))
}

pub fn run(g: &Globals, args: Args) -> miette::Result<ExitCode> {
    let seed = args.seed.unwrap_or_else(clock_seed);
    let plan = match plan(&args, seed) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{:?}", miette!("{e}"));
            return Ok(exit::code(exit::BAD_INPUT));
        }
    };
    let runtime = super::setup::ready_runtime(g)?;
    args.kernel.prebuilt().map_err(|e| miette!("{e}"))?;
    let kernel = args.kernel.provider(g, &runtime)?;
    let runs = args.vm.runs_dir(g);
    let label = "explore".to_string();
    let run_dir = RunDir::create(&runs, &label).into_diagnostic()?;
    eprintln!(
        "gasbench explore: seed {seed} (--seed {seed} repeats it); run directory {}",
        run_dir.path().display()
    );
    let opts = RunOptions {
        scenarios: Vec::new(),
        kernel,
        settings: args.vm.settings(g, runtime, &run_dir),
        explore: Some(plan),
    };
    let explored: Arc<Mutex<Vec<ExploreReport>>> = Arc::default();
    let slot = explored.clone();
    let cap = args.vm.guest_log_cap;
    let recorded =
        super::headless::record(&run_dir, &label, false, cap, |sink, interrupt| async move {
            let out = pipeline::run_until(opts, sink, interrupt).await;
            let ok = out.error.is_none();
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = out.explored;
            ok
        })?;
    let reports = std::mem::take(&mut *explored.lock().unwrap_or_else(|p| p.into_inner()));
    let mut unwritten = write_outputs(run_dir.path(), &reports);
    unwritten.extend(recorded.log_error.clone());
    if args.json {
        let json = serde_json::to_string_pretty(&reports).unwrap_or_default();
        println!("{}", gasbench_termsafe::json(&json));
    } else {
        // What the guest did reaches the report as numbers and errno
        // names; printed through termsafe all the same.
        print!(
            "{}",
            gasbench_termsafe::text(&markdown(run_dir.path(), &reports))
        );
        println!("run directory: {}", run_dir.path().display());
    }
    for e in &unwritten {
        eprintln!("gasbench explore: {e}");
    }
    for e in &recorded.summary.errors {
        eprintln!("gasbench explore: {}", gasbench_termsafe::line(e));
    }
    let defects = reports
        .iter()
        .flat_map(|r| &r.findings)
        .any(|f| f.kind == Kind::Defect);
    let status = if !unwritten.is_empty() {
        exit::TOOL_FAILED
    } else if recorded
        .summary
        .errors
        .iter()
        .any(|e| pipeline::is_interrupted_error(e))
    {
        exit::INTERRUPTED
    } else if defects {
        exit::FINDINGS
    } else if !recorded.summary.errors.is_empty() || reports.is_empty() {
        exit::TOOL_FAILED
    } else {
        exit::CLEAN
    };
    Ok(recorded.exit_code(status))
}

/// Where the reproducers go in a run directory.
pub const REPRODUCERS: &str = "reproducers";

/// explore.md as shown and written: the report, reproducers named by
/// their place in the run directory.
pub fn markdown(run_dir: &Path, reports: &[ExploreReport]) -> String {
    gasbench_explore::report::markdown(reports, &run_dir.join(REPRODUCERS).display().to_string())
}

/// Write explore.md, explore.json and every finding's reproducer in the
/// run directory; returns what could not be written.
pub fn write_outputs(run_dir: &Path, reports: &[ExploreReport]) -> Vec<String> {
    let mut unwritten = Vec::new();
    let dir = run_dir.join(REPRODUCERS);
    let findings: Vec<_> = reports.iter().flat_map(|r| &r.findings).collect();
    if !findings.is_empty()
        && let Err(e) = std::fs::create_dir_all(&dir)
    {
        unwritten.push(format!("creating {}: {e}", dir.display()));
    }
    for f in findings {
        if let Err(e) = gasbench_trace::atomic::write(&dir.join(&f.file), f.reproducer.as_bytes()) {
            unwritten.push(e.to_string());
        }
    }
    let json = serde_json::to_string_pretty(reports).unwrap_or_default();
    for (name, text) in [
        ("explore.md", markdown(run_dir, reports)),
        ("explore.json", json),
    ] {
        if let Err(e) = gasbench_trace::atomic::write(&run_dir.join(name), text.as_bytes()) {
            unwritten.push(e.to_string());
        }
    }
    unwritten
}

/// The explorer's flags in `repro`, where it runs by default, bounded.
#[derive(clap::Args)]
pub struct ReproExploreArgs {
    /// Do not run the explorer after the scenarios.
    #[arg(long)]
    no_explore: bool,
    /// The explorer's seed in repro (fixed, so a repro is repeatable).
    #[arg(long, default_value_t = REPRO_SEED, value_name = "N")]
    explore_seed: u64,
    /// Calls the goldfish explorer may make in repro.
    #[arg(long, default_value_t = REPRO_GOLDFISH_CALLS, value_name = "N")]
    explore_calls: usize,
    /// Calls mkdirat2's explorer may make per filesystem in repro.
    #[arg(long, default_value_t = REPRO_FS_CALLS, value_name = "N")]
    explore_fs_calls: usize,
    /// The most time the explorer may take in repro, all domains together.
    #[arg(long, default_value_t = REPRO_TIME_SECS, value_name = "SECS")]
    explore_time: u64,
}

/// repro's bounds. The call budgets are first guesses, not yet measured on
/// the guest under TCG; the time budget is the ceiling whatever they say
/// (checked between batches, so one batch may run past it).
pub const REPRO_SEED: u64 = 1;
pub const REPRO_GOLDFISH_CALLS: usize = 600;
pub const REPRO_FS_CALLS: usize = 120;
pub const REPRO_TIME_SECS: u64 = 600;

impl ReproExploreArgs {
    /// The plan for a series that adds the goldfish driver and/or mkdirat2;
    /// None when the explorer is off or has nothing to drive.
    pub fn plan(&self, goldfish: bool, mkdirat2: bool) -> Option<ExplorePlan> {
        if self.no_explore || !(goldfish || mkdirat2) {
            return None;
        }
        Some(ExplorePlan {
            seed: self.explore_seed,
            goldfish: goldfish.then(|| Budget {
                calls: self.explore_calls,
                ..Budget::default()
            }),
            mkdirat2: if mkdirat2 {
                ExplorePlan::all_filesystems()
            } else {
                Vec::new()
            },
            mkdirat2_budget: Budget {
                calls: self.explore_fs_calls,
                ..Budget::default()
            },
            time: Some(Duration::from_secs(self.explore_time)),
        })
    }
}
