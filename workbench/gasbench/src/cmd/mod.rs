//! One module per subcommand: its flags and the glue to its library.

pub mod abicheck;
pub mod b4check;
pub mod checkout;
pub mod config;
pub mod device;
pub mod doctor;
pub mod exit;
pub mod explore;
pub mod fetch;
pub mod headless;
pub mod kernel;
pub mod kernel_choice;
pub mod manual;
pub mod merge;
pub mod open;
pub mod progress;
pub mod repro;
pub mod run;
pub mod scenario;
pub mod setup;
pub mod shard;
pub mod shell;
pub mod signals;
pub mod tui;

/// Print a report on stderr the only way gasbench prints one: through
/// [`gasbench_termsafe::report::safe`], since what it quotes (a mail, a
/// console tail, a file name) may come from a stranger.
pub fn eprint_report(report: &miette::Report) {
    progress::reporter().end_build();
    eprintln!("{:?}", gasbench_termsafe::report::safe(report));
}
