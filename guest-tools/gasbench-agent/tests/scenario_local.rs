//! The whole fast-tier loop without a VM: a scenario file is compiled by
//! gasbench-scenario, run by the real agent binary against the host kernel
//! (`--local`), and judged by the evaluator. An edit that expects a wrong
//! errno must turn the verdict.

use std::process::Command;

use gasbench_abi::protocol::AgentMsg;
use gasbench_scenario::{Compiled, Evaluator, Report};

const AGENT: &str = env!("CARGO_BIN_EXE_gasbench-agent");

fn scenario(ktap_script: &str) -> String {
    format!(
        r#"
[scenario]
name = "host-smoke"

[[step]]
open = {{ path = "/dev/null", flags = ["O_RDWR"] }}
capture = "n"

[[step]]
name = "a goldfish ioctl on /dev/null"
ioctl = {{ fd = "${{n}}", cmd = "ALLOCATE_BLOCK", size = 4096 }}
expect.errno = "ENOTTY"
expect.out = {{ size = 4096, offset = 0 }}

[[step]]
name = "FIONREAD with a NULL pointer on a char device"
raw_ioctl = {{ fd = "${{n}}", request = 0x541B, bytes = "00000000", ptr = "null" }}
expect.errno = "ENOTTY"

[[step]]
mkdirat = {{ path = "${{workdir}}/d" }}

[[step]]
open = {{ path = "${{workdir}}/d", flags = ["O_DIRECTORY", "O_CLOEXEC"] }}
capture = "d"

[[step]]
name = "regular file for FIONREAD"
openat = {{ dir = "${{d}}", path = "f", flags = ["O_CREAT", "O_RDWR"], mode = 0o600 }}
capture = "f"

[[step]]
name = "FIONREAD into a read-only page"
raw_ioctl = {{ fd = "${{f}}", request = 0x541B, bytes = "ffffffff", ptr = "readonly" }}
expect.errno = "EFAULT"

[[step]]
fcntl = {{ fd = "${{d}}", cmd = "F_GETFD" }}
expect.ret = {{ bits_set = ["FD_CLOEXEC"] }}
expect.out = {{ cloexec = true }}

[[step]]
fstat = {{ fd = "${{d}}" }}
capture = "st"
expect.out = {{ type = "dir", perm = {{ bits_set = 0o700 }} }}

[[step]]
fstatat = {{ path = "${{workdir}}/d" }}
expect.out = {{ ino = "${{st.ino}}", dev = "${{st.dev}}" }}

[[step]]
name = "three threads, each with its own fd"
threads = 3

  [[step.steps]]
  open = {{ path = "/dev/null" }}
  capture = "mine"

  [[step.steps]]
  fstat = {{ fd = "${{mine}}" }}
  repeat = 4
  expect.calls = 12
  expect.out = {{ type = "char" }}

  [[step.steps]]
  close = {{ fd = "${{mine}}" }}

[[step]]
name = "a child fills its fd table"
fork = true

  [[step.steps]]
  setrlimit = {{ resource = "RLIMIT_NOFILE", soft = 16 }}

  [[step.steps]]
  exhaust_fds = {{}}
  capture = "full"
  expect.out = {{ stopped_by = "EMFILE", last_fd = 15 }}

  [[step.steps]]
  mkdirat = {{ dir = "${{d}}", path = "sub" }}

  [[step.steps]]
  openat = {{ dir = "${{d}}", path = "sub", flags = ["O_DIRECTORY"] }}
  expect.errno = "EMFILE"

[[step]]
list_dir = {{ path = "${{workdir}}/d" }}
expect.out.names = {{ contains = "sub", not_matches = "^x" }}

[[step]]
unlinkat = {{ dir = "${{d}}", path = "sub", flags = ["AT_REMOVEDIR"] }}

[[step]]
unlinkat = {{ dir = "${{d}}", path = "f" }}

[[step]]
close = {{ fd = "${{d}}" }}

[[step]]
unlinkat = {{ path = "${{workdir}}/d", flags = ["AT_REMOVEDIR"] }}

[[step]]
fstatat = {{ path = "${{workdir}}/d" }}
expect.errno = "ENOENT"

[[step]]
read_file = {{ path = "/proc/self/status" }}
expect.out = {{ text = {{ matches = "(?m)^Pid:\\s+\\d+" }} }}

[[step]]
kselftest = {{ path = "{ktap_script}" }}
expect.ktap = {{ all_pass = true, planned = 2, pass = ["one", "t.two"] }}

[[step]]
name = "a host step: without a host the agent goes on"
host = "device_del"
expect.ok = "any"
"#
    )
}

