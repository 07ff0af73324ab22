//! `gasbench open [RUN_DIR]`: browse a run in the TUI (the latest when
//! none is named); `--follow` follows one still going.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use gasbench_trace::RunDir;
use miette::{IntoDiagnostic, WrapErr, miette};

use crate::Globals;

#[derive(clap::Args)]
pub struct Args {
    /// A run directory (the one `gasbench run` printed; it holds
    /// events.jsonl), or its events.jsonl [default: the latest run,
    /// <cache>/runs/latest].
    #[arg(value_name = "RUN_DIR")]
    run_dir: Option<PathBuf>,
    /// Follow a run still going (from another terminal), as `tail -f`
    /// does, until it ends.
    #[arg(long, short = 'f')]
    follow: bool,
}

pub fn run(g: &Globals, args: Args) -> miette::Result<ExitCode> {
    let named = match args.run_dir {
        Some(p) => p,
        None => {
            let runs = g.cache.root().join("runs");
            match RunDir::latest(&runs) {
                Ok(dir) => dir,
                Err(e) => {
                    super::eprint_report(&miette!(
                        help = "name a run directory: gasbench open RUN_DIR",
                        "no latest run: {e}"
                    ));
                    return Ok(super::exit::code(super::exit::BAD_INPUT));
                }
            }
        }
    };
    // `gasbench open RUN_DIR/events.jsonl` means the run directory.
    let run_dir = gasbench_tui::replay::run_dir_for(&named).map_err(|e| miette!("{e}"))?;
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
        .block_on(gasbench_tui::run_browse(
            dir.path(),
            args.follow,
            super::progress::reporter().tui_theme(),
        ))
        .into_diagnostic()
        .wrap_err_with(|| format!("browsing {}", dir.path().display()))?;
    Ok(match end.signal {
        Some(n) => ExitCode::from(128 + n as u8),
        None => ExitCode::SUCCESS,
    })
}
