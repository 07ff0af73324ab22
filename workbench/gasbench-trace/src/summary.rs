//! The run's summary, folded from its events. The headless printer, the
//! TUI and results.json all read this one fold, so they cannot disagree.

use std::collections::BTreeMap;

use gasbench_abi::protocol::{AgentMsg, KtapStatus};
use gasbench_events::kernel::KernelEvent;
use gasbench_events::report::{Attribution, KernelReport};
use gasbench_events::run::{Outcome, ProfileChoice, RunEvent, Stage};
use gasbench_events::vm::{ConsoleSeverity, VmEvent};
use gasbench_events::{Event, EventBody};
use serde::{Deserialize, Serialize};

/// One expectation checked, with where the scenario file says it: its
/// line, its step's name, and what it checked (`errno`, `out.names`).
///
/// results.json keeps `what` as people read it (`line 40: cleanup:
/// out.names`, [`Expectation::title`]) beside `line` and `step_name`, so
/// its readers are unchanged; reading it back takes that title apart by
/// the parts stored next to it, never by parsing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(into = "ExpectationRecord", from = "ExpectationRecord")]
pub struct Expectation {
    pub step: u32,
    /// The line in the scenario file (0: a rule of the whole scenario, or
    /// a log recorded before lines were carried).
    pub line: u32,
    /// The step's name (`(whole run)` for a whole-scenario rule; empty in
    /// a log recorded before it was carried, whose `what` is the title).
    pub step_name: String,
    pub what: String,
    pub expected: String,
    pub actual: String,
    pub held: bool,
}

impl Expectation {
    /// How people read it: `line 40: the selftest cleaned up after
    /// itself: out.names`.
    pub fn title(&self) -> String {
        gasbench_events::run::expectation_title(self.line, &self.step_name, &self.what)
    }

    /// Its line in the scenario file, when it has one.
    pub fn scenario_line(&self) -> Option<u32> {
        (self.line > 0).then_some(self.line)
    }

    /// What it checked, in its step: `the selftest cleaned up after
    /// itself: out.names` (the title without the line).
    pub fn in_step(&self) -> String {
        if self.step_name.is_empty() {
            self.what.clone()
        } else {
            format!("{}: {}", self.step_name, self.what)
        }
    }
}

