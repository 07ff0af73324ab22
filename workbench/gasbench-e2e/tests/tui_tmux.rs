//! The TUI in a real terminal: `gasbench` runs inside tmux, keys are sent
//! with `send-keys`, the screen is read with `capture-pane`.
//!
//! - `gasbench` with no arguments on the real pipeline: select a scenario,
//!   `r`, wait for its verdict, read the trace pane, `q`, exit status 0.
//! - signals reach the live TUI as Ctrl-C does: SIGINT twice while a
//!   scenario runs leaves at once, exit status 130, terminal restored,
//!   nothing left running.
//! - `gasbench open` on the TUI's fixture run directory (browse, navigate,
//!   filter, expand a call, the help, a resize, quit with q, exit status 0,
//!   terminal restored).
//!
//! Needs tmux (`apt-get install -y tmux`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The `gasbench` binary, built by cargo now (the e2e crate cannot name
/// another package's binary at compile time).
fn gasbench_binary() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "-p", "gasbench", "--message-format=json"])
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "building gasbench failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"]["name"] == "gasbench" && v["target"]["kind"][0] == "bin")
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .expect("cargo names the gasbench executable")
}

/// A private tmux server with one window running one command.
struct Tmux {
    socket: String,
    status: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmux {
    /// Run `cmd` (a shell command line) in a `w`×`h` window. When it ends,
    /// its exit status and whether the terminal is back in canonical mode
    /// are written to a file, and the window stays for inspection.
    fn start(cmd: &str, w: u16, h: u16) -> Tmux {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = dir.path().join("status");
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let socket = format!(
            "gasbench-e2e-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let wrapped = format!(
            "{cmd}; echo \"exit=$?\" > {s}.tmp; stty -a | grep -o -- '-\\?icanon' >> {s}.tmp; mv {s}.tmp {s}; echo SHELL-BACK; sleep 60",
            s = status.display()
        );
        let ok = Command::new("tmux")
            .args(["-L", &socket, "-f", "/dev/null", "new-session", "-d"])
            .args(["-x", &w.to_string(), "-y", &h.to_string()])
            .args(["-e", "TERM=xterm-256color"])
            .args(["sh", "-c", &wrapped])
            .status()
            .expect("tmux runs (apt-get install -y tmux)");
        assert!(ok.success(), "tmux new-session failed");
        Tmux {
            socket,
            status,
            _dir: dir,
        }
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Keys as tmux names them (`Tab`, `Enter`, `Escape`, `q`).
    fn send(&self, keys: &[&str]) {
        for k in keys {
            self.tmux(&["send-keys", "-t", "0", k]);
            // One key at a time, as a person types: each gets its frame.
            std::thread::sleep(Duration::from_millis(60));
        }
    }

    fn capture(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "0"])
    }

