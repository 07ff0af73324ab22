//! `gasbench run` end to end: the patched kernel (built by the kernel
//! stage, cached), the agent, the emulated device, the default suite.
//! What the suite finds in the posted series is asserted as findings;
//! an edited expectation fails the run; a QEMU, virtiofsd or device
//! server process killed mid-run, a signal (SIGINT once and twice,
//! SIGTERM) and a full disk each end it with an error naming the cause,
//! the verdicts of the steps that finished kept, the exit status saying
//! how it ended, and nothing left behind.

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
    stderr: String,
    run_dir: PathBuf,
}

/// Start `gasbench run --json` (with `extra` flags) on the scenarios
/// `texts`, wait until its events contain `ready`, call `act` with the
/// events so far and gasbench's pid (it sends signals, kills a part, fills
/// the disk), and collect how the run ended.
fn act_mid_run(
    texts: &[&str],
    extra: &[&str],
    runs: &Path,
    ready: &str,
    act: impl FnOnce(&str, u32),
) -> Stopped {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let file = dir.path().join(format!("{i}-scenario.toml"));
        std::fs::write(&file, text).unwrap();
        files.push(file);
    }
    let mut cmd = Command::new(gasbench_binary());
    cmd.args(["run", "--json", "--runs"])
        .arg(runs)
        .args(extra)
        .args(&files)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut run = Guarded::spawn("gasbench run", &mut cmd);
    // Both pipes drain while the run goes on.
    let take = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut r) = r {
                let _ = r.read_to_string(&mut text);
            }
            text
        })
    };
    let child = run.child.as_mut().unwrap();
    let out = take(child.stdout.take().map(|o| Box::new(o) as _));
    let err = take(child.stderr.take().map(|e| Box::new(e) as _));
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        assert!(Instant::now() < deadline, "never saw {ready}");
        assert!(run.exited().is_none(), "gasbench run ended early");
        let events = std::fs::read_to_string(runs.join("latest/events.jsonl")).unwrap_or_default();
        if events.contains(ready) {
            act(&events, run.id());
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut child = run.child.take().unwrap();
    let status = wait_deadline(&mut child, Duration::from_secs(120)).expect("the run ends");
    let stdout = out.join().unwrap();
    let stderr = err.join().unwrap();
    let summary: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("no summary on stdout ({e}); stderr:\n{stderr}"));
    let real = std::fs::read_link(runs.join("latest")).unwrap();
    Stopped {
        code: status.code(),
        summary,
        stderr,
        run_dir: runs.join(real),
    }
}

/// [`act_mid_run`] on one scenario with its own runs directory, sending
/// `signal` to the pid `target` picks from the events so far.
fn signal_mid_run(
    text: &str,
    extra: &[&str],
    ready: &str,
    target: impl Fn(&str, u32) -> i32,
    signal: i32,
) -> (tempfile::TempDir, Stopped) {
    let dir = tempfile::tempdir().unwrap();
    let stopped = act_mid_run(
        &[text],
        extra,
        &dir.path().join("runs"),
        ready,
        |events, gasbench| {
            // SAFETY: kill(2) on our child or a pid from its run's own events.
            unsafe { libc::kill(target(events, gasbench), signal) };
        },
    );
    (dir, stopped)
}

/// A scenario that earns a verdict, then idles in the guest until it is
/// stopped.
const EARN_THEN_IDLE: &str = r#"[scenario]
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

/// The step that idles has begun.
const IDLING: &str = r#""name":"idle in the guest""#;

/// The verdict step 0 earned is kept, in the summary and in results.json
/// and junit.xml, and the scenario says where it stopped and why.
fn assert_verdicts_kept(s: &Stopped, scenario_name: &str, stopped_because: &str) {
    let from_file: Value = serde_json::from_str(
        &std::fs::read_to_string(s.run_dir.join("results.json")).expect("results.json"),
    )
    .expect("results.json is whole");
    // JUnit has the scenario, failed where it stopped (it lists failures).
    let junit = std::fs::read_to_string(s.run_dir.join("junit.xml")).expect("junit.xml");
    assert!(
        junit.contains(&format!("name=\"{scenario_name}\""))
            && junit.contains("during step 1 &quot;idle in the guest&quot;"),
        "{junit}"
    );
    for summary in [&s.summary, &from_file] {
        let sc = scenario(summary, scenario_name);
        assert_eq!(sc["passed"], false, "{sc:#}");
        let exps = sc["expectations"].as_array().unwrap();
        assert!(
            exps.iter()
                .any(|e| e["held"] == true && e["what"].as_str().unwrap().contains("open null")),
            "the finished step keeps its verdict: {sc:#}"
        );
        assert!(
            exps.iter().any(|e| e["held"] == false
                && e["actual"].as_str().unwrap().contains(&format!(
                    "{stopped_because} during step 1 \"idle in the guest\""
                ))),
            "the scenario says where it stopped: {sc:#}\n{}",
            s.stderr
        );
    }
}

