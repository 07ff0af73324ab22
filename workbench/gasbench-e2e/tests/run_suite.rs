//! `gasbench run` end to end: the patched kernel (built by the kernel
//! stage, cached), the agent, the emulated device, the default suite.
//! What the suite finds in the posted series is asserted as findings;
//! an edited expectation fails the run; a QEMU, virtiofsd or device
//! server process killed mid-run ends it with an error naming what died
//! and nothing left behind.

#[path = "support/processes.rs"]
mod processes;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use processes::{Guarded, assert_no_process_left, gasbench_binary, wait_deadline};
use serde_json::Value;

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios")
}

/// Run `gasbench run --json ARGS` into `runs`; (exit code, summary, stderr).
fn run(args: &[&str], runs: &Path) -> (Option<i32>, Value, String) {
    let bin = gasbench_binary();
    let mut cmd = Command::new(&bin);
    cmd.args(["run", "--json", "--runs"])
        .arg(runs)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Guarded::spawn("gasbench run", &mut cmd);
    let out = child
        .child
        .take()
        .unwrap()
        .wait_with_output()
        .expect("gasbench run");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let summary: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON summary ({e}); stderr:\n{stderr}"));
    (out.status.code(), summary, stderr)
}

fn scenario<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no scenario {name} in {summary:#}"))
}

