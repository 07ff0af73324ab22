//! What the kernel's own detectors and systematic fault injection found,
//! over the runs of a review (one per kernel profile): each report with
//! its decoded stack and the scenario line that caused it, the detectors
//! proven to fire, the faults injected per call; or one line saying what
//! ran and found nothing.

use gasbench_events::report::{KernelReport, ReportKind};
use gasbench_trace::RunSummary;
use serde::{Deserialize, Serialize};

use crate::report::{Finding, ScenarioSource, Severity};

/// One run of the review: its kernel profile is in its summary.
pub struct ProfileRun<'a> {
    pub summary: &'a RunSummary,
    pub run_dir: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileResult {
    pub profile: String,
    /// What the profile arms.
    pub detectors: Vec<String>,
    /// Shown to fire in this run (a step provoked it and got its report).
    pub proven: Vec<String>,
    /// Armed but not shown to fire here: their silence proves nothing.
    pub not_proven: Vec<String>,
    pub scenarios_run: usize,
    pub scenarios_failed: usize,
    pub skipped: Vec<String>,
    pub run_dir: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportFinding {
    pub profile: String,
    pub id: u32,
    pub kind: String,
    pub detector: String,
    pub title: String,
    /// How often it was seen in that run.
    pub count: u32,
    pub scenario: Option<String>,
    pub step: Option<u32>,
    pub call: Option<u64>,
    /// `scenarios/x.toml:40`: the step it is attributed to.
    pub location: Option<String>,
    /// How it was attributed.
    pub how: String,
    /// `function (file:line)`, the leading stack's reliable frames.
    pub stack: Vec<String>,
    /// Why the stack has no lines, when it has none.
    pub undecoded: Option<String>,
    /// A step asked for it (a detector proven), so it is no defect.
    pub expected: bool,
    /// Some frame is in a file the series (or the port) changes; false:
    /// the stack is decoded and none is (the base kernel's own); None:
    /// not decoded, so not known.
    pub in_series: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InjectionRow {
    pub profile: String,
    pub scenario: String,
    pub location: Option<String>,
    pub call: String,
    pub fault: String,
    pub attempts: u32,
    pub injected: u32,
    pub survived: u32,
    pub reached_no_fault: bool,
    /// `ENOMEM ×12, EFAULT ×1`.
    pub errnos: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detectors {
    pub profiles: Vec<ProfileResult>,
    pub reports: Vec<ReportFinding>,
    pub injection: Vec<InjectionRow>,
    /// One line: what ran and what it found.
    pub line: String,
}

/// Where a report was: the verdict that names it (`report #3: …`) says
/// which scenario line.
fn location_of(s: &RunSummary, r: &KernelReport, scenarios: &[ScenarioSource]) -> Option<String> {
    let tag = format!("report #{}:", r.id);
    let sc = r.attribution.scenario.as_deref()?;
    let res = s.scenarios.iter().find(|x| x.name == sc)?;
    let file = scenarios
        .iter()
        .find(|x| x.name == sc)
        .map(|x| x.file.clone());
    let line = res
        .expectations
        .iter()
        .find(|e| e.actual.starts_with(&tag))
        .and_then(|e| e.scenario_line());
    match (file, line) {
        (Some(f), Some(l)) => Some(format!("{f}:{l}")),
        (Some(f), None) => Some(f),
        (None, _) => None,
    }
}

/// A step's location: the first expectation of that step that names a line.
fn step_location(
    s: &RunSummary,
    scenario: &str,
    step: u32,
    scenarios: &[ScenarioSource],
) -> Option<String> {
    let res = s.scenarios.iter().find(|x| x.name == scenario)?;
    let file = scenarios.iter().find(|x| x.name == scenario)?.file.clone();
    let line = res
        .expectations
        .iter()
        .filter(|e| e.step == step)
        .find_map(|e| e.scenario_line());
    Some(match line {
        Some(l) => format!("{file}:{l}"),
        None => file,
    })
}

fn stack_lines(r: &KernelReport) -> Vec<String> {
    let Some(stack) = r.stacks.first() else {
        return Vec::new();
    };
    stack
        .frames
        .iter()
        .filter(|f| f.reliable)
        .take(8)
        .map(|f| {
            let mut s = match &f.location {
                Some(loc) => format!("{} ({loc})", f.function),
                None => format!("{}+{:#x}/{:#x}", f.function, f.offset, f.size),
            };
            for i in &f.inlined {
                s.push_str(&format!(" ← inlined {i}"));
            }
            s
        })
        .collect()
}

/// Whether a decoded stack passes through a file the series changes.
fn touches(r: &KernelReport, series_files: &[String]) -> Option<bool> {
    let files: Vec<&str> = r
        .stacks
        .iter()
        .flat_map(|s| &s.frames)
        .filter_map(|f| f.location.as_deref())
        .map(|l| l.rsplit_once(':').map_or(l, |(file, _)| file))
        .collect();
    if files.is_empty() {
        return None;
    }
    Some(files.iter().any(|f| series_files.iter().any(|s| s == f)))
}

pub fn section(
    runs: &[ProfileRun],
    scenarios: &[ScenarioSource],
    series_files: &[String],
) -> Detectors {
    let mut d = Detectors::default();
    for run in runs {
        let s = run.summary;
        let Some(p) = &s.profile else { continue };
        let proven: Vec<String> = s.proven.iter().map(|x| x.detector.clone()).collect();
        let not_proven: Vec<String> = p
            .detectors
            .iter()
            .filter(|x| *x != "fault-injection" && !proven.contains(x))
            .cloned()
            .collect();
        d.profiles.push(ProfileResult {
            profile: p.name.clone(),
            detectors: p.detectors.clone(),
            proven,
            not_proven,
            scenarios_run: s.scenarios.len(),
            scenarios_failed: s
                .scenarios
                .iter()
                .filter(|x| x.passed != Some(true))
                .count(),
            skipped: s.skipped.iter().map(|x| x.scenario.clone()).collect(),
            run_dir: run.run_dir.clone(),
        });
        for seen in &s.reports {
            let r = &seen.report;
            let expected = s.proven.iter().any(|x| x.report == r.id);
            d.reports.push(ReportFinding {
                profile: p.name.clone(),
                id: r.id,
                kind: r.kind.name().into(),
                detector: r.kind.detector().into(),
                title: r.title.clone(),
                count: seen.count,
                scenario: r.attribution.scenario.clone(),
                step: r.attribution.step,
                call: r.attribution.call,
                location: location_of(s, r, scenarios),
                how: r.attribution.how.clone(),
                stack: stack_lines(r),
                undecoded: (!r.undecoded.is_empty()).then(|| r.undecoded.clone()),
                expected,
                in_series: touches(r, series_files),
            });
        }
        for x in &s.injection {
            d.injection.push(InjectionRow {
                profile: p.name.clone(),
                scenario: x.scenario.clone(),
                location: step_location(s, &x.scenario, x.step, scenarios),
                call: x.call.clone(),
                fault: x.fault.clone(),
                attempts: x.attempts,
                injected: x.injected,
                survived: x.survived,
                reached_no_fault: x.reached_no_fault,
                errnos: x
                    .errnos
                    .iter()
                    .map(|(e, n)| format!("{e} ×{n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    d.line = summary_line(&d);
    d
}

fn summary_line(d: &Detectors) -> String {
    let mut parts = Vec::new();
    for p in &d.profiles {
        let mut s = format!("{} profile: {} scenario(s) run", p.profile, p.scenarios_run);
        if !p.proven.is_empty() {
            s.push_str(&format!(", detectors proven: {}", p.proven.join(", ")));
        }
        if !p.not_proven.is_empty() {
            s.push_str(&format!(", NOT proven here: {}", p.not_proven.join(", ")));
        }
        parts.push(s);
    }
    let injected: u32 = d.injection.iter().map(|x| x.injected).sum();
    let calls = d.injection.len();
    let reached = d.injection.iter().filter(|x| x.reached_no_fault).count();
    if calls > 0 {
        parts.push(format!(
            "{injected} fault(s) injected into {calls} call(s), {reached} of which reached their no-fault attempt"
        ));
    }
    let defects = d.reports.iter().filter(|r| !r.expected).count();
    parts.push(if defects == 0 {
        "no detector report beyond the proofs".into()
    } else {
        format!("{defects} kernel report(s)")
    });
    parts.join("; ")
}

fn severity_of(kind: &str) -> Severity {
    match ReportKind::from_name(kind) {
        Some(
            ReportKind::Kasan
            | ReportKind::Oops
            | ReportKind::Bug
            | ReportKind::Panic
            | ReportKind::RustPanic,
        ) => Severity::Critical,
        _ => Severity::High,
    }
}

/// One finding per report nobody asked for, with its stack; one per
/// detector that could not be proven; one per call whose attempts ran out
/// before the no-fault one.
pub fn findings(d: &Detectors) -> Vec<Finding> {
    let mut out = Vec::new();
    for r in d.reports.iter().filter(|r| !r.expected) {
        let mut detail = format!("{} profile", r.profile);
        if let Some(sc) = &r.scenario {
            detail.push_str(&format!(", {sc}"));
            if let Some(step) = r.step {
                detail.push_str(&format!(" step {step}"));
            }
            if let Some(call) = r.call {
                detail.push_str(&format!(" call #{call}"));
            }
        }
        detail.push_str(&format!(" ({})", r.how));
        if r.count > 1 {
            detail.push_str(&format!("; seen {} times", r.count));
        }
        if !r.stack.is_empty() {
            detail.push_str(&format!("; stack: {}", r.stack.join(" ← ")));
        }
        if let Some(u) = &r.undecoded {
            detail.push_str(&format!(" [not decoded: {u}]"));
        }
        let (severity, whose) = match r.in_series {
            // Decoded, and no frame in what the series changes: the base
            // kernel's own, shown by a scenario, not the posting's defect.
            Some(false) => (
                Severity::Low,
                " (in the base kernel: no frame is in a file the series changes)",
            ),
            _ => (severity_of(&r.kind), ""),
        };
        out.push(Finding {
            severity,
            title: format!("{} report #{}: {}{whose}", r.detector, r.id, r.title),
            detail: Some(detail),
            location: r.location.clone(),
            tool_failure: false,
        });
    }
    for p in &d.profiles {
        for det in &p.not_proven {
            out.push(Finding {
                severity: Severity::Info,
                title: format!(
                    "{det} is armed in the {} profile but was not shown to fire in this run: its silence proves nothing",
                    p.profile
                ),
                detail: None,
                location: None,
                tool_failure: false,
            });
        }
    }
    for x in d.injection.iter().filter(|x| !x.reached_no_fault) {
        out.push(Finding {
            severity: Severity::Info,
            title: format!(
                "{} under {} faults: {} attempts without reaching the no-fault one (raise the range)",
                x.call, x.fault, x.attempts
            ),
            detail: None,
            location: x.location.clone(),
            tool_failure: false,
        });
    }
    out
}
