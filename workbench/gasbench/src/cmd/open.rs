//! `gasbench open RUN_DIR`: browse a past run in the TUI.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use gasbench_trace::RunDir;
use miette::{IntoDiagnostic, WrapErr, miette};

use crate::Globals;

#[derive(clap::Args)]
pub struct Args {
    /// A run directory (the one `gasbench run` printed; it holds
    /// events.jsonl), or its events.jsonl.
    #[arg(value_name = "RUN_DIR")]
    run_dir: PathBuf,
}

pub fn run(_g: &Globals, args: Args) -> miette::Result<ExitCode> {
    // `gasbench open RUN_DIR/events.jsonl` means the run directory.
    let run_dir = gasbench_tui::replay::run_dir_for(&args.run_dir).map_err(|e| miette!("{e}"))?;
    let dir = RunDir::open(&run_dir).map_err(|e| miette!("{e}"))?;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        let help = format!(
            "run it in a terminal, or read {} with jq",
            dir.events().display()
        );
        return Err(miette!(
            help = help,
            "gasbench open is interactive: it needs a terminal on stdin and stdout"
        ));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .into_diagnostic()?;
    let end = rt
        .block_on(gasbench_tui::run_browse(dir.path()))
        .into_diagnostic()
        .wrap_err_with(|| format!("browsing {}", dir.path().display()))?;
    Ok(match end.signal {
        Some(n) => ExitCode::from(128 + n as u8),
        None => ExitCode::SUCCESS,
    })
}
