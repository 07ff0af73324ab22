//! The review: what a reproduction found, as one serialisable model
//! (`review.json`) that `review.md` is rendered from.
//!
//! [`Review::build`] takes the [`Facts`]: the series manifest, the base
//! pin, the port's part for the series, the run's events (the kernel
//! stage's patch and per-patch build events), its [`RunSummary`] and the
//! scenario files. It adds nothing that was not observed or recorded: a
//! finding is a patch that did not apply or build, a fix the port had to
//! make, a failing expectation, a kselftest failure, a kernel warning.

use gasbench_abi::protocol::KtapStatus;
use gasbench_events::kernel::{ApplyStatus, KernelEvent, PatchApplied, PatchRole};
use gasbench_events::run::{Outcome, Stage};
use gasbench_events::{Event, EventBody};
use gasbench_kbuild::BuildManifest;
use gasbench_kbuild::layout::BasePin;
use gasbench_series::manifest::{FixupKind, PatchOrigin, PortSeries, SeriesManifest};
use gasbench_trace::RunSummary;
use gasbench_trace::summary::{is_kernel_bug, printk_body};
use serde::{Deserialize, Serialize};

use crate::detectors::{Detectors, ProfileRun};
use crate::resolve::Target;
use crate::scenario_text::{comment_above, leading_comment};

/// How much a finding matters to the reviewer; most severe first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The kernel crashed or oopsed.
    Critical,
    /// Does not build, does not apply, a posting defect, a failing kselftest.
    High,
    /// Behaviour differs from what the review or the cover letter says.
    Medium,
    /// The base moved on since the posting (context, API drift).
    Low,
    /// Worth knowing; not a defect (fuzz).
    Info,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
            Severity::Info => "info",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub severity: Severity,
    pub title: String,
    /// Expected vs actual, the first error, the port's reason.
    pub detail: Option<String>,
    /// `scenarios/x.toml:40`, a patch file, a port file.
    pub location: Option<String>,
    /// The tool or its environment failed here, not the series: the
    /// verdicts after it are incomplete (exit status 3).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tool_failure: bool,
}

/// A message of the series, with its id and where the id came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRef {
    /// 0 for the cover letter.
    pub index: u32,
    pub subject: String,
    pub message_id: String,
    /// `header`, `replies`, `synthesized`.
    pub id_source: String,
    /// For a synthesized id: what git send-email's numbering suggests.
    pub id_guess: Option<String>,
    /// `posted` or `reconstructed`.
    pub origin: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesInfo {
    pub name: String,
    pub title: String,
    pub version: u32,
    /// `RFC`, `PATCH`.
    pub tags: Vec<String>,
    pub total: u32,
    /// `Name <address>`.
    pub author: String,
    /// Where the address came from (`header`, `signed-off-by`).
    pub author_email_source: String,
    pub date: Option<String>,
    pub lists: Vec<String>,
    pub cover: Option<MessageRef>,
    pub patches: Vec<MessageRef>,
    /// The mail it was extracted from, and its format.
    pub source: String,
    /// The argument as given, and how it was resolved.
    pub input: String,
    pub resolved: String,
    /// A series gasbench knows (kernel/series/<name>) or a new one.
    pub known: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseInfo {
    pub release: String,
    pub package: String,
    pub package_version: String,
    pub upstream_tag: String,
    pub base_commit: Option<String>,
    /// The commit that was built.
    pub head: Option<String>,
    /// `uname -r` of the built kernel.
    pub kernel_release: Option<String>,
    /// "with the port (kernel/port/v7.2.12)" or "as posted, no port".
    pub applied: String,
    /// The series' `base-commit:` trailer, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series_base_commit: Option<String>,
    /// Which base was used and why: the series' own base-commit, or
    /// which base instead and why that one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildResult {
    pub builds: bool,
    pub first_error: Option<String>,
    pub cross_arch: Option<String>,
    /// The first error for `cross_arch` in a file the series touched.
    pub cross_error: Option<String>,
}

/// One patch applied (posted, reconstructed, or the port's).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchRow {
    /// In the apply sequence, from 1.
    pub position: u32,
    pub role: PatchRole,
    pub posted_index: Option<u32>,
    pub subject: String,
    pub status: ApplyStatus,
    /// Hunks that did not apply as posted: `file hunk N (@@ …): rejected`.
    pub hunks: Vec<String>,
    pub detail: String,
    pub files: Vec<String>,
    /// Per-patch build result (`None` without the per-patch check).
    pub build: Option<BuildResult>,
}

