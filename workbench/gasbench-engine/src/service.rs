//! An interactive session: the pipeline driven by requests (the TUI's
//! keys) instead of a fixed list. Requests return at once; the work
//! happens here, in order, and is visible only as events on the bus.

use std::time::Instant;

use gasbench_events::EventSink;
use gasbench_events::run::{Outcome, RunEvent, Stage};
use gasbench_scenario::Compiled;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::interrupt::Interrupt;
pub use crate::pipeline::KernelProvider;
use crate::pipeline::{KernelArtifacts, RunSettings, Runner, RunnerOptions, build_kernel};

/// Which scenarios to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Which {
    All,
    Named(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Run(Which),
    /// Rebuild the kernel (and reboot on the next run).
    Rebuild,
    StopVm,
    /// Stop everything; the service ends and drops its end of the bus.
    Quit,
}

/// Start the service. Dropping the sender also ends it (as Quit).
pub fn spawn(
    settings: RunSettings,
    suite: Vec<Compiled>,
    kernel: KernelProvider,
    sink: EventSink,
) -> (mpsc::UnboundedSender<Request>, JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(serve(settings, suite, kernel, sink, rx));
    (tx, task)
}

/// Build the kernel, still hearing requests: a quit (or the requests
/// ending) stops the kernel stage's tools (make cleans up after itself)
/// and is returned as `true` once the stage has ended; others are refused.
async fn build_or_quit(
    kernel: &KernelProvider,
    sink: &EventSink,
    rx: &mut mpsc::UnboundedReceiver<Request>,
) -> (Result<KernelArtifacts, String>, bool) {
    let build = build_kernel(kernel, sink);
    tokio::pin!(build);
    loop {
        tokio::select! {
            built = &mut build => return (built, false),
            req = rx.recv() => match req {
                Some(Request::Quit) | None => {
                    gasbench_env::process::stop_tools();
                    return (build.await, true);
                }
                Some(other) => {
                    sink.emit(RunEvent::Note {
                        text: format!("busy building the kernel; {other:?} ignored"),
                    });
                }
            },
        }
    }
}

async fn serve(
    settings: RunSettings,
    suite: Vec<Compiled>,
    kernel: KernelProvider,
    sink: EventSink,
    mut rx: mpsc::UnboundedReceiver<Request>,
) {
    let mut artifacts: Option<KernelArtifacts> = None;
    let mut runner: Option<Runner> = None;
    let started = Instant::now();
    // Every scenario run in the session passed (and at least one ran).
    let (mut ran, mut all_passed) = (0usize, true);
    while let Some(req) = rx.recv().await {
        match req {
            Request::Run(which) => {
                let chosen: Vec<&Compiled> = match &which {
                    Which::All => suite.iter().collect(),
                    Which::Named(n) => suite.iter().filter(|c| &c.plan.scenario == n).collect(),
                };
                if chosen.is_empty() {
                    sink.emit(RunEvent::Note {
                        text: format!("no scenario matches {which:?}"),
                    });
                    continue;
                }
                if artifacts.is_none() {
                    let (built, quit) = build_or_quit(&kernel, &sink, &mut rx).await;
                    if quit {
                        break;
                    }
                    match built {
                        Ok(k) => artifacts = Some(k),
                        Err(e) => {
                            sink.emit(RunEvent::Error { text: e });
                            continue;
                        }
                    }
                }
                if runner.is_none() {
                    let Some(k) = artifacts.clone() else { continue };
                    let opts = RunnerOptions {
                        kernel: k,
                        settings: settings.clone(),
                    };
                    match Runner::prepare(opts, sink.clone()).await {
                        Ok(r) => runner = Some(r),
                        Err(_) => continue, // already reported
                    }
                }
                let Some(r) = runner.as_mut() else { continue };
                let t = Instant::now();
                sink.emit(RunEvent::StageBegin {
                    stage: Stage::Run,
                    detail: format!("{} scenario(s)", chosen.len()),
                });
                let mut outcome = Outcome::Ok;
                let mut interrupted = None;
                'scenarios: for c in chosen {
                    // Stop and quit end the scenario with the verdicts it
                    // has (the guest is unfit afterwards) rather than
                    // dropping it.
                    if let Some(why) = r.skip_reason(c) {
                        sink.emit(RunEvent::ScenarioSkipped {
                            scenario: c.plan.scenario.clone(),
                            why,
                        });
                        continue;
                    }
                    let (interrupter, mut interrupt) = Interrupt::new();
                    let run = r.run_one_until(c, &mut interrupt);
                    tokio::pin!(run);
                    let res = loop {
                        tokio::select! {
                            res = &mut run => break res,
                            next = rx.recv(), if interrupted.is_none() => match next {
                                Some(Request::StopVm) | Some(Request::Quit) | None => {
                                    interrupter.interrupt(match next {
                                        Some(Request::StopVm) => "stopped from the TUI",
                                        _ => "interrupted (quit)",
                                    });
                                    interrupted = next.or(Some(Request::Quit));
                                }
                                Some(other) => {
                                    sink.emit(RunEvent::Note {
                                        text: format!("busy running scenarios; {other:?} ignored"),
                                    });
                                }
                            },
                        }
                    };
                    match res {
                        Ok(report) => {
                            ran += 1;
                            all_passed &= report.passed();
                        }
                        Err(_) => {
                            all_passed = false;
                            outcome = Outcome::Failed;
                            break 'scenarios;
                        }
                    }
                    if interrupted.is_some() {
                        all_passed = false;
                        outcome = Outcome::Failed;
                        break 'scenarios;
                    }
                }
                sink.emit(RunEvent::StageEnd {
                    stage: Stage::Run,
                    outcome,
                    detail: if interrupted.is_some() {
                        "interrupted".into()
                    } else {
                        String::new()
                    },
                    elapsed_ms: t.elapsed().as_millis() as u64,
                });
                match interrupted {
                    Some(Request::Quit) => {
                        r.stop().await;
                        break;
                    }
                    Some(_) => r.stop().await,
                    None => {}
                }
            }
            Request::Rebuild => {
                if let Some(r) = runner.as_mut() {
                    r.stop().await;
                }
                runner = None;
                artifacts = None;
                let (built, quit) = build_or_quit(&kernel, &sink, &mut rx).await;
                if quit {
                    break;
                }
                match built {
                    Ok(k) => {
                        sink.emit(RunEvent::Profile(k.profile.choice.clone()));
                        artifacts = Some(k);
                    }
                    Err(e) => {
                        sink.emit(RunEvent::Error { text: e });
                    }
                }
            }
            Request::StopVm => {
                if let Some(r) = runner.as_mut()
                    && r.has_guest()
                {
                    r.stop().await;
                }
            }
            Request::Quit => break,
        }
    }
    if let Some(r) = runner.as_mut()
        && r.has_guest()
    {
        r.stop().await;
    }
    // The session's end, as a headless run ends: a log browsed later
    // shows a finished session, not one cut off.
    sink.emit(RunEvent::Finished {
        passed: ran > 0 && all_passed,
        elapsed_ms: started.elapsed().as_millis() as u64,
    });
}