/// [`Expectation`] as results.json has it.
#[derive(Clone, Serialize, Deserialize)]
struct ExpectationRecord {
    step: u32,
    /// The title.
    what: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    line: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    step_name: String,
    expected: String,
    actual: String,
    held: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl From<Expectation> for ExpectationRecord {
    fn from(e: Expectation) -> Self {
        ExpectationRecord {
            what: e.title(),
            step: e.step,
            line: e.line,
            step_name: e.step_name,
            expected: e.expected,
            actual: e.actual,
            held: e.held,
        }
    }
}

impl From<ExpectationRecord> for Expectation {
    fn from(r: ExpectationRecord) -> Self {
        // The title is made from the parts beside it: take them off.
        let prefix = gasbench_events::run::expectation_title(r.line, &r.step_name, "");
        let what = match r.what.strip_prefix(&prefix) {
            Some(bare) if !r.step_name.is_empty() => bare.to_string(),
            _ => r.what,
        };
        Expectation {
            step: r.step,
            line: r.line,
            step_name: r.step_name,
            what,
            expected: r.expected,
            actual: r.actual,
            held: r.held,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScenarioResult {
    pub name: String,
    /// None while it runs.
    pub passed: Option<bool>,
    pub elapsed_ms: u64,
    pub expectations: Vec<Expectation>,
    /// The step the guest began last (`3 "allocate"`): where a scenario
    /// that did not finish was when the run stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_step: Option<String>,
    /// When it began, in run time (for the elapsed time of one that did
    /// not finish).
    #[serde(skip)]
    pub(crate) began_us: u64,
}

impl ScenarioResult {
    pub fn failed_expectations(&self) -> impl Iterator<Item = &Expectation> {
        self.expectations.iter().filter(|e| !e.held)
    }
}

/// The run's verdict on the kernel under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunVerdict {
    /// Every expectation held.
    Clean,
    /// The kernel (the series) did something the scenarios say it must
    /// not: a failed expectation, a kselftest not ok, a crash.
    Findings,
    /// The tool or its environment failed before the verdicts were all
    /// in: they say nothing either way about what did not run.
    ToolFailed,
}

impl RunVerdict {
    /// The exit status every gasbench command uses for it.
    pub fn exit_status(self) -> u8 {
        match self {
            RunVerdict::Clean => 0,
            RunVerdict::Findings => 1,
            RunVerdict::ToolFailed => 3,
        }
    }
}

/// A console line without printk's prefixes (`[   26.9][   T28] `).
pub fn printk_body(line: &str) -> &str {
    let mut rest = line.trim_start();
    while let Some(after) = rest.strip_prefix('[') {
        match after.split_once(']') {
            Some((_, tail)) => rest = tail.trim_start(),
            None => break,
        }
    }
    rest.trim_end()
}

/// Console lines that mean the kernel itself went wrong (not a warning).
pub fn is_kernel_bug(line: &str) -> bool {
    [
        "BUG:",
        "Oops",
        "Kernel panic",
        "Call Trace:",
        "general protection fault",
        "KASAN",
        "UBSAN",
        "panicked at",
        "rust_panic",
    ]
    .iter()
    .any(|p| line.contains(p))
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageResult {
    pub stage: Stage,
    pub outcome: Option<Outcome>,
    pub detail: String,
    pub elapsed_ms: u64,
}

/// The tree built after one patch of a series.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchBuildResult {
    pub series: String,
    /// Position in the apply sequence, from 1.
    pub index: u32,
    pub subject: String,
    pub builds: bool,
    pub first_error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KtapLine {
    pub binary: String,
    pub number: u32,
    pub name: String,
    pub status: KtapStatus,
    pub directive: Option<String>,
}

/// A kernel report and every time it was seen again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReportSeen {
    pub report: KernelReport,
    /// How many times in all (1: once).
    pub count: u32,
    /// Where it was seen after the first time (at most 20 kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub again: Vec<Attribution>,
}

/// A scenario that was not run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    pub scenario: String,
    pub why: String,
}

/// A detector shown to fire, and where.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Proven {
    pub detector: String,
    pub scenario: String,
    pub step: u32,
    pub report: u32,
}

/// Systematic fault injection on one step's call.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Injection {
    pub scenario: String,
    pub step: u32,
    /// `ioctl:ALLOCATE_BLOCK`, `mkdirat2`, …
    pub call: String,
    /// `slab`, `page`, `usercopy`.
    pub fault: String,
    pub attempts: u32,
    /// Attempts in which the kernel failed the armed fault point.
    pub injected: u32,
    /// Of those, the ones the call still succeeded in.
    pub survived: u32,
    /// An attempt consumed no fault: every fault point was tried.
    pub reached_no_fault: bool,
    /// The errnos the injected attempts failed with, and how often.
    pub errnos: BTreeMap<String, u32>,
}

/// Everything the summary table and results.json say.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub command: String,
    pub accel: Option<String>,
    pub accel_reason: Option<String>,
    pub kernel_release: Option<String>,
    pub stages: Vec<StageResult>,
    pub scenarios: Vec<ScenarioResult>,
    pub ktap: Vec<KtapLine>,
    /// Console lines at WARN or BUG level.
    pub kernel_warnings: Vec<String>,
    /// Per-patch builds (`--per-patch`): does the tree build after it?
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patch_builds: Vec<PatchBuildResult>,
    pub errors: Vec<String>,
    /// The kernel's profile (`default`, `debug`, `race`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<ProfileChoice>,
    /// Kernel reports, each once with its count.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reports: Vec<ReportSeen>,
    /// Detectors shown to fire in this run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proven: Vec<Proven>,
    /// Scenarios not run, with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
    /// Per step under fault injection.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub injection: Vec<Injection>,
    /// How the VM's host processes were confined: every protection, in
    /// force or not, and why (the latest boot's word for each).
    #[serde(default)]
    pub confinement: Vec<gasbench_events::vm::Protection>,
    /// None while the run is going.
    pub passed: Option<bool>,
    pub elapsed_ms: u64,
    /// The scenario running now (agent steps belong to it).
    #[serde(skip)]
    pub(crate) running: Option<String>,
}

impl RunSummary {
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> RunSummary {
        let mut s = RunSummary::default();
        for e in events {
            s.apply(e);
        }
        s
    }

