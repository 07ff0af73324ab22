//! `gasbench`: the command line. Only flags, dispatch and printing live
//! here; every subcommand calls into a library crate that does the work.

/// `eprintln!` for a line that may hold text from the guest or a mail:
/// control characters and escape sequences are shown, not obeyed
/// (`gasbench_termsafe::line`), and a line is cut at 4,000 characters.
/// It goes through the one progress reporter, above its bar; a closed
/// stderr (the terminal went away: SIGHUP) loses the line instead of
/// panicking in the middle of an orderly stop.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cmd::progress::reporter().emit(&format!($($arg)*))
    };
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
#[command(name = "gasbench", version, about, after_help = cmd::exit::HELP)]
struct Cli {
    /// Cache directory for the toolroot, kernel trees and logs
    /// [env: GASBENCH_CACHE] [config: cache_dir] [default: /var/cache/gasbench]
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,

    /// Where tools come from: auto, host or toolroot
    /// [env: GASBENCH_RUNTIME] [config: runtime] [default: auto]
    #[arg(long, global = true, value_name = "RUNTIME",
          value_parser = clap::builder::PossibleValuesParser::new(gasbench_config::RUNTIMES))]
    runtime: Option<String>,

    /// gasbench's data (scenarios, kernel/, the agent's sources) from this
    /// directory, a gasbench checkout [env: GASBENCH_DATA] [config:
    /// data_dir] [default: the checkout of a development build, else the
    /// copy embedded in the binary]
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Colour: auto (on a terminal, unless NO_COLOR is set), always or never.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "auto",
        value_name = "WHEN"
    )]
    color: cmd::progress::ColorChoice,

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
    /// Print the effective settings and where each came from (flags,
    /// environment, ~/.config/gasbench/config.toml, /etc/gasbench/config.toml).
    Config(cmd::config::Args),
    /// Provision what is missing (the Debian 13 toolroot on older hosts).
    Setup(cmd::setup::Args),
    /// Apply the posted series to the base tree and build the kernel.
    #[command(after_help = cmd::exit::HELP)]
    Kernel(cmd::kernel::Args),
    /// Boot the patched kernel and run scenarios headless.
    #[command(after_help = cmd::exit::HELP)]
    Run(cmd::run::Args),
    /// Boot the patched kernel with busybox and the goldfish device, as a
    /// run does, and attach this terminal to a shell on the guest console;
    /// `exit` or Ctrl-] leaves and tears everything down.
    Shell(cmd::shell::Args),
    /// Check scenario files without starting a VM; show what one compiles to.
    Scenario(cmd::scenario::Args),
    /// Serve the emulated goldfish address space device over vfio-user.
    Device(cmd::device::Args),
    /// The series-level ABI checks repro runs, on a tree with the series
    /// applied: syscall tables and numbers, ioctl directions, uapi
    /// layouts, the ioctl number registry.
    AbiCheck(cmd::abicheck::Args),
    /// Search for what nobody wrote a scenario for: random call sequences
    /// checked against reference models, divergences shrunk to scenarios.
    #[command(after_help = cmd::exit::HELP)]
    Explore(cmd::explore::Args),
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
    /// Print a shell completion script (bash, zsh, fish, elvish,
    /// powershell) to standard output.
    Completions(cmd::manual::CompletionsArgs),
    /// Print the man page (gasbench.1) to standard output, or write a page
    /// per subcommand into a directory.
    Man(cmd::manual::ManArgs),
    /// Join the run directories of the shards of one run (--shard K/N)
    /// into one: results, JUnit, KTAP, KCIDB and review.
    #[command(after_help = cmd::exit::HELP)]
    Merge(cmd::merge::Args),
}

/// What every subcommand gets.
pub struct Globals {
    pub cache: CacheDir,
    pub runtime: RuntimePref,
    /// The effective settings and where each came from.
    pub config: gasbench_config::Config,
    /// gasbench's data, found on first use (unpacking the embedded copy
    /// writes to the cache).
    data: std::sync::OnceLock<Result<gasbench_data::DataRoot, String>>,
}

impl Globals {
    pub fn new(config: gasbench_config::Config) -> Globals {
        Globals {
            cache: CacheDir::resolve(Some(&config.cache_dir.value), None),
            runtime: config.runtime.value.parse().unwrap_or(RuntimePref::Auto),
            config,
            data: std::sync::OnceLock::new(),
        }
    }

    /// gasbench's data (scenarios, kernel/, the agent's sources), found
    /// the one way every command finds it (`gasbench_data::DataRoot::locate`).
    pub fn data(&self) -> miette::Result<&gasbench_data::DataRoot> {
        self.data
            .get_or_init(|| {
                let named = self
                    .config
                    .data_dir
                    .value
                    .as_ref()
                    .map(|p| (p.as_path(), self.config.data_dir.source.to_string()));
                let mut caches = vec![self.cache.root().to_path_buf()];
                if let Some(user) = user_cache_dir() {
                    caches.push(user);
                }
                gasbench_data::DataRoot::locate(
                    named.as_ref().map(|(p, s)| (*p, s.as_str())),
                    &caches,
                )
                .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| miette::miette!("{e}"))
    }

    /// The `kernel/` directory of [`Globals::data`], opened.
    pub fn kernel_dir(&self) -> miette::Result<gasbench_kbuild::layout::KernelDir> {
        gasbench_kbuild::layout::KernelDir::open(&self.data()?.kernel_dir())
            .map_err(cmd::kernel::diagnostic)
    }
}

/// `$XDG_CACHE_HOME/gasbench` or `~/.cache/gasbench`: where the embedded
/// data is unpacked when the gasbench cache cannot be written (a user
/// checking scenarios without root).
fn user_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("gasbench"))
}