fn failed_whats(s: &Value) -> Vec<String> {
    s["expectations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["held"] == false)
        .map(|e| e["what"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_default_suite_runs_on_the_patched_kernel_with_truthful_verdicts() {
    let runs = tempfile::tempdir().unwrap();
    let (code, s, stderr) = run(&[], runs.path());
    // The posting has defects the suite is written to find: the run fails.
    assert_eq!(code, Some(1), "{stderr}");
    assert!(s["errors"].as_array().unwrap().is_empty(), "{stderr}");
    assert!(
        s["kernel_release"].as_str().unwrap().contains("gasbench"),
        "{s:#}"
    );
    assert!(["tcg", "kvm"].contains(&s["accel"].as_str().unwrap()));
    let names: Vec<&str> = s["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert!(names.len() >= 11, "{names:?}");
    // Every scenario ran to a verdict, with expectations checked.
    for sc in s["scenarios"].as_array().unwrap() {
        assert!(sc["passed"].is_boolean(), "{} did not finish", sc["name"]);
        assert!(
            sc["expectations"].as_array().unwrap().len() >= 5,
            "{}",
            sc["name"]
        );
    }
    // The findings, each for its documented reason.
    let abi = failed_whats(scenario(&s, "goldfish-abi-review"));
    assert!(abi.iter().any(|w| w.contains("out.phys_addr")), "{abi:?}");
    let errors = failed_whats(scenario(&s, "goldfish-errors"));
    assert!(
        errors.iter().any(|w| w.contains("read-only argument")),
        "{errors:?}"
    );
    let kself = failed_whats(scenario(&s, "mkdirat2-kselftest"));
    assert!(
        kself.iter().any(|w| w.contains("cleaned up after itself")),
        "{kself:?}"
    );
    // And what the posting gets right passes.
    for name in [
        "goldfish-rfc-subset",
        "goldfish-faults",
        "goldfish-leaks",
        "goldfish-threads",
        "goldfish-hotunplug",
        "mkdirat2-selftest-cases",
        "mkdirat2-flags",
        "mkdirat2-emfile",
    ] {
        let sc = scenario(&s, name);
        assert_eq!(sc["passed"], true, "{name}: {:?}", failed_whats(sc));
    }
    // The posted kselftest ran in the guest, every case reported.
    let ktap = s["ktap"].as_array().unwrap();
    assert!(ktap.len() >= 7, "{ktap:?}");
    assert!(ktap.iter().all(|k| k["status"] == "ok"), "{ktap:?}");

    // The run directory holds the record.
    let dir = std::fs::read_dir(runs.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name() != "latest")
        .unwrap()
        .path();
    for f in [
        "events.jsonl",
        "results.json",
        "junit.xml",
        "console.log",
        "qemu.log",
    ] {
        assert!(dir.join(f).exists(), "{f} missing in {}", dir.display());
    }
    let events = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
    // Device register accesses were traced between the calls that caused them.
    assert!(events.contains(r#""src":"device","ev":{"type":"reg""#));
    assert!(events.contains(r#""name":"ioctl:ALLOCATE_BLOCK""#));
}

#[test]
fn an_expectation_edited_to_a_wrong_errno_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let text =
        std::fs::read_to_string(scenarios_dir().join("mkdirat2_selftest_cases.toml")).unwrap();
    // The first errno the posted selftest expects, swapped for a wrong one.
    let (at, errno) = ["\"EEXIST\"", "\"EINVAL\"", "\"ENOENT\"", "\"ENOTDIR\""]
        .iter()
        .filter_map(|e| text.find(e).map(|at| (at, *e)))
        .min()
        .expect("the scenario expects some errno");
    let wrong = if errno == "\"EPERM\"" {
        "\"EACCES\""
    } else {
        "\"EPERM\""
    };
    let edited = format!("{}{wrong}{}", &text[..at], &text[at + errno.len()..]);
    let file = dir.path().join("edited.toml");
    std::fs::write(&file, edited).unwrap();
    let (code, s, stderr) = run(&[file.to_str().unwrap()], &dir.path().join("runs"));
    assert_eq!(code, Some(1), "{stderr}");
    let sc = &s["scenarios"][0];
    assert_eq!(sc["passed"], false);
    let bad: Vec<&Value> = sc["expectations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["held"] == false)
        .collect();
    assert_eq!(
        bad.len(),
        1,
        "exactly the edited expectation fails: {bad:#?}"
    );
    assert_eq!(
        bad[0]["expected"],
        format!("errno {}", wrong.trim_matches('"'))
    );
    assert_eq!(
        bad[0]["actual"]
            .as_str()
            .unwrap()
            .split(' ')
            .take(2)
            .collect::<Vec<_>>()
            .join(" "),
        format!("errno {}", errno.trim_matches('"'))
    );
}

/// A run in progress, interrupted from outside: what it left.
struct Stopped {
    code: Option<i32>,
    summary: Value,
    run_dir: PathBuf,
}

/// Start `gasbench run --json` (with `extra` flags) on the scenario
/// `text`, wait until its events contain `ready`, send `signal` to the pid
/// `target` picks from the events so far, and collect how the run ended.
fn signal_mid_run(
    text: &str,
    extra: &[&str],
    ready: &str,
    target: impl Fn(&str, u32) -> i32,
    signal: i32,
) -> (tempfile::TempDir, Stopped) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scenario.toml");
    std::fs::write(&file, text).unwrap();
    let runs = dir.path().join("runs");
    let mut cmd = Command::new(gasbench_binary());
    cmd.args(["run", "--json", "--runs"])
        .arg(&runs)
        .args(extra)
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut run = Guarded::spawn("gasbench run", &mut cmd);
    let deadline = Instant::now() + Duration::from_secs(600);
    let pid = loop {
        assert!(Instant::now() < deadline, "never saw {ready}");
        assert!(run.exited().is_none(), "gasbench run ended early");
        let events = std::fs::read_to_string(runs.join("latest/events.jsonl")).unwrap_or_default();
        if events.contains(ready) {
            break target(&events, run.id());
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // SAFETY: kill(2) on our child or a pid from its run's own events.
    unsafe { libc::kill(pid, signal) };
    let mut child = run.child.take().unwrap();
    let status =
        wait_deadline(&mut child, Duration::from_secs(120)).expect("the run ends after the signal");
    let mut stdout = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let summary: Value = serde_json::from_str(&stdout).expect("a summary after the signal");
    let real = std::fs::read_link(runs.join("latest")).unwrap();
    let stopped = Stopped {
        code: status.code(),
        summary,
        run_dir: runs.join(real),
    };
    (dir, stopped)
}

/// Start a run (with `extra` flags) whose scenario idles in the guest,
/// wait until it is running, kill `victim` (a process name on the bus),
/// and check that the run ends with an error saying `named`.
fn kill_mid_run(victim: &str, extra: &[&str], named: &str) {
    let idle = "[scenario]\nname = \"idle\"\ntimeout = \"5m\"\n\n[[step]]\nname = \"idle in the guest\"\nsleep = \"120s\"\ntimeout = \"3m\"\n";
    let victim_pid = |events: &str, _: u32| {
        events
            .lines()
            .find_map(|l| {
                let v: Value = serde_json::from_str(l).ok()?;
                (v["ev"]["type"] == "process_started" && v["ev"]["name"] == victim)
                    .then(|| v["ev"]["pid"].as_i64())
                    .flatten()
            })
            .unwrap_or_else(|| panic!("no {victim} pid in the events")) as i32
    };
    let (_dir, s) = signal_mid_run(
        idle,
        extra,
        r#""msg":"step_begin""#,
        victim_pid,
        libc::SIGKILL,
    );
    // A part of the tool died: exit status 3, not a finding.
    assert_eq!(s.code, Some(3));
    let errors = s.summary["errors"].to_string();
    assert!(
        errors.contains(named),
        "the error names what died: {errors}"
    );
    // The run directory stays readable up to that point.
    let rd = &s.run_dir;
    let (events, cut) = gasbench_trace::log::read_all(&rd.join("events.jsonl")).unwrap();
    assert!(cut.is_none());
    assert!(events.len() > 50);
    // Nothing is left: no process holding the run directory, no socket.
    let leftovers: Vec<_> = std::fs::read_dir(rd)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".sock"))
        .map(|e| e.path())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_no_process_left(rd);
}

/// Ctrl-C in the middle of a scenario: the steps it finished keep their
/// verdicts, the one it was in is named, teardown runs, exit 130, nothing
/// is left behind.
#[test]
fn ctrl_c_mid_scenario_keeps_the_verdicts_it_has_and_says_where_it_stopped() {
    let text = r#"[scenario]
name = "interrupted"
timeout = "5m"

[[step]]
name = "open null"
open = { path = "/dev/null", flags = ["O_RDONLY"] }
expect.ok = true

[[step]]
name = "idle in the guest"
sleep = "120s"
timeout = "3m"
"#;
    let (_dir, s) = signal_mid_run(
        text,
        &[],
        r#""name":"idle in the guest""#,
        |_, gasbench| gasbench as i32,
        libc::SIGINT,
    );
    assert_eq!(s.code, Some(130));
    let sc = scenario(&s.summary, "interrupted");
    assert_eq!(sc["passed"], false, "{sc:#}");
    let exps = sc["expectations"].as_array().unwrap();
    assert!(
        exps.iter()
            .any(|e| e["held"] == true && e["what"].as_str().unwrap().contains("open null")),
        "the finished step keeps its verdict: {sc:#}"
    );
    assert!(
        exps.iter().any(|e| e["held"] == false
            && e["actual"]
                .as_str()
                .unwrap()
                .contains("interrupted (Ctrl-C) during step 1 \"idle in the guest\"")),
        "{sc:#}"
    );
    assert!(
        s.summary["errors"].to_string().contains("interrupted"),
        "{:#}",
        s.summary
    );
    assert_no_process_left(&s.run_dir);
}

#[test]
fn killing_qemu_mid_run_ends_it_naming_qemu_and_leaves_nothing_behind() {
    kill_mid_run("qemu", &[], "QEMU exited");
}

#[test]
fn killing_virtiofsd_mid_run_ends_it_naming_virtiofsd_and_leaves_nothing_behind() {
    kill_mid_run("virtiofsd", &[], "virtiofsd exited");
}

#[test]
fn killing_the_device_server_process_mid_run_ends_it_naming_it_and_leaves_nothing_behind() {
    kill_mid_run("device server", &["--device-process"], "device server (pid");
}

/// A block that keeps the guest busy past its own timeout (its inner
/// steps keep talking) and a step that goes quiet past its timeout are
/// both stopped and named; the next scenario gets a fresh boot and passes.
#[test]
fn steps_and_blocks_that_overrun_their_timeout_are_stopped_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let block = dir.path().join("block.toml");
    std::fs::write(
        &block,
        r#"[scenario]
name = "block-overruns"
timeout = "5m"

[[step]]
name = "outer block"
repeat = 400
timeout = "2s"
[[step.steps]]
name = "nap"
sleep = "250ms"
"#,
    )
    .unwrap();
    let quiet = dir.path().join("quiet.toml");
    std::fs::write(
        &quiet,
        r#"[scenario]
name = "step-goes-quiet"
timeout = "5m"

[[step]]
name = "long nap"
sleep = "100s"
timeout = "2s"
"#,
    )
    .unwrap();
    let rfc = scenarios_dir().join("goldfish_rfc_subset.toml");
    let (code, s, stderr) = run(
        &[
            block.to_str().unwrap(),
            quiet.to_str().unwrap(),
            rfc.to_str().unwrap(),
        ],
        &dir.path().join("runs"),
    );
    assert_eq!(code, Some(1), "{stderr}");
    // What the failed expectations of a scenario say, joined.
    let actual_of = |name: &str| {
        let sc = scenario(&s, name);
        assert_eq!(sc["passed"], false, "{sc:#}");
        sc["expectations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["held"] == false)
            .map(|e| e["actual"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let b = actual_of("block-overruns");
    assert!(
        b.contains("step 0 \"outer block\"")
            && b.contains("did not finish within its timeout of 2.0 s"),
        "{b}"
    );
    let q = actual_of("step-goes-quiet");
    assert!(
        q.contains("stopped answering during step 0 \"long nap\""),
        "{q}"
    );
    assert_eq!(scenario(&s, "goldfish-rfc-subset")["passed"], true, "{s:#}");
}

#[test]
fn a_device_socket_that_dies_fails_the_call_and_the_next_scenario_gets_a_fresh_boot() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("device_dies.toml");
    std::fs::write(
        &file,
        r#"[scenario]
name = "device-dies"
requires = ["goldfish"]

[device]
faults = [ { on = "allocate_block", nth = 1, action = "drop_connection" } ]

[[step]]
name = "open"
open = { path = "/dev/goldfish_address_space", flags = ["O_RDWR"] }
capture = "fd"

[[step]]
name = "allocate while the device goes away"
ioctl = { fd = "${fd}", cmd = "ALLOCATE_BLOCK", size = 4096 }
expect.errno = "EIO"
timeout = "30s"
"#,
    )
    .unwrap();
    let rfc = scenarios_dir().join("goldfish_rfc_subset.toml");
    let (code, s, stderr) = run(
        &[file.to_str().unwrap(), rfc.to_str().unwrap()],
        &dir.path().join("runs"),
    );
    // The dead socket is a failed call (EIO from the driver), not a
    // crashed run; the next scenario boots afresh and passes.
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(scenario(&s, "device-dies")["passed"], true, "{s:#}");
    assert_eq!(scenario(&s, "goldfish-rfc-subset")["passed"], true, "{s:#}");
    assert!(
        stderr.contains("rebooting: the goldfish device lost its connection to QEMU"),
        "{stderr}"
    );
}

#[test]
fn every_register_access_lands_inside_the_call_that_caused_it() {
    register_accesses_land_inside_their_calls(&[]);
}

/// The same order across a process boundary: the device server's events
/// come through its pipe, agent events through the virtio-serial socket.
#[test]
fn every_register_access_lands_inside_its_call_with_the_device_as_a_process() {
    register_accesses_land_inside_their_calls(&["--device-process"]);
}

fn register_accesses_land_inside_their_calls(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let files: Vec<String> = [
        "goldfish_rfc_subset.toml",
        "goldfish_threads.toml",
        "goldfish_leaks.toml",
    ]
    .iter()
    .map(|f| scenarios_dir().join(f).display().to_string())
    .collect();
    let args: Vec<&str> = extra
        .iter()
        .copied()
        .chain(files.iter().map(String::as_str))
        .collect();
    let (code, s, stderr) = run(&args, &runs);
    assert_eq!(code, Some(0), "{stderr}\n{s:#}");
    let real = std::fs::read_link(runs.join("latest")).unwrap();
    let (events, _) = gasbench_trace::log::read_all(&runs.join(real).join("events.jsonl")).unwrap();
    // Walk the bus in order: a BAR0 access belongs to the calls open at
    // that moment. Only the driver's probe (before any call) may touch the
    // device outside a call; these scenarios have no host steps.
    let mut open = std::collections::BTreeSet::new();
    let mut inside = 0;
    let mut outside = Vec::new();
    for e in &events {
        let v = serde_json::to_value(e).unwrap();
        let ev = &v["ev"];
        match (v["src"].as_str(), ev["msg"].as_str(), ev["type"].as_str()) {
            (Some("agent"), Some("call_begin"), _) => {
                open.insert(ev["call"].as_u64().unwrap());
            }
            (Some("agent"), Some("call_end"), _) => {
                open.remove(&ev["call"].as_u64().unwrap());
            }
            (Some("device"), _, Some("reg")) if ev["space"] == "bar0" => {
                if open.is_empty() {
                    outside.push(ev["reg"].as_str().unwrap_or("?").to_string());
                } else {
                    inside += 1;
                }
            }
            _ => {}
        }
    }
    assert!(inside > 1000, "{inside} accesses inside calls");
    assert_eq!(
        outside,
        ["GUEST_PAGE_SIZE", "PHYS_START_LOW", "PHYS_START_HIGH"],
        "only the probe's writes happen outside a call"
    );
}