    fn scenario(&mut self, name: &str) -> &mut ScenarioResult {
        let i = match self.scenarios.iter().position(|s| s.name == name) {
            Some(i) => i,
            None => {
                self.scenarios.push(ScenarioResult {
                    name: name.into(),
                    ..Default::default()
                });
                self.scenarios.len() - 1
            }
        };
        &mut self.scenarios[i]
    }

    fn stage(&mut self, stage: Stage) -> &mut StageResult {
        let i = match self.stages.iter().position(|s| s.stage == stage) {
            Some(i) => i,
            None => {
                self.stages.push(StageResult {
                    stage,
                    outcome: None,
                    detail: String::new(),
                    elapsed_ms: 0,
                });
                self.stages.len() - 1
            }
        };
        &mut self.stages[i]
    }

    /// Fold one more event in (the TUI calls this live).
    pub fn apply(&mut self, e: &Event) {
        if let Some(name) = self.running.clone() {
            let sc = self.scenario(&name);
            sc.elapsed_ms = e.t_us.saturating_sub(sc.began_us) / 1000;
        }
        match &e.body {
            EventBody::Run(r) => match r {
                RunEvent::Started { command, .. } => self.command = command.clone(),
                RunEvent::StageBegin { stage, detail } => {
                    let st = self.stage(*stage);
                    st.outcome = None;
                    st.detail = detail.clone();
                }
                RunEvent::StageProgress { .. } => {}
                RunEvent::StageEnd {
                    stage,
                    outcome,
                    detail,
                    elapsed_ms,
                } => {
                    let st = self.stage(*stage);
                    st.outcome = Some(*outcome);
                    st.detail = detail.clone();
                    st.elapsed_ms = *elapsed_ms;
                }
                RunEvent::Accel(a) => {
                    self.accel = Some(a.accel.clone());
                    self.accel_reason = Some(a.reason.clone());
                }
                RunEvent::Profile(p) => self.profile = Some(p.clone()),
                RunEvent::ScenarioSkipped { scenario, why } => self.skipped.push(Skipped {
                    scenario: scenario.clone(),
                    why: why.clone(),
                }),
                RunEvent::DetectorProven {
                    detector,
                    scenario,
                    step,
                    report,
                } => {
                    if !self.proven.iter().any(|p| &p.detector == detector) {
                        self.proven.push(Proven {
                            detector: detector.clone(),
                            scenario: scenario.clone(),
                            step: *step,
                            report: *report,
                        });
                    }
                }
                RunEvent::ScenarioBegin { scenario, .. } => {
                    self.running = Some(scenario.clone());
                    let sc = self.scenario(scenario);
                    sc.passed = None;
                    sc.expectations.clear();
                    sc.last_step = None;
                    sc.began_us = e.t_us;
                    sc.elapsed_ms = 0;
                }
                RunEvent::Expectation {
                    scenario,
                    step,
                    line,
                    step_name,
                    what,
                    expected,
                    actual,
                    held,
                } => self.scenario(scenario).expectations.push(Expectation {
                    step: *step,
                    line: *line,
                    step_name: step_name.clone(),
                    what: what.clone(),
                    expected: expected.clone(),
                    actual: actual.clone(),
                    held: *held,
                }),
                RunEvent::ScenarioEnd {
                    scenario,
                    passed,
                    elapsed_ms,
                } => {
                    self.running = None;
                    let sc = self.scenario(scenario);
                    sc.passed = Some(*passed);
                    sc.elapsed_ms = *elapsed_ms;
                }
                RunEvent::Note { .. } => {}
                RunEvent::Error { text } => self.errors.push(text.clone()),
                RunEvent::Finished { passed, elapsed_ms } => {
                    self.passed = Some(*passed);
                    self.elapsed_ms = *elapsed_ms;
                }
            },
            EventBody::Agent(AgentMsg::StepBegin { step, name, .. }) => {
                if let Some(running) = self.running.clone() {
                    self.scenario(&running).last_step = Some(format!("{step} \"{name}\""));
                }
            }
            EventBody::Kernel(KernelEvent::PatchBuild {
                series,
                index,
                subject,
                builds,
                first_error,
                ..
            }) => self.patch_builds.push(PatchBuildResult {
                series: series.clone(),
                index: *index,
                subject: subject.clone(),
                builds: *builds,
                first_error: first_error.clone(),
            }),
            EventBody::Agent(AgentMsg::Ready(r)) => {
                self.kernel_release = Some(r.kernel_release.clone());
            }
            EventBody::Agent(AgentMsg::Ktap(k)) => self.ktap.push(KtapLine {
                binary: k.binary.clone(),
                number: k.number,
                name: k.name.clone(),
                status: k.status,
                directive: k.directive.clone(),
            }),
            EventBody::Vm(VmEvent::Confinement { protections }) => {
                for p in protections {
                    match self.confinement.iter_mut().find(|q| q.name == p.name) {
                        Some(q) => *q = p.clone(),
                        None => self.confinement.push(p.clone()),
                    }
                }
            }
            EventBody::Vm(VmEvent::Console { line, severity })
                if *severity != ConsoleSeverity::Normal && self.kernel_warnings.len() < 1000 =>
            {
                // A console line can be 64 KiB; a thousand of them is
                // enough to say what went wrong, 4 KiB of each too.
                let keep = line.char_indices().nth(4096).map_or(line.len(), |(i, _)| i);
                self.kernel_warnings.push(line[..keep].to_string());
            }
            EventBody::Vm(VmEvent::KernelReport(r)) if self.reports.len() < 1000 => {
                self.reports.push(ReportSeen {
                    report: (**r).clone(),
                    count: 1,
                    again: Vec::new(),
                });
            }
            EventBody::Vm(VmEvent::KernelReportAgain {
                id,
                count,
                attribution,
            }) => {
                if let Some(seen) = self.reports.iter_mut().find(|s| s.report.id == *id) {
                    seen.count = *count;
                    if seen.again.len() < 20 {
                        seen.again.push(attribution.clone());
                    }
                }
            }
            EventBody::Agent(AgentMsg::CallEnd(r)) if r.fault.is_some() => {
                let (Some(f), Some(scenario)) = (r.fault, self.running.clone()) else {
                    return;
                };
                let i = match self
                    .injection
                    .iter()
                    .position(|x| x.scenario == scenario && x.step == r.step)
                {
                    Some(i) => i,
                    None => {
                        self.injection.push(Injection {
                            scenario,
                            step: r.step,
                            call: r.name.clone(),
                            fault: f.fault.name().to_string(),
                            ..Default::default()
                        });
                        self.injection.len() - 1
                    }
                };
                let x = &mut self.injection[i];
                x.attempts += 1;
                if f.injected {
                    x.injected += 1;
                    match &r.errno {
                        None => x.survived += 1,
                        Some(e) => *x.errnos.entry(e.clone()).or_default() += 1,
                    }
                } else {
                    x.reached_no_fault = true;
                }
            }
            _ => {}
        }
    }

