//! `gasbench run [SCENARIO…]`: boot the patched kernel, run scenarios,
//! print a summary; exit 0 only if every expectation held.

use std::path::PathBuf;
use std::process::ExitCode;

use gasbench_engine::pipeline::{self, RunOptions};
use gasbench_trace::RunDir;
use miette::{IntoDiagnostic, miette};

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

pub(crate) fn default_suite() -> PathBuf {
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
    };
    let summary = super::headless::record(&run_dir, &label, false, |sink, interrupt| async move {
        pipeline::run_until(opts, sink, interrupt).await.passed()
    })?;

    let results = super::headless::write_results(&run_dir, &summary)?;
    super::headless::record_proofs(g, &run_dir, &summary);
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
