//! `gasbench merge RUN_DIR…`: join the run directories of the shards of
//! one run (`--shard K/N` on several machines) into one: results.json,
//! junit.xml, results.ktap and kcidb.json from the merged `RunSummary`,
//! and, when the parts are shards of one `repro`, one review (review.json,
//! review.md, review.eml).

use std::path::PathBuf;
use std::process::ExitCode;

use gasbench_review::Review;
use gasbench_trace::kcidb::Checkout;
use gasbench_trace::{RunDir, RunSummary};
use miette::IntoDiagnostic;

use super::exit;
use crate::Globals;

#[derive(clap::Args)]
pub struct Args {
    /// The run directories to join (each with its results.json).
    #[arg(value_name = "RUN_DIR", required = true)]
    dirs: Vec<PathBuf>,
    /// Where the joined run directory goes [default: a new one under
    /// <cache>/runs].
    #[arg(long, value_name = "DIR")]
    runs: Option<PathBuf>,
    /// Also write the joined KCIDB submission here.
    #[arg(long, value_name = "FILE")]
    kcidb: Option<PathBuf>,
    /// Print the joined results.json on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(g: &Globals, args: Args) -> miette::Result<ExitCode> {
    let mut parts = Vec::new();
    let mut reviews = Vec::new();
    let mut checkout: Option<Checkout> = None;
    for d in &args.dirs {
        let results = d.join(gasbench_trace::run_dir::RESULTS);
        let summary = std::fs::read_to_string(&results)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str::<RunSummary>(&t).map_err(|e| e.to_string()));
        match summary {
            Ok(s) => parts.push(s),
            Err(e) => {
                eprintln!(
                    "gasbench merge: {} is not a finished run directory ({}: {e})",
                    d.display(),
                    results.display()
                );
                return Ok(exit::code(exit::BAD_INPUT));
            }
        }
        if checkout.is_none() {
            checkout = std::fs::read_to_string(d.join(super::headless::CHECKOUT))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok());
        }
        if let Some(r) = std::fs::read_to_string(d.join("review.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Review>(&t).ok())
        {
            reviews.push(r);
        }
    }
    let merged = RunSummary::merge(&parts);
    let runs = args
        .runs
        .clone()
        .unwrap_or_else(|| g.cache.root().join("runs"));
    let run_dir = RunDir::create(&runs, "merge").into_diagnostic()?;
    let (results, unwritten) = super::headless::write_results(
        &run_dir,
        &merged,
        &checkout.unwrap_or_default(),
        args.kcidb.as_deref(),
    );
    for e in &unwritten {
        eprintln!("gasbench merge: {e}");
    }
    let mut status = if unwritten.is_empty() {
        exit::for_run(&merged)
    } else {
        exit::TOOL_FAILED
    };
    // Shards of one repro: one review. Parts of different series are not
    // one review; each keeps its own.
    if !reviews.is_empty()
        && reviews.len() == parts.len()
        && reviews
            .iter()
            .all(|r| r.series.name == reviews[0].series.name)
        && let Some(review) = Review::merge(&reviews)
    {
        let md = gasbench_review::markdown::render(&review);
        let json = serde_json::to_string_pretty(&review).into_diagnostic()?;
        for (name, text) in [("review.md", &md), ("review.json", &json)] {
            gasbench_trace::atomic::write(&run_dir.path().join(name), text.as_bytes())
                .into_diagnostic()?;
        }
        say!(
            "gasbench merge: review of {}: {}",
            review.series.name,
            review.verdict_line()
        );
        status = exit::worst(status, review.exit_code);
    }
    if args.json {
        println!("{}", gasbench_termsafe::json(&results));
    } else {
        print!("{}", gasbench_trace::table::summary_table(&merged));
        println!(
            "merged {} run(s) into {}",
            parts.len(),
            run_dir.path().display()
        );
    }
    Ok(exit::code(status))
}