    /// One summary of runs that each ran a slice of one matrix (`--shard
    /// K/N` on several machines): every scenario and kselftest result of
    /// every part, in the order of the parts; the kernel stage's results
    /// from the first part that has them (every part built the same
    /// kernel); every error and warning; passed only when every part
    /// passed. A scenario in more than one part keeps its first result.
    pub fn merge(parts: &[RunSummary]) -> RunSummary {
        let mut m = RunSummary {
            command: format!("merge of {} run(s)", parts.len()),
            ..RunSummary::default()
        };
        for p in parts {
            if m.accel.is_none() {
                m.accel = p.accel.clone();
                m.accel_reason = p.accel_reason.clone();
            }
            if m.kernel_release.is_none() {
                m.kernel_release = p.kernel_release.clone();
            }
            if m.stages.is_empty() {
                m.stages = p.stages.clone();
            }
            if m.patch_builds.is_empty() {
                m.patch_builds = p.patch_builds.clone();
            }
            for sc in &p.scenarios {
                if !m.scenarios.iter().any(|x| x.name == sc.name) {
                    m.scenarios.push(sc.clone());
                }
            }
            m.ktap.extend(p.ktap.iter().cloned());
            m.kernel_warnings.extend(p.kernel_warnings.iter().cloned());
            m.errors.extend(p.errors.iter().cloned());
            m.elapsed_ms = m.elapsed_ms.max(p.elapsed_ms);
        }
        m.passed = if parts.is_empty() {
            None
        } else if parts.iter().all(|p| p.passed == Some(true)) {
            Some(true)
        } else if parts.iter().any(|p| p.passed.is_none()) {
            None
        } else {
            Some(false)
        };
        m
    }

