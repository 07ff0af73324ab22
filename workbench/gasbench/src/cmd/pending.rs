//! Subcommands whose work has not landed yet. They say so and exit 2,
//! rather than print anything that looks like a result.

use std::process::ExitCode;

/// Accepts anything, so that `gasbench run x.toml` reaches the message.
#[derive(clap::Args)]
pub struct Args {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    _rest: Vec<String>,
}

pub fn not_yet(what: &str, issue: u32) -> miette::Result<ExitCode> {
    eprintln!("gasbench: {what} is not available yet: it lands with issue #{issue}.");
    Ok(ExitCode::from(2))
}
