//! `gasbench completions SHELL` and `gasbench man`: generated from the
//! clap definitions, so they cannot drift from the flags.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::CommandFactory;
use miette::IntoDiagnostic;

#[derive(clap::Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(clap::Args)]
pub struct ManArgs {
    /// Write gasbench.1 and a page per subcommand (gasbench-run.1, …)
    /// into this directory instead of printing gasbench.1.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub fn completions<C: CommandFactory>(args: CompletionsArgs) -> miette::Result<ExitCode> {
    let mut cmd = C::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "gasbench", &mut out);
    print(&out)
}

/// Standard output, where a reader that went away (`| head`) is not an
/// error.
fn print(bytes: &[u8]) -> miette::Result<ExitCode> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).into_diagnostic(),
        _ => Ok(ExitCode::SUCCESS),
    }
}

pub fn man<C: CommandFactory>(args: ManArgs) -> miette::Result<ExitCode> {
    let cmd = C::command();
    match args.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).into_diagnostic()?;
            clap_mangen::generate_to(cmd, &dir).into_diagnostic()?;
            say!("man pages written to {}", dir.display());
        }
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .into_diagnostic()?;
            return print(&out);
        }
    }
    Ok(ExitCode::SUCCESS)
}