    /// Whether a console line belongs to a report a step asked for (a
    /// detector proven on purpose): that report is no crash of the kernel
    /// under test, and neither is another of the same kind the same step
    /// provoked (two threads racing on purpose give KCSAN more than one
    /// pair to report: the racers with each other, and a racer with the
    /// scheduler code that ran beside it).
    fn in_proof(&self, line: &str) -> bool {
        let body = printk_body(line);
        let provoked = |r: &ReportSeen| {
            self.proven.iter().any(|p| {
                r.report.id == p.report
                    || (r.report.attribution.scenario.as_deref() == Some(p.scenario.as_str())
                        && r.report.attribution.step == Some(p.step)
                        && self
                            .reports
                            .iter()
                            .any(|q| q.report.id == p.report && q.report.kind == r.report.kind))
            })
        };
        self.reports
            .iter()
            .filter(|r| provoked(r))
            .any(|r| r.report.text.iter().any(|t| printk_body(t) == body))
    }

    /// What the run says about the kernel under test, apart from what it
    /// says about the tool (see [`RunVerdict`]).
    pub fn verdict(&self) -> RunVerdict {
        let crashed = self
            .kernel_warnings
            .iter()
            .any(|l| is_kernel_bug(l) && !self.in_proof(l));
        // An error ends a run early. When the kernel crashed, the crash is
        // why (a finding); otherwise the tool or its environment failed
        // (no QEMU, a boot that never reached the agent, a dead device
        // server), and the verdicts it has are incomplete.
        if !self.errors.is_empty() && !crashed {
            return RunVerdict::ToolFailed;
        }
        let failed = crashed
            || self.scenarios.iter().any(|s| s.passed == Some(false))
            || self.ktap.iter().any(|k| k.status == KtapStatus::NotOk);
        if failed {
            RunVerdict::Findings
        } else if self.passed == Some(true) {
            RunVerdict::Clean
        } else {
            // Nothing failed yet nothing finished: the run did not end.
            RunVerdict::ToolFailed
        }
    }

