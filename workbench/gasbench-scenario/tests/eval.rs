//! The evaluator against hand-made runs: what the engine would feed it.

use gasbench_abi::protocol::{AgentMsg, CallRecord, KtapResult, KtapStatus};
use gasbench_events::device::DeviceState;
use gasbench_scenario::{Compiled, Evaluator, Verdict, compile};
use serde_json::{Value, json};

fn ok(text: &str) -> Compiled {
    compile("t.toml", text).unwrap_or_else(|p| panic!("{:?}", miette::Report::new(*p)))
}

/// A little run builder: threads, steps and calls as the agent reports.
struct Run<'a> {
    ev: Evaluator<'a>,
    call: u64,
}

impl<'a> Run<'a> {
    fn new(c: &'a Compiled) -> Run<'a> {
        let mut ev = Evaluator::new(c);
        ev.agent(&AgentMsg::BundleBegin {
            bundle: 1,
            scenario: "t".into(),
            steps: 0,
        });
        ev.agent(&AgentMsg::Thread {
            thread: 0,
            parent: None,
            step: None,
            pid: 1,
        });
        Run { ev, call: 0 }
    }

    fn thread(&mut self, thread: u32, parent: u32, step: u32) {
        self.ev.agent(&AgentMsg::Thread {
            thread,
            parent: Some(parent),
            step: Some(step),
            pid: 1,
        });
    }

    fn call(&mut self, step: u32, thread: u32, ret: i64, errno: Option<&str>, out: Value) {
        self.call += 1;
        self.ev.agent(&AgentMsg::StepBegin {
            bundle: 1,
            step,
            thread,
            name: String::new(),
        });
        self.ev.agent(&AgentMsg::CallEnd(CallRecord {
            call: self.call,
            step,
            thread,
            iteration: 0,
            name: "x".into(),
            fd: (ret >= 0 && errno.is_none()).then_some(ret as i32),
            args_in: Value::Null,
            args_out: out,
            ret,
            errno: errno.map(str::to_string),
            duration_ns: 1,
            fault: None,
        }));
    }

    fn end(mut self) -> Vec<Verdict> {
        self.ev.agent(&AgentMsg::BundleEnd {
            bundle: 1,
            error: None,
        });
        self.ev.finish().verdicts
    }
}

fn find<'v>(v: &'v [Verdict], what: &str) -> Vec<&'v Verdict> {
    v.iter().filter(|x| x.what == what).collect()
}

const DEVICE: &str = r#"
[[step]]
open = { path = "/dev/goldfish_address_space" }
capture = "dev"

[[step]]
ioctl = { fd = "${dev}", cmd = "ALLOCATE_BLOCK", size = 4096 }
capture = "blk"
expect.out = { size = 8192 }
expect.device = { handles = 1, blocks = 1, has_block = "${blk.offset}" }

[[step]]
close = { fd = "${dev}" }
expect.device = { handles = 0, all_free = true }
"#;

/// A device state as the model reports it: `blocks` tile the shared area,
/// the gaps between the guest's blocks are free.
fn state(handles: &[(u32, Option<u64>)], guest: &[(u64, u64)], shared_size: u64) -> DeviceState {
    use gasbench_events::device::{BlockInfo, BlockOwner, HandleInfo};
    let mut blocks = Vec::new();
    let mut at = 0;
    for &(offset, size) in guest {
        if offset > at {
            blocks.push(BlockInfo {
                offset: at,
                size: offset - at,
                owner: BlockOwner::Free,
            });
        }
        blocks.push(BlockInfo {
            offset,
            size,
            owner: BlockOwner::Guest,
        });
        at = offset + size;
    }
    if at < shared_size {
        blocks.push(BlockInfo {
            offset: at,
            size: shared_size - at,
            owner: BlockOwner::Free,
        });
    }
    DeviceState {
        handles: handles
            .iter()
            .map(|&(handle, ping_page)| HandleInfo {
                handle,
                ping_page,
                service: None,
                pings: 0,
            })
            .collect(),
        blocks,
        shared_size,
        ..Default::default()
    }
}