fn run(c: &Compiled, console: &[(Option<u32>, &str)]) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle.json");
    std::fs::write(&bundle, serde_json::to_vec(&c.bundle).unwrap()).unwrap();
    let out = Command::new(AGENT)
        .arg("--local")
        .arg(&bundle)
        .arg("--workdir-base")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut ev = Evaluator::new(c);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let msg: AgentMsg = serde_json::from_str(line).unwrap();
        ev.agent(&msg);
        // Stand in for the engine at sync points: report the host action.
        if let AgentMsg::SyncWait { sync, .. } = msg {
            ev.host_action(sync, Ok(()));
        }
    }
    for (step, line) in console {
        ev.console(*step, line);
    }
    ev.finish()
}

fn ktap_script(dir: &std::path::Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("ktap_ok");
    std::fs::write(
        &p,
        "#!/bin/sh\necho 'TAP version 13'\necho '1..2'\necho 'ok 1 t.one'\necho 'ok 2 t.two'\n",
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.to_string_lossy().into_owned()
}

fn failures(r: &Report) -> String {
    r.failures()
        .map(|v| {
            format!(
                "line {} {} [{}]: expected {}, got {}",
                v.line, v.step_name, v.what, v.expected, v.actual
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_host_scenario_passes_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let text = scenario(&ktap_script(dir.path()));
    let c = gasbench_scenario::compile("host_smoke.toml", &text)
        .unwrap_or_else(|p| panic!("{:?}", miette::Report::new(*p)));
    let report = run(&c, &[(Some(1), "an ordinary console line")]);
    assert!(report.passed(), "{}", failures(&report));
    // Every written expectation produced a verdict (plus the implicit ones).
    assert!(report.verdicts.len() > 30, "{}", report.verdicts.len());
    let calls = report.verdicts.iter().find(|v| v.what == "calls").unwrap();
    assert_eq!(calls.actual, "12 calls");
}

#[test]
fn expecting_a_wrong_errno_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let text = scenario(&ktap_script(dir.path())).replacen(
        r#"expect.errno = "ENOTTY""#,
        r#"expect.errno = "EINVAL""#,
        1,
    );
    let c = gasbench_scenario::compile("host_smoke.toml", &text).unwrap();
    let report = run(&c, &[]);
    assert!(!report.passed());
    let bad: Vec<_> = report.failures().collect();
    assert_eq!(bad.len(), 1, "{}", failures(&report));
    assert_eq!(bad[0].what, "errno");
    assert_eq!(bad[0].expected, "errno EINVAL");
    assert!(
        bad[0].actual.starts_with("errno ENOTTY (call "),
        "{:?}",
        bad[0]
    );
    assert_eq!(bad[0].step_name, "a goldfish ioctl on /dev/null");
    assert_eq!(
        bad[0].line,
        text.lines().position(|l| l.contains("EINVAL")).unwrap() + 1
    );
}

#[test]
fn an_oops_on_the_console_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let c =
        gasbench_scenario::compile("host_smoke.toml", &scenario(&ktap_script(dir.path()))).unwrap();
    let report = run(
        &c,
        &[(
            Some(2),
            "BUG: kernel NULL pointer dereference, address: 0000000000000008",
        )],
    );
    assert!(!report.passed());
    let bad: Vec<_> = report.failures().collect();
    assert_eq!(bad.len(), 1, "{}", failures(&report));
    assert_eq!(bad[0].what, "kernel_log");
    assert!(bad[0].actual.contains("NULL pointer"), "{:?}", bad[0]);
}

#[test]
fn the_default_suite_compiles_into_bundles_the_agent_accepts() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let c = gasbench_scenario::load(&p)
                .unwrap_or_else(|e| panic!("{:?}", miette::Report::new(*e)));
            let json = serde_json::to_string(&c.bundle).unwrap();
            gasbench_abi::bundle::Bundle::from_json(&json)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            n += 1;
        }
    }
    assert!(n >= 10, "found {n} scenarios");
}