    /// Counts for the summary line: (passed, failed, not finished).
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for s in &self.scenarios {
            match s.passed {
                Some(true) => c.0 += 1,
                Some(false) => c.1 += 1,
                None => c.2 += 1,
            }
        }
        c
    }

    /// Per binary: (ok, not ok, skipped).
    pub fn ktap_counts(&self) -> BTreeMap<String, (usize, usize, usize)> {
        let mut m: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
        for k in &self.ktap {
            let e = m.entry(k.binary.clone()).or_default();
            match k.status {
                KtapStatus::Ok | KtapStatus::Xfail => e.0 += 1,
                KtapStatus::NotOk => e.1 += 1,
                KtapStatus::Skip => e.2 += 1,
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, body: impl Into<EventBody>) -> Event {
        Event {
            seq,
            t_us: seq * 10,
            body: body.into(),
        }
    }

    #[test]
    fn a_scenario_the_run_stopped_in_says_where_and_how_long_it_ran() {
        let step = |seq, step: u32, name: &str| {
            ev(
                seq,
                AgentMsg::StepBegin {
                    bundle: 1,
                    step,
                    thread: 0,
                    name: name.into(),
                },
            )
        };
        let events = vec![
            // A step outside any scenario is nobody's.
            step(1, 9, "stray"),
            ev(
                100,
                RunEvent::ScenarioBegin {
                    scenario: "idle".into(),
                    steps: 2,
                },
            ),
            step(200, 0, "open"),
            step(300, 1, "long nap"),
            ev(
                5000,
                RunEvent::Error {
                    text: "interrupted (Ctrl-C)".into(),
                },
            ),
        ];
        let s = RunSummary::from_events(&events);
        assert_eq!(s.scenarios.len(), 1);
        let sc = &s.scenarios[0];
        assert_eq!(sc.passed, None);
        assert_eq!(sc.last_step.as_deref(), Some("1 \"long nap\""));
        // 100 → 5000 events, 10 µs each.
        assert_eq!(sc.elapsed_ms, (5000 - 100) * 10 / 1000);
        let table = crate::table::summary_table(&s);
        assert!(
            table.contains("did not finish: the run stopped during step 1 \"long nap\""),
            "{table}"
        );
        // results.json carries it; an old one without it still reads.
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["scenarios"][0]["last_step"], "1 \"long nap\"");
        let old: RunSummary =
            serde_json::from_str(r#"{"command":"run","accel":null,"accel_reason":null,"kernel_release":null,"stages":[],"scenarios":[{"name":"a","passed":true,"elapsed_ms":1,"expectations":[]}],"ktap":[],"kernel_warnings":[],"errors":[],"passed":true,"elapsed_ms":1}"#)
                .unwrap();
        assert_eq!(old.scenarios[0].last_step, None);
    }

    #[test]
    fn the_verdict_keeps_a_broken_series_apart_from_a_broken_tool() {
        let scenario = |passed| ScenarioResult {
            name: "a".into(),
            passed: Some(passed),
            ..Default::default()
        };
        let clean = RunSummary {
            scenarios: vec![scenario(true)],
            passed: Some(true),
            ..Default::default()
        };
        assert_eq!(clean.verdict(), RunVerdict::Clean);
        let failed = RunSummary {
            scenarios: vec![scenario(false)],
            passed: Some(false),
            ..Default::default()
        };
        assert_eq!(failed.verdict(), RunVerdict::Findings);
        assert_eq!(failed.verdict().exit_status(), 1);
        let no_qemu = RunSummary {
            errors: vec!["cannot start qemu-system-x86_64".into()],
            passed: Some(false),
            ..Default::default()
        };
        assert_eq!(no_qemu.verdict(), RunVerdict::ToolFailed);
        assert_eq!(no_qemu.verdict().exit_status(), 3);
        // The guest died because the kernel crashed: the series' fault.
        let crashed = RunSummary {
            errors: vec!["goldfish-errors stopped the run: the guest died".into()],
            kernel_warnings: vec!["[ 1.0] BUG: kernel NULL pointer dereference".into()],
            scenarios: vec![scenario(false)],
            passed: Some(false),
            ..Default::default()
        };
        assert_eq!(crashed.verdict(), RunVerdict::Findings);
        // A report a step provoked on purpose (a detector proven) is no
        // crash; the same lines with nobody asking for them are.
        let report = KernelReport {
            id: 1,
            kind: gasbench_events::report::ReportKind::Kasan,
            title: "BUG: KASAN: slab-use-after-free in lkdtm_READ_AFTER_FREE".into(),
            task: None,
            stacks: vec![],
            text: vec![
                "BUG: KASAN: slab-use-after-free in lkdtm_READ_AFTER_FREE".into(),
                "Call Trace:".into(),
            ],
            signature: "kasan|x".into(),
            attribution: Attribution::default(),
            undecoded: String::new(),
        };
        let mut proof = RunSummary {
            kernel_warnings: vec![
                "[   41.516707][   T28] BUG: KASAN: slab-use-after-free in lkdtm_READ_AFTER_FREE"
                    .into(),
                "[   41.519554][   T28] Call Trace:".into(),
            ],
            reports: vec![ReportSeen {
                report,
                count: 1,
                again: vec![],
            }],
            proven: vec![Proven {
                detector: "kasan".into(),
                scenario: "detectors-debug".into(),
                step: 4,
                report: 1,
            }],
            scenarios: vec![scenario(true)],
            passed: Some(true),
            ..Default::default()
        };
        assert_eq!(proof.verdict(), RunVerdict::Clean);
        // A second report of the kind proven, by the step that proved it,
        // is the same provocation; one of that kind from another step, or
        // of another kind from the step, is not.
        let first = proof.reports[0].report.clone();
        let second = |id: u32, kind, step: u32| ReportSeen {
            report: KernelReport {
                id,
                kind,
                title: format!("BUG: report {id}"),
                text: vec![format!("BUG: report {id}")],
                attribution: Attribution {
                    scenario: Some("detectors-debug".into()),
                    step: Some(step),
                    ..Attribution::default()
                },
                ..first.clone()
            },
            count: 1,
            again: vec![],
        };
        use gasbench_events::report::ReportKind;
        proof
            .kernel_warnings
            .push("[   41.6][   T28] BUG: report 2".into());
        proof.reports.push(second(2, ReportKind::Kasan, 4));
        assert_eq!(proof.verdict(), RunVerdict::Clean);
        proof.reports[1] = second(2, ReportKind::Kasan, 5);
        assert_eq!(proof.verdict(), RunVerdict::Findings);
        proof.reports[1] = second(2, ReportKind::Ubsan, 4);
        assert_eq!(proof.verdict(), RunVerdict::Findings);
        proof.reports.pop();
        proof.kernel_warnings.pop();
        proof.proven.clear();
        assert_eq!(proof.verdict(), RunVerdict::Findings);
        // A run that never finished is no verdict on the kernel.
        assert_eq!(RunSummary::default().verdict(), RunVerdict::ToolFailed);
    }

    #[test]
    fn the_confinement_of_every_boot_is_kept_once_per_protection() {
        use gasbench_events::vm::{Protection, VmEvent};
        let p = |name: &str, active: bool, detail: &str| Protection {
            name: name.into(),
            active,
            detail: detail.into(),
        };
        let events = vec![
            ev(
                0,
                VmEvent::Confinement {
                    protections: vec![p("device server", true, "a process")],
                },
            ),
            ev(
                1,
                VmEvent::Confinement {
                    protections: vec![
                        p("QEMU seccomp", true, "-sandbox on"),
                        p("cgroup v2 limits", false, "rlimits"),
                    ],
                },
            ),
            // A second boot says the same again.
            ev(
                2,
                VmEvent::Confinement {
                    protections: vec![p("QEMU seccomp", false, "refused")],
                },
            ),
        ];
        let s = RunSummary::from_events(&events);
        let names: Vec<_> = s
            .confinement
            .iter()
            .map(|p| (p.name.as_str(), p.active))
            .collect();
        assert_eq!(
            names,
            [
                ("device server", true),
                ("QEMU seccomp", false),
                ("cgroup v2 limits", false)
            ]
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["confinement"][2]["detail"], "rlimits");
    }

    #[test]
    fn the_fold_tracks_scenarios_expectations_stages_and_the_verdict() {
        let events = vec![
            ev(
                0,
                RunEvent::Started {
                    run_dir: "/r".into(),
                    command: "run".into(),
                },
            ),
            ev(
                1,
                RunEvent::StageBegin {
                    stage: Stage::Boot,
                    detail: "tcg".into(),
                },
            ),
            ev(
                2,
                RunEvent::StageEnd {
                    stage: Stage::Boot,
                    outcome: Outcome::Ok,
                    detail: "1.4 s".into(),
                    elapsed_ms: 1400,
                },
            ),
            ev(
                3,
                RunEvent::ScenarioBegin {
                    scenario: "a".into(),
                    steps: 2,
                },
            ),
            ev(
                4,
                RunEvent::Expectation {
                    scenario: "a".into(),
                    step: 1,
                    line: 7,
                    step_name: "size 0".into(),
                    what: "errno".into(),
                    expected: "EINVAL".into(),
                    actual: "ENXIO".into(),
                    held: false,
                },
            ),
            ev(
                5,
                RunEvent::ScenarioEnd {
                    scenario: "a".into(),
                    passed: false,
                    elapsed_ms: 30,
                },
            ),
            ev(
                6,
                RunEvent::ScenarioBegin {
                    scenario: "b".into(),
                    steps: 1,
                },
            ),
            ev(
                7,
                VmEvent::Console {
                    line: "WARNING: at x".into(),
                    severity: ConsoleSeverity::Warn,
                },
            ),
            ev(
                8,
                VmEvent::Console {
                    line: "ok".into(),
                    severity: ConsoleSeverity::Normal,
                },
            ),
        ];
        let mut s = RunSummary::from_events(&events);
        assert_eq!(s.counts(), (0, 1, 1));
        assert_eq!(s.passed, None);
        let failed: Vec<_> = s.scenarios[0].failed_expectations().collect();
        assert_eq!(failed[0].expected, "EINVAL");
        assert_eq!(failed[0].actual, "ENXIO");
        assert_eq!(s.stages[0].outcome, Some(Outcome::Ok));
        assert_eq!(s.kernel_warnings, ["WARNING: at x"]);
        s.apply(&ev(
            9,
            RunEvent::ScenarioEnd {
                scenario: "b".into(),
                passed: true,
                elapsed_ms: 5,
            },
        ));
        s.apply(&ev(
            10,
            RunEvent::Finished {
                passed: false,
                elapsed_ms: 99,
            },
        ));
        assert_eq!(s.counts(), (1, 1, 0));
        assert_eq!(s.passed, Some(false));
    }

    #[test]
    fn profile_reports_proofs_skips_and_fault_injection_are_folded() {
        use gasbench_abi::bundle::FaultKind;
        use gasbench_abi::protocol::{CallRecord, FaultAttempt};
        use gasbench_events::report::{Attribution, KernelReport, ReportKind};
        let report = KernelReport {
            id: 1,
            kind: ReportKind::Kasan,
            title: "BUG: KASAN: slab-use-after-free in f".into(),
            task: None,
            stacks: vec![],
            text: vec![],
            signature: "kasan|x|f".into(),
            attribution: Attribution {
                scenario: Some("s".into()),
                step: Some(2),
                call: Some(7),
                thread: Some(0),
                how: "test".into(),
            },
            undecoded: String::new(),
        };
        let attempt = |call: u64, nth: u32, injected: bool, errno: Option<&str>| {
            AgentMsg::CallEnd(CallRecord {
                call,
                step: 3,
                thread: 0,
                iteration: 0,
                name: "open".into(),
                fd: None,
                args_in: serde_json::Value::Null,
                args_out: serde_json::Value::Null,
                ret: if errno.is_some() { -1 } else { 3 },
                errno: errno.map(str::to_string),
                duration_ns: 1,
                fault: Some(FaultAttempt {
                    fault: FaultKind::Slab,
                    nth,
                    injected,
                    fd_before: None,
                    fd_after: None,
                    path_before: None,
                    path_after: None,
                }),
            })
        };
        let events = vec![
            ev(
                1,
                RunEvent::Profile(ProfileChoice {
                    name: "debug".into(),
                    detectors: vec!["kasan".into(), "lockdep".into()],
                    about: String::new(),
                }),
            ),
            ev(
                2,
                RunEvent::ScenarioSkipped {
                    scenario: "detectors-race".into(),
                    why: "it is for the race profile".into(),
                },
            ),
            ev(
                3,
                RunEvent::ScenarioBegin {
                    scenario: "s".into(),
                    steps: 4,
                },
            ),
            ev(4, VmEvent::KernelReport(Box::new(report.clone()))),
            ev(
                5,
                VmEvent::KernelReportAgain {
                    id: 1,
                    count: 2,
                    attribution: report.attribution.clone(),
                },
            ),
            ev(
                6,
                RunEvent::DetectorProven {
                    detector: "kasan".into(),
                    scenario: "s".into(),
                    step: 2,
                    report: 1,
                },
            ),
            ev(7, attempt(10, 1, true, Some("ENOMEM"))),
            ev(8, attempt(11, 2, true, None)),
            ev(9, attempt(12, 3, false, None)),
        ];
        let s = RunSummary::from_events(&events);
        assert_eq!(s.profile.as_ref().unwrap().name, "debug");
        assert_eq!(s.skipped.len(), 1);
        assert_eq!(s.reports.len(), 1);
        assert_eq!(s.reports[0].count, 2);
        assert_eq!(s.reports[0].again.len(), 1);
        assert_eq!(s.proven[0].detector, "kasan");
        let x = &s.injection[0];
        assert_eq!(
            (x.scenario.as_str(), x.step, x.call.as_str()),
            ("s", 3, "open")
        );
        assert_eq!((x.attempts, x.injected, x.survived), (3, 2, 1));
        assert!(x.reached_no_fault);
        assert_eq!(x.errnos.get("ENOMEM"), Some(&1));
        let t = crate::table::summary_table(&s);
        assert!(t.contains("· debug profile ·"), "{t}");
        assert!(
            t.contains("skipped detectors-race: it is for the race profile"),
            "{t}"
        );
        assert!(
            t.contains("proven in this run: kasan; not proven: lockdep"),
            "{t}"
        );
        assert!(t.contains("✓ report #1 kasan ×2"), "{t}");
        assert!(
            t.contains("fault injection: 2 fault(s) injected into 1 call(s); 1 reached"),
            "{t}"
        );
        // results.json round-trips it.
        let back: RunSummary = serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
        assert_eq!(back.reports, s.reports);
        assert_eq!(back.injection, s.injection);
    }
}