/// Nothing is left: no process holding the run directory, no socket, no
/// pid file.
fn assert_nothing_left(rd: &Path) {
    let leftovers: Vec<_> = std::fs::read_dir(rd)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.ends_with(".sock") || n.ends_with(".pid")
        })
        .map(|e| e.path())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_no_process_left(rd);
}

/// Start a run (with `extra` flags) whose scenario earns a verdict and
/// then idles in the guest, kill `victim` (a process name on the bus) in
/// the idle step, and check that the run ends with an error saying
/// `named`, the verdict kept and nothing left behind.
fn kill_mid_run(victim: &str, extra: &[&str], named: &str) {
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
    let (_dir, s) = signal_mid_run(EARN_THEN_IDLE, extra, IDLING, victim_pid, libc::SIGKILL);
    // A part of the tool died: exit status 3 (the tool failed), not a finding.
    assert_eq!(s.code, Some(3), "{}", s.stderr);
    let errors = s.summary["errors"].to_string();
    assert!(
        errors.contains(named),
        "the error names what died: {errors}"
    );
    assert_verdicts_kept(&s, "interrupted", "interrupted: stopped");
    let sc = scenario(&s.summary, "interrupted").to_string();
    assert!(sc.contains(named), "the verdict names what died: {sc}");
    // The run directory stays readable up to that point.
    let rd = &s.run_dir;
    let (events, cut) = gasbench_trace::log::read_all(&rd.join("events.jsonl")).unwrap();
    assert!(cut.is_none());
    assert!(events.len() > 50);
    assert_nothing_left(rd);
}

/// Ctrl-C in the middle of a scenario: the steps it finished keep their
/// verdicts, the one it was in is named, teardown runs, exit 130, nothing
/// is left behind.
#[test]
fn ctrl_c_mid_scenario_keeps_the_verdicts_it_has_and_says_where_it_stopped() {
    let (_dir, s) = signal_mid_run(
        EARN_THEN_IDLE,
        &[],
        IDLING,
        |_, gasbench| gasbench as i32,
        libc::SIGINT,
    );
    assert_eq!(s.code, Some(130), "{}", s.stderr);
    assert_verdicts_kept(&s, "interrupted", "interrupted (Ctrl-C)");
    assert!(
        s.summary["errors"]
            .to_string()
            .contains("interrupted (Ctrl-C)"),
        "{:#}",
        s.summary
    );
    assert_nothing_left(&s.run_dir);
}

/// SIGTERM is Ctrl-C by another name, with its own exit status.
#[test]
fn sigterm_mid_scenario_stops_like_ctrl_c_and_exits_143() {
    let (_dir, s) = signal_mid_run(
        EARN_THEN_IDLE,
        &[],
        IDLING,
        |_, gasbench| gasbench as i32,
        libc::SIGTERM,
    );
    assert_eq!(s.code, Some(143), "{}", s.stderr);
    assert_verdicts_kept(&s, "interrupted", "interrupted (SIGTERM)");
    assert_nothing_left(&s.run_dir);
}

/// A second Ctrl-C stops at once: the scenario that was running is
/// dropped, the one that finished keeps its verdicts, and nothing is left.
#[test]
fn a_second_ctrl_c_stops_at_once_keeping_finished_scenarios_and_leaving_nothing() {
    let first = r#"[scenario]
name = "finished-first"

[[step]]
name = "open null"
open = { path = "/dev/null", flags = ["O_RDONLY"] }
expect.ok = true
"#;
    let dir = tempfile::tempdir().unwrap();
    let s = act_mid_run(
        &[first, EARN_THEN_IDLE],
        &[],
        &dir.path().join("runs"),
        IDLING,
        |_, gasbench| {
            // Twice in a row, as a user who means it: the second reaches
            // gasbench while the first is still being acted on.
            for _ in 0..2 {
                // SAFETY: kill(2) on our child.
                unsafe { libc::kill(gasbench as i32, libc::SIGINT) };
                std::thread::sleep(Duration::from_millis(1));
            }
        },
    );
    assert_eq!(s.code, Some(130), "{}", s.stderr);
    let sc = scenario(&s.summary, "finished-first");
    assert_eq!(sc["passed"], true, "{sc:#}");
    assert!(
        s.stderr.contains("Ctrl-C again: stopping at once"),
        "{}",
        s.stderr
    );
    assert!(
        s.summary["errors"]
            .to_string()
            .contains("interrupted (Ctrl-C): Ctrl-C again; the run was stopped at once"),
        "{:#}",
        s.summary
    );
    let from_file: Value =
        serde_json::from_str(&std::fs::read_to_string(s.run_dir.join("results.json")).unwrap())
            .unwrap();
    assert_eq!(scenario(&from_file, "finished-first")["passed"], true);
    assert_nothing_left(&s.run_dir);
}

