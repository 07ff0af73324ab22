//! Running the explorer (gasbench-explore) on the guest: each batch it
//! hands out is compiled as an ordinary scenario and run by the
//! [`Runner`], with its observations kept ([`Compiled::record`]), and what
//! the run showed goes back to the explorer to be checked against its
//! model. Batches are scenarios like any other on the bus (the TUI, the
//! summary and events.jsonl see them as such); a guest a batch left unfit
//! is rebooted by the runner, as for any scenario.

use std::time::{Duration, Instant};

use gasbench_events::EventSink;
use gasbench_events::run::RunEvent;
use gasbench_explore::goldfish::Goldfish;
use gasbench_explore::mkdirat2::{Mkdirat2, Place};
use gasbench_explore::{Budget, Domain, ExploreReport, Explorer, Observed, Recorded};
use gasbench_scenario::Report;

use crate::interrupt::Interrupt;
use crate::pipeline::Runner;

/// What to explore, and how much.
#[derive(Clone, Debug)]
pub struct ExplorePlan {
    pub seed: u64,
    /// The goldfish driver's ioctls.
    pub goldfish: Option<Budget>,
    /// mkdirat2 on each of these filesystems (`Place::all()` names).
    pub mkdirat2: Vec<String>,
    /// The budget of each filesystem's mkdirat2 explorer.
    pub mkdirat2_budget: Budget,
    /// All domains together stop once this much time has gone (what was
    /// found by then is shrunk no further, and reported).
    pub time: Option<Duration>,
}

impl ExplorePlan {
    /// Every filesystem of the mkdirat2 matrix.
    pub fn all_filesystems() -> Vec<String> {
        Place::all().into_iter().map(|p| p.name).collect()
    }
}

/// Run every domain of `plan` on `runner`'s guest, one after the other.
/// Domains the kernel cannot serve (no mkdirat2 number) are skipped with a
/// note. Returns a report per domain that ran, each as far as it got.
pub async fn explore(
    runner: &mut Runner,
    plan: &ExplorePlan,
    sink: &EventSink,
    interrupt: &mut Interrupt,
) -> Vec<ExploreReport> {
    let started = Instant::now();
    let deadline = plan.time.map(|t| started + t);
    let mut reports = Vec::new();
    if let Some(budget) = &plan.goldfish {
        let mut ex = Explorer::new(Goldfish::default(), plan.seed, budget.clone());
        drive(runner, &mut ex, sink, interrupt, deadline, plan.time).await;
        reports.push(ex.report());
    }
    if !plan.mkdirat2.is_empty() && runner.kernel().mkdirat2.is_none() {
        sink.emit(RunEvent::Note {
            text: "explore: mkdirat2 skipped: the kernel has no mkdirat2 syscall number".into(),
        });
    } else {
        for name in &plan.mkdirat2 {
            let Some(place) = Place::by_name(name) else {
                sink.emit(RunEvent::Note {
                    text: format!("explore: no filesystem called {name:?} in the matrix"),
                });
                continue;
            };
            let mut ex = Explorer::new(
                Mkdirat2::new(place),
                plan.seed,
                plan.mkdirat2_budget.clone(),
            );
            drive(runner, &mut ex, sink, interrupt, deadline, plan.time).await;
            reports.push(ex.report());
        }
    }
    reports
}

/// One explorer to its end (budget, time, interrupt or a run that cannot
/// go on).
async fn drive<D: Domain>(
    runner: &mut Runner,
    ex: &mut Explorer<D>,
    sink: &EventSink,
    interrupt: &mut Interrupt,
    deadline: Option<Instant>,
    time: Option<Duration>,
) {
    let domain = ex.domain().name();
    loop {
        if let Some(cause) = interrupt.cause() {
            ex.stop(&format!("the run was stopped: {cause}"));
        } else if deadline.is_some_and(|d| Instant::now() >= d) {
            ex.stop(&format!(
                "the time budget ({} s) ran out",
                time.unwrap_or_default().as_secs()
            ));
        }
        let Some(batch) = ex.next_batch() else {
            break;
        };
        sink.emit(RunEvent::Note {
            text: format!("explore {domain}: {}", batch.purpose),
        });
        let mut c = match gasbench_scenario::compile(&batch.name, &batch.toml) {
            Ok(c) => c,
            Err(problems) => {
                // The explorer writes only what the language takes: this
                // is gasbench's bug, said as such, and the explorer stops.
                let first = problems
                    .problems
                    .first()
                    .map(|p| p.message.clone())
                    .unwrap_or_default();
                let why = format!("gasbench wrote a batch that does not compile ({first})");
                sink.emit(RunEvent::Error {
                    text: format!("explore {domain}: {why}"),
                });
                ex.stop(&why);
                continue;
            }
        };
        c.record = true;
        let (report, stopped) = match runner.run_one_until(&c, interrupt).await {
            Ok(r) => (Some(r), None),
            Err(s) => (s.report, Some(s.error)),
        };
        let obs = observed(&c, report.as_ref(), stopped);
        ex.observe(&batch, &obs);
    }
    let r = ex.report();
    sink.emit(RunEvent::Note {
        text: format!(
            "explore {domain}: {} sequence(s), {} call(s), {} finding(s){}",
            r.stats.sequences,
            r.stats.calls,
            r.findings.len(),
            r.stats
                .stopped_early
                .as_deref()
                .map(|w| format!("; stopped early: {w}"))
                .unwrap_or_default()
        ),
    });
}

/// What a batch's run showed, by the explorer's step keys.
fn observed(
    c: &gasbench_scenario::Compiled,
    report: Option<&Report>,
    stopped: Option<String>,
) -> Observed {
    let empty = Default::default();
    let o = report.and_then(|r| r.observed.as_deref()).unwrap_or(&empty);
    let failed: Vec<String> = report
        .map(|r| {
            r.failures()
                .map(|v| {
                    format!(
                        "line {}: {}: expected {}, got {}",
                        v.line, v.what, v.expected, v.actual
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Observed::build(
        &c.plan,
        Recorded {
            calls: &o.calls,
            snapshots: &o.snapshots,
            console: &o.console,
            step_errors: &o.step_errors,
            finished: o.finished,
            stopped,
            failed_expectations: failed,
        },
    )
}
