//! The language and the evaluator for the kernel's detectors and
//! systematic fault injection: `inject`, `expect.report`,
//! `expect.kernel.leaks`, `[scenario] profiles`, and kernel reports in the
//! verdicts.

use gasbench_abi::bundle::{Action, FaultKind, Inject};
use gasbench_abi::protocol::{AgentMsg, CallRecord, FaultAttempt};
use gasbench_events::report::{Attribution, KernelReport, ReportKind};
use gasbench_scenario::*;
use serde_json::{Value, json};

fn ok(text: &str) -> Compiled {
    compile("t.toml", text).unwrap_or_else(|p| panic!("{:?}", miette::Report::new(*p)))
}

fn problems(text: &str) -> Vec<String> {
    match compile("t.toml", text) {
        Ok(_) => Vec::new(),
        Err(p) => p.problems.iter().map(|x| x.message.clone()).collect(),
    }
}

#[test]
fn inject_compiles_to_attempts_and_the_attempts_rule() {
    let c = ok(r#"
[scenario]
profiles = ["debug"]

[[step]]
open = { path = "/dev/goldfish_address_space", flags = ["O_RDWR"] }
inject = { fault = "slab", nth = "each" }
capture = "dev"

[[step]]
ioctl = { fd = "${dev}", cmd = "ALLOCATE_BLOCK", size = 4096 }
inject = { fault = "usercopy", nth = "3..10" }
expect.errno = "EINVAL"

[[step]]
inject = { fault = "page", nth = 4, errno = "ENOSPC" }
  [[step.steps]]
  open = { path = "/dev/null" }
  capture = "r"
  [[step.steps]]
  close = { fd = "${r}" }
"#);
    assert_eq!(c.plan.profiles, ["debug"]);
    let s = &c.bundle.steps;
    assert_eq!(
        s[0].inject,
        Some(Inject {
            fault: FaultKind::Slab,
            first: 1,
            last: DEFAULT_INJECT_ATTEMPTS
        })
    );
    assert_eq!(
        s[1].inject,
        Some(Inject {
            fault: FaultKind::Usercopy,
            first: 3,
            last: 10
        })
    );
    assert_eq!(s[2].inject.map(|i| (i.first, i.last)), Some((4, 4)));
    assert!(matches!(s[2].action, Action::Block { threads: 0, .. }));
    // The attempts' rule: ENOMEM for slab, EFAULT (and the step's own
    // errno) for user copies; on a block, on its last (attempted) step.
    let injected: Vec<(u32, Vec<String>)> = c
        .plan
        .expectations
        .iter()
        .filter_map(|e| match &e.check {
            Check::Injected { errnos } => Some((e.step, errnos.clone())),
            _ => None,
        })
        .collect();
    let close_id = c.plan.steps.last().unwrap().id;
    assert_eq!(
        injected,
        vec![
            (0, vec!["ENOMEM".to_string()]),
            (1, vec!["EFAULT".to_string(), "EINVAL".to_string()]),
            (close_id, vec!["ENOMEM".to_string(), "ENOSPC".to_string()]),
        ]
    );
}

#[test]
fn bad_injections_are_refused_with_their_reason() {
    let p = problems(
        r#"
[[step]]
open = { path = "/dev/null" }
inject = { fault = "disk", nth = "each" }

[[step]]
open = { path = "/dev/null" }
inject = { fault = "slab", nth = "9..3" }

[[step]]
open = { path = "/dev/null" }
inject = { fault = "slab", nth = 0 }

[[step]]
sleep = "1ms"
inject = { fault = "slab" }

[[step]]
threads = 2
inject = { fault = "slab" }
  [[step.steps]]
  open = { path = "/dev/null" }
"#,
    );
    let all = p.join("\n");
    assert!(all.contains("unknown fault kind `disk`"), "{all}");
    assert!(all.contains("nth = \"9..3\""), "{all}");
    assert!(all.contains("fault numbers count from 1"), "{all}");
    assert!(
        all.contains("`inject` goes on a call or a plain block"),
        "{all}"
    );
    assert_eq!(p.len(), 5, "{all}");
}

#[test]
fn reports_leaks_profiles_and_write_file() {
    let c = ok(r#"
[[step]]
write_file = { path = "/sys/kernel/debug/provoke-crash/DIRECT", text = "READ_AFTER_FREE", flags = ["O_WRONLY"] }
expect.report = "kasan"

[[step]]
expect.kernel = { leaks = 0 }
"#);
    assert!(matches!(c.bundle.steps[0].action, Action::WriteFile { .. }));
    assert!(c.bundle.steps[1].kmemleak_scan);
    assert!(!c.bundle.steps[0].kmemleak_scan);
    assert!(c.plan.reports_fail);
    let p = problems(
        r#"
[scenario]
profiles = ["Debug!"]

[[step]]
open = { path = "/dev/null" }
expect.report = "kasn"
"#,
    );
    let all = p.join("\n");
    assert!(all.contains("`Debug!` is not a profile name"), "{all}");
    assert!(
        all.contains("`kasn` is not a kind of kernel report"),
        "{all}"
    );
}

fn report(id: u32, kind: ReportKind, step: Option<u32>, sig: &str) -> KernelReport {
    KernelReport {
        id,
        kind,
        title: format!("{} title", kind.name()),
        task: None,
        stacks: vec![],
        text: vec![format!("BUG: {} here", kind.name())],
        signature: sig.into(),
        attribution: Attribution {
            scenario: Some("t".into()),
            step,
            call: None,
            thread: None,
            how: "test".into(),
        },
        undecoded: String::new(),
    }
}

fn begin(ev: &mut Evaluator, step: u32) {
    ev.agent(&AgentMsg::StepBegin {
        bundle: 1,
        step,
        thread: 0,
        name: String::new(),
    });
}

fn call(ev: &mut Evaluator, id: u64, step: u32, errno: Option<&str>, fault: Option<FaultAttempt>) {
    ev.agent(&AgentMsg::CallEnd(CallRecord {
        call: id,
        step,
        thread: 0,
        iteration: 0,
        name: "mkdirat2".into(),
        fd: None,
        args_in: Value::Null,
        args_out: json!(null),
        ret: if errno.is_some() { -1 } else { 3 },
        errno: errno.map(str::to_string),
        duration_ns: 1,
        fault,
    }));
}

fn end(mut ev: Evaluator) -> Vec<Verdict> {
    ev.agent(&AgentMsg::BundleEnd {
        bundle: 1,
        error: None,
    });
    ev.finish().verdicts
}

#[test]
fn an_unasked_report_fails_its_step_and_an_asked_one_proves_it() {
    let c = ok(r#"
[[step]]
write_file = { path = "/x", text = "READ_AFTER_FREE" }
expect.report = "kasan"

[[step]]
open = { path = "/dev/null" }
"#);
    let mut ev = Evaluator::new(&c);
    ev.agent(&AgentMsg::BundleBegin {
        bundle: 1,
        scenario: "t".into(),
        steps: 2,
    });
    begin(&mut ev, 0);
    call(&mut ev, 1, 0, None, None);
    ev.console(Some(0), "[ 1.0] BUG: kasan here");
    ev.kernel_report(&report(1, ReportKind::Kasan, Some(0), "a"));
    begin(&mut ev, 1);
    call(&mut ev, 2, 1, None, None);
    ev.console(Some(1), "[ 2.0] [  T97] BUG: lockdep here");
    ev.kernel_report(&report(2, ReportKind::Lockdep, Some(1), "b"));
    // The same report again on the same step: counted.
    ev.kernel_report(&report(2, ReportKind::Lockdep, Some(1), "b"));
    let v = end(ev);
    let proof = v.iter().find(|x| x.what == "report").unwrap();
    assert!(proof.held, "{proof:?}");
    assert!(
        proof.actual.starts_with("report #1: kasan title"),
        "{proof:?}"
    );
    let bad: Vec<&Verdict> = v
        .iter()
        .filter(|x| x.what.starts_with("kernel report"))
        .collect();
    assert_eq!(bad.len(), 1, "{v:#?}");
    assert_eq!(bad[0].step, Some(1));
    assert!(!bad[0].held);
    assert_eq!(bad[0].what, "kernel report (lockdep)");
    assert!(bad[0].actual.contains("(seen 2 times)"), "{:?}", bad[0]);
    // The report's lines are judged as the report, not by the built-in
    // line patterns (which would fail the whole run twice over).
    assert!(
        v.iter().filter(|x| x.what == "kernel_log").all(|x| x.held),
        "{v:#?}"
    );
}

#[test]
fn a_report_from_another_step_proves_nothing() {
    let c = ok(r#"
[[step]]
write_file = { path = "/x", text = "LEAK" }
expect.report = "kmemleak"

[[step]]
open = { path = "/dev/null" }
"#);
    let mut ev = Evaluator::new(&c);
    begin(&mut ev, 0);
    call(&mut ev, 1, 0, None, None);
    begin(&mut ev, 1);
    call(&mut ev, 2, 1, None, None);
    ev.kernel_report(&report(1, ReportKind::Kmemleak, Some(1), "a"));
    let v = end(ev);
    let proof = v.iter().find(|x| x.what == "report").unwrap();
    assert!(!proof.held);
    assert_eq!(
        proof.actual,
        "no such report (0 other report(s) from the step)"
    );
}

#[test]
fn leaks_are_counted_from_the_scan_after_the_step() {
    let c = ok(r#"
[[step]]
open = { path = "/dev/null" }
expect.kernel = { leaks = 0 }

[[step]]
open = { path = "/dev/null" }
expect.kernel = { leaks = 0 }

[[step]]
open = { path = "/dev/null" }
expect.kernel = { leaks = 0 }
"#);
    let mut ev = Evaluator::new(&c);
    for s in 0..3 {
        begin(&mut ev, s);
        call(&mut ev, s as u64 + 1, s, None, None);
    }
    ev.kmemleak_scan(Some(0), None);
    ev.kmemleak_scan(Some(1), None);
    ev.kernel_report(&report(4, ReportKind::Kmemleak, Some(1), "leak"));
    ev.kernel_report(&report(4, ReportKind::Kmemleak, Some(1), "leak"));
    ev.kmemleak_scan(Some(2), Some("this kernel has no kmemleak".into()));
    let v = end(ev);
    let leaks: Vec<&Verdict> = v.iter().filter(|x| x.what == "kernel.leaks").collect();
    assert_eq!(leaks.len(), 3);
    assert!(leaks[0].held && leaks[0].actual == "no unreferenced object");
    assert!(!leaks[1].held);
    assert!(
        leaks[1].actual.starts_with("2 unreferenced object(s)"),
        "{:?}",
        leaks[1]
    );
    assert!(leaks[2].held, "a kernel without kmemleak cannot be checked");
    assert_eq!(leaks[2].actual, "not checked: this kernel has no kmemleak");
    // The leak is judged by expect.kernel only, not twice.
    assert!(
        !v.iter().any(|x| x.what.starts_with("kernel report")),
        "{v:#?}"
    );
}

fn attempt(nth: u32, injected: bool, fds: (i32, i32), path: (bool, bool)) -> Option<FaultAttempt> {
    Some(FaultAttempt {
        fault: FaultKind::Slab,
        nth,
        injected,
        fd_before: Some(fds.0),
        fd_after: Some(fds.1),
        path_before: Some(path.0),
        path_after: Some(path.1),
    })
}

#[test]
fn injected_attempts_must_fail_cleanly_and_the_last_must_succeed() {
    let c = ok(r#"
[[step]]
mkdirat2 = { path = "/tmp/d" }
inject = { fault = "slab", nth = "each" }
"#);
    // Fault 1: ENOMEM, nothing left. Fault 2: ENOMEM but the directory
    // stayed and a descriptor is gone. Fault 3: EIO. Fault 4: none
    // consumed, the call succeeded.
    let mut ev = Evaluator::new(&c);
    begin(&mut ev, 0);
    call(
        &mut ev,
        1,
        0,
        Some("ENOMEM"),
        attempt(1, true, (3, 3), (false, false)),
    );
    call(
        &mut ev,
        2,
        0,
        Some("ENOMEM"),
        attempt(2, true, (3, 4), (false, true)),
    );
    call(
        &mut ev,
        3,
        0,
        Some("EIO"),
        attempt(3, true, (3, 3), (false, false)),
    );
    call(
        &mut ev,
        4,
        0,
        None,
        attempt(4, false, (3, 4), (false, true)),
    );
    let v = end(ev);
    let inj = v.iter().find(|x| x.what == "inject").unwrap();
    assert!(!inj.held);
    assert!(inj.actual.starts_with("2 of 3 calls failed it; first: slab fault #2: errno ENOMEM, but the lowest free fd went from 3 to 4 (a descriptor stayed reserved); the path was left behind"), "{}", inj.actual);
    // The step's own rule (ok = true by default) judges the no-fault
    // attempt only.
    let ok = v.iter().find(|x| x.what == "ok").unwrap();
    assert!(ok.held, "{ok:?}");
    assert_eq!(ok.actual, "ok (ret 3)");
}

#[test]
fn a_call_without_fault_points_passes_the_attempts_rule_saying_so() {
    let c = ok(r#"
[[step]]
open = { path = "/dev/null" }
inject = { fault = "usercopy", nth = "each" }
"#);
    let mut ev = Evaluator::new(&c);
    begin(&mut ev, 0);
    call(
        &mut ev,
        1,
        0,
        None,
        attempt(1, false, (3, 4), (false, false)),
    );
    let v = end(ev);
    let inj = v.iter().find(|x| x.what == "inject").unwrap();
    assert!(inj.held);
    assert!(
        inj.actual.starts_with("no attempt had a fault injected"),
        "{}",
        inj.actual
    );
}

#[test]
fn the_default_suite_has_the_detector_proofs_and_fault_injection() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    let dbg = load(&root.join("detectors_debug.toml")).unwrap();
    assert_eq!(dbg.plan.profiles, ["debug"]);
    let kinds: Vec<String> = dbg
        .plan
        .expectations
        .iter()
        .filter_map(|e| match &e.check {
            Check::Report { kinds } => Some(kinds.join(",")),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        ["lockdep", "atomic-sleep", "ubsan", "kmemleak", "kasan"]
    );
    let race = load(&root.join("detectors_race.toml")).unwrap();
    assert_eq!(race.plan.profiles, ["race"]);
    for f in [
        "goldfish_fault_injection.toml",
        "mkdirat2_fault_injection.toml",
    ] {
        let c = load(&root.join(f)).unwrap();
        assert!(
            c.bundle.all_steps().iter().any(|s| s.inject.is_some()),
            "{f}"
        );
        assert!(c.bundle.all_steps().iter().any(|s| s.kmemleak_scan), "{f}");
    }
}
