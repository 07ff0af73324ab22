//! The review built from a recorded reproduction: the fixture is a real
//! `gasbench repro … --series mkdirat2 --cross-arch arm` run (its kernel
//! events, verdicts and KTAP lines, trimmed from events.jsonl, and the
//! kernel stage's manifest), with the repository's series, port and
//! scenario files. Then the same facts with a kernel crash, a patch that
//! does not apply as posted, and a clean series.

use std::path::{Path, PathBuf};

use gasbench_events::kernel::{ApplyStatus, KernelEvent, PatchApplied, PatchRole};
use gasbench_events::run::RunEvent;
use gasbench_events::vm::{ConsoleSeverity, VmEvent};
use gasbench_events::{Event, EventBody};
use gasbench_kbuild::BuildManifest;
use gasbench_kbuild::layout::KernelDir;
use gasbench_review::report::ScenarioSource;
use gasbench_review::resolve::known_target;
use gasbench_review::{Facts, Review, Severity};
use gasbench_series::manifest::PortManifest;
use gasbench_trace::RunSummary;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/mkdirat2-per-patch")
        .join(name)
}

struct World {
    kdir: KernelDir,
    port: (PathBuf, PortManifest),
    manifest: BuildManifest,
    events: Vec<Event>,
    scenarios: Vec<ScenarioSource>,
}

fn world() -> World {
    let kdir = KernelDir::open(&repo().join("kernel")).unwrap();
    let port = kdir.port().unwrap();
    let manifest: BuildManifest =
        serde_json::from_str(&std::fs::read_to_string(fixture("manifest.json")).unwrap()).unwrap();
    let (events, cut) = gasbench_trace::log::read_all(&fixture("events.jsonl")).unwrap();
    assert!(cut.is_none());
    let scenarios = [
        ("mkdirat2-emfile", "mkdirat2_emfile.toml"),
        ("mkdirat2-flags", "mkdirat2_flags.toml"),
        ("mkdirat2-kselftest", "mkdirat2_kselftest.toml"),
        ("mkdirat2-selftest-cases", "mkdirat2_selftest_cases.toml"),
    ]
    .iter()
    .map(|(name, file)| ScenarioSource {
        name: name.to_string(),
        file: format!("scenarios/{file}"),
        text: std::fs::read_to_string(repo().join("scenarios").join(file)).unwrap(),
    })
    .collect();
    World {
        kdir,
        port,
        manifest,
        events,
        scenarios,
    }
}

fn review(w: &World, events: &[Event], kernel_error: Option<&str>, with_port: bool) -> Review {
    let target = known_target(
        &w.kdir,
        "mkdirat2-v2",
        "known as kernel/series/mkdirat2-v2",
        "seed.txt",
    );
    let series = w.kdir.series("mkdirat2-v2").unwrap();
    let ps = w
        .port
        .1
        .series
        .iter()
        .find(|s| s.series == "mkdirat2-v2")
        .unwrap();
    let summary = RunSummary::from_events(events);
    Review::build(&Facts {
        target: &target,
        series: &series,
        base: &w.kdir.base,
        port: with_port.then_some(("kernel/port/v7.2.12", ps)),
        manifest: kernel_error.is_none().then_some(&w.manifest),
        kernel_error,
        events,
        summary: &summary,
        scenarios: &w.scenarios,
        per_patch: true,
        cross_arch: Some("arm"),
        scenarios_note: Some("The 4 of 11 scenarios that concern the series.".into()),
        run_dir: Some("/runs/1795772630-repro-mkdirat2-v2".into()),
        more: &[],
        base_choice: None,
    })
}

fn titles(r: &Review) -> Vec<(Severity, String)> {
    r.findings
        .iter()
        .map(|f| (f.severity, f.title.clone()))
        .collect()
}