/// Global options each command uses: (--runtime, --data-dir). One it
/// does not use is refused, not dropped: `gasbench --runtime host
/// scenario check` would otherwise look as if it had meant something.
/// `--cache-dir` is taken by every command (it says where gasbench keeps
/// its state; one that keeps none has nothing to misread).
fn uses(command: &Command) -> (bool, bool) {
    match command {
        Command::Doctor(_) | Command::Config(_) | Command::Kernel(_) => (true, true),
        Command::Run(_) | Command::Repro(_) | Command::Shell(_) | Command::Explore(_) => {
            (true, true)
        }
        Command::AbiCheck(_) => (false, true),
        Command::Setup(_) => (true, false),
        Command::Scenario(_) => (false, true),
        Command::Open(_)
        | Command::B4Check(_)
        | Command::Merge(_)
        | Command::Device(_)
        | Command::Completions(_)
        | Command::Man(_) => (false, false),
    }
}

/// A global option given to a command that ignores it is an error, and so
/// is the TUI's `--kernel`/`--profile` before a subcommand: the root
/// takes those options for the TUI (no subcommand), and a subcommand has
/// its own, so `gasbench --kernel X run` used to build the patched kernel
/// without a word.
fn refuse_ignored(cli: &Cli) -> Result<(), miette::Report> {
    let Some(command) = &cli.command else {
        return Ok(());
    };
    let name = command_name(command);
    let k = &cli.kernel;
    let misplaced = [
        ("--kernel", k.kernel.is_some()),
        ("--mkdirat2", k.mkdirat2.is_some()),
        ("--selftest", !k.selftests.is_empty()),
        ("--profile", k.profile.is_some()),
    ];
    if let Some((flag, _)) = misplaced.iter().find(|(_, given)| *given) {
        return Err(miette::miette!(
            help = format!(
                "put it after the subcommand (`gasbench {name} {flag} …`) if `{name}` takes it"
            ),
            "{flag} before a subcommand is the TUI's option (gasbench with no subcommand); `gasbench {name}` would ignore it"
        ));
    }
    let (runtime, data) = uses(command);
    let given = [
        ("--runtime", cli.runtime.is_some(), runtime),
        ("--data-dir", cli.data_dir.is_some(), data),
    ];
    if let Some((flag, _, _)) = given.iter().find(|(_, given, used)| *given && !*used) {
        return Err(miette::miette!(
            "`gasbench {name}` does not use {flag}; leave it out"
        ));
    }
    Ok(())
}

fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Doctor(_) => "doctor",
        Command::Config(_) => "config",
        Command::Setup(_) => "setup",
        Command::Kernel(_) => "kernel",
        Command::Run(_) => "run",
        Command::Scenario(_) => "scenario",
        Command::Shell(_) => "shell",
        Command::Device(_) => "device",
        Command::Repro(_) => "repro",
        Command::Explore(_) => "explore",
        Command::AbiCheck(_) => "abi-check",
        Command::Open(_) => "open",
        Command::B4Check(_) => "b4-check",
        Command::Merge(_) => "merge",
        Command::Completions(_) => "completions",
        Command::Man(_) => "man",
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let color = cmd::progress::init(cli.color).color();
    let _ = miette::set_hook(Box::new(move |_| {
        Box::new(miette::MietteHandlerOpts::new().color(color).build())
    }));
    let flags = gasbench_config::GlobalFlags {
        cache_dir: cli.cache_dir.clone(),
        runtime: cli.runtime.clone(),
        data_dir: cli.data_dir.clone(),
    };
    let config = match gasbench_config::load(&flags) {
        Ok(c) => c,
        Err(e) => {
            cmd::eprint_report(&miette::miette!("{e}"));
            return cmd::exit::code(cmd::exit::BAD_INPUT);
        }
    };
    if let Err(e) = refuse_ignored(&cli) {
        cmd::eprint_report(&e);
        return cmd::exit::code(cmd::exit::BAD_INPUT);
    }
    let globals = Globals::new(config);
    let result = match cli.command {
        Some(Command::Doctor(args)) => cmd::doctor::run(&globals, args),
        Some(Command::Config(args)) => cmd::config::run(&globals, args),
        Some(Command::Setup(args)) => cmd::setup::run(&globals, args),
        Some(Command::Kernel(args)) => cmd::kernel::run(&globals, args),
        Some(Command::Run(args)) => cmd::run::run(&globals, args),
        Some(Command::Scenario(args)) => cmd::scenario::run(&globals, args),
        Some(Command::Shell(args)) => cmd::shell::run(&globals, args),
        Some(Command::Device(args)) => cmd::device::run(&globals, args),
        Some(Command::Repro(args)) => cmd::repro::run(&globals, args),
        Some(Command::Explore(args)) => cmd::explore::run(&globals, args),
        Some(Command::AbiCheck(args)) => cmd::abicheck::run(&globals, args),
        Some(Command::Open(args)) => cmd::open::run(&globals, args),
        Some(Command::B4Check(args)) => cmd::b4check::run(&globals, args),
        Some(Command::Merge(args)) => cmd::merge::run(&globals, args),
        Some(Command::Completions(args)) => cmd::manual::completions::<Cli>(args),
        Some(Command::Man(args)) => cmd::manual::man::<Cli>(args),
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
