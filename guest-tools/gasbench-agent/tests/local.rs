//! The agent run as an ordinary process against the host kernel
//! (`--local`, `--serve-stdio`): step execution, bad pointers, captured
//! values, threads, forked children, kselftest/KTAP and the sync protocol,
//! without a VM.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use gasbench_abi::protocol::{AgentMsg, CallRecord, KtapStatus};
use serde_json::{Value, json};

const AGENT: &str = env!("CARGO_BIN_EXE_gasbench-agent");

struct Run {
    msgs: Vec<AgentMsg>,
    status: std::process::ExitStatus,
    stderr: String,
}

impl Run {
    fn records(&self, step: u32) -> Vec<&CallRecord> {
        self.msgs
            .iter()
            .filter_map(|m| match m {
                AgentMsg::CallEnd(r) if r.step == step => Some(r),
                _ => None,
            })
            .collect()
    }

    fn one(&self, step: u32) -> &CallRecord {
        let r = self.records(step);
        assert_eq!(r.len(), 1, "step {step}: {:#?}", self.msgs);
        r[0]
    }

    fn step_error(&self, step: u32) -> Option<String> {
        self.msgs
            .iter()
            .find_map(|m| match m {
                AgentMsg::StepEnd { step: s, error, .. } if *s == step => Some(error.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no StepEnd for step {step}: {:#?}", self.msgs))
    }
}

fn parse_lines(stdout: &[u8]) -> Vec<AgentMsg> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}

/// Number the steps in document order, as the compiler does.
fn number(steps: &mut Vec<Value>, next: &mut u32) {
    for s in steps {
        s["id"] = json!(*next);
        if s.get("name").is_none() {
            s["name"] = json!(format!("step {next}"));
        }
        *next += 1;
        if let Some(children) = s["do"].get_mut("steps").and_then(Value::as_array_mut) {
            number(children, next);
        }
    }
}

fn bundle(mut steps: Vec<Value>) -> Value {
    let mut n = 0;
    number(&mut steps, &mut n);
    json!({"version": 1, "scenario": "test", "steps": steps})
}

fn run_local(bundle: &Value, extra: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bundle.json");
    std::fs::write(&path, serde_json::to_vec(bundle).unwrap()).unwrap();
    let out = Command::new(AGENT)
        .arg("--local")
        .arg(&path)
        .arg("--workdir-base")
        .arg(dir.path())
        .args(extra)
        .output()
        .unwrap();
    Run {
        msgs: parse_lines(&out.stdout),
        status: out.status,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn step(action: Value) -> Value {
    json!({"do": action})
}

fn cap(action: Value, name: &str) -> Value {
    json!({"do": action, "capture": name})
}

#[test]
fn open_fstat_close_on_dev_null() {
    let b = bundle(vec![
        cap(
            json!({"op": "open", "path": "/dev/null", "flags": 2, "mode": 0}),
            "null",
        ),
        step(json!({"op": "fstat", "fd": "${null}"})),
        step(json!({"op": "close", "fd": "${null}"})),
        step(json!({"op": "close", "fd": "${null}"})),
    ]);
    let run = run_local(&b, &[]);
    assert!(run.status.success(), "{}", run.stderr);
    assert!(
        matches!(run.msgs[0], AgentMsg::Ready(_)),
        "Ready comes first"
    );
    let open = run.one(0);
    assert!(open.ok() && open.ret >= 3, "{open:?}");
    assert_eq!(open.fd, Some(open.ret as i32));
    let st = run.one(1);
    assert_eq!(st.args_out["type"], "char", "{st:?}");
    assert_eq!(st.fd, Some(open.ret as i32), "the captured fd was used");
    assert!(run.one(2).ok());
    assert_eq!(run.one(3).errno.as_deref(), Some("EBADF"));
    assert!(matches!(
        run.msgs.last(),
        Some(AgentMsg::BundleEnd { error: None, .. })
    ));
}

#[test]
fn every_call_is_bracketed_in_order() {
    let b = bundle(vec![
        cap(
            json!({"op": "open", "path": "/dev/null", "flags": 0, "mode": 0}),
            "f",
        ),
        step(json!({"op": "close", "fd": "${f}"})),
    ]);
    let run = run_local(&b, &[]);
    let mut open_call = None;
    for m in &run.msgs {
        match m {
            AgentMsg::CallBegin { call, .. } => {
                assert!(open_call.is_none(), "nested CallBegin: {:#?}", run.msgs);
                open_call = Some(*call);
            }
            AgentMsg::CallEnd(r) => {
                assert_eq!(
                    open_call.take(),
                    Some(r.call),
                    "CallEnd without its CallBegin"
                );
            }
            _ => {}
        }
    }
    assert_eq!(run.records(0).len() + run.records(1).len(), 2);
}

#[test]
fn ioctls_on_dev_null_are_enotty_and_report_their_structs() {
    let b = bundle(vec![
        cap(
            json!({"op": "open", "path": "/dev/null", "flags": 2, "mode": 0}),
            "n",
        ),
        step(
            json!({"op": "ioctl", "fd": "${n}", "cmd": "ALLOCATE_BLOCK", "fields": {"size": 4096}}),
        ),
        step(
            json!({"op": "raw_ioctl", "fd": "${n}", "request": 0xC018470Fu32, "arg": {"kind": "bytes", "hex": "00", "ptr": "buffer"}}),
        ),
        step(
            json!({"op": "ioctl", "fd": "${n}", "cmd": "PING", "fields": {"metadata": 7, "version": 1}, "ptr": "readonly"}),
        ),
    ]);
    let run = run_local(&b, &[]);
    let alloc = run.one(1);
    assert_eq!(alloc.name, "ioctl:ALLOCATE_BLOCK");
    assert_eq!(alloc.errno.as_deref(), Some("ENOTTY"));
    assert_eq!(alloc.args_in["size"], 4096);
    assert_eq!(alloc.args_in["request"], "0xc018470a");
    // The struct came back as it went in: /dev/null wrote nothing.
    assert_eq!(
        alloc.args_out,
        json!({"size": 4096, "offset": 0, "phys_addr": 0})
    );
    let raw = run.one(2);
    assert_eq!(raw.errno.as_deref(), Some("ENOTTY"));
    assert!(
        raw.args_in.get("decoded").is_none(),
        "0x…0F is not a goldfish ioctl"
    );
    let ping = run.one(3);
    assert_eq!(ping.args_in["ptr"], "readonly");
    assert_eq!(ping.args_out["metadata"], 7);
}

/// FIONREAD on a regular file writes an int to the argument: a bad
/// pointer must come back as EFAULT, a good one with the file's size.
#[test]
fn bad_user_pointers_give_efault() {
    const FIONREAD: u32 = 0x541B;
    let mut steps = vec![
        step(
            json!({"op": "openat", "dir": -100, "path": "${workdir}/f", "flags": 0o102, "mode": 0o600}),
        ),
        cap(
            json!({"op": "openat", "dir": -100, "path": "${workdir}/f", "flags": 0, "mode": 0}),
            "f",
        ),
        step(
            json!({"op": "raw_ioctl", "fd": "${f}", "request": FIONREAD, "arg": {"kind": "bytes", "hex": "ffffffff", "ptr": "buffer"}}),
        ),
    ];
    for ptr in ["null", "unmapped", "kernel", "readonly", "straddle"] {
        steps.push(step(
            json!({"op": "raw_ioctl", "fd": "${f}", "request": FIONREAD, "arg": {"kind": "bytes", "hex": "ffffffff", "ptr": ptr}}),
        ));
    }
    steps.push(step(json!({"op": "raw_ioctl", "fd": "${f}", "request": FIONREAD, "arg": {"kind": "value", "value": 0}})));
    let run = run_local(&bundle(steps), &[]);
    let good = run.one(2);
    assert!(good.ok(), "{good:?}");
    assert_eq!(
        good.args_out["bytes"], "00000000",
        "an empty file has 0 bytes to read"
    );
    for (i, ptr) in ["null", "unmapped", "kernel", "readonly", "straddle"]
        .iter()
        .enumerate()
    {
        let r = run.one(3 + i as u32);
        assert_eq!(r.errno.as_deref(), Some("EFAULT"), "{ptr}: {r:?}");
        assert_eq!(r.args_in["ptr"], *ptr);
    }
    assert_eq!(
        run.one(8).errno.as_deref(),
        Some("EFAULT"),
        "integer 0 as pointer"
    );
}

#[test]
fn directories_flags_and_captured_stat_fields() {
    let b = bundle(vec![
        step(json!({"op": "mkdirat", "dir": -100, "path": "${workdir}/d", "mode": 0o700})),
        step(json!({"op": "mkdirat", "dir": -100, "path": "${workdir}/d", "mode": 0o700})),
        cap(
            json!({"op": "openat", "dir": -100, "path": "${workdir}/d", "flags": 0o2200000, "mode": 0}),
            "d",
        ),
        step(json!({"op": "fcntl", "fd": "${d}", "cmd": "F_GETFD", "arg": 0})),
        step(json!({"op": "fcntl", "fd": "${d}", "cmd": "F_GETFL", "arg": 0})),
        step(json!({"op": "fcntl", "fd": "${d}", "cmd": "F_SETFD", "arg": 0})),
        step(json!({"op": "fcntl", "fd": "${d}", "cmd": "F_GETFD", "arg": 0})),
        cap(json!({"op": "fstat", "fd": "${d}"}), "st"),
        step(json!({"op": "fstatat", "dir": "${d}", "path": ".", "flags": 0})),
        step(json!({"op": "symlinkat", "target": "nowhere", "dir": "${d}", "path": "link"})),
        step(json!({"op": "fstatat", "dir": "${d}", "path": "link", "flags": 0x100})),
        step(json!({"op": "list_dir", "path": "${workdir}/d"})),
        step(json!({"op": "unlinkat", "dir": "${d}", "path": "link", "flags": 0})),
        step(json!({"op": "unlinkat", "dir": -100, "path": "${workdir}/d", "flags": 0x200})),
        step(json!({"op": "fstatat", "dir": -100, "path": "${workdir}/d", "flags": 0})),
        step(json!({"op": "mkdirat", "dir": -100, "path": "${workdir}/n${st.ino}", "mode": 0o700})),
    ]);
    let run = run_local(&b, &[]);
    assert!(run.one(0).ok());
    assert_eq!(run.one(1).errno.as_deref(), Some("EEXIST"));
    assert_eq!(
        run.one(3).args_out["cloexec"],
        true,
        "opened with O_CLOEXEC"
    );
    let getfl = run.one(4);
    assert_eq!(getfl.args_out["accmode"], "O_RDONLY");
    assert!(
        getfl.args_out["flags"]
            .as_array()
            .unwrap()
            .contains(&json!("O_DIRECTORY")),
        "{getfl:?}"
    );
    assert!(run.one(5).ok());
    assert_eq!(run.one(6).args_out["cloexec"], false);
    let st = run.one(7);
    assert_eq!(st.args_out["type"], "dir");
    assert_eq!(st.args_out["perm"].as_u64().unwrap() & 0o700, 0o700);
    assert_eq!(run.one(8).args_out["ino"], st.args_out["ino"]);
    assert_eq!(run.one(10).args_out["type"], "symlink");
    assert_eq!(run.one(11).args_out["names"], json!(["link"]));
    assert!(run.one(13).ok());
    assert_eq!(run.one(14).errno.as_deref(), Some("ENOENT"));
    let named = run.one(15);
    assert!(named.ok());
    assert!(
        named.args_in["path"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/n{}", st.args_out["ino"])),
        "${{st.ino}} was interpolated: {named:?}"
    );
}

#[test]
fn rlimit_and_fd_exhaustion_stay_inside_the_forked_child() {
    let b = bundle(vec![
        cap(
            json!({"op": "getrlimit", "resource": "RLIMIT_NOFILE"}),
            "before",
        ),
        step(json!({"op": "fork", "steps": [
            step(json!({"op": "setrlimit", "resource": "RLIMIT_NOFILE", "soft": 32, "hard": 32})),
            step(json!({"op": "exhaust_fds", "path": "/dev/null", "max": 100000})),
            step(json!({"op": "mkdirat", "dir": -100, "path": "${workdir}/x", "mode": 0o700})),
            step(json!({"op": "openat", "dir": -100, "path": "/dev/null", "flags": 0, "mode": 0})),
        ]})),
        step(json!({"op": "getrlimit", "resource": "RLIMIT_NOFILE"})),
    ]);
    let run = run_local(&b, &[]);
    let fork = run.one(1);
    assert_eq!(fork.name, "fork");
    assert_eq!(fork.ret, 0, "the child exits 0: {fork:?}");
    assert!(run.one(2).ok(), "setrlimit in the child");
    let ex = run.one(3);
    assert!(ex.ok(), "{ex:?}");
    assert_eq!(ex.args_out["stopped_by"], "EMFILE");
    let opened = ex.args_out["opened"].as_i64().unwrap();
    assert!(opened > 0 && opened < 32, "{ex:?}");
    assert_eq!(
        ex.args_out["last_fd"], 31,
        "the lowest free slots are filled up to the limit"
    );
    assert!(run.one(4).ok(), "mkdirat needs no descriptor");
    assert_eq!(run.one(5).errno.as_deref(), Some("EMFILE"));
    // The child's calls ran on a thread of its own, announced with its pid.
    let child_thread = run.one(2).thread;
    assert_ne!(child_thread, run.one(0).thread);
    assert!(run.msgs.iter().any(|m| matches!(m,
        AgentMsg::Thread { thread, parent: Some(_), step: Some(1), pid } if *thread == child_thread && *pid == fork.args_out["pid"].as_u64().unwrap() as u32)));
    // The parent's limit is untouched.
    assert_eq!(run.one(6).args_out, run.one(0).args_out);
}

#[test]
fn parallel_groups_run_on_distinct_threads_with_local_captures() {
    let b = bundle(vec![json!({"do": {"op": "block", "threads": 4, "steps": [
        cap(json!({"op": "open", "path": "/dev/null", "flags": 0, "mode": 0}), "mine"),
        json!({"do": {"op": "fstat", "fd": "${mine}"}, "repeat": 5}),
        step(json!({"op": "close", "fd": "${mine}"})),
    ]}})]);
    let run = run_local(&b, &[]);
    let opens = run.records(1);
    assert_eq!(opens.len(), 4);
    let threads: std::collections::BTreeSet<_> = opens.iter().map(|r| r.thread).collect();
    assert_eq!(threads.len(), 4, "four threads");
    let fstats = run.records(2);
    assert_eq!(fstats.len(), 20);
    assert!(fstats.iter().all(|r| r.ok()));
    let iterations: std::collections::BTreeSet<_> = fstats.iter().map(|r| r.iteration).collect();
    assert_eq!(iterations, (0..5).collect());
    // Each thread closed its own fd, so every close succeeded.
    for close in run.records(3) {
        assert!(close.ok(), "{close:?}");
        let own_open = opens.iter().find(|o| o.thread == close.thread).unwrap();
        assert_eq!(close.fd, Some(own_open.ret as i32));
    }
}

#[test]
fn a_step_that_cannot_run_says_why_and_the_bundle_goes_on() {
    let b = bundle(vec![
        step(json!({"op": "close", "fd": "${never_captured}"})),
        step(json!({"op": "close", "fd": 99999999999i64})),
        step(json!({"op": "mkdirat2", "dir": -100, "path": "x", "mode": 0o700, "flags": 0})),
        step(json!({"op": "read_file", "path": "/proc/self/status", "max_bytes": 65536})),
    ]);
    let run = run_local(&b, &[]);
    assert!(
        run.step_error(0)
            .unwrap()
            .contains("${never_captured} is not set")
    );
    assert!(run.step_error(1).unwrap().contains("does not fit"));
    // No number on the command line and none given: mkdirat2 cannot run.
    let e = run.step_error(2).unwrap();
    assert!(e.contains("gasbench.mkdirat2=N"), "{e}");
    let Some(AgentMsg::Ready(ready)) = run.msgs.first() else {
        panic!()
    };
    assert!(
        ready
            .missing
            .iter()
            .any(|m| m.contains("gasbench.mkdirat2")),
        "{ready:?}"
    );
    assert!(run.records(0).is_empty() && run.records(1).is_empty());
    let status = run.one(3);
    assert!(status.args_out["text"].as_str().unwrap().contains("Pid:"));
}

#[test]
fn mkdirat2_uses_the_given_number() {
    // 1000 is no syscall on any current kernel: ENOSYS proves the number
    // was used as given.
    let b = bundle(vec![step(
        json!({"op": "mkdirat2", "dir": -100, "path": "${workdir}/m", "mode": 0o700, "flags": 0}),
    )]);
    let run = run_local(&b, &["--mkdirat2", "1000"]);
    let r = run.one(0);
    assert_eq!(r.errno.as_deref(), Some("ENOSYS"));
    assert_eq!(r.args_in["nr"], 1000);
    let Some(AgentMsg::Ready(ready)) = run.msgs.first() else {
        panic!()
    };
    assert_eq!(ready.syscalls.get("mkdirat2"), Some(&1000));
}

fn script(dir: &Path, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn kselftest_output_is_streamed_and_parsed() {
    let dir = tempfile::tempdir().unwrap();
    let ok = script(
        dir.path(),
        "fake_test",
        "echo 'TAP version 13'\necho '1..3'\necho '# Starting 3 tests'\necho 'ok 1 a.one'\necho 'not ok 2 a.two' >&2\necho 'ok 3 a.three # SKIP nope'\nexit 1\n",
    );
    let slow = script(
        dir.path(),
        "slow_test",
        "echo 'TAP version 13'\necho '1..1'\nexec sleep 30\n",
    );
    let b = bundle(vec![
        step(json!({"op": "kselftest", "path": ok})),
        json!({"do": {"op": "kselftest", "path": slow}, "timeout_ms": 300}),
        step(json!({"op": "kselftest", "path": "/nonexistent/kselftest"})),
    ]);
    let t0 = std::time::Instant::now();
    let run = run_local(&b, &[]);
    assert!(
        t0.elapsed().as_secs() < 20,
        "the timeout killed the slow test"
    );
    let r = run.one(0);
    assert_eq!(r.ret, 1, "{r:?}");
    assert_eq!(r.args_out["exit_code"], 1);
    assert_eq!(r.args_out["planned"], 3);
    assert_eq!(
        (
            r.args_out["passed"].as_u64(),
            r.args_out["failed"].as_u64(),
            r.args_out["skipped"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(r.args_out["all_passed"], false);
    let ktap: Vec<_> = run
        .msgs
        .iter()
        .filter_map(|m| match m {
            AgentMsg::Ktap(k) if k.step == 0 => Some((k.name.clone(), k.status)),
            _ => None,
        })
        .collect();
    assert_eq!(
        ktap,
        vec![
            ("a.one".to_string(), KtapStatus::Ok),
            ("a.two".to_string(), KtapStatus::NotOk),
            ("a.three".to_string(), KtapStatus::Skip),
        ]
    );
    let lines = run
        .msgs
        .iter()
        .filter(|m| matches!(m, AgentMsg::Output { step: 0, .. }))
        .count();
    assert_eq!(lines, 6, "stdout and stderr lines are forwarded");
    let slow = run.one(1);
    assert_eq!(slow.args_out["timed_out"], true, "{slow:?}");
    assert_eq!(slow.args_out["signal"], 9);
    assert_eq!(run.one(2).errno.as_deref(), Some("ENOENT"));
}

#[test]
fn sync_points_wait_for_resume_over_stdio() {
    let share = tempfile::tempdir().unwrap();
    std::fs::create_dir(share.path().join("b")).unwrap();
    let b = bundle(vec![
        json!({"do": {"op": "open", "path": "/dev/null", "flags": 0, "mode": 0}, "capture": "f", "sync": 0}),
        json!({"do": {"op": "host", "what": "device_del"}, "sync": 1}),
        step(json!({"op": "close", "fd": "${f}"})),
    ]);
    std::fs::write(
        share.path().join("b/7.json"),
        serde_json::to_vec(&b).unwrap(),
    )
    .unwrap();
    let mut child = Command::new(AGENT)
        .args(["--serve-stdio", "--share"])
        .arg(share.path())
        .arg("--workdir-base")
        .arg(share.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next =
        || -> AgentMsg { serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap() };
    assert!(matches!(next(), AgentMsg::Ready(_)));
    writeln!(stdin, r#"{{"op":"run_bundle","id":7,"path":"b/7.json"}}"#).unwrap();
    // A malformed line is logged and skipped, not fatal.
    writeln!(stdin, "this is not json").unwrap();
    let mut seen = Vec::new();
    loop {
        let m = next();
        let stop = matches!(m, AgentMsg::SyncWait { sync: 0, .. });
        seen.push(m);
        if stop {
            break;
        }
    }
    assert!(
        seen.iter()
            .any(|m| matches!(m, AgentMsg::CallEnd(r) if r.step == 0))
    );
    // Wrong sync number: ignored with a warning; the agent keeps waiting.
    writeln!(stdin, r#"{{"op":"resume","bundle":7,"sync":5}}"#).unwrap();
    writeln!(stdin, r#"{{"op":"resume","bundle":7,"sync":0}}"#).unwrap();
    let mut after = Vec::new();
    loop {
        let m = next();
        let stop = matches!(m, AgentMsg::SyncWait { sync: 1, .. });
        after.push(m);
        if stop {
            break;
        }
    }
    assert!(
        !after
            .iter()
            .any(|m| matches!(m, AgentMsg::CallEnd(r) if r.step == 2)),
        "the close must wait for the host step"
    );
    assert!(
        after
            .iter()
            .any(|m| matches!(m, AgentMsg::Log { text, .. } if text.contains("this is not json")))
    );
    writeln!(stdin, r#"{{"op":"resume","bundle":7,"sync":1}}"#).unwrap();
    let mut tail = Vec::new();
    loop {
        let m = next();
        let stop = matches!(m, AgentMsg::BundleEnd { .. });
        tail.push(m);
        if stop {
            break;
        }
    }
    assert!(
        tail.iter()
            .any(|m| matches!(m, AgentMsg::CallEnd(r) if r.step == 2 && r.ok()))
    );
    assert!(matches!(
        tail.last(),
        Some(AgentMsg::BundleEnd {
            bundle: 7,
            error: None
        })
    ));
    // A bundle path that escapes the share is refused.
    writeln!(
        stdin,
        r#"{{"op":"run_bundle","id":8,"path":"../etc/passwd"}}"#
    )
    .unwrap();
    loop {
        if let AgentMsg::BundleEnd { bundle, error } = next() {
            assert_eq!(bundle, 8);
            assert!(error.unwrap().contains("relative to the share"));
            break;
        }
    }
    writeln!(stdin, r#"{{"op":"shutdown"}}"#).unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

#[test]
fn hostile_bundles_are_refused_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("empty", String::new()),
        ("binary", "\u{0}\u{1}\u{2}garbage".to_string()),
        (
            "deep",
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
        ),
        (
            "version",
            r#"{"version": 99, "scenario": "x", "steps": []}"#.to_string(),
        ),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        let out = Command::new(AGENT).arg("--local").arg(&p).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let msgs = parse_lines(&out.stdout);
        assert!(
            matches!(
                msgs.last(),
                Some(AgentMsg::BundleEnd { error: Some(_), .. })
            ),
            "{name}: {msgs:?}"
        );
    }
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn write_file_writes_once_and_reports_errors() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("control");
    std::fs::write(&target, "").unwrap();
    let b = bundle(vec![
        step(
            // O_WRONLY and no O_CREAT/O_TRUNC, as a debugfs control is opened.
            json!({"op": "write_file", "path": target.display().to_string(), "flags": 1, "mode": 0, "hex": hex("READ_AFTER_FREE"), "size": 15}),
        ),
        step(
            json!({"op": "write_file", "path": dir.path().join("missing/x").display().to_string(), "flags": 1, "mode": 0, "hex": hex("x"), "size": 1}),
        ),
    ]);
    let run = run_local(&b, &[]);
    assert!(run.status.success(), "{}", run.stderr);
    let w = run.one(0);
    assert!(w.ok(), "{w:?}");
    assert_eq!(w.args_out["written"], 15);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "READ_AFTER_FREE");
    assert_eq!(run.one(1).errno.as_deref(), Some("ENOENT"));
}

/// On a kernel without fault injection (this host's, in the fast tier)
/// an injected step is an error that says so, not a silent pass.
#[test]
fn injection_without_kernel_support_says_why() {
    if Path::new("/sys/kernel/debug/failslab").exists() {
        eprintln!(
            "this host's kernel has failslab: the missing-support path is not reachable here"
        );
        return;
    }
    let mut s = step(json!({"op": "open", "path": "/dev/null", "flags": 0, "mode": 0}));
    s["inject"] = json!({"fault": "slab", "first": 1, "last": 20});
    let run = run_local(&bundle(vec![s]), &[]);
    assert!(run.status.success(), "{}", run.stderr);
    let err = run.step_error(0).expect("the step fails");
    assert!(err.contains("no slab fault injection"), "{err}");
    assert!(
        run.records(0).is_empty(),
        "no call is made without the fault armed"
    );
}
