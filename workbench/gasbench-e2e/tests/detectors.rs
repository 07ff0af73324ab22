//! The kernel's detectors, proven: the debug kernel (the kernel stage's
//! `debug` profile, cached) runs scenarios/detectors_debug.toml, which
//! commits one bug per step on purpose; each detector's report must be
//! parsed, decoded against the build's vmlinux and attributed to the step
//! (and call) that provoked it. The race kernel does the same for KCSAN.
//! And systematic fault injection on mkdirat2: every attempt recorded,
//! the no-fault attempt reached.
//!
//! Lean on purpose: one boot per test. A cold debug kernel build takes
//! most of an hour on two cores; CI keeps it in the cache directory.

#[path = "support/processes.rs"]
mod processes;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use processes::{Guarded, gasbench_binary};
use serde_json::Value;

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios")
}

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

/// The steps of a scenario file, in order, as `gasbench scenario show
/// --json` numbers them: (id, name).
fn step_ids(file: &Path) -> Vec<(u64, String)> {
    let c = gasbench_scenario::load(file).unwrap_or_else(|e| panic!("{e:?}"));
    c.plan
        .steps
        .iter()
        .map(|s| (s.id as u64, s.name.clone()))
        .collect()
}

fn reports<'a>(s: &'a Value, kind: &str) -> Vec<&'a Value> {
    s["reports"]
        .as_array()
        .map(|a| a.iter().filter(|r| r["report"]["kind"] == kind).collect())
        .unwrap_or_default()
}

#[test]
fn the_debug_kernels_detectors_fire_and_their_reports_reach_the_step() {
    let runs = tempfile::tempdir().unwrap();
    let file = scenarios_dir().join("detectors_debug.toml");
    let (code, s, stderr) = run(&["--profile", "debug", file.to_str().unwrap()], runs.path());
    assert!(s["errors"].as_array().unwrap().is_empty(), "{stderr}");
    assert_eq!(s["profile"]["name"], "debug", "{s:#}");
    // Every expectation held: each step got its report, none other.
    assert_eq!(code, Some(0), "{stderr}\n{s:#}");
    let steps = step_ids(&file);
    let step_of = |prefix: &str| {
        steps
            .iter()
            .find(|(_, n)| n.starts_with(prefix))
            .unwrap_or_else(|| panic!("no step {prefix}"))
            .0
    };
    for (kind, step, with_call, culprit) in [
        ("kasan", step_of("KASAN"), true, "lkdtm_READ_AFTER_FREE"),
        ("ubsan", step_of("UBSAN"), true, "lkdtm_ARRAY_BOUNDS"),
        (
            "atomic-sleep",
            step_of("atomic sleep"),
            true,
            "provoke_sleep_in_atomic",
        ),
        ("kmemleak", step_of("kmemleak"), false, "provoke_leak"),
        (
            "lockdep",
            step_of("lockdep"),
            true,
            "provoke_lock_inversion",
        ),
    ] {
        let found = reports(&s, kind);
        assert!(!found.is_empty(), "no {kind} report: {s:#}");
        let r = &found[0]["report"];
        let a = &r["attribution"];
        assert_eq!(a["scenario"], "detectors-debug", "{kind}: {r:#}");
        assert_eq!(
            a["step"], step,
            "{kind} attributed to the wrong step: {r:#}"
        );
        assert_eq!(a["call"].is_u64(), with_call, "{kind}: {r:#}");
        // The stack: the provoking function among the reliable frames,
        // decoded to a line of the built tree.
        let frames = r["stacks"][0]["frames"].as_array().unwrap();
        let f = frames
            .iter()
            .find(|f| f["function"] == culprit)
            .unwrap_or_else(|| panic!("{kind}: no frame {culprit}: {r:#}"));
        let loc = f["location"]
            .as_str()
            .unwrap_or_else(|| panic!("{kind}: {culprit} not decoded: {r:#}"));
        assert!(loc.starts_with("drivers/misc/"), "{kind}: {loc}");
        assert!(
            s["proven"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["detector"] == kind),
            "{kind} not proven: {s:#}"
        );
    }
}