/// A tmpfs of `MIB` MiB mounted for the test, unmounted however it ends.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, mib: u32) -> SmallDisk {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={mib}m,mode=0700"))
            .arg("gasbench-e2e-full")
            .arg(at)
            .status()
            .expect("mount(8)")
            .success();
        assert!(
            ok,
            "mounting a tmpfs at {} (the e2e tier runs as root)",
            at.display()
        );
        SmallDisk(at.to_path_buf())
    }

    /// Write until the disk is full.
    fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.0.join("filler")).unwrap();
        let chunk = vec![0xa5u8; 1 << 20];
        loop {
            if let Err(e) = f.write_all(&chunk) {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                break;
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A full disk in the middle of a scenario: the run stops naming the file
/// it could not write, the summary on stdout keeps the verdicts earned so
/// far, results.json is whole or absent (never half-written), and nothing
/// is left behind.
#[test]
fn a_full_disk_stops_the_run_naming_the_file_and_the_summary_keeps_the_verdicts() {
    // Steps that keep reporting, so the log is written all along.
    let busy = r#"[scenario]
name = "disk-fills"
timeout = "5m"

[[step]]
name = "open null"
open = { path = "/dev/null", flags = ["O_RDONLY"] }
expect.ok = true

[[step]]
name = "keep reporting"
repeat = 100000
timeout = "4m"
[[step.steps]]
name = "nap"
sleep = "50ms"
"#;
    let dir = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&dir.path().join("small"), 48);
    let runs = disk.0.join("runs");
    let s = act_mid_run(&[busy], &[], &runs, r#""name":"nap""#, |_, _| disk.fill());
    // The disk, not the series, failed: exit status 3.
    assert_eq!(s.code, Some(3), "{}", s.stderr);
    let log = s.run_dir.join("events.jsonl").display().to_string();
    assert!(
        s.stderr
            .contains(&format!("cannot write {log}: No space left on device")),
        "the error names the file:\n{}",
        s.stderr
    );
    // The summary on stdout is whole: the earned verdict, and where the
    // scenario stopped and why.
    let sc = scenario(&s.summary, "disk-fills");
    let exps = sc["expectations"].as_array().unwrap();
    assert!(
        exps.iter()
            .any(|e| e["held"] == true && e["what"].as_str().unwrap().contains("open null")),
        "{sc:#}"
    );
    assert!(
        exps.iter().any(|e| e["held"] == false
            && e["actual"].as_str().unwrap().contains(&format!(
                "stopped: cannot write {log}: No space left on device"
            ))
            && e["actual"]
                .as_str()
                .unwrap()
                .contains("during step 2 \"nap\"")),
        "{sc:#}"
    );
    // results.json could not be written either: named, and not left
    // half-written.
    let results = s.run_dir.join("results.json");
    assert!(
        s.stderr
            .contains(&format!("cannot write {}", results.display())),
        "{}",
        s.stderr
    );
    if let Ok(text) = std::fs::read_to_string(&results) {
        serde_json::from_str::<Value>(&text).expect("results.json is whole if it exists");
    }
    let temporaries: Vec<_> = std::fs::read_dir(&s.run_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .map(|e| e.path())
        .collect();
    assert!(temporaries.is_empty(), "{temporaries:?}");
    assert_nothing_left(&s.run_dir);
    drop(disk);
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

/// A `--kernel` image cut short is refused with an error that says so,
/// before a run directory is made or QEMU starts.
#[test]
fn a_truncated_kernel_image_is_refused_before_qemu_starts() {
    let dir = tempfile::tempdir().unwrap();
    let cache = gasbench_env::CacheDir::from_env(None);
    // The newest build the kernel stage made (or the toolroot's stock
    // kernel): a real image, cut in half.
    let real = std::fs::read_dir(cache.kernel().join("builds"))
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bzImage"))
        .find(|p| p.is_file())
        .or_else(|| {
            let (_, rt) = gasbench_e2e::runtime();
            gasbench_env::probe_kernel(&rt, None)
        })
        .expect("a kernel image to cut");
    let bytes = std::fs::read(&real).unwrap();
    let cut = dir.path().join("bzImage");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let runs = dir.path().join("runs");
    let out = Command::new(gasbench_binary())
        .args(["run", "--runs"])
        .arg(&runs)
        .arg("--kernel")
        .arg(&cut)
        .arg(scenarios_dir().join("goldfish_rfc_subset.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The user's input: exit 2, as for a bad scenario.
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("truncated"),
        "the error says what is wrong: {stderr}"
    );
    assert!(!runs.exists(), "nothing was started");
}