    /// Wait until the screen satisfies `pred`; the screen on timeout.
    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.wait_for_within(what, Duration::from_secs(20), pred)
    }

    fn wait_for_within(&self, what: &str, limit: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let s = self.capture();
            if pred(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn resize(&self, w: u16, h: u16) {
        self.tmux(&[
            "resize-window",
            "-t",
            "0",
            "-x",
            &w.to_string(),
            "-y",
            &h.to_string(),
        ]);
    }

    /// The command's exit status and whether the terminal is canonical.
    fn wait_exit(&self) -> (i32, bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.status.exists() {
            assert!(
                Instant::now() < deadline,
                "the TUI did not exit; the screen:\n{}",
                self.capture()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let text = std::fs::read_to_string(&self.status).expect("status file");
        let code = text
            .lines()
            .find_map(|l| l.strip_prefix("exit="))
            .and_then(|c| c.trim().parse().ok())
            .expect("an exit status");
        let canonical = text.lines().any(|l| l.trim() == "icanon");
        (code, canonical)
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

fn fixture_run_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../gasbench-tui/tests/fixtures/recorded-run")
}

#[test]
fn a_live_session_runs_a_scenario_end_to_end_and_quits_cleanly() {
    // The real pipeline: the patched kernel (the kernel stage, cached), the
    // agent, the emulated device, under QEMU.
    let (cache, _rt) = gasbench_e2e::runtime();
    let bin = gasbench_binary();
    let t = Tmux::start(
        &format!("{} --cache-dir {}", bin.display(), cache.root().display()),
        160,
        48,
    );
    t.wait_for("the scenario list", |s| s.contains("goldfish-rfc-subset"));
    // Focus the scenario list and walk down to the RFC's own subset.
    t.send(&["2"]);
    let mut steps = 0;
    while !t
        .capture()
        .lines()
        .any(|l| l.contains('▸') && l.contains("goldfish-rfc-subset"))
    {
        assert!(steps < 20, "cannot select the scenario:\n{}", t.capture());
        t.send(&["j"]);
        steps += 1;
    }
    t.send(&["r"]);
    // Build (cached), initramfs, boot and the scenario, under TCG.
    // The scenario list's row is the one with the selection marker.
    let row = |s: &str| {
        s.lines()
            .find(|l| l.contains('▸') && l.contains("goldfish-rfc-subset"))
            .map(str::to_string)
    };
    let screen = t.wait_for_within("the scenario's verdict", Duration::from_secs(600), |s| {
        row(s).is_some_and(|l| l.contains('✓') || l.contains('✗'))
    });
    let verdict = row(&screen).unwrap();
    assert!(
        verdict.contains('✓'),
        "the RFC subset passes: {verdict}\n{screen}"
    );
    // The trace pane shows the scenario's ioctls with their register counts.
    let trace = t.wait_for("the trace", |s| s.contains("ALLOCATE_BLOCK"));
    let rows: Vec<&str> = trace
        .lines()
        .filter(|l| l.contains("ALLOCATE_BLOCK") && l.contains('✓'))
        .collect();
    assert!(!rows.is_empty(), "{trace}");
    // The last number on a trace row is its register-access count.
    let regs = |r: &str| {
        r.split_whitespace()
            .filter_map(|t| t.parse::<u32>().ok())
            .next_back()
            .unwrap_or(0)
    };
    assert!(
        rows.iter().any(|r| regs(r) >= 4),
        "an allocate caused register accesses: {rows:?}"
    );
    t.send(&["q"]);
    let (code, canonical) = t.wait_exit();
    assert_eq!(code, 0, "{}", t.capture());
    assert!(canonical, "the terminal is restored");
    // The session's run directory ends like a headless run's: the last
    // event says the session finished, and results.json says it passed.
    let rd = std::fs::canonicalize(cache.root().join("runs/latest")).unwrap();
    assert!(
        rd.display().to_string().ends_with("-tui"),
        "{}",
        rd.display()
    );
    let (events, cut) = gasbench_trace::log::read_all(&rd.join("events.jsonl")).unwrap();
    assert!(cut.is_none());
    let last = serde_json::to_value(events.last().unwrap()).unwrap();
    assert_eq!(last["ev"]["type"], "finished", "{last}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(rd.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["passed"], true, "{results:#}");
}

/// The pid of the command the window runs (the child of its shell).
fn command_pid(t: &Tmux) -> i32 {
    let sh: i32 = t
        .tmux(&["display-message", "-p", "-t", "0", "#{pane_pid}"])
        .trim()
        .parse()
        .expect("the pane's pid");
    std::fs::read_to_string(format!("/proc/{sh}/task/{sh}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the shell runs the command")
}

#[test]
fn signals_stop_a_live_session_and_a_second_one_stops_it_at_once() {
    let (cache, _rt) = gasbench_e2e::runtime();
    let bin = gasbench_binary();
    let t = Tmux::start(
        &format!("{} --cache-dir {}", bin.display(), cache.root().display()),
        160,
        48,
    );
    t.wait_for("the scenario list", |s| s.contains("goldfish-rfc-subset"));
    t.send(&["2"]);
    let mut steps = 0;
    while !t
        .capture()
        .lines()
        .any(|l| l.contains('▸') && l.contains("goldfish-rfc-subset"))
    {
        assert!(steps < 20, "cannot select the scenario:\n{}", t.capture());
        t.send(&["j"]);
        steps += 1;
    }
    t.send(&["r"]);
    // The VM is up (the boot stage says how long it took).
    t.wait_for_within("the boot", Duration::from_secs(600), |s| {
        s.contains("ready in")
    });
    let pid = command_pid(&t);
    for _ in 0..2 {
        // SAFETY: kill(2) on the TUI's pid.
        unsafe { libc::kill(pid, libc::SIGINT) };
        std::thread::sleep(Duration::from_millis(1));
    }
    let (code, canonical) = t.wait_exit();
    assert_eq!(code, 130, "{}", t.capture());
    assert!(canonical, "the terminal is restored");
    let rd = std::fs::canonicalize(cache.root().join("runs/latest")).unwrap();
    assert!(
        rd.display().to_string().ends_with("-tui"),
        "{}",
        rd.display()
    );
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    let rd = rd.display().to_string();
    let alive: Vec<String> = String::from_utf8_lossy(&ps.stdout)
        .lines()
        .filter(|l| l.contains(&rd))
        .map(str::to_string)
        .collect();
    assert!(alive.is_empty(), "processes left behind: {alive:?}");
}

#[test]
fn browse_a_run_navigate_filter_expand_resize_and_quit() {
    let bin = gasbench_binary();
    let dir = fixture_run_dir();
    assert!(dir.join("events.jsonl").exists(), "{}", dir.display());
    let t = Tmux::start(
        &format!("{} open {}", bin.display(), dir.display()),
        100,
        30,
    );

    // It opens on the trace, following the newest calls: once the log is
    // read (on a thread), the last call is on screen.
    let s = t.wait_for("the trace pane with the last call", |s| {
        s.contains("3 Trace") && s.contains("calls") && s.contains("kselftest")
    });
    assert!(s.contains("browse") && s.contains("TCG"), "{s}");

    // Select a scenario: the trace shows only its calls. Entry 0 of the
    // list is "all scenarios", then the scenarios in the order they ran.
    let log = std::fs::read_to_string(dir.join("events.jsonl")).expect("the log");
    let order: Vec<String> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["ev"]["type"] == "scenario_begin")
        .filter_map(|v| v["ev"]["scenario"].as_str().map(String::from))
        .collect();
    let downs = 1 + order
        .iter()
        .position(|s| s == "goldfish-errors")
        .expect("the fixture runs goldfish-errors");
    t.send(&["2"]);
    for _ in 0..downs {
        t.send(&["j"]);
    }
    t.wait_for("the scenario selected", |s| {
        s.contains("▸ ✗ goldfish-errors")
    });
    t.send(&["3"]);
    let s = t.wait_for("the filtered trace", |s| {
        s.contains("scenario goldfish-errors")
    });
    // The scenario's last calls: bad offsets, bad pointers, bad ioctls.
    assert!(
        s.contains("ENXIO") && s.contains("EFAULT") && s.contains("ENOTTY"),
        "{s}"
    );
    assert!(!s.contains("mkdirat2  "), "another scenario's call:\n{s}");

    // Filter the failures and expand the first: the device's side shows.
    t.send(&["/", "e", "r", "r", "Enter", "g", "Enter"]);
    let s = t.wait_for("the expanded call", |s| s.contains("register accesses"));
    assert!(s.contains("BLOCK_SIZE_LOW") && s.contains("STATUS"), "{s}");
    assert!(s.contains("size=0"), "the call's arguments:\n{s}");
    t.send(&["Escape"]);

    // The help lists the keys; Esc closes it.
    t.send(&["?"]);
    let s = t.wait_for("the help", |s| s.contains("run all scenarios"));
    assert!(
        s.contains("rebuild the kernel") && s.contains("stop the VM"),
        "{s}"
    );
    t.send(&["Escape"]);
    t.wait_for("the help closed", |s| !s.contains("run all scenarios"));

    // Bigger: the dashboard, every pane at once. Smaller again: one pane.
    t.resize(160, 48);
    let s = t.wait_for("the dashboard", |s| {
        s.contains("1 Pipeline") && s.contains("7 Results") && s.contains("4 Device")
    });
    assert!(s.contains("failing expectations"), "{s}");
    t.resize(80, 24);
    t.wait_for("one pane at 80x24", |s| {
        s.lines().count() <= 24 && s.contains("3 Trace") && !s.contains("╭ 1 Pipeline")
    });

    // q leaves with status 0 and the terminal as it was.
    t.send(&["q"]);
    let (code, canonical) = t.wait_exit();
    assert_eq!(code, 0);
    assert!(canonical, "raw mode was not undone");
    let s = t.wait_for("the shell's screen", |s| s.contains("SHELL-BACK"));
    assert!(
        !s.contains("3 Trace"),
        "the TUI's screen was left behind:\n{s}"
    );
}

#[test]
fn a_directory_that_is_not_a_run_is_refused_clearly() {
    let bin = gasbench_binary();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(bin)
        .arg("open")
        .arg(dir.path())
        .output()
        .expect("gasbench runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a gasbench run directory"), "{err}");
}

/// `gasbench shell` in a real terminal: the patched kernel boots with
/// busybox and the device, the terminal reaches a shell on the guest
/// console (a command typed runs in the guest and sees the goldfish
/// device), `exit` ends it, the VM is torn down, the terminal restored,
/// and the run directory has the session's console and events.
#[test]
fn a_shell_on_the_guest_console_runs_commands_and_exit_tears_down() {
    let (cache, _rt) = gasbench_e2e::runtime();
    let bin = gasbench_binary();
    let t = Tmux::start(
        &format!(
            "{} --cache-dir {} shell",
            bin.display(),
            cache.root().display()
        ),
        120,
        36,
    );
    t.wait_for_within("the guest's prompt", Duration::from_secs(600), |s| {
        s.contains("gasbench-guest#")
    });
    t.tmux(&[
        "send-keys",
        "-t",
        "0",
        "echo in-guest-$((6*7)); ls /dev/goldfish_address_space",
        "Enter",
    ]);
    let screen = t.wait_for("the command's output", |s| s.contains("in-guest-42"));
    assert!(
        screen.contains("/dev/goldfish_address_space"),
        "the device node is there:\n{screen}"
    );
    t.tmux(&["send-keys", "-t", "0", "exit", "Enter"]);
    let (code, canonical) = t.wait_exit();
    let screen = t.capture();
    assert_eq!(code, 0, "{screen}");
    assert!(canonical, "the terminal is restored");
    assert!(
        screen.contains("the shell exited with status 0"),
        "{screen}"
    );
    let rd = std::fs::canonicalize(cache.root().join("runs/latest")).unwrap();
    assert!(
        rd.display().to_string().ends_with("-shell"),
        "{}",
        rd.display()
    );
    let console = std::fs::read_to_string(rd.join("console.log")).unwrap();
    assert!(
        console.contains("in-guest-42"),
        "console.log has the session"
    );
    let (events, cut) = gasbench_trace::log::read_all(&rd.join("events.jsonl")).unwrap();
    assert!(cut.is_none());
    let last = serde_json::to_value(events.last().unwrap()).unwrap();
    assert_eq!(last["ev"]["type"], "finished", "{last}");
}

/// `gasbench open --follow` on a run in progress, from another terminal:
/// the run is shown as going (never "cut off") while it runs, its end
/// arrives as it happens, and `y` copies a call into the run directory.
#[test]
fn open_follow_tails_a_live_run_to_its_end() {
    let (cache, _rt) = gasbench_e2e::runtime();
    let bin = gasbench_binary();
    let runs = tempfile::tempdir().unwrap();
    let scenario =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/goldfish_rfc_subset.toml");
    let mut run = Command::new(&bin)
        .args([
            "--cache-dir",
            cache.root().to_str().unwrap(),
            "run",
            "--runs",
        ])
        .arg(runs.path())
        .arg(&scenario)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let latest = runs.path().join("latest");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !latest.join("events.jsonl").exists() {
        assert!(Instant::now() < deadline, "the run made no run directory");
        std::thread::sleep(Duration::from_millis(100));
    }
    let t = Tmux::start(
        &format!(
            "{} --cache-dir {} open --follow {}",
            bin.display(),
            cache.root().display(),
            std::fs::canonicalize(&latest).unwrap().display()
        ),
        160,
        48,
    );
    t.wait_for("the pipeline", |s| s.contains("Pipeline"));
    // While the run goes on, nothing is drawn as cut off.
    let deadline = Instant::now() + Duration::from_secs(600);
    while run.try_wait().unwrap().is_none() {
        let s = t.capture();
        assert!(!s.contains("cut off"), "a live run drawn as cut off:\n{s}");
        assert!(Instant::now() < deadline, "the run did not end");
        std::thread::sleep(Duration::from_millis(500));
    }
    // The end of the run reaches the followed view.
    let screen = t.wait_for("the run's verdict", |s| {
        s.lines()
            .any(|l| l.contains("goldfish-rfc-subset") && (l.contains('✓') || l.contains('✗')))
    });
    assert!(!screen.contains("cut off"), "{screen}");
    // `y` on a call of the trace: it lands in the run directory, with the
    // register accesses it caused.
    let rd = std::fs::canonicalize(&latest).unwrap();
    t.send(&["3", "/"]);
    t.tmux(&["send-keys", "-t", "0", "-l", "alloc ok"]);
    t.send(&["Enter", "g", "y"]);
    t.wait_for("the copy's status", |s| s.contains("copied the call"));
    let copied: Vec<_> = std::fs::read_dir(&rd)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("copied-call-"))
        .collect();
    assert_eq!(copied.len(), 1, "one copied call in {}", rd.display());
    let text = std::fs::read_to_string(copied[0].path()).unwrap();
    assert!(text.contains("ALLOCATE_BLOCK"), "{text}");
    assert!(text.contains("BLOCK_SIZE_LOW"), "{text}");
    t.send(&["q"]);
    let (code, canonical) = t.wait_exit();
    assert_eq!(code, 0, "{}", t.capture());
    assert!(canonical);
}
