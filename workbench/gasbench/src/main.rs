//! `gasbench`: the command line. Only flags, dispatch and printing live
//! here; every subcommand calls into a library crate that does the work.

/// `eprintln!` for a line that may hold text from the guest or a mail:
/// control characters and escape sequences are shown, not obeyed
/// (`gasbench_termsafe::line`), and a line is cut at 4,000 characters.
/// A closed stderr (the terminal went away: SIGHUP) loses the line
/// instead of panicking in the middle of an orderly stop.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr().lock(),
            "{}",
            gasbench_termsafe::line_capped(&format!($($arg)*), 4000)
        );
    }};
}

/// `println!` likewise.
macro_rules! tell {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stdout().lock(),
            "{}",
            gasbench_termsafe::line_capped(&format!($($arg)*), 4000)
        );
    }};
}

mod cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gasbench_env::{CacheDir, RuntimePref};

/// A workbench for Linux kernel patch review: build the patched kernel,
/// boot it under QEMU with an emulated goldfish address space device, run
/// scenarios, and trace each ioctl next to the register accesses it caused.
#[derive(Parser)]
#[command(name = "gasbench", version, about)]
struct Cli {
    /// Cache directory for the toolroot, kernel trees and logs
    /// [env: GASBENCH_CACHE] [default: /var/cache/gasbench]
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,

    /// Where tools come from: auto, host or toolroot.
    #[arg(long, global = true, default_value = "auto", value_name = "RUNTIME")]
    runtime: RuntimePref,

    /// With no subcommand: the kernel the TUI boots (default: build the
    /// patched one).
    #[command(flatten)]
    kernel: cmd::kernel_choice::KernelArgs,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Check every requirement: versions, where each comes from, KVM or TCG.
    Doctor(cmd::doctor::Args),
    /// Provision what is missing (the Debian 13 toolroot on older hosts).
    Setup(cmd::setup::Args),
    /// Apply the posted series to the base tree and build the kernel.
    #[command(after_help = cmd::exit::HELP)]
    Kernel(cmd::kernel::Args),
    /// Boot the patched kernel and run scenarios headless.
    #[command(after_help = cmd::exit::HELP)]
    Run(cmd::run::Args),
    /// Check scenario files without starting a VM; show what one compiles to.
    Scenario(cmd::scenario::Args),
    /// Serve the emulated goldfish address space device over vfio-user.
    Device(cmd::device::Args),
    /// Reproduce a posted series for review: apply, build, boot, report.
    #[command(after_help = cmd::exit::HELP)]
    Repro(cmd::repro::Args),
    /// Browse a past run's directory in the TUI.
    Open(cmd::open::Args),
    /// b4's review check command: a message on stdin, a JSON array of
    /// {tool, status, summary, url, details} on stdout, from the review
    /// gasbench keeps of the series.
    #[command(name = "b4-check", after_help = cmd::exit::HELP)]
    B4Check(cmd::b4check::Args),
    /// Join the run directories of the shards of one run (--shard K/N)
    /// into one: results, JUnit, KTAP, KCIDB and review.
    #[command(after_help = cmd::exit::HELP)]
    Merge(cmd::merge::Args),
}

/// What every subcommand gets.
pub struct Globals {
    pub cache: CacheDir,
    pub runtime: RuntimePref,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let globals = Globals {
        cache: CacheDir::from_env(cli.cache_dir.as_deref()),
        runtime: cli.runtime,
    };
    let result = match cli.command {
        Some(Command::Doctor(args)) => cmd::doctor::run(&globals, args),
        Some(Command::Setup(args)) => cmd::setup::run(&globals, args),
        Some(Command::Kernel(args)) => cmd::kernel::run(&globals, args),
        Some(Command::Run(args)) => cmd::run::run(&globals, args),
        Some(Command::Scenario(args)) => cmd::scenario::run(&globals, args),
        Some(Command::Device(args)) => cmd::device::run(&globals, args),
        Some(Command::Repro(args)) => cmd::repro::run(&globals, args),
        Some(Command::Open(args)) => cmd::open::run(&globals, args),
        Some(Command::B4Check(args)) => cmd::b4check::run(&globals, args),
        Some(Command::Merge(args)) => cmd::merge::run(&globals, args),
        None => cmd::tui::run(&globals, cli.kernel),
    };
    match result {
        Ok(code) => code,
        // What reaches here stopped the command unexpectedly (a file
        // that cannot be written, a runtime that is not ready): the tool
        // or its environment failed. Bad input is reported, with its
        // own status, where it is found.
        Err(report) => {
            cmd::eprint_report(&report);
            cmd::exit::code(cmd::exit::TOOL_FAILED)
        }
    }
}