#[test]
fn device_snapshots_are_judged_with_captured_values() {
    let c = ok(DEVICE);
    let mut r = Run::new(&c);
    r.call(0, 0, 3, None, Value::Null);
    r.call(
        1,
        0,
        0,
        None,
        json!({"size": 8192, "offset": 0x7000, "phys_addr": 0xfe007000u64}),
    );
    r.ev.device_snapshot(
        0,
        &state(&[(1, Some(0x1000))], &[(0x7000, 0x2000)], 0x10000),
    );
    r.call(2, 0, 0, None, Value::Null);
    // The close leaked a block: the device still holds it.
    r.ev.device_snapshot(1, &state(&[], &[(0x7000, 0x2000)], 0x10000));
    let v = r.end();
    let has = find(&v, "device.has_block");
    assert!(has[0].held, "{:?}", has[0]);
    assert_eq!(has[0].expected, "a block at ${blk.offset}");
    assert!(find(&v, "device.handles").iter().all(|x| x.held));
    let free = find(&v, "device.all_free")[0];
    assert!(!free.held);
    assert_eq!(
        free.actual,
        "blocks [0x7000+0x2000], free [0x0+0x7000, 0x9000+0x7000], shared size 0x10000"
    );
    assert_eq!(free.line, 14);
    let out = find(&v, "out.size")[0];
    assert!(out.held);
    assert_eq!(out.actual, "size = 0x2000");
    assert_eq!(v.iter().filter(|x| !x.held).count(), 1, "{v:#?}");
}

#[test]
fn steps_that_never_ran_or_could_not_run_fail_with_the_reason() {
    let c = ok(DEVICE);
    let mut r = Run::new(&c);
    r.call(0, 0, -1, Some("ENOENT"), Value::Null);
    // The capture failed, so the agent could not resolve ${dev}.
    r.ev.agent(&AgentMsg::StepBegin {
        bundle: 1,
        step: 1,
        thread: 0,
        name: String::new(),
    });
    r.ev.agent(&AgentMsg::StepEnd {
        bundle: 1,
        step: 1,
        thread: 0,
        error: Some("${dev} is not set".into()),
    });
    // The agent died before step 2: no BundleEnd.
    let v = r.ev.finish().verdicts;
    let open_ok = &v
        .iter()
        .find(|x| x.step == Some(0) && x.what == "ok")
        .unwrap();
    assert!(!open_ok.held);
    assert_eq!(
        open_ok.actual,
        "errno ENOENT (call 1, thread 0, iteration 0)"
    );
    let out = find(&v, "out.size")[0];
    assert_eq!(out.actual, "the step could not run: ${dev} is not set");
    let ran = find(&v, "the agent ran the step")[0];
    assert_eq!((ran.step, ran.held), (Some(1), false));
    let last = v
        .iter()
        .find(|x| x.step == Some(2) && x.what == "ok")
        .unwrap();
    assert_eq!(
        last.actual,
        "the step never ran (the agent did not finish the bundle)"
    );
    let dev = v
        .iter()
        .find(|x| x.step == Some(2) && x.what == "device.handles")
        .unwrap();
    assert!(!dev.held);
    assert_eq!(find(&v, "bundle")[0].actual, "the agent never finished it");
}

