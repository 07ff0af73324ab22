//! `gasbench shell`: boot the patched kernel with busybox and the
//! goldfish device as a run does (kernel stage, run directory, events,
//! console.log), then give the terminal to a shell on the guest console
//! until it exits or Ctrl-] is pressed; leaving tears everything down.
//!
//! The guest's bytes reach the terminal as they are: this is the user's
//! own interactive session. The host's own lines go through the reporter
//! and are held back while the terminal is the guest's.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use gasbench_engine::pipeline::{self, Runner, RunnerOptions};
use gasbench_engine::shell::{ShellEnd, ShellIo};
use gasbench_trace::RunDir;
use miette::{IntoDiagnostic, miette};

use super::progress::reporter;
use crate::Globals;

/// The key that leaves the shell from the host side (as telnet's).
pub const DETACH: u8 = 0x1d;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    kernel: super::kernel_choice::KernelArgs,
    #[command(flatten)]
    vm: super::headless::VmArgs,
}

pub fn run(g: &Globals, args: Args) -> miette::Result<ExitCode> {
    args.vm.talk.apply();
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        return Err(miette!(
            help = "run it in a terminal; for a scripted guest, write a scenario and use `gasbench run`",
            "gasbench shell is interactive: it needs a terminal on stdin and stdout"
        ));
    }
    args.kernel.prebuilt().map_err(|e| miette!("{e}"))?;
    let runtime = super::setup::ready_runtime(g)?;
    let kernel = args.kernel.provider(g, &runtime)?;
    let run_dir = RunDir::create(&args.vm.runs_dir(g), "shell").into_diagnostic()?;
    say!("gasbench shell: run directory {}", run_dir.path().display());
    let mut settings = args.vm.settings(g, runtime, &run_dir);
    settings.busybox = true;
    let ended: Arc<Mutex<Option<Result<ShellEnd, String>>>> = Arc::new(Mutex::new(None));
    let recorded = super::headless::record(
        &run_dir,
        "shell",
        false,
        args.vm.guest_log_cap,
        |sink, mut interrupt| {
            let ended = ended.clone();
            async move {
                let outcome = session(kernel, settings, sink, &mut interrupt).await;
                let ok = outcome.is_ok();
                *ended.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
                ok
            }
        },
    )?;
    let outcome = ended.lock().unwrap_or_else(|p| p.into_inner()).take();
    let status = match outcome {
        Some(Ok(ShellEnd::Exited(n))) => {
            say!("gasbench shell: the shell exited with status {n}; the VM is down");
            super::exit::CLEAN
        }
        Some(Ok(ShellEnd::Detached)) => {
            say!("gasbench shell: left with Ctrl-]; the VM is down");
            super::exit::CLEAN
        }
        Some(Ok(ShellEnd::Interrupted(cause))) => {
            say!("gasbench shell: {cause}; the VM is down");
            super::exit::INTERRUPTED
        }
        Some(Err(e)) => {
            super::eprint_report(&miette!("{e}"));
            super::exit::TOOL_FAILED
        }
        None => super::exit::TOOL_FAILED,
    };
    say!("run directory: {}", run_dir.path().display());
    Ok(recorded.exit_code(status))
}

/// Build (or reuse) the kernel, boot, relay the terminal, tear down.
async fn session(
    kernel: pipeline::KernelProvider,
    settings: pipeline::RunSettings,
    sink: gasbench_events::EventSink,
    interrupt: &mut gasbench_engine::interrupt::Interrupt,
) -> Result<ShellEnd, String> {
    let kernel = pipeline::build_kernel_until(&kernel, &sink, interrupt.clone()).await?;
    let mut runner = Runner::prepare(RunnerOptions { kernel, settings }, sink.clone()).await?;
    let booted = tokio::select! {
        b = runner.boot() => b,
        cause = interrupt.wait() => Err(cause),
    };
    if let Err(e) = booted {
        runner.stop().await;
        return Err(e);
    }
    say!("gasbench shell: a shell on the guest console; `exit` or Ctrl-] leaves and stops the VM");
    let outcome = attached(&mut runner, interrupt).await;
    runner.stop().await;
    outcome
}

/// The terminal in raw mode for as long as the shell runs; the host's
/// prints held back meanwhile.
async fn attached(
    runner: &mut Runner,
    interrupt: &mut gasbench_engine::interrupt::Interrupt,
) -> Result<ShellEnd, String> {
    let (in_tx, input) = tokio::sync::mpsc::unbounded_channel();
    let (output, mut out_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let raw = gasbench_tui::term::RawMode::enable().map_err(|e| format!("raw mode: {e}"))?;
    reporter().mute(true);
    // Keys: a blocking reader on a thread of its own; Ctrl-] ends it.
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let keys = &buf[..n];
                    if let Some(i) = keys.iter().position(|b| *b == DETACH) {
                        let _ = in_tx.send(keys[..i].to_vec());
                        return;
                    }
                    if in_tx.send(keys.to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let writer = tokio::task::spawn_blocking(move || {
        let mut stdout = std::io::stdout();
        while let Some(b) = out_rx.blocking_recv() {
            if stdout.write_all(&b).and_then(|()| stdout.flush()).is_err() {
                return;
            }
        }
    });
    let end = runner.shell(ShellIo { input, output }, interrupt).await;
    let _ = writer.await;
    drop(raw);
    reporter().mute(false);
    // The guest may have left the cursor mid-line.
    println!();
    end
}