#[test]
fn the_recorded_reproduction_of_mkdirat2() {
    let w = world();
    let r = review(&w, &w.events, None, true);

    // The series and its ids.
    assert_eq!(r.series.author, "Jori Koolstra <jkoolstra@xs4all.nl>");
    assert_eq!(
        r.series.cover.as_ref().unwrap().message_id,
        "20260412135434.3095416-1-jkoolstra@xs4all.nl"
    );
    assert_eq!(
        r.series.patches[0].id_guess.as_deref(),
        Some("20260412135434.3095416-2-jkoolstra@xs4all.nl")
    );
    assert_eq!(
        r.series.date.as_deref(),
        Some("Sun, 12 Apr 2026 13:54:00 +0000")
    );
    assert_eq!(r.base.head.as_deref(), Some(w.manifest.head.as_str()));

    // The per-patch table.
    let rows: Vec<(u32, PatchRole, ApplyStatus, Option<bool>)> = r
        .patches
        .iter()
        .map(|p| {
            (
                p.position,
                p.role,
                p.status,
                p.build.as_ref().map(|b| b.builds),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (1, PatchRole::Posted, ApplyStatus::Applied, Some(true)),
            (2, PatchRole::Posted, ApplyStatus::Failed, None),
            (3, PatchRole::Replacement, ApplyStatus::Applied, Some(true)),
            (4, PatchRole::Fixup, ApplyStatus::Applied, Some(true)),
        ]
    );
    assert_eq!(
        r.patches[0].subject,
        "vfs: syscalls: add mkdirat2() that returns an O_DIRECTORY fd"
    );
    let one = r.patches[0].build.as_ref().unwrap();
    assert_eq!(one.cross_arch.as_deref(), Some("arm"));
    assert_eq!(
        one.cross_error.as_deref(),
        Some("include/linux/syscalls.h:1008:29: error: expected ';' after top level declarator")
    );
    assert_eq!(r.build.tree_builds, Some(true));

    // The port's fixes: the replacement it used, the fixup with its kind.
    let kinds: Vec<(String, String)> = r
        .port_fixes
        .iter()
        .map(|f| (format!("{:?}", f.kind), f.role.name().to_string()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("BaseDrift".to_string(), "replacement".to_string()),
            ("PostingDefect".to_string(), "fixup".to_string())
        ]
    );

    // Verdicts with the place and the reason the file gives.
    let ks = r
        .scenarios
        .iter()
        .find(|s| s.name == "mkdirat2-kselftest")
        .unwrap();
    assert_eq!((ks.passed, ks.held, ks.total), (Some(false), 14, 15));
    let f = &ks.failures[0];
    assert_eq!(
        f.location.as_deref(),
        Some("scenarios/mkdirat2_kselftest.toml:40")
    );
    assert_eq!(f.what, "the selftest cleaned up after itself: out.names");
    assert!(f.actual.contains("\"mkdirat2_test.29\""), "{}", f.actual);
    assert!(
        f.why
            .as_deref()
            .unwrap()
            .starts_with("Each fixture is /tmp/mkdirat2_test.<pid>")
    );
    assert!(
        ks.about
            .as_deref()
            .unwrap()
            .starts_with("The posted kselftest binary itself")
    );
    assert!(
        r.scenarios
            .iter()
            .filter(|s| s.passed == Some(true))
            .all(|s| s.about.is_none())
    );
    assert_eq!(r.kselftest[0].ok, 7);
    assert!(r.kernel_log.is_empty());

    // The findings, most severe first.
    assert_eq!(
        titles(&r),
        [
            // The arm break and the port's posting-defect fixup are one
            // finding: arm builds again right after the fixup (checked),
            // and 3's arm result is the same break carried along.
            (
                Severity::High,
                "posting defect in 1/2 \"vfs: syscalls: add mkdirat2() that returns an O_DIRECTORY fd\": it does not build for arm; it builds again after patch 4, the port's fixup".to_string()
            ),
            (
                Severity::Medium,
                "mkdirat2-kselftest: the selftest cleaned up after itself: out.names".to_string()
            ),
            (
                Severity::Low,
                "2/2 \"selftest: add tests for mkdirat2()\" does not apply to 7.2.12; the port's replacement (same change, context refreshed) was applied instead".to_string()
            ),
        ]
    );
    assert_eq!(r.exit_code, 1);
    assert_eq!(r.verdict_line(), "3 finding(s): 1 high, 1 medium, 1 low");

    // review.json round-trips; review.md is pinned.
    let json = serde_json::to_string(&r).unwrap();
    assert_eq!(serde_json::from_str::<Review>(&json).unwrap(), r);
    insta::assert_snapshot!("mkdirat2_review_md", gasbench_review::markdown::render(&r));
}

fn ev(seq: u64, body: impl Into<EventBody>) -> Event {
    Event {
        seq,
        t_us: seq,
        body: body.into(),
    }
}

#[test]
fn a_kernel_crash_comes_first() {
    let w = world();
    let mut events = w.events.clone();
    let n = events.len() as u64;
    events.insert(
        events.len() - 1,
        ev(
            n,
            VmEvent::Console {
                line: "[    3.1] BUG: kernel NULL pointer dereference, address: 0000000000000008"
                    .into(),
                severity: ConsoleSeverity::Bug,
            },
        ),
    );
    events.insert(
        events.len() - 1,
        ev(
            n + 1,
            VmEvent::Console {
                line: "[    3.2] WARNING: CPU: 0 PID: 1 at fs/namei.c:4321".into(),
                severity: ConsoleSeverity::Warn,
            },
        ),
    );
    let r = review(&w, &events, None, true);
    assert_eq!(r.kernel_log.len(), 2);
    assert_eq!(r.kernel_log[0].kind, "bug");
    assert_eq!(r.kernel_log[1].kind, "warning");
    let f = &r.findings[0];
    assert_eq!(f.severity, Severity::Critical);
    assert!(
        f.detail
            .as_deref()
            .unwrap()
            .contains("NULL pointer dereference")
    );
    assert!(
        titles(&r)
            .iter()
            .any(|(s, t)| *s == Severity::High && t == "the kernel logged 1 warning(s)")
    );
    let md = gasbench_review::markdown::render(&r);
    assert!(
        md.contains("```\n[    3.1] BUG: kernel NULL pointer dereference"),
        "{md}"
    );
}

#[test]
fn a_posted_patch_that_does_not_apply_without_a_port_stops_the_series() {
    let w = world();
    // As posted: 1/2 applies, 2/2 fails and nothing replaces it; the
    // kernel stage stops there.
    let error = "the kernel stage failed: mkdirat2-v2 patch 2 \"[RFC PATCH v2 2/2] selftest: add tests for mkdirat2()\" does not apply to linux-source-7.2 7.2.12";
    let mut events: Vec<Event> = w
        .events
        .iter()
        .filter(|e| match &e.body {
            EventBody::Kernel(KernelEvent::Patch(p)) => p.index <= 2,
            EventBody::Kernel(KernelEvent::PatchBuild { .. }) => false,
            EventBody::Run(RunEvent::Started { .. }) => true,
            _ => false,
        })
        .cloned()
        .collect();
    events.push(ev(9000, RunEvent::Error { text: error.into() }));
    events.push(ev(
        9001,
        RunEvent::Finished {
            passed: false,
            elapsed_ms: 10,
        },
    ));
    let r = review(&w, &events, Some(error), false);
    assert_eq!(r.patches.len(), 2);
    assert!(r.port_fixes.is_empty());
    assert_eq!(r.base.applied, "as posted, without a port");
    assert_eq!(r.build.tree_builds, None);
    assert_eq!(
        titles(&r),
        [(
            Severity::High,
            "2/2 \"selftest: add tests for mkdirat2()\" does not apply to 7.2.12; the series stops there".to_string()
        )],
        "the kernel stage's error is the same fact, not a second finding"
    );
    assert!(
        r.findings[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("Makefile hunk 1")
    );
    assert_eq!(r.errors, [error]);
    assert_eq!(r.exit_code, 1);
    let md = gasbench_review::markdown::render(&r);
    assert!(
        md.contains("None: the series was applied as posted, without a port."),
        "{md}"
    );
    assert!(
        md.contains("The tree with everything applied: not built"),
        "{md}"
    );
}

#[test]
fn a_series_that_applies_builds_and_passes_has_no_findings_and_exits_0() {
    let w = world();
    let patch = |index, posted: u32, role| {
        KernelEvent::Patch(PatchApplied {
            series: "mkdirat2-v2".into(),
            index,
            total: 2,
            posted_index: Some(posted),
            subject: format!("[PATCH {posted}/2] x"),
            fixup: false,
            role,
            status: ApplyStatus::Applied,
            files: vec!["fs/namei.c".into()],
            hunks: vec![],
            detail: String::new(),
        })
    };
    let build = |index| KernelEvent::PatchBuild {
        series: "mkdirat2-v2".into(),
        index,
        subject: "x".into(),
        builds: true,
        first_error: None,
        cross_arch: None,
        cross_error: None,
    };
    use gasbench_events::run::{Outcome, Stage};
    let events = vec![
        ev(0, patch(1, 1, PatchRole::Posted)),
        ev(1, patch(2, 2, PatchRole::Posted)),
        ev(2, build(1)),
        ev(3, build(2)),
        ev(
            4,
            RunEvent::StageEnd {
                stage: Stage::Build,
                outcome: Outcome::Ok,
                detail: "1484 kbuild steps".into(),
                elapsed_ms: 1,
            },
        ),
        ev(
            5,
            RunEvent::ScenarioBegin {
                scenario: "mkdirat2-flags".into(),
                steps: 1,
            },
        ),
        ev(
            6,
            RunEvent::Expectation {
                scenario: "mkdirat2-flags".into(),
                step: 1,
                line: 20,
                step_name: "mkdirat2".into(),
                what: "ok".into(),
                expected: "success".into(),
                actual: "ok (ret 3)".into(),
                held: true,
            },
        ),
        ev(
            7,
            RunEvent::ScenarioEnd {
                scenario: "mkdirat2-flags".into(),
                passed: true,
                elapsed_ms: 3,
            },
        ),
        ev(
            8,
            RunEvent::Finished {
                passed: true,
                elapsed_ms: 9,
            },
        ),
    ];
    // Without the port: nothing needed fixing.
    let r = review(&w, &events, None, false);
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    assert_eq!(r.exit_code, 0);
    assert!(r.passed());
    assert_eq!(
        r.verdict_line(),
        "no findings: every patch applies and builds, every expectation held"
    );
    let md = gasbench_review::markdown::render(&r);
    assert!(md.contains("**Verdict: clean**"), "{md}");
    assert!(
        md.contains("| 1 | 1/2 \"x\" | applied | yes | fs/namei.c |"),
        "{md}"
    );
    assert!(
        md.contains("| mkdirat2-flags | scenarios/mkdirat2_flags.toml | pass | 1/1 |"),
        "{md}"
    );
    assert!(md.contains("## Findings\n\nNone."), "{md}");
}

/// The recorded run with every per-patch arm result replaced by `arm`
/// (None: not checked) for the row at each position.
fn with_arm_results(w: &World, arm: impl Fn(u32) -> Option<Option<String>>) -> Vec<Event> {
    w.events
        .iter()
        .cloned()
        .map(|mut e| {
            if let EventBody::Kernel(KernelEvent::PatchBuild {
                index,
                cross_arch,
                cross_error,
                ..
            }) = &mut e.body
            {
                match arm(*index) {
                    Some(err) => {
                        *cross_arch = Some("arm".into());
                        *cross_error = err;
                    }
                    None => {
                        *cross_arch = None;
                        *cross_error = None;
                    }
                }
            }
            e
        })
        .collect()
}

#[test]
fn a_break_no_fixup_repairs_stays_a_finding_of_its_own_and_is_reported_once() {
    let w = world();
    // 1/2 breaks arm in a file no fixup touches, and the break stays
    // through the replacement and the fixup: not the defect the port names.
    let namei = "fs/namei.c:5012:3: error: use of undeclared identifier 'lookup_flags'";
    let events = with_arm_results(&w, |_| Some(Some(namei.to_string())));
    let r = review(&w, &events, None, true);
    let t = titles(&r);
    assert_eq!(
        t[..2],
        [
            (
                Severity::High,
                "1/2 \"vfs: syscalls: add mkdirat2() that returns an O_DIRECTORY fd\" does not build for arm (its C files, in files the series touches)".to_string()
            ),
            (Severity::High, "posting defect in 1/2, fixed by the port".to_string()),
        ]
    );
    assert_eq!(r.findings[0].detail.as_deref(), Some(namei));
    // Carried through 3 and 4: not three findings.
    assert_eq!(
        t.iter()
            .filter(|(_, x)| x.contains("does not build"))
            .count(),
        1,
        "{t:#?}"
    );
}

#[test]
fn without_a_check_after_the_fixup_the_file_it_changes_links_break_and_defect() {
    let w = world();
    // As before gasbench compiled broken objects again: the header-only
    // fixup had nothing of its own to compile for arm.
    let events = with_arm_results(&w, |pos| match pos {
        4 => None,
        _ => Some(Some(
            "include/linux/syscalls.h:1008:29: error: expected ';' after top level declarator"
                .to_string(),
        )),
    });
    let r = review(&w, &events, None, true);
    assert_eq!(
        titles(&r)[0],
        (
            Severity::High,
            "posting defect in 1/2 \"vfs: syscalls: add mkdirat2() that returns an O_DIRECTORY fd\": it does not build for arm; include/linux/syscalls.h is the file the port's fixup for it changes".to_string()
        )
    );
    assert!(
        !titles(&r)
            .iter()
            .any(|(_, t)| t.contains("fixed by the port"))
    );
}

/// The same review with a run on the debug kernel beside it: its reports
/// are findings with their decoded stacks and the scenario line, the
/// detectors proven and not are said, and faults injected are counted.
#[test]
fn a_debug_profile_run_adds_what_the_detectors_found() {
    use gasbench_abi::bundle::FaultKind;
    use gasbench_abi::protocol::{AgentMsg, CallRecord, FaultAttempt};
    use gasbench_events::report::{Attribution, Frame, KernelReport, ReportKind, Stack};
    use gasbench_events::run::ProfileChoice;
    use gasbench_review::detectors::ProfileRun;

    let w = world();
    let ev = |seq: u64, body: EventBody| Event {
        seq,
        t_us: seq,
        body,
    };
    let report = |id: u32, kind: ReportKind, step: u32, title: &str| KernelReport {
        id,
        kind,
        title: title.into(),
        task: None,
        stacks: vec![Stack {
            label: "Call Trace".into(),
            frames: vec![Frame {
                function: "do_mkdirat2".into(),
                symbol: None,
                offset: 0x1a,
                size: 0x90,
                reliable: true,
                location: Some("fs/namei.c:4321".into()),
                inlined: vec![],
            }],
        }],
        text: vec![],
        signature: format!("{}|{title}", kind.name()),
        attribution: Attribution {
            scenario: Some("mkdirat2-emfile".into()),
            step: Some(step),
            call: Some(9),
            thread: Some(0),
            how: "the call's task (97) printed it".into(),
        },
        undecoded: String::new(),
    };
    let attempt = |nth: u32, injected: bool| {
        EventBody::Agent(AgentMsg::CallEnd(CallRecord {
            call: 20 + nth as u64,
            step: 2,
            thread: 0,
            iteration: 0,
            name: "mkdirat2".into(),
            fd: None,
            args_in: serde_json::Value::Null,
            args_out: serde_json::Value::Null,
            ret: if injected { -1 } else { 3 },
            errno: injected.then(|| "ENOMEM".to_string()),
            duration_ns: 1,
            fault: Some(FaultAttempt {
                fault: FaultKind::Slab,
                nth,
                injected,
                fd_before: Some(3),
                fd_after: Some(3),
                path_before: Some(false),
                path_after: Some(false),
            }),
        }))
    };
    let debug_events = vec![
        ev(
            1,
            EventBody::Run(RunEvent::Profile(ProfileChoice {
                name: "debug".into(),
                detectors: vec!["kasan".into(), "lockdep".into()],
                about: String::new(),
            })),
        ),
        ev(
            2,
            EventBody::Run(RunEvent::ScenarioBegin {
                scenario: "mkdirat2-emfile".into(),
                steps: 20,
            }),
        ),
        ev(3, attempt(1, true)),
        ev(4, attempt(2, false)),
        ev(
            5,
            EventBody::Vm(VmEvent::KernelReport(Box::new(report(
                1,
                ReportKind::Kasan,
                4,
                "BUG: KASAN: slab-use-after-free in do_mkdirat2+0x1a/0x90",
            )))),
        ),
        ev(
            6,
            EventBody::Run(RunEvent::Expectation {
                scenario: "mkdirat2-emfile".into(),
                step: 4,
                line: 40,
                step_name: "in a child".into(),
                what: "kernel report (kasan)".into(),
                expected: "no kernel report".into(),
                actual: "report #1: BUG: KASAN: slab-use-after-free in do_mkdirat2+0x1a/0x90"
                    .into(),
                held: false,
            }),
        ),
        ev(6, {
            let mut r = report(
                2,
                ReportKind::Lockdep,
                5,
                "WARNING: possible circular locking dependency detected",
            );
            r.stacks[0].frames[0].function = "pciehp_unconfigure_device".into();
            r.stacks[0].frames[0].location = Some("drivers/pci/hotplug/pciehp_pci.c:125".into());
            EventBody::Vm(VmEvent::KernelReport(Box::new(r)))
        }),
        ev(
            7,
            EventBody::Run(RunEvent::ScenarioEnd {
                scenario: "mkdirat2-emfile".into(),
                passed: false,
                elapsed_ms: 10,
            }),
        ),
    ];
    let debug = RunSummary::from_events(&debug_events);
    let more = [ProfileRun {
        summary: &debug,
        run_dir: Some("/runs/2-repro-mkdirat2-v2-debug".into()),
    }];
    let target = known_target(&w.kdir, "mkdirat2-v2", "known", "seed.txt");
    let series = w.kdir.series("mkdirat2-v2").unwrap();
    let summary = RunSummary::from_events(&w.events);
    let r = Review::build(&Facts {
        target: &target,
        series: &series,
        base: &w.kdir.base,
        port: None,
        manifest: Some(&w.manifest),
        kernel_error: None,
        events: &w.events,
        summary: &summary,
        scenarios: &w.scenarios,
        per_patch: true,
        cross_arch: None,
        scenarios_note: None,
        run_dir: None,
        more: &more,
        base_choice: None,
    });
    let d = &r.detectors;
    assert_eq!(d.profiles.len(), 1, "the default run has no profile event");
    assert_eq!(d.profiles[0].profile, "debug");
    assert_eq!(d.profiles[0].not_proven, ["kasan", "lockdep"]);
    assert_eq!(d.reports.len(), 2);
    let x = &d.reports[0];
    assert_eq!(x.in_series, Some(true), "fs/namei.c is the series'");
    assert_eq!(
        x.location.as_deref(),
        Some("scenarios/mkdirat2_emfile.toml:40")
    );
    assert_eq!(x.stack, ["do_mkdirat2 (fs/namei.c:4321)"]);
    assert_eq!(d.injection[0].attempts, 2);
    assert!(d.injection[0].reached_no_fault);
    assert!(
        d.line
            .contains("1 fault(s) injected into 1 call(s), 1 of which reached"),
        "{}",
        d.line
    );
    assert!(
        d.line.contains("NOT proven here: kasan, lockdep"),
        "{}",
        d.line
    );
    // The report is a critical finding with its stack; its verdict is not
    // a second finding; the detectors not proven are said.
    let f = r
        .findings
        .iter()
        .find(|f| f.title.starts_with("kasan report #1"))
        .unwrap();
    assert_eq!(f.severity, Severity::Critical);
    assert!(
        f.detail
            .as_deref()
            .unwrap()
            .contains("do_mkdirat2 (fs/namei.c:4321)")
    );
    assert!(
        !r.findings
            .iter()
            .any(|f| f.title.contains("kernel report (kasan)"))
    );
    assert!(
        r.findings
            .iter()
            .any(|f| f.title.starts_with("lockdep is armed"))
    );
    // The debug run's verdicts are in the review, labelled.
    assert!(
        r.scenarios
            .iter()
            .any(|s| s.profile.as_deref() == Some("debug"))
    );
    let md = gasbench_review::markdown::render(&r);
    assert!(
        md.contains("## Kernel detectors and fault injection"),
        "{md}"
    );
    assert!(md.contains("### kasan report #1 (debug profile)"), "{md}");
    assert!(
        md.contains("| mkdirat2 | slab | 2 | 1 | 0 | ENOMEM ×1 | reached |"),
        "{md}"
    );
}

/// A guest that prints escape sequences on its console, and a series
/// whose subject carries them: review.md shows them as text, never as
/// bytes a terminal would act on (it is printed as it is written).
#[test]
fn review_md_shows_escape_sequences_instead_of_passing_them_on() {
    let w = world();
    let mut events = w.events.clone();
    let n = events.len() as u64;
    events.insert(
        events.len() - 1,
        ev(
            n,
            VmEvent::Console {
                line: "[    3.1] BUG: \x1b[2J\x1b]52;c;cm0gLXJmIH4=\x07 \u{9b}31m\u{202e}gnp.exe"
                    .into(),
                severity: ConsoleSeverity::Bug,
            },
        ),
    );
    let mut r = review(&w, &events, None, true);
    r.series.title = "mkdirat2\x1b]0;owned\x07 \x08\x08".into();
    let md = gasbench_review::markdown::render(&r);
    assert!(
        !md.chars()
            .any(|c| matches!(c, '\x1b' | '\x07' | '\x08' | '\u{9b}' | '\u{202e}')),
        "{md:?}"
    );
    assert!(
        md.contains("BUG: ␛[2J␛]52;c;cm0gLXJmIH4=␇ <U+009B>31m<U+202E>gnp.exe"),
        "{md}"
    );
    assert!(md.contains("mkdirat2␛]0;owned␇ ␈␈"), "{md}");
}

/// The reply to the recorded reproduction: threaded under the cover
/// letter, 72 columns, each finding with its evidence and (where one is
/// found) the quoted hunk, no Tested-by with findings.
#[test]
fn the_reply_mail_to_the_recorded_reproduction() {
    use gasbench_review::reply::{self, ReplyFrom};
    let w = world();
    let r = review(&w, &w.events, None, true);
    let series = w.kdir.series("mkdirat2-v2").unwrap();
    let diffs = reply::patch_diffs(&w.kdir.series_dir("mkdirat2-v2"), &series);
    assert_eq!(diffs.len(), 2);
    let eml = reply::render(
        &r,
        &diffs,
        &ReplyFrom {
            from: "Rev Iewer <rev@example.org>",
            date: "Mon, 07 Dec 2026 05:00:00 +0000",
        },
    );
    if std::env::var_os("GASBENCH_PRINT").is_some() {
        println!("{eml}");
    }
    let (head, body) = eml.split_once("\n\n").unwrap();
    let cover = series.cover.as_ref().unwrap();
    assert!(
        head.contains(&format!("In-Reply-To: <{}>", cover.message_id)),
        "{head}"
    );
    assert!(
        head.contains(&format!("References: <{}>", cover.message_id)),
        "{head}"
    );
    assert!(
        head.contains(&format!("Subject: Re: {}", cover.subject)),
        "{head}"
    );
    assert!(
        head.contains("To: Jori Koolstra <jkoolstra@xs4all.nl>"),
        "{head}"
    );
    assert!(head.contains("Content-Type: text/plain; charset=UTF-8"));
    // Every line of prose fits 72 columns; quoted hunks are as posted.
    for line in body.lines() {
        if !line.starts_with('>') {
            assert!(line.chars().count() <= 72, "too wide: {line:?}");
        }
    }
    // Every finding is there, numbered, with its detail.
    for (i, f) in r.findings.iter().enumerate() {
        assert!(
            body.contains(&format!("{}. [{}]", i + 1, f.severity.name())),
            "{body}"
        );
    }
    // The posting defect that breaks the arm build quotes the hunk.
    assert!(body.contains("> @@"), "a quoted hunk: {body}");
    assert!(!body.contains("Tested-by:"), "findings: no Tested-by");
    assert!(body.ends_with('\n'));
}

/// The reply for the goldfish series, from a real recorded run of its
/// scenarios on the real kernel (the TUI's fixture, which applied both
/// series; the mkdirat2 scenario of that run is left out): threaded under
/// the RFC v3 cover letter, and the read-only ALLOCATE_BLOCK finding
/// quotes the driver's hunk that handles ALLOCATE_BLOCK.
#[test]
fn the_reply_mail_to_a_recorded_goldfish_run() {
    use gasbench_review::reply::{self, ReplyFrom};
    let kdir = KernelDir::open(&repo().join("kernel")).unwrap();
    let port = kdir.port().unwrap();
    let (events, _) = gasbench_trace::log::read_all(
        &repo().join("workbench/gasbench-tui/tests/fixtures/recorded-run/events.jsonl"),
    )
    .unwrap();
    // The goldfish scenarios only.
    let mut inside_other = false;
    let events: Vec<Event> = events
        .into_iter()
        .filter(|e| {
            if let EventBody::Run(RunEvent::ScenarioBegin { scenario, .. }) = &e.body {
                inside_other = !scenario.starts_with("goldfish");
            }
            let keep = !inside_other;
            if let EventBody::Run(RunEvent::ScenarioEnd { .. }) = &e.body {
                inside_other = false;
            }
            keep
        })
        .collect();
    let scenarios: Vec<ScenarioSource> = [
        ("goldfish-errors", "goldfish_errors.toml"),
        ("goldfish-threads", "goldfish_threads.toml"),
        ("goldfish-faults", "goldfish_faults.toml"),
        ("goldfish-hotunplug", "goldfish_hotunplug.toml"),
    ]
    .iter()
    .map(|(name, file)| ScenarioSource {
        name: name.to_string(),
        file: format!("scenarios/{file}"),
        text: std::fs::read_to_string(repo().join("scenarios").join(file)).unwrap(),
    })
    .collect();
    let name = "goldfish-address-space-v3";
    let target = known_target(&kdir, name, "known", "seed.txt");
    let series = kdir.series(name).unwrap();
    let ps = port.1.series.iter().find(|s| s.series == name).unwrap();
    let summary = RunSummary::from_events(&events);
    let r = Review::build(&Facts {
        target: &target,
        series: &series,
        base: &kdir.base,
        port: Some(("kernel/port/v7.2.12", ps)),
        manifest: None,
        kernel_error: None,
        events: &events,
        summary: &summary,
        scenarios: &scenarios,
        per_patch: false,
        cross_arch: None,
        scenarios_note: None,
        run_dir: Some("/tmp/rec-runs/1795773524-run-goldfish".into()),
        base_choice: Some(
            "the series has no base-commit: trailer; built on the pinned base 7.2.12 \
             (linux-source-7.2 7.2.12-1~bpo13+1)"
                .into(),
        ),
        more: &[],
    });
    let diffs = reply::patch_diffs(&kdir.series_dir(name), &series);
    let eml = reply::render(
        &r,
        &diffs,
        &ReplyFrom {
            from: "Rev Iewer <rev@example.org>",
            date: "Mon, 07 Dec 2026 05:00:00 +0000",
        },
    );
    if std::env::var_os("GASBENCH_PRINT").is_some() {
        println!("{eml}");
    }
    let cover = series.cover.as_ref().unwrap();
    assert!(eml.contains(&format!("In-Reply-To: <{}>", cover.message_id)));
    let body = eml.split_once("\n\n").unwrap().1;
    for line in body.lines().filter(|l| !l.starts_with('>')) {
        assert!(line.chars().count() <= 72, "too wide: {line:?}");
    }
    assert!(
        r.findings
            .iter()
            .any(|f| f.title.contains("ALLOCATE_BLOCK")),
        "{:#?}",
        r.findings
    );
    assert!(
        body.replace('\n', " ")
            .contains("(the code that handles allocate_block):"),
        "{body}"
    );
    assert!(!body.contains("Tested-by:"));
}

/// The explorer's findings and the ABI checks join the review: one
/// finding each with its reproducer or file:line, the severity by kind,
/// the explorer's own scenarios kept out of the suite's list, and both
/// sections in review.md.
#[test]
fn explorer_findings_and_abi_checks_join_the_review() {
    use gasbench_abicheck::{CheckResult, Evidence, Verdict};
    use gasbench_explore::explorer::{Finding as XFinding, Stats};
    use gasbench_explore::{Budget, ExploreReport, Kind};

    let w = world();
    // A batch the explorer ran, failing (a reproducer confirms a defect
    // by failing): it is the explorer's, not a suite scenario.
    let mut events = w.events.clone();
    let last = events.last().map_or(0, |e| e.seq);
    for (seq, body) in (last + 1..).zip([
        RunEvent::ScenarioBegin {
            scenario: "explore-goldfish-claim-out-of-area".into(),
            steps: 3,
        },
        RunEvent::Expectation {
            scenario: "explore-goldfish-claim-out-of-area".into(),
            step: 2,
            line: 9,
            step_name: "r.2 CLAIM_SHARED".into(),
            what: "errno".into(),
            expected: "EINVAL".into(),
            actual: "succeeded".into(),
            held: false,
        },
        RunEvent::ScenarioEnd {
            scenario: "explore-goldfish-claim-out-of-area".into(),
            passed: false,
            elapsed_ms: 5,
        },
    ]) {
        events.push(Event {
            seq,
            t_us: 0,
            body: EventBody::Run(body),
        });
    }
    let mut r = review(&w, &events, None, true);
    assert!(
        r.scenarios.iter().all(|s| !s.name.starts_with("explore-")),
        "{:?}",
        r.scenarios.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let before = r.findings.len();
    let finding = |kind, confirmed, signature: &str| XFinding {
        domain: "goldfish".into(),
        signature: signature.into(),
        kind,
        title: format!("title of {signature}"),
        model: "the model".into(),
        observed: "what ran".into(),
        original_ops: 9,
        minimal_ops: 3,
        shrink_rounds: 4,
        minimal: true,
        reproducer: "[scenario]\n".into(),
        file: format!("explore-goldfish-{}.toml", signature.replace('.', "-")),
        confirmed,
        note: None,
    };
    let report_for = |domain: &str| ExploreReport {
        domain: domain.into(),
        seed: 1,
        budget: Budget::default(),
        stats: Stats::default(),
        findings: vec![],
    };
    let find_in = |r: &gasbench_review::Review, needle: &str| {
        r.findings
            .iter()
            .find(|f| f.title.contains(needle))
            .cloned()
            .unwrap_or_else(|| panic!("no finding with {needle}"))
    };
    let report = ExploreReport {
        domain: "goldfish".into(),
        seed: 1,
        budget: Budget::default(),
        stats: Stats {
            sequences: 40,
            calls: 600,
            ..Stats::default()
        },
        findings: vec![
            finding(Kind::Defect, Some(true), "claim.out-of-area"),
            finding(Kind::Defect, Some(false), "close.leak"),
            finding(Kind::Question, Some(true), "ping.offset"),
        ],
    };
    gasbench_review::explorer::add(&mut r, &[report], "/runs/x/reproducers");
    let checks = vec![
        CheckResult {
            check: "ioctl.direction",
            subject: "X_FREE".into(),
            verdict: Verdict::Defect,
            title: "X_FREE is declared _IOWR but the driver only copies the argument in".into(),
            evidence: vec![Evidence::new("drivers/x.rs", 7, "X_FREE => {")],
        },
        CheckResult {
            check: "syscall.number",
            subject: "x".into(),
            verdict: Verdict::Pass,
            title: "x takes 472".into(),
            evidence: vec![Evidence::new("scripts/syscall.tbl", 415, "472 common x")],
        },
    ];
    gasbench_review::series_checks::add(&mut r, &checks, "/tree");
    assert_eq!(r.findings.len(), before + 4, "{:#?}", titles(&r));
    let find = |needle: &str| {
        r.findings
            .iter()
            .find(|f| f.title.contains(needle))
            .unwrap_or_else(|| panic!("no finding with {needle}: {:#?}", titles(&r)))
    };
    let d = find("title of claim.out-of-area");
    assert_eq!(d.severity, Severity::Medium);
    assert!(d.title.contains("shown by the explorer"));
    assert_eq!(
        d.location.as_deref(),
        Some("/runs/x/reproducers/explore-goldfish-claim-out-of-area.toml")
    );
    assert_eq!(find("title of close.leak").severity, Severity::Low);
    assert_eq!(find("title of ping.offset").severity, Severity::Info);
    let a = find("X_FREE is declared _IOWR");
    assert_eq!(a.severity, Severity::Medium);
    assert!(a.title.contains("shown by reading the tree"));
    assert_eq!(a.location.as_deref(), Some("drivers/x.rs:7"));
    assert_eq!(r.exit_code, 1);
    let md = gasbench_review::markdown::render(&r);
    assert!(md.contains("\n## Explorer\n"), "{md}");
    assert!(md.contains("| goldfish | 1 | 0 | 40 | 600 |"), "{md}");
    assert!(md.contains("\n## ABI checks\n"));
    assert!(md.contains("| syscall.number | x | pass |"));

    // One divergence on several filesystems is one finding, with every
    // domain named and the reproducer that showed it again first.
    let on = |fs: &str, confirmed| XFinding {
        domain: format!("mkdirat2-{fs}"),
        title: format!("flags differ ({fs})"),
        file: format!("explore-mkdirat2-{fs}-status-flags.toml"),
        ..finding(Kind::Defect, confirmed, "mkdirat2.status-flags")
    };
    let per_fs = |fs: &str, confirmed| ExploreReport {
        domain: format!("mkdirat2-{fs}"),
        findings: vec![on(fs, confirmed)],
        ..report_for("mkdirat2")
    };
    let before = r.findings.len();
    gasbench_review::explorer::add(
        &mut r,
        &[per_fs("tmpfs", None), per_fs("ramfs", Some(true))],
        "/runs/x/reproducers",
    );
    assert_eq!(r.findings.len(), before + 1, "{:#?}", titles(&r));
    let g = find_in(&r, "flags differ");
    assert!(
        g.title.starts_with(
            "mkdirat2-tmpfs, mkdirat2-ramfs (defect, shown by the explorer): flags differ"
        ),
        "{}",
        g.title
    );
    assert!(!g.title.ends_with("(tmpfs)"), "{}", g.title);
    assert_eq!(g.severity, Severity::Medium, "confirmed on one of them");
    assert_eq!(
        g.location.as_deref(),
        Some("/runs/x/reproducers/explore-mkdirat2-ramfs-status-flags.toml")
    );
    assert!(
        g.detail
            .as_deref()
            .unwrap()
            .contains("also: /runs/x/reproducers/explore-mkdirat2-tmpfs-status-flags.toml")
    );
}
