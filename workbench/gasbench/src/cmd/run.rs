//! `gasbench run [SCENARIO…]`: boot the patched kernel, run scenarios,
//! print a summary; exit 0 only if every expectation held.

use std::path::PathBuf;
use std::process::ExitCode;

use gasbench_engine::pipeline::{self, RunOptions};
use gasbench_trace::RunDir;
use miette::{IntoDiagnostic, miette};

use super::exit;
use crate::Globals;

#[derive(clap::Args)]
pub struct Args {
    /// Scenario files or directories [default: the default suite, scenarios/]
    #[arg(value_name = "SCENARIO")]
    scenarios: Vec<PathBuf>,
    #[command(flatten)]
    kernel: super::kernel_choice::KernelArgs,
    #[command(flatten)]
    vm: super::headless::VmArgs,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// The default suite: `scenarios/` of gasbench's data.
pub(crate) fn default_suite(g: &Globals) -> miette::Result<PathBuf> {
    Ok(g.data()?.scenarios())
}

pub fn run(g: &Globals, args: Args) -> miette::Result<ExitCode> {
    args.vm.talk.apply();
    // Every scenario is checked before anything starts.
    let paths = if args.scenarios.is_empty() {
        vec![default_suite(g)?]
    } else {
        args.scenarios.clone()
    };
    let files = super::scenario::expand(&paths);
    if files.is_empty() {
        eprintln!(
            "{:?}",
            miette!(
                "no scenario files in {}",
                paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        );
        return Ok(exit::code(exit::BAD_INPUT));
    }
    let scenarios = match super::scenario::load_all(&files) {
        Ok(s) => s,
        Err(bad) => {
            eprintln!("gasbench run: {bad} scenario file(s) have problems; nothing was started");
            return Ok(exit::code(exit::BAD_INPUT));
        }
    };

    let scenarios = args.vm.shard_of(scenarios);
    let runtime = super::setup::ready_runtime(g)?;

    // A given image is checked now; the patched kernel is built (or
    // found unchanged) as the run's first stage.
    // A bad image is the user's input, like a bad scenario: exit 2.
    if let Err(e) = args.kernel.prebuilt() {
        super::eprint_report(&miette!("{e}"));
        return Ok(exit::code(exit::BAD_INPUT));
    }
    let kernel = args.kernel.provider(g, &runtime)?;

    let runs = args.vm.runs_dir(g);
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
        settings: args.vm.settings(g, runtime, &run_dir),
        explore: None,
    };
    let cap = args.vm.guest_log_cap;
    let recorded =
        super::headless::record(&run_dir, &label, false, cap, |sink, interrupt| async move {
            pipeline::run_until(opts, sink, interrupt).await.passed()
        })?;
    let summary = &recorded.summary;

    // What was checked out: the base and every series gasbench knows
    // (the kernel stage's default), unless a prebuilt --kernel was given.
    let checkout = g
        .kernel_dir()
        .map(|k| super::checkout::of_all(&k))
        .unwrap_or_default();
    // The summary is printed whatever could be written: on a full disk it
    // is the only whole record of the verdicts.
    let (results, unwritten) =
        super::headless::write_results(&run_dir, summary, &checkout, args.vm.kcidb.as_deref());
    super::headless::record_proofs(g, &run_dir, summary);
    if args.json {
        println!("{}", gasbench_termsafe::json(&results));
    } else {
        print!("{}", gasbench_trace::table::summary_table(summary));
        println!("run directory: {}", run_dir.path().display());
    }
    for e in &unwritten {
        eprintln!("gasbench run: {e}");
    }
    // A record that could not be written is the environment failing: the
    // verdicts on stdout are all there is.
    let status = if unwritten.is_empty() && recorded.log_error.is_none() {
        exit::for_run(summary)
    } else {
        exit::TOOL_FAILED
    };
    Ok(recorded.exit_code(status))
}
