//! `gasbench setup`: provision the runtime.

use std::process::ExitCode;
use std::time::Instant;

use gasbench_env::setup::{Progress, SetupOptions, setup};

use crate::Globals;

#[derive(clap::Args)]
pub struct Args {
    /// Debian mirror for the toolroot [default: the host's own apt mirror]
    #[arg(long, env = "GASBENCH_MIRROR", value_name = "URL")]
    mirror: Option<String>,
    #[command(flatten)]
    talk: super::progress::Talk,
}

/// Prints steps as they begin, and a step's status line at most every
/// couple of seconds, so a CI log shows progress without drowning
/// (through the one reporter).
struct Printer {
    step_started: Instant,
    last_status: Instant,
}

impl Progress for Printer {
    fn step(&mut self, text: &str) {
        self.step_started = Instant::now();
        super::progress::reporter().line(&format!("setup: {text}"));
    }
    fn status(&mut self, text: &str) {
        if self.last_status.elapsed().as_secs() >= 2 {
            self.last_status = Instant::now();
            super::progress::reporter().line(&format!(
                "setup:   [{:>4}s] {text}",
                self.step_started.elapsed().as_secs()
            ));
        }
    }
}

pub fn run(g: &Globals, args: Args) -> miette::Result<ExitCode> {
    args.talk.apply();
    provision(g, args.mirror)?;
    Ok(ExitCode::SUCCESS)
}

/// The runtime for a command that needs one: provisioned first when it is
/// not ready (so `gasbench run` works on a fresh machine in one command).
pub fn ready_runtime(g: &Globals) -> miette::Result<gasbench_env::Runtime> {
    let (runtime, _) = gasbench_env::resolve_runtime(&g.cache, g.runtime);
    if let gasbench_env::Runtime::Toolroot(root) = &runtime {
        let state = root.state();
        if !state.is_ready() {
            super::progress::reporter().line(&format!(
                "gasbench: the toolroot at {} is {}; provisioning it first",
                root.path().display(),
                state.describe()
            ));
            provision(g, None)?;
        }
    }
    Ok(runtime)
}

fn provision(g: &Globals, mirror: Option<String>) -> miette::Result<()> {
    let opts = SetupOptions {
        cache: g.cache.clone(),
        runtime: g.runtime,
        mirror: mirror.or_else(|| std::env::var("GASBENCH_MIRROR").ok()),
    };
    let mut printer = Printer {
        step_started: Instant::now(),
        last_status: Instant::now(),
    };
    let report = setup(&opts, &mut printer).map_err(|e| miette::miette!("{e}"))?;
    super::progress::reporter().line(&format!(
        "setup: runtime {} ({}); {}; {:.1} s; log {}",
        report.runtime.name(),
        report.reason,
        if report.actions.is_empty() {
            "everything was in place, nothing changed".to_string()
        } else {
            format!("did: {}", report.actions.join("; "))
        },
        report.elapsed_ms as f64 / 1000.0,
        report.log.display()
    ));
    Ok(())
}
