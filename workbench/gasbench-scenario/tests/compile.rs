//! What scenarios compile to: step numbering, sync points and their host
//! actions, fault plans with spans, requirements, call counts, defaults.

use gasbench_abi::bundle::{Action, ArgPtr, RawArg};
use gasbench_abi::expr::IntExpr;
use gasbench_scenario::*;

fn ok(text: &str) -> Compiled {
    compile("t.toml", text).unwrap_or_else(|p| panic!("{:?}", miette::Report::new(*p)))
}

#[test]
fn steps_are_numbered_in_document_order_with_parents() {
    let c = ok(r#"
[[step]]
open = { path = "/dev/null" }
capture = "n"

[[step]]
repeat = 2
  [[step.steps]]
  threads = 3
    [[step.steps.steps]]
    fstat = { fd = "${n}" }
    repeat = 5
  [[step.steps]]
  fork = true
    [[step.steps.steps]]
    dup = { fd = "${n}" }
    repeat = 7

[[step]]
close = { fd = "${n}" }
"#);
    let ids: Vec<(u32, Option<u32>, Option<u64>)> = c
        .plan
        .steps
        .iter()
        .map(|s| (s.id, s.parent, s.calls))
        .collect();
    assert_eq!(
        ids,
        [
            (0, None, Some(1)),
            (1, None, None),
            (2, Some(1), None),
            (3, Some(2), Some(30)),
            (4, Some(1), Some(2)),
            (5, Some(4), Some(7)),
            (6, None, Some(1)),
        ],
        "fstat runs 2 x 3 x 5 times; the fork twice; inside each child, dup 7 times"
    );
    assert_eq!(c.plan.steps[0].line, 2);
    assert_eq!(c.plan.steps[5].line, 15);
    let all: Vec<u32> = c.bundle.all_steps().iter().map(|s| s.id).collect();
    assert_eq!(all, [0, 1, 2, 3, 4, 5, 6]);
    assert!(matches!(
        c.bundle.steps[1].action,
        Action::Block { threads: 0, .. }
    ));
    assert_eq!(c.bundle.steps[1].repeat, 2);
    assert_eq!(c.plan.steps[0].name, "open (line 2)");
    assert_eq!(c.plan.steps[2].kind, StepKind::Group { threads: 3 });
    assert_eq!(c.plan.steps[4].kind, StepKind::Fork);
}

#[test]
fn sync_points_come_from_device_expectations_host_steps_and_fault_steps() {
    let c = ok(r#"
[device]
faults = [ { on = "gen_handle", nth = 1, action = "invalid_handle" } ]

[[step]]
open = { path = "/dev/goldfish_address_space" }
capture = "d"
expect.device = { handles = 1 }

[[step]]
host = "device_del"
expect.device = { handles = 0 }

[[step]]
faults = [ { on = "allocate_block", action = "fail", errno = "ENOMEM" }, { on = "ping", action = "delay", ms = 5 } ]

[[step]]
host = "device_add"

[[step]]
name = "check"
expect.device = { all_free = true }
"#);
    let p = &c.plan;
    assert!(p.requires.goldfish);
    assert_eq!(p.syncs.len(), 5);
    let summary: Vec<(u32, Vec<&str>, bool)> = p
        .syncs
        .iter()
        .map(|s| {
            (
                s.step,
                s.actions.iter().map(HostAction::name).collect(),
                s.snapshot,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (0, vec![], true),
            (1, vec!["device_del"], true),
            (2, vec!["faults"], false),
            (3, vec!["device_add"], false),
            (4, vec![], true),
        ]
    );
    // The bundle stops at the same points.
    let syncs: Vec<Option<u32>> = c.bundle.steps.iter().map(|s| s.sync).collect();
    assert_eq!(syncs, [Some(0), Some(1), Some(2), Some(3), Some(4)]);
    assert!(matches!(&c.bundle.steps[1].action, Action::Host { what } if what == "device_del"));
    assert!(matches!(c.bundle.steps[4].action, Action::Checkpoint));
    // Fault plans are carried as written, with spans into the file.
    let initial = p.initial_faults.as_ref().unwrap();
    assert_eq!(
        initial.to_json(),
        serde_json::json!([{ "on": "gen_handle", "nth": 1, "action": "invalid_handle" }])
    );
    let HostAction::SetFaults(plan) = &p.syncs[2].actions[0] else {
        panic!()
    };
    assert_eq!(plan.rules.len(), 2);
    let second = &c.source[plan.rules[1].span.start..plan.rules[1].span.end];
    assert_eq!(second, r#"{ on = "ping", action = "delay", ms = 5 }"#);
    // Host steps expect success by default.
    assert!(
        p.expectations
            .iter()
            .any(|e| e.step == 1 && e.check == Check::Host { ok: true } && e.implicit)
    );
}

#[test]
fn values_flags_and_pointers() {
    let c = ok(r#"
[[step]]
openat = { dir = "AT_FDCWD", path = "x", flags = ["O_RDWR", "O_CREAT", 0x40000], mode = 0o644 }
capture = "f"

[[step]]
mkdirat2 = { path = "d", flags = ["AT_SYMLINK_NOFOLLOW", "AT_NO_AUTOMOUNT"] }

[[step]]
mkdirat2 = { path = "e", flags = 0xffff_f6ff }

[[step]]
ioctl = { fd = "${f}", cmd = "ALLOCATE_BLOCK", size = 0xffff_ffff_ffff_ffff, ptr = "readonly" }

[[step]]
raw_ioctl = { fd = "${f}", request = { dir = "rw", type = "G", nr = 10, size = 24 } }

[[step]]
raw_ioctl = { fd = "${f}", request = 0x5401, arg = "${f} + 1" }

[[step]]
setrlimit = { resource = "RLIMIT_NOFILE", soft = 16, hard = "RLIM_INFINITY" }
"#);
    let s = &c.bundle.steps;
    let Action::Openat {
        dir, flags, mode, ..
    } = &s[0].action
    else {
        panic!()
    };
    assert_eq!(*dir, IntExpr::Lit(-100));
    assert_eq!(*flags, IntExpr::Lit(2 | 0o100 | 0x40000));
    assert_eq!(*mode, IntExpr::Lit(0o644));
    let Action::Mkdirat2 {
        flags, mode, dir, ..
    } = &s[1].action
    else {
        panic!()
    };
    assert_eq!(*flags, IntExpr::Lit(0x900));
    assert_eq!(
        *mode,
        IntExpr::Lit(0o700),
        "mode defaults to 0o700 like the selftest"
    );
    assert_eq!(*dir, IntExpr::Lit(-100));
    assert!(matches!(
        &s[2].action,
        Action::Mkdirat2 {
            flags: IntExpr::Lit(0xffff_f6ff),
            ..
        }
    ));
    let Action::Ioctl { fields, ptr, .. } = &s[3].action else {
        panic!()
    };
    assert_eq!(fields["size"], IntExpr::Lit(u64::MAX as i128));
    assert_eq!(*ptr, ArgPtr::Readonly);
    let Action::RawIoctl {
        request,
        arg: RawArg::Bytes { hex, .. },
        ..
    } = &s[4].action
    else {
        panic!()
    };
    assert_eq!(
        *request,
        IntExpr::Lit(0xC018_470A),
        "the table form encodes _IOWR('G', 10, 24)"
    );
    assert_eq!(
        hex.len(),
        48,
        "a zero buffer as large as the request's size field"
    );
    let Action::RawIoctl {
        arg: RawArg::Value { value },
        ..
    } = &s[5].action
    else {
        panic!()
    };
    assert_eq!(value.to_string(), "${f} + 1");
    let Action::Setrlimit { hard, .. } = &s[6].action else {
        panic!()
    };
    assert_eq!(*hard, IntExpr::Lit(u64::MAX as i128));
    assert!(c.plan.requires.goldfish && c.plan.requires.mkdirat2);
}

#[test]
fn expectations_compile_to_checks_with_spans() {
    let text = r#"
[[step]]
open = { path = "/dev/null" }
capture = "n"

[[step]]
fcntl = { fd = "${n}", cmd = "F_GETFL" }
expect.ret = { bits_set = ["O_RDWR"], ge = 0 }
expect.out = { accmode = "O_RDWR", flags = { contains = "O_LARGEFILE" } }

[[step]]
close = { fd = "${n}" }
expect = { ok = false, kernel_log = { must_match = ["closed"] } }

[[step]]
close = { fd = "${n}" }
expect = { ok = "any" }
"#;
    let c = ok(text);
    let e: Vec<(u32, String)> = c
        .plan
        .expectations
        .iter()
        .map(|e| (e.step, format!("{:?}", e.check)))
        .collect();
    assert_eq!(e.len(), 7, "{e:#?}");
    assert!(e[0].1.starts_with("Ok { ok: true }") && c.plan.expectations[0].implicit);
    let ret: Vec<&Expectation> = c
        .plan
        .expectations
        .iter()
        .filter(|x| matches!(x.check, Check::Ret { .. }))
        .collect();
    assert_eq!(ret.len(), 2);
    let span = ret[0].span;
    assert!(
        ["[\"O_RDWR\"]", "0"].contains(&&text[span.start..span.end]),
        "{}",
        &text[span.start..span.end]
    );
    assert!(
        c.plan
            .expectations
            .iter()
            .any(|x| x.step == 2 && x.check == Check::Ok { ok: false })
    );
    assert!(c.plan.expectations.iter().any(|x| x.step == 2 && matches!(&x.check, Check::KernelLog { rules } if rules.must_match[0].regex == "closed")));
    assert!(
        !c.plan.expectations.iter().any(|x| x.step == 3),
        "ok = \"any\" checks nothing"
    );
    // The whole run refuses oopses by default.
    assert!(
        c.plan
            .kernel_log
            .must_not_match
            .iter()
            .any(|p| p.regex.contains("BUG"))
    );
    let off = ok("[kernel_log]\ndefault_checks = false\n\n[[step]]\nsleep = \"1ms\"\n");
    assert!(off.plan.kernel_log.must_not_match.is_empty());
}

#[test]
fn timeouts() {
    let c = ok(r#"
[scenario]
timeout = "2m"
step_timeout = "7s"

[[step]]
sleep = "250ms"

[[step]]
sleep = "1s"
timeout = "500ms"
"#);
    assert_eq!(c.plan.timeout, std::time::Duration::from_secs(120));
    assert_eq!(c.plan.steps[0].timeout, std::time::Duration::from_secs(7));
    assert_eq!(c.bundle.steps[1].timeout_ms, Some(500));
    assert!(matches!(
        c.bundle.steps[0].action,
        Action::Sleep { ms: 250 }
    ));
}

#[test]
fn the_default_suite_compiles() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    let mut names = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let c = load(&p).unwrap_or_else(|e| panic!("{:?}", miette::Report::new(*e)));
            names.push(c.plan.scenario.clone());
            if c.plan.scenario == "goldfish-hotunplug" {
                let acts: Vec<&str> = c
                    .plan
                    .syncs
                    .iter()
                    .flat_map(|s| s.actions.iter().map(HostAction::name))
                    .collect();
                assert_eq!(acts, ["device_del", "device_add"]);
            }
            if c.plan.scenario == "mkdirat2-selftest-cases" {
                for case in [
                    "returns_fd",
                    "fd_is_created_dir",
                    "enoent_missing_parent",
                    "ebadf",
                    "enotdir_dfd",
                    "fd_usable_as_dfd",
                    "einval_unknown_flags",
                ] {
                    assert!(
                        c.plan.steps.iter().any(|s| s.name.starts_with(case)),
                        "{case} is covered"
                    );
                }
            }
        }
    }
    names.sort();
    for want in [
        "goldfish-rfc-subset",
        "goldfish-errors",
        "goldfish-leaks",
        "goldfish-faults",
        "goldfish-threads",
        "goldfish-hotunplug",
        "mkdirat2-selftest-cases",
        "mkdirat2-kselftest",
        "mkdirat2-flags",
        "mkdirat2-emfile",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
}