/// The console of the one run in `runs`.
fn console_of(runs: &Path) -> String {
    std::fs::read_dir(runs)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("console.log"))
        .find(|p| p.is_file())
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .unwrap_or_default()
}

#[test]
fn the_race_kernels_kcsan_fires_and_its_report_reaches_the_step() {
    let runs = tempfile::tempdir().unwrap();
    let file = scenarios_dir().join("detectors_race.toml");
    let (code, s, stderr) = run(&["--profile", "race", file.to_str().unwrap()], runs.path());
    assert_eq!(s["profile"]["name"], "race", "{s:#}");
    // KCSAN needs two CPUs to see two threads meet; the guest has two (its
    // kernel finds them in ACPI's MADT).
    let console = console_of(runs.path());
    assert!(
        console.contains("Allowing 2 present CPUs"),
        "the guest should come up with two CPUs:\n{console}"
    );
    assert!(
        !console.contains("DATA_RACE needs two online CPUs"),
        "{console}"
    );
    assert_eq!(code, Some(0), "{stderr}\n{s:#}");
    let found = reports(&s, "kcsan");
    assert!(!found.is_empty(), "{s:#}");
    let r = &found[0]["report"];
    assert_eq!(r["attribution"]["step"], 0, "{r:#}");
    // Printed by one of the racing kernel threads, not the caller: it is
    // the call that was in the kernel that started them.
    assert!(r["attribution"]["call"].is_u64(), "{r:#}");
    assert!(
        r["stacks"][0]["frames"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["function"] == "provoke_racer"),
        "{r:#}"
    );
}

/// On one CPU KCSAN cannot see two threads meet: the probe says so on the
/// console, and the run says KCSAN was not proven rather than pass.
#[test]
fn on_one_cpu_the_race_probe_says_kcsan_is_not_proven() {
    let runs = tempfile::tempdir().unwrap();
    let file = scenarios_dir().join("detectors_race.toml");
    let (code, s, stderr) = run(
        &["--profile", "race", "--cpus", "1", file.to_str().unwrap()],
        runs.path(),
    );
    let console = console_of(runs.path());
    assert!(
        console.contains("DATA_RACE needs two online CPUs"),
        "{console}"
    );
    assert_eq!(code, Some(1), "{stderr}\n{s:#}");
    assert!(reports(&s, "kcsan").is_empty(), "{s:#}");
    assert!(
        !s["proven"]
            .as_array()
            .is_some_and(|p| p.iter().any(|x| x["detector"] == "kcsan")),
        "{s:#}"
    );
    // The race profile arms KCSAN and this run proved none of it.
    assert_eq!(s["profile"]["detectors"][0], "kcsan", "{s:#}");
}

#[test]
fn mkdirat2_under_fault_injection_records_every_attempt() {
    let runs = tempfile::tempdir().unwrap();
    let file = scenarios_dir().join("mkdirat2_fault_injection.toml");
    let (_code, s, stderr) = run(&["--profile", "debug", file.to_str().unwrap()], runs.path());
    assert!(s["errors"].as_array().unwrap().is_empty(), "{stderr}");
    let inj = s["injection"].as_array().unwrap_or_else(|| panic!("{s:#}"));
    let slab = inj
        .iter()
        .find(|x| x["call"] == "mkdirat2" && x["fault"] == "slab")
        .unwrap_or_else(|| panic!("{s:#}"));
    // mkdirat2 allocates (the dentry, the inode, the file): faults were
    // injected, and the attempts ran out of fault points.
    assert!(slab["injected"].as_u64().unwrap() >= 2, "{slab:#}");
    assert_eq!(slab["reached_no_fault"], true, "{slab:#}");
    assert_eq!(
        slab["attempts"].as_u64().unwrap(),
        slab["injected"].as_u64().unwrap() + 1,
        "one attempt past the last fault point: {slab:#}"
    );
    // Every injected attempt was judged (the attempts' rule).
    let sc = s["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "mkdirat2-fault-injection")
        .unwrap();
    let judged = sc["expectations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["what"].as_str().unwrap().ends_with(": inject"))
        .count();
    assert_eq!(judged, 3, "{sc:#}");
}
