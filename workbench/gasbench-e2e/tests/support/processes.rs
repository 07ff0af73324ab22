//! For the device end-to-end tests: the `gasbench` binary, and children
//! that are always killed, with deadlines on every wait.

#![allow(dead_code)]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The `gasbench` binary: `GASBENCH_BIN`, else built now with the same
/// cargo (cargo test does not build other packages' binaries).
pub fn gasbench_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("GASBENCH_BIN") {
        return PathBuf::from(p);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut child = Command::new(cargo)
        .args([
            "build",
            "-p",
            "gasbench",
            "--bin",
            "gasbench",
            "--message-format=json-render-diagnostics",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("cannot run cargo to build gasbench");
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut exe = None;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if v["reason"] == "compiler-artifact"
                && v["target"]["name"] == "gasbench"
                && let Some(e) = v["executable"].as_str()
            {
                exe = Some(PathBuf::from(e));
            }
        }
        exe
    });
    let status = wait_deadline(&mut child, Duration::from_secs(900))
        .expect("building gasbench took over 15 minutes");
    assert!(status.success(), "cargo build -p gasbench failed: {status}");
    reader
        .join()
        .unwrap()
        .expect("cargo reported no gasbench executable")
}

/// Wait for `child` until `limit`; None (and the child killed) on timeout.
pub fn wait_deadline(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process that is killed when dropped, whatever happened.
pub struct Guarded {
    pub name: &'static str,
    pub child: Option<Child>,
}

impl Guarded {
    pub fn spawn(name: &'static str, cmd: &mut Command) -> Guarded {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({:?}): {e}", cmd.get_program()));
        Guarded {
            name,
            child: Some(child),
        }
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Exited already? Its status.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGTERM, then wait up to `limit`, then SIGKILL. The exit status if
    /// it exited on its own terms.
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY: kill(2) on the pid of a child we have not reaped yet.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        wait_deadline(&mut child, limit)
    }

    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let s = wait_deadline(&mut child, limit);
        if s.is_none() {
            self.child = None;
        }
        s
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Wait until `path` exists, failing early if `owner` dies.
pub fn wait_for_path(path: &Path, owner: &mut Guarded, limit: Duration, log: &Path) {
    let deadline = Instant::now() + limit;
    while !path.exists() {
        if let Some(s) = owner.exited() {
            panic!(
                "{} exited ({s}) before creating {}:\n{}",
                owner.name,
                path.display(),
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{} did not create {} within {limit:?}",
            owner.name,
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// No process still holds the run directory `rd` (QEMU, virtiofsd and
/// the device server all name it on their command lines).
pub fn assert_no_process_left(rd: &Path) {
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    let rd_str = rd.display().to_string();
    let alive: Vec<&str> = ps.lines().filter(|l| l.contains(&rd_str)).collect();
    assert!(alive.is_empty(), "processes left behind: {alive:?}");
    // QEMU is handed descriptors, not paths into the run directory, so its
    // arguments do not name it: every process the run reported starting
    // must be gone too (a pid reused since by an unrelated process would
    // show another command line).
    let Ok(log) = std::fs::read_to_string(rd.join("events.jsonl")) else {
        return;
    };
    let started: Vec<(String, u32)> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["ev"]["type"] == "process_started")
        .filter_map(|v| {
            Some((
                v["ev"]["name"].as_str()?.to_string(),
                v["ev"]["pid"].as_u64()? as u32,
            ))
        })
        .collect();
    let still: Vec<String> = started
        .iter()
        .filter(|(_, pid)| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // A zombie has exited; only its parent's reaping is left.
            let zombie = state
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
            let ours = ["qemu", "virtiofsd", "gasbench", "ld-linux"]
                .iter()
                .any(|n| comm.contains(n));
            !comm.is_empty() && !zombie && ours
        })
        .map(|(name, pid)| format!("{name} (pid {pid})"))
        .collect();
    assert!(
        still.is_empty(),
        "processes the run started are still alive: {still:?}"
    );
}