#[test]
fn captures_are_per_thread_and_inherited_from_the_parent() {
    let c = ok(r#"
[[step]]
open = { path = "/dev/null" }
capture = "shared"

[[step]]
threads = 2
  [[step.steps]]
  fstat = { fd = "${shared}" }
  capture = "st"
  [[step.steps]]
  fstatat = { path = "x" }
  expect.out = { ino = "${st.ino}", dev = "${shared} + 100" }
"#);
    let mut r = Run::new(&c);
    r.call(0, 0, 5, None, Value::Null);
    r.thread(1, 0, 1);
    r.thread(2, 0, 1);
    r.call(2, 1, 0, None, json!({"ino": 11}));
    r.call(2, 2, 0, None, json!({"ino": 22}));
    // Interleaved: each thread's fstatat compares with its own fstat, and
    // ${shared} comes from the main thread.
    r.call(3, 2, 0, None, json!({"ino": 22, "dev": 105}));
    r.call(3, 1, 0, None, json!({"ino": 11, "dev": 105}));
    let v = r.end();
    let ino = find(&v, "out.ino")[0];
    assert!(ino.held, "{ino:?}");
    assert_eq!(ino.actual, "all 2 calls: ino = 11");
    assert!(find(&v, "out.dev")[0].held);

    // Crossed values fail, naming the call.
    let mut r = Run::new(&c);
    r.call(0, 0, 5, None, Value::Null);
    r.thread(1, 0, 1);
    r.thread(2, 0, 1);
    r.call(2, 1, 0, None, json!({"ino": 11}));
    r.call(2, 2, 0, None, json!({"ino": 22}));
    r.call(3, 1, 0, None, json!({"ino": 22, "dev": 105}));
    r.call(3, 2, 0, None, json!({"ino": 22, "dev": 105}));
    let v = r.end();
    let ino = find(&v, "out.ino")[0];
    assert!(!ino.held);
    assert_eq!(
        ino.actual,
        "1 of 2 calls failed it; first: ino = 22 (call 4, thread 1, iteration 0)"
    );
}

#[test]
fn call_counts_host_actions_and_ktap() {
    let c = ok(r#"
[[step]]
open = { path = "/dev/null" }
repeat = 3
expect.calls = 3

[[step]]
host = "device_del"

[[step]]
kselftest = { path = "/t" }
expect.ok = true
expect.ktap = { all_pass = true, planned = 3, pass = ["a", "suite.b"], skip = ["c"] }
"#);
    let mut r = Run::new(&c);
    r.call(0, 0, 3, None, Value::Null);
    r.call(0, 0, 4, None, Value::Null);
    r.ev.host_action(0, Err("DEVICE_DELETED did not come within 10 s".into()));
    for (n, name, status) in [
        (1, "suite.a", KtapStatus::Ok),
        (2, "suite.b", KtapStatus::NotOk),
        (3, "suite.c", KtapStatus::Skip),
    ] {
        r.ev.agent(&AgentMsg::Ktap(KtapResult {
            step: 2,
            thread: 0,
            binary: "t".into(),
            depth: 0,
            number: n,
            name: name.into(),
            status,
            directive: None,
        }));
    }
    r.call(
        2,
        0,
        1,
        None,
        json!({"planned": 3, "exit_code": 1, "bail_out": null}),
    );
    let v = r.end();
    let calls = find(&v, "calls")[0];
    assert_eq!((calls.held, calls.actual.as_str()), (false, "2 calls"));
    let host = find(&v, "host device_del")[0];
    assert!(!host.held);
    assert_eq!(
        host.actual,
        "failed: DEVICE_DELETED did not come within 10 s"
    );
    let exit = v
        .iter()
        .find(|x| x.step == Some(2) && x.what == "ok")
        .unwrap();
    assert_eq!(
        (exit.held, exit.actual.as_str()),
        (false, "exit code 1 (call 3, thread 0, iteration 0)")
    );
    assert_eq!(find(&v, "ktap.all_pass")[0].actual, "failed: suite.b");
    assert!(find(&v, "ktap.planned")[0].held);
    let pass = find(&v, "ktap.ok")[0];
    assert_eq!(
        (pass.held, pass.actual.as_str()),
        (false, "suite.b: not_ok")
    );
    assert!(find(&v, "ktap.skip")[0].held);
}

#[test]
fn console_lines_count_for_their_step_its_children_and_the_whole_run() {
    let c = ok(r#"
[[step]]
name = "group"
threads = 2
expect.kernel_log = { must_match = ["probe ok"], must_not_match = ["lockdep"] }
  [[step.steps]]
  open = { path = "/dev/null" }

[[step]]
open = { path = "/dev/null" }
expect.kernel_log = { must_not_match = ["probe ok"] }
"#);
    let mut r = Run::new(&c);
    r.call(1, 0, 3, None, Value::Null);
    r.call(1, 0, 4, None, Value::Null);
    r.call(2, 0, 5, None, Value::Null);
    r.ev.console(Some(1), "goldfish: probe ok");
    r.ev.console(None, "random boot noise");
    let v = r.end();
    let logs: Vec<&Verdict> = find(&v, "kernel_log");
    let group: Vec<_> = logs.iter().filter(|x| x.step == Some(0)).collect();
    assert_eq!(group.len(), 2);
    assert!(
        group.iter().all(|x| x.held),
        "the child's line counts for the group: {group:?}"
    );
    let second = logs.iter().find(|x| x.step == Some(2)).unwrap();
    assert!(second.held, "a line of another step does not count");
    let whole: Vec<_> = logs.iter().filter(|x| x.step.is_none()).collect();
    assert!(!whole.is_empty() && whole.iter().all(|x| x.held));

    let mut r = Run::new(&c);
    r.call(1, 0, 3, None, Value::Null);
    r.call(1, 0, 4, None, Value::Null);
    r.call(2, 0, 5, None, Value::Null);
    r.ev.console(
        Some(2),
        "WARNING: CPU: 0 PID: 1 at drivers/platform/goldfish/x.rs:10",
    );
    let report_v = r.end();
    let bad: Vec<_> = report_v.iter().filter(|x| !x.held).collect();
    assert_eq!(bad.len(), 2, "{bad:#?}");
    assert!(
        bad.iter()
            .any(|x| x.step == Some(0) && x.expected.contains("probe ok"))
    );
    assert!(
        bad.iter()
            .any(|x| x.step.is_none() && x.actual.starts_with("found: WARNING:"))
    );
}

/// A guest that floods its console past what the evaluator keeps: the
/// flood is forgotten, but a line a rule looks for still counts, before,
/// in and after it.
#[test]
fn a_console_flood_is_bounded_and_the_lines_rules_look_for_still_count() {
    let c = ok(r#"
[[step]]
open = { path = "/dev/null" }
expect.kernel_log = { must_match = ["probe ok"] }
"#);
    let mut r = Run::new(&c);
    r.call(0, 0, 3, None, Value::Null);
    let flood = "x".repeat(64 * 1024);
    let n = gasbench_scenario::eval::CONSOLE_KEEP_BYTES / flood.len() + 1000;
    for i in 0..n {
        r.ev.console(Some(0), &flood);
        if i == n - 10 {
            r.ev.console(Some(0), "goldfish: probe ok");
        }
    }
    r.ev.console(None, "WARNING: CPU: 0 PID: 1 at x.c:1 (after the flood)");
    let v = r.end();
    let logs = find(&v, "kernel_log");
    let step = logs.iter().find(|x| x.step == Some(0)).unwrap();
    assert!(step.held, "{step:?}");
    let warned = logs
        .iter()
        .find(|x| x.step.is_none() && !x.held)
        .expect("the warning after the flood is found");
    assert!(warned.actual.contains("(after the flood)"), "{warned:?}");
    let clean = logs
        .iter()
        .find(|x| x.step.is_none() && x.held)
        .expect("another run-wide rule held");
    assert!(
        clean.actual.contains(&format!("none of {} lines", n + 2)),
        "counts every line seen: {clean:?}"
    );
}

#[test]
fn a_report_is_plain_data() {
    let c = ok(DEVICE);
    let r = Run::new(&c);
    let report = {
        let mut ev = r.ev;
        ev.agent(&AgentMsg::BundleEnd {
            bundle: 1,
            error: Some("shutdown requested".into()),
        });
        ev.finish()
    };
    assert!(!report.passed());
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["scenario"], "t");
    assert!(
        json["verdicts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["actual"].as_str().unwrap().contains("shutdown requested"))
    );
}

/// A scenario that asks for its observations (the explorer's batches)
/// gets every call record, snapshot (by the step it follows), step error
/// and console line back in its report; an ordinary one gets none.
#[test]
fn a_recording_scenario_keeps_what_it_observed_and_an_ordinary_one_does_not() {
    let plain = ok(DEVICE);
    let mut recording = ok(DEVICE);
    recording.record = true;
    for (c, kept) in [(&plain, false), (&recording, true)] {
        let mut r = Run::new(c);
        r.call(0, 0, 3, None, Value::Null);
        r.call(1, 0, -1, Some("ENOMEM"), Value::Null);
        r.ev.device_snapshot(0, &state(&[(1, None)], &[], 0x10000));
        r.ev.console(Some(1), "goldfish: out of room");
        r.ev.agent(&AgentMsg::StepEnd {
            bundle: 1,
            step: 2,
            thread: 0,
            error: Some("bad fd".into()),
        });
        r.ev.agent(&AgentMsg::BundleEnd {
            bundle: 1,
            error: None,
        });
        let report = r.ev.finish();
        let Some(o) = report.observed else {
            assert!(!kept, "a recording scenario's report has no observations");
            continue;
        };
        assert!(kept, "an ordinary scenario's report keeps observations");
        assert_eq!(o.calls.len(), 2);
        assert_eq!(o.calls[1].errno.as_deref(), Some("ENOMEM"));
        // Sync point 0 follows step 1 (the first step with a device check).
        assert_eq!(o.snapshots.len(), 1);
        assert_eq!(o.snapshots[0].0, 1);
        assert_eq!(o.snapshots[0].1.handles.len(), 1);
        assert_eq!(o.step_errors, vec![(2, "bad fd".to_string())]);
        assert_eq!(
            o.console,
            vec![(Some(1), "goldfish: out of room".to_string())]
        );
        assert!(o.finished);
    }
}