impl PatchRow {
    /// `1/2`, `replacement 2/2`, `fixup`.
    pub fn label(&self, total: u32) -> String {
        match (self.role, self.posted_index) {
            (PatchRole::Posted, Some(i)) => format!("{i}/{total}"),
            (PatchRole::Reconstructed, Some(i)) => format!("{i}/{total} (reconstructed)"),
            (PatchRole::Replacement, Some(i)) => format!("port: replacement {i}/{total}"),
            (role, _) => format!("port: {}", role.name()),
        }
    }
}

/// A change the port needed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortFix {
    pub kind: FixupKind,
    /// `replacement` (a posted patch redone on the base) or `fixup`.
    pub role: PatchRole,
    /// Relative to the kernel directory.
    pub file: String,
    /// The posted patches it is about.
    pub fixes: Vec<u32>,
    pub why: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedExpectation {
    /// `scenarios/x.toml:40`.
    pub location: Option<String>,
    pub what: String,
    pub expected: String,
    pub actual: String,
    /// The scenario file's comment above the expectation.
    pub why: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScenarioVerdict {
    pub name: String,
    /// The kernel profile it ran on (`default`, `debug`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    pub file: Option<String>,
    /// `None`: it did not finish.
    pub passed: Option<bool>,
    pub held: usize,
    pub total: usize,
    pub elapsed_ms: u64,
    pub failures: Vec<FailedExpectation>,
    /// The comment the scenario file starts with, for a failed scenario.
    pub about: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelLogLine {
    /// `bug` (BUG, Oops, panic, call trace, sanitizers) or `warning`.
    pub kind: String,
    pub line: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KselftestCount {
    pub binary: String,
    pub ok: usize,
    pub not_ok: usize,
    pub skipped: usize,
    pub failed_tests: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildSummary {
    /// The per-patch check ran.
    pub per_patch: bool,
    pub cross_arch: Option<String>,
    /// The tree with everything applied builds (`None`: not reached).
    pub tree_builds: Option<bool>,
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    pub run_dir: Option<String>,
    pub accel: Option<String>,
    pub elapsed_ms: u64,
}

/// Everything the review says; `review.json` is this, `review.md` is
/// rendered from it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub series: SeriesInfo,
    pub base: BaseInfo,
    pub patches: Vec<PatchRow>,
    pub build: BuildSummary,
    pub port_fixes: Vec<PortFix>,
    pub scenarios: Vec<ScenarioVerdict>,
    /// Why scenarios did or did not run (which ones concern the series).
    pub scenarios_note: Option<String>,
    pub kernel_log: Vec<KernelLogLine>,
    pub kselftest: Vec<KselftestCount>,
    /// What stopped the run, if anything.
    pub errors: Vec<String>,
    /// What the kernel's detectors and fault injection found, per profile.
    #[serde(default)]
    pub detectors: Detectors,
    /// Most severe first.
    pub findings: Vec<Finding>,
    /// The explorer's section (Markdown, as explore.md has it), when it
    /// ran (`explorer::add`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explorer: Option<String>,
    /// The series-level ABI checks (Markdown), when they ran
    /// (`series_checks::add`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series_checks: Option<String>,
    pub run: RunInfo,
    /// 0: every patch applies and builds and every expectation held;
    /// 1: there are findings; 3: the tool or its environment failed
    /// (a finding with `tool_failure`), so the review is incomplete.
    pub exit_code: u8,
}

/// A scenario file, for locations and the comments next to expectations.
#[derive(Clone, Debug)]
pub struct ScenarioSource {
    pub name: String,
    /// As shown in the report (`scenarios/mkdirat2_kselftest.toml`).
    pub file: String,
    pub text: String,
}

/// What a reproduction gathered.
pub struct Facts<'a> {
    pub target: &'a Target,
    pub series: &'a SeriesManifest,
    pub base: &'a BasePin,
    /// The port directory (for the report) and the series' part of the
    /// port; `None` when applied as posted.
    pub port: Option<(&'a str, &'a PortSeries)>,
    /// The kernel stage's manifest, when it finished.
    pub manifest: Option<&'a BuildManifest>,
    /// The kernel stage's error, when it failed.
    pub kernel_error: Option<&'a str>,
    pub events: &'a [Event],
    pub summary: &'a RunSummary,
    pub scenarios: &'a [ScenarioSource],
    pub per_patch: bool,
    pub cross_arch: Option<&'a str>,
    pub scenarios_note: Option<String>,
    pub run_dir: Option<String>,
    /// Runs on other kernel profiles (the debug kernel), after the one
    /// above.
    pub more: &'a [ProfileRun<'a>],
    /// Which base was used and why (the series' base-commit, or what
    /// stood in for it).
    pub base_choice: Option<String>,
}

impl Review {
    pub fn build(f: &Facts) -> Review {
        let patches = patch_rows(f.events, &f.target.name);
        let build = build_summary(f);
        let port_fixes = port_fixes(f, &patches);
        let mut scenarios = scenario_verdicts(f.summary, f.scenarios);
        for run in f.more {
            scenarios.extend(scenario_verdicts(run.summary, f.scenarios));
        }
        let mut runs = vec![ProfileRun {
            summary: f.summary,
            run_dir: f.run_dir.clone(),
        }];
        runs.extend(f.more.iter().map(|r| ProfileRun {
            summary: r.summary,
            run_dir: r.run_dir.clone(),
        }));
        let mut series_files: Vec<String> = patches
            .iter()
            .flat_map(|p| p.files.iter().cloned())
            .collect();
        series_files.sort();
        series_files.dedup();
        let detectors = crate::detectors::section(&runs, f.scenarios, &series_files);
        let kernel_log = f
            .summary
            .kernel_warnings
            .iter()
            .map(|l| KernelLogLine {
                kind: if is_kernel_bug(l) { "bug" } else { "warning" }.into(),
                line: l.clone(),
            })
            .collect();
        let kselftest = kselftest_counts(f.summary);
        let errors: Vec<String> = f.summary.errors.clone();
        let mut review = Review {
            series: series_info(f),
            base: base_info(f),
            patches,
            build,
            port_fixes,
            scenarios,
            scenarios_note: f.scenarios_note.clone(),
            kernel_log,
            kselftest,
            errors,
            detectors,
            findings: Vec::new(),
            explorer: None,
            series_checks: None,
            run: RunInfo {
                run_dir: f.run_dir.clone(),
                accel: f.summary.accel.clone(),
                elapsed_ms: f.summary.elapsed_ms,
            },
            exit_code: 0,
        };
        review.findings = findings(&review, f.kernel_error);
        review
            .findings
            .extend(crate::detectors::findings(&review.detectors));
        review.findings.sort_by_key(|x| x.severity);
        review.exit_code = exit_code_of(&review.findings);
        review
    }

    /// One review of the shards of one reproduction (`--shard K/N` on
    /// several machines): the first part's series, base, patches and
    /// build; every part's scenarios (a scenario in two parts keeps its
    /// first verdict), kernel lines, kselftests, errors and findings
    /// (each finding once), most severe first.
    pub fn merge(parts: &[Review]) -> Option<Review> {
        let mut r = parts.first()?.clone();
        for p in &parts[1..] {
            for sc in &p.scenarios {
                if !r.scenarios.iter().any(|x| x.name == sc.name) {
                    r.scenarios.push(sc.clone());
                }
            }
            for l in &p.kernel_log {
                if !r.kernel_log.contains(l) {
                    r.kernel_log.push(l.clone());
                }
            }
            for k in &p.kselftest {
                if !r.kselftest.iter().any(|x| x.binary == k.binary) {
                    r.kselftest.push(k.clone());
                }
            }
            r.errors.extend(p.errors.iter().cloned());
            for f in &p.findings {
                if !r.findings.contains(f) {
                    r.findings.push(f.clone());
                }
            }
            r.run.elapsed_ms = r.run.elapsed_ms.max(p.run.elapsed_ms);
        }
        // Stable: within a severity, in the order found.
        r.findings.sort_by_key(|f| f.severity);
        r.run.run_dir = None;
        r.exit_code = exit_code_of(&r.findings);
        Some(r)
    }

    /// Every patch applies and builds and every expectation held.
    pub fn passed(&self) -> bool {
        self.exit_code == 0
    }

    /// One line: the verdict and the findings by severity.
    pub fn verdict_line(&self) -> String {
        if self.findings.is_empty() {
            return "no findings: every patch applies and builds, every expectation held".into();
        }
        let mut counts: Vec<String> = Vec::new();
        for s in [
            Severity::Critical,
            Severity::High,
            Severity::Medium,
            Severity::Low,
            Severity::Info,
        ] {
            let n = self.findings.iter().filter(|f| f.severity == s).count();
            if n > 0 {
                counts.push(format!("{n} {}", s.name()));
            }
        }
        format!("{} finding(s): {}", self.findings.len(), counts.join(", "))
    }
}

/// 3 when a finding is the tool's, 1 with findings that count, else 0.
pub(crate) fn exit_code_of(findings: &[Finding]) -> u8 {
    if findings.iter().any(|x| x.tool_failure) {
        3
    } else if findings.iter().any(|x| x.severity <= Severity::Low) {
        1
    } else {
        0
    }
}

fn series_info(f: &Facts) -> SeriesInfo {
    let m = f.series;
    let msg = |index: u32,
               subject: &str,
               id: &str,
               src: gasbench_series::series::IdSource,
               guess: Option<&String>,
               origin: &str| MessageRef {
        index,
        subject: subject.to_string(),
        message_id: id.to_string(),
        id_source: enum_name(&src),
        id_guess: guess.cloned(),
        origin: origin.to_string(),
    };
    let cover = m.cover.as_ref().map(|c| {
        msg(
            0,
            &c.subject,
            &c.message_id,
            c.message_id_source,
            None,
            "posted",
        )
    });
    let patches = m
        .patches
        .iter()
        .map(|p| {
            msg(
                p.index,
                &p.subject,
                &p.message_id,
                p.message_id_source,
                p.message_id_guess.as_ref(),
                match p.origin {
                    PatchOrigin::Posted => "posted",
                    PatchOrigin::Reconstructed => "reconstructed",
                },
            )
        })
        .collect();
    let date = m
        .cover
        .as_ref()
        .map(|c| c.date.clone())
        .or_else(|| m.patches.iter().find_map(|p| p.date.clone()));
    SeriesInfo {
        name: m.name.clone(),
        title: m.title.clone(),
        version: m.version,
        tags: m.tags.clone(),
        total: m.total,
        author: if m.author.email.is_empty() {
            m.author.name.clone()
        } else {
            format!("{} <{}>", m.author.name, m.author.email)
        },
        author_email_source: enum_name(&m.author.email_source),
        date,
        lists: m.lists.clone(),
        cover,
        patches,
        source: format!("{} ({})", m.source.file, m.source.format),
        input: f.target.input.clone(),
        resolved: f.target.how.clone(),
        known: f.target.known,
    }
}

/// A kebab-case serde enum's name.
fn enum_name<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn base_info(f: &Facts) -> BaseInfo {
    let b = f.base;
    BaseInfo {
        release: b.release.clone(),
        package: b.package.clone(),
        package_version: b.package_version.clone(),
        upstream_tag: b.upstream_tag.clone(),
        base_commit: f.manifest.map(|m| m.base_commit.clone()),
        head: f.manifest.map(|m| m.head.clone()),
        kernel_release: f
            .manifest
            .map(|m| m.kernel_release.clone())
            .or_else(|| f.summary.kernel_release.clone()),
        applied: match f.port {
            Some((dir, _)) => format!("with the port ({dir})"),
            None => "as posted, without a port".into(),
        },
        series_base_commit: f.series.base_commit.clone(),
        choice: f.base_choice.clone(),
    }
}

/// The kernel stage's patch events for `series`, with the per-patch
/// build events joined by position. A later apply (the cached replay)
/// replaces an earlier one at the same position.
fn patch_rows(events: &[Event], series: &str) -> Vec<PatchRow> {
    let mut rows: Vec<PatchRow> = Vec::new();
    for e in events {
        match &e.body {
            EventBody::Kernel(KernelEvent::Patch(p)) if p.series == series => {
                let row = row_of(p);
                match rows.iter_mut().find(|r| r.position == row.position) {
                    Some(r) => *r = row,
                    None => rows.push(row),
                }
            }
            EventBody::Kernel(KernelEvent::PatchBuild {
                series: s,
                index,
                builds,
                first_error,
                cross_arch,
                cross_error,
                ..
            }) if s == series => {
                if let Some(r) = rows.iter_mut().find(|r| r.position == *index) {
                    r.build = Some(BuildResult {
                        builds: *builds,
                        first_error: first_error.clone(),
                        cross_arch: cross_arch.clone(),
                        cross_error: cross_error.clone(),
                    });
                }
            }
            _ => {}
        }
    }
    rows.sort_by_key(|r| r.position);
    rows
}

fn row_of(p: &PatchApplied) -> PatchRow {
    PatchRow {
        position: p.index,
        role: p.role,
        posted_index: p.posted_index,
        subject: bare_subject(&p.subject).to_string(),
        status: p.status,
        hunks: p
            .hunks
            .iter()
            .filter(|h| !h.applied)
            .map(|h| {
                format!(
                    "{} hunk {} ({}): {}",
                    h.file,
                    h.hunk,
                    h.header,
                    if h.fuzz { "needs fuzz" } else { "rejected" }
                )
            })
            .collect(),
        detail: p.detail.clone(),
        files: p.files.clone(),
        build: None,
    }
}

/// A subject without its `[RFC PATCH v2 1/2]` (or `[gasbench fixup …]`)
/// prefix: the table's label says which patch it is.
pub fn bare_subject(s: &str) -> &str {
    match s.strip_prefix('[').and_then(|r| r.split_once("] ")) {
        Some((_, rest)) if !rest.is_empty() => rest,
        _ => s,
    }
}

fn build_summary(f: &Facts) -> BuildSummary {
    let stage = |s: Stage| f.summary.stages.iter().find(|x| x.stage == s);
    let failed_before = [Stage::Apply, Stage::Configure]
        .into_iter()
        .filter_map(stage)
        .find(|s| s.outcome == Some(Outcome::Failed));
    let (tree_builds, detail) = match (failed_before, stage(Stage::Build)) {
        (Some(s), _) => (
            None,
            format!(
                "not built: the {} stage failed: {}",
                s.stage.name(),
                s.detail
            ),
        ),
        (None, Some(b)) => match b.outcome {
            Some(Outcome::Failed) => (Some(false), b.detail.clone()),
            Some(_) => (Some(true), b.detail.clone()),
            None => (None, format!("interrupted: {}", b.detail)),
        },
        (None, None) => (None, "not built".into()),
    };
    BuildSummary {
        per_patch: f.per_patch,
        cross_arch: f.cross_arch.map(str::to_string),
        tree_builds,
        detail,
    }
}

fn port_fixes(f: &Facts, rows: &[PatchRow]) -> Vec<PortFix> {
    let Some((dir, ps)) = f.port else {
        return Vec::new();
    };
    let mut out = Vec::new();
    // Replacements the apply used: the posted patch did not apply.
    for r in &ps.replacements {
        let used = rows
            .iter()
            .any(|x| x.role == PatchRole::Replacement && x.posted_index == Some(r.index));
        if used {
            out.push(PortFix {
                kind: FixupKind::BaseDrift,
                role: PatchRole::Replacement,
                file: format!("{dir}/{}", r.file),
                fixes: vec![r.index],
                why: r.why.clone(),
            });
        }
    }
    for x in &ps.fixups {
        out.push(PortFix {
            kind: x.kind,
            role: PatchRole::Fixup,
            file: format!("{dir}/{}", x.file),
            fixes: x.fixes.clone(),
            why: x.why.clone(),
        });
    }
    out
}

fn scenario_verdicts(summary: &RunSummary, sources: &[ScenarioSource]) -> Vec<ScenarioVerdict> {
    let profile = summary.profile.as_ref().map(|p| p.name.clone());
    summary
        .scenarios
        .iter()
        .filter(|sc| !crate::explorer::is_explorer_scenario(&sc.name))
        .map(|sc| {
            let src = sources.iter().find(|s| s.name == sc.name);
            let failures = sc
                .failed_expectations()
                .map(|e| {
                    let line = e.scenario_line().map(|l| l as usize);
                    FailedExpectation {
                        location: match (src, line) {
                            (Some(s), Some(l)) => Some(format!("{}:{l}", s.file)),
                            (Some(s), None) => Some(s.file.clone()),
                            (None, _) => None,
                        },
                        what: e.in_step(),
                        expected: e.expected.clone(),
                        actual: e.actual.clone(),
                        why: src.zip(line).and_then(|(s, l)| comment_above(&s.text, l)),
                    }
                })
                .collect();
            let failed = sc.passed != Some(true);
            ScenarioVerdict {
                about: src
                    .filter(|_| failed)
                    .and_then(|s| leading_comment(&s.text)),
                name: sc.name.clone(),
                profile: profile.clone(),
                file: src.map(|s| s.file.clone()),
                passed: sc.passed,
                held: sc.expectations.iter().filter(|e| e.held).count(),
                total: sc.expectations.len(),
                elapsed_ms: sc.elapsed_ms,
                failures,
            }
        })
        .collect()
}

fn kselftest_counts(s: &RunSummary) -> Vec<KselftestCount> {
    s.ktap_counts()
        .into_iter()
        .map(|(binary, (ok, not_ok, skipped))| KselftestCount {
            failed_tests: s
                .ktap
                .iter()
                .filter(|k| k.binary == binary && k.status == KtapStatus::NotOk)
                .map(|k| k.name.clone())
                .collect(),
            binary,
            ok,
            not_ok,
            skipped,
        })
        .collect()
}

/// A line that starts a crash report (not its `Oops:` or `Call Trace:`
/// continuation).
fn is_headline(line: &str) -> bool {
    let body = printk_body(line);
    [
        "BUG:",
        "general protection fault",
        "Kernel panic",
        "KASAN:",
        "UBSAN:",
    ]
    .iter()
    .any(|h| body.starts_with(h))
}

fn findings(r: &Review, kernel_error: Option<&str>) -> Vec<Finding> {
    let mut out = Vec::new();
    let total = r.series.total;
    let mut tool_failures = Vec::new();
    let mut add = |severity, title: String, detail: Option<String>, location: Option<String>| {
        out.push(Finding {
            severity,
            title,
            detail,
            location,
            tool_failure: false,
        })
    };

    // The kernel. A crash the report parser made into a report is that
    // report's finding (with its stack and the step it is attributed to);
    // the console lines get one only when some headline is no report's.
    let bugs: Vec<&KernelLogLine> = r.kernel_log.iter().filter(|l| l.kind == "bug").collect();
    let reported = |l: &&&KernelLogLine| {
        let body = printk_body(&l.line);
        r.detectors.reports.iter().any(|x| x.title == body)
    };
    let unreported = bugs
        .iter()
        .filter(|l| is_headline(&l.line))
        .any(|l| !reported(&l));
    if let Some(first) = bugs.first().filter(|_| unreported) {
        add(
            Severity::Critical,
            format!(
                "the kernel reported a crash or BUG ({} console line(s))",
                bugs.len()
            ),
            Some(first.line.clone()),
            Some("console.log".into()),
        );
    }
    let warns = r.kernel_log.iter().filter(|l| l.kind == "warning").count();
    if warns > 0 {
        add(
            Severity::High,
            format!("the kernel logged {warns} warning(s)"),
            r.kernel_log
                .iter()
                .find(|l| l.kind == "warning")
                .map(|l| l.line.clone()),
            Some("console.log".into()),
        );
    }

    // Applying.
    for (i, row) in r.patches.iter().enumerate() {
        let label = row.label(total);
        match row.status {
            ApplyStatus::Failed => {
                let replaced = r.patches.get(i + 1).is_some_and(|n| {
                    n.role == PatchRole::Replacement && n.posted_index == row.posted_index
                });
                let (sev, tail) = if replaced {
                    (
                        Severity::Low,
                        "; the port's replacement (same change, context refreshed) was applied instead",
                    )
                } else if matches!(row.role, PatchRole::Posted | PatchRole::Reconstructed) {
                    (Severity::High, "; the series stops there")
                } else {
                    (Severity::High, "; the port needs updating")
                };
                add(
                    sev,
                    format!(
                        "{label} \"{}\" does not apply to {}{tail}",
                        row.subject, r.base.release
                    ),
                    Some(if row.hunks.is_empty() {
                        row.detail.clone()
                    } else {
                        row.hunks.join("; ")
                    }),
                    None,
                );
            }
            ApplyStatus::AppliedWithFuzz => add(
                Severity::Info,
                format!("{label} \"{}\" applies only with fuzz", row.subject),
                Some(row.hunks.join("; ")),
                None,
            ),
            ApplyStatus::Applied => {}
        }
    }

    // Building, patch by patch. A break is reported where it first shows:
    // the same error after the next patch is that break carried along. A
    // posted patch's break that the port's posting-defect fixup for it
    // accounts for is one finding with the fixup, not two: checked, when
    // the first build without the break is right after a fixup; else when
    // the error is in a file a later fixup changes.
    let mut confirmed: Vec<&str> = Vec::new();
    let (mut last_x86, mut last_cross): (Option<&str>, Option<&str>) = (None, None);
    for (i, row) in r.patches.iter().enumerate() {
        let Some(b) = &row.build else { continue };
        let label = row.label(total);
        let x86_err = (!b.builds).then(|| b.first_error.as_deref().unwrap_or("make failed"));
        let new_x86 = x86_err.filter(|e| Some(*e) != last_x86);
        last_x86 = x86_err;
        let new_cross = b.cross_error.as_deref().filter(|e| Some(*e) != last_cross);
        if b.cross_arch.is_some() {
            last_cross = b.cross_error.as_deref();
        }
        let broken_on = match (new_x86, new_cross, &b.cross_arch) {
            (Some(e), _, _) => Some(("x86_64".to_string(), e)),
            (None, Some(e), Some(arch)) => Some((arch.clone(), e)),
            _ => None,
        };
        let defect = row.posted_index.and_then(|k| {
            r.port_fixes.iter().find(|f| {
                f.kind == FixupKind::PostingDefect
                    && f.role == PatchRole::Fixup
                    && f.fixes.contains(&k)
            })
        });
        if let (Some(fix), Some((arch, e))) = (defect, &broken_on) {
            // The first later row checked on that arch without the break.
            let healed_by = r.patches[i + 1..].iter().find(|l| {
                l.build.as_ref().is_some_and(|lb| {
                    if arch == "x86_64" {
                        lb.builds
                    } else {
                        lb.cross_arch.as_deref() == Some(arch.as_str()) && lb.cross_error.is_none()
                    }
                })
            });
            let file = e.split(':').next().unwrap_or("");
            let in_fixed_file = r.patches[i + 1..]
                .iter()
                .any(|l| l.role == PatchRole::Fixup && l.files.iter().any(|f| f == file));
            let how = match healed_by {
                Some(l) if l.role == PatchRole::Fixup => Some(format!(
                    "it builds again after patch {}, the port's fixup",
                    l.position
                )),
                _ if in_fixed_file => Some(format!(
                    "{file} is the file the port's fixup for it changes"
                )),
                _ => None,
            };
            if let Some(how) = how {
                add(
                    Severity::High,
                    format!(
                        "posting defect in {label} \"{}\": it does not build for {arch}; {how}",
                        row.subject
                    ),
                    Some(format!("{e} — {}", fix.why)),
                    Some(fix.file.clone()),
                );
                confirmed.push(&fix.file);
                continue;
            }
        }
        if let Some(e) = new_x86 {
            add(
                Severity::High,
                format!(
                    "the tree does not build after {label} \"{}\" (x86_64)",
                    row.subject
                ),
                Some(e.to_string()),
                None,
            );
        }
        if let (Some(arch), Some(e)) = (&b.cross_arch, new_cross) {
            add(
                Severity::High,
                format!(
                    "{label} \"{}\" does not build for {arch} (its C files, in files the series touches)",
                    row.subject
                ),
                Some(e.to_string()),
                None,
            );
        }
    }
    // The whole tree.
    if r.build.tree_builds == Some(false) {
        add(
            Severity::High,
            "the tree with the series applied does not build".into(),
            Some(r.build.detail.clone()),
            None,
        );
    } else if let Some(e) = kernel_error
        && r.build.tree_builds.is_none()
        && !r.patches.iter().any(|p| p.status == ApplyStatus::Failed)
    {
        // Nothing of the series explains it (no patch failed to apply,
        // the tree was not built): the stage itself failed.
        tool_failures.push(Finding {
            severity: Severity::High,
            title: "the kernel stage failed".into(),
            detail: Some(e.to_string()),
            location: None,
            tool_failure: true,
        });
    }

    // The port.
    for fix in &r.port_fixes {
        let on = fix
            .fixes
            .iter()
            .map(|i| format!("{i}/{total}"))
            .collect::<Vec<_>>()
            .join(", ");
        match (fix.kind, fix.role) {
            // Already reported with the build break that shows it.
            (FixupKind::PostingDefect, _) if confirmed.contains(&fix.file.as_str()) => {}
            (FixupKind::PostingDefect, _) => add(
                Severity::High,
                format!("posting defect in {on}, fixed by the port"),
                Some(fix.why.clone()),
                Some(fix.file.clone()),
            ),
            (FixupKind::BaseDrift, PatchRole::Fixup) => add(
                Severity::Low,
                format!(
                    "{on} does not build on {} as posted (the base moved on); the port adapts it",
                    r.base.release
                ),
                Some(fix.why.clone()),
                Some(fix.file.clone()),
            ),
            // Replacements are already findings of the apply.
            (FixupKind::BaseDrift, _) => {}
        }
    }

    // Running.
    for k in &r.kselftest {
        if k.not_ok > 0 {
            add(
                Severity::High,
                format!("kselftest {}: {} test(s) not ok", k.binary, k.not_ok),
                Some(k.failed_tests.join(", ")),
                None,
            );
        }
    }
    // A failure seen on one profile is one finding (the first profile's
    // wording), not one per profile; kernel reports are findings of their
    // own (the detectors section), with their stacks.
    let first_profile = r.scenarios.first().and_then(|s| s.profile.clone());
    let mut seen: Vec<(String, Option<String>, String)> = Vec::new();
    for sc in &r.scenarios {
        let tag = match (&sc.profile, &first_profile) {
            (Some(p), Some(first)) if p != first => format!("[{p} profile] "),
            _ => String::new(),
        };
        if sc.passed.is_none() {
            add(
                Severity::High,
                format!("{tag}scenario {} did not finish", sc.name),
                None,
                sc.file.clone(),
            );
        }
        for x in &sc.failures {
            // `<step name>: kernel report (<detector>)`.
            if x.what
                .rsplit(": ")
                .next()
                .is_some_and(|w| w.starts_with("kernel report ("))
            {
                continue;
            }
            let key = (sc.name.clone(), x.location.clone(), x.what.clone());
            if seen.contains(&key) {
                continue;
            }
            seen.push(key);
            let mut detail = format!("expected {}, actual {}", x.expected, x.actual);
            if let Some(why) = &x.why {
                detail.push_str(&format!(" — {why}"));
            }
            add(
                Severity::Medium,
                format!("{tag}{}: {}", sc.name, x.what),
                Some(detail),
                x.location.clone(),
            );
        }
    }
    let crashed = r.kernel_log.iter().any(|l| l.kind == "bug");
    for e in &r.errors {
        if kernel_error.is_some_and(|k| e.contains(k) || k.contains(e.as_str())) {
            continue;
        }
        // The kernel crashed and the VM ended with it (the guest reboots on
        // a crash, and QEMU exits): the crash's report, with the step it
        // is attributed to, is the finding.
        if crashed && !unreported && e.contains(" stopped the run: QEMU exited") {
            continue;
        }
        // A run the kernel's crash stopped is the crash's finding; any
        // other stop is the tool's or its environment's.
        tool_failures.push(Finding {
            severity: Severity::High,
            title: format!("the run stopped: {e}"),
            detail: None,
            location: None,
            tool_failure: !crashed,
        });
    }
    out.extend(tool_failures);

    // Most severe first; within a severity, in the order found.
    out.sort_by_key(|f| f.severity);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn titles(f: &[Finding]) -> Vec<&str> {
        f.iter().map(|x| x.title.as_str()).collect()
    }

    /// The cgroup2 oops: its console lines and the two stops it caused
    /// were three findings beside the parsed report; the report is the
    /// one finding now. Without the parsed report they are findings again.
    #[test]
    fn a_crash_the_parser_made_a_report_of_is_one_finding() {
        let r: Review = serde_json::from_str(include_str!(
            "../tests/fixtures/mkdirat2-cgroup2-oops/review.json"
        ))
        .unwrap();
        let f = findings(&r, None);
        let t = titles(&f);
        assert!(
            !t.iter()
                .any(|x| x.starts_with("the kernel reported a crash")),
            "{t:#?}"
        );
        assert!(
            !t.iter().any(|x| x.starts_with("the run stopped")),
            "{t:#?}"
        );
        let d = crate::detectors::findings(&r.detectors);
        assert!(
            d.iter()
                .any(|x| x.title.contains("NULL pointer dereference")),
            "{:#?}",
            titles(&d)
        );
        let mut bare = r.clone();
        bare.detectors.reports.clear();
        let f = findings(&bare, None);
        let t = titles(&f);
        assert!(
            t.iter()
                .any(|x| x.starts_with("the kernel reported a crash")),
            "{t:#?}"
        );
        assert_eq!(
            t.iter()
                .filter(|x| x.starts_with("the run stopped"))
                .count(),
            2,
            "{t:#?}"
        );
    }

    #[test]
    fn a_crash_headline_is_found_under_its_printk_prefix() {
        assert_eq!(
            printk_body("[    4.137922][   T32] BUG: kernel NULL pointer dereference"),
            "BUG: kernel NULL pointer dereference"
        );
        assert!(is_headline(
            "[    4.1] BUG: kernel NULL pointer dereference"
        ));
        assert!(!is_headline("[    4.1] Oops: Oops: 0000 [#1] SMP"));
        assert!(!is_headline("[    4.1] Call Trace:"));
    }
}
