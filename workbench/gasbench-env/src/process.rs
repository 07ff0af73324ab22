//! Children that cannot outlive gasbench: the one mechanism every child
//! gasbench starts goes through (QEMU and virtiofsd via gasbench-qemu's
//! `Supervised`, make, git and tar in the kernel stage, the KVM probe's
//! QEMU, cargo for the agent, setup's tools).
//!
//! Each child leads its own process group, so a terminal's Ctrl-C reaches
//! gasbench alone, which then stops its children in order; and it gets a
//! signal from the kernel when the thread that started it dies
//! (`PR_SET_PDEATHSIG`), so not even a SIGKILL of gasbench leaves it
//! running. The death signal is tied to the *thread* that forked: spawn
//! from a thread that outlives the child (the one that waits for it, or
//! a runtime's worker).
//!
//! Tools (children that run to completion: make, git, tar, probes) are
//! spawned through [`Tool`] and registered while they run, so that an
//! interrupted gasbench can stop them all ([`stop_tools`]: SIGTERM to each
//! group, which lets make delete the targets it was writing and stop its
//! jobs) or kill them ([`kill_tools`]) without knowing who started them.

use std::collections::BTreeSet;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// What a child gets when gasbench dies without stopping it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnParentDeath {
    /// SIGKILL: QEMU, virtiofsd, the device server, probes; nothing of
    /// theirs is worth a clean exit once gasbench is gone.
    Kill,
    /// SIGTERM: make, which then stops its own jobs (they are not our
    /// children, so no death signal reaches them) and deletes the targets
    /// it was writing, leaving the build directory consistent.
    Terminate,
}

impl OnParentDeath {
    fn signal(self) -> libc::c_int {
        match self {
            OnParentDeath::Kill => libc::SIGKILL,
            OnParentDeath::Terminate => libc::SIGTERM,
        }
    }
}

/// Make the child of `cmd` lead its own process group and receive
/// `on_death`'s signal when the spawning thread dies.
pub fn tie_to_gasbench(cmd: &mut Command, on_death: OnParentDeath) -> &mut Command {
    let signal = on_death.signal();
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls (setpgid, prctl, getppid)
    // between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setpgid(0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal) != 0 {
                return Err(io::Error::last_os_error());
            }
            // gasbench may have died between fork and prctl: then the
            // signal will never come, so do not start.
            if libc::getppid() != parent {
                return Err(io::Error::other("gasbench exited while starting it"));
            }
            Ok(())
        })
    }
}

/// Process groups of the tools running now.
static TOOLS: Mutex<BTreeSet<libc::pid_t>> = Mutex::new(BTreeSet::new());
/// Set once [`stop_tools`] or [`kill_tools`] ran: a tool that fails from
/// now on was stopped, it did not fail on its own.
static STOPPING: AtomicBool = AtomicBool::new(false);

fn tools() -> std::sync::MutexGuard<'static, BTreeSet<libc::pid_t>> {
    TOOLS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Holds a process group in the registry while it lives.
#[derive(Debug)]
pub struct Registered(libc::pid_t);

impl Registered {
    /// Register the group `pgid` leads until this is dropped.
    pub fn new(pgid: u32) -> Registered {
        let pgid = pgid as libc::pid_t;
        tools().insert(pgid);
        Registered(pgid)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        tools().remove(&self.0);
    }
}

/// A tool running as our child: its own group, tied to us, registered.
/// Dropping it while it runs kills its group.
#[derive(Debug)]
pub struct Tool {
    child: Child,
    registered: Option<Registered>,
}

impl Tool {
    /// Spawn `cmd` tied to gasbench (see [`tie_to_gasbench`]). Once
    /// gasbench is stopping its tools, no new one starts.
    pub fn spawn(cmd: &mut Command, on_death: OnParentDeath) -> io::Result<Tool> {
        if stopping() {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "gasbench is stopping: no new tool is started",
            ));
        }
        tie_to_gasbench(cmd, on_death);
        let child = cmd.spawn()?;
        let registered = Some(Registered::new(child.id()));
        Ok(Tool { child, registered })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The child, for its pipes.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Wait for it to exit; it leaves the registry.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        let status = self.child.wait();
        if status.is_ok() {
            self.registered = None;
        }
        status
    }

    /// Collect its piped stdout and stderr to the end, then wait.
    pub fn wait_with_output(mut self) -> io::Result<Output> {
        use std::io::Read;
        let stderr = self.child.stderr.take();
        // Both pipes drain at once: a child that fills one while we read
        // the other would stall.
        let errs = std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut e) = stderr {
                let _ = e.read_to_end(&mut buf);
            }
            buf
        });
        let mut stdout = Vec::new();
        if let Some(mut o) = self.child.stdout.take() {
            o.read_to_end(&mut stdout)?;
        }
        let stderr = errs.join().unwrap_or_default();
        let status = self.wait()?;
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }

    /// SIGKILL its whole group.
    pub fn kill(&mut self) {
        if self.registered.is_some() {
            signal_group(self.child.id() as libc::pid_t, libc::SIGKILL);
        }
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        if self.registered.is_some() {
            self.kill();
            let _ = self.child.wait();
        }
    }
}

/// Run `cmd` to completion as a [`Tool`], collecting its output (stdin
/// is /dev/null, as with [`Command::output`]).
pub fn output(cmd: &mut Command, on_death: OnParentDeath) -> io::Result<Output> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Tool::spawn(cmd, on_death)?.wait_with_output()
}

fn signal_group(pgid: libc::pid_t, signal: libc::c_int) {
    if pgid > 1 {
        // SAFETY: killpg on a group one of our children leads; harmless
        // if it is gone.
        unsafe { libc::killpg(pgid, signal) };
    }
}

/// Ask every running tool to stop (SIGTERM to its group). From now on
/// [`stopping`] is true.
pub fn stop_tools() {
    STOPPING.store(true, Ordering::SeqCst);
    for &g in tools().iter() {
        signal_group(g, libc::SIGTERM);
    }
}

/// Kill every running tool at once (SIGKILL to its group).
pub fn kill_tools() {
    STOPPING.store(true, Ordering::SeqCst);
    for &g in tools().iter() {
        signal_group(g, libc::SIGKILL);
    }
}

/// Whether gasbench is stopping its tools (a tool's failure from then on
/// is the stop, not a failure of its own).
pub fn stopping() -> bool {
    STOPPING.load(Ordering::SeqCst)
}

/// How many tools run now.
pub fn running_tools() -> usize {
    tools().len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn alive(pid: i32) -> bool {
        // Not a zombie, not gone.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                let state = s.rsplit(')').next().unwrap_or("").trim_start();
                !state.starts_with('Z')
            })
            .unwrap_or(false)
    }

    fn wait_gone(pid: i32) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !alive(pid) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn a_tool_leads_its_own_group_and_leaves_the_registry_when_done() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "ps -o pgid= -p $$; echo out; echo err >&2"]);
        let out = output(&mut cmd, OnParentDeath::Kill).unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let pgid: i32 = lines.next().unwrap().trim().parse().unwrap();
        // SAFETY: getpgrp has no preconditions.
        assert_ne!(pgid, unsafe { libc::getpgrp() }, "not our group");
        assert_eq!(lines.next(), Some("out"));
        assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    }

    #[test]
    fn a_child_dies_with_the_thread_that_started_it() {
        // The death signal follows the spawning thread: a thread that
        // starts a long sleep and ends stands in for gasbench dying.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut cmd = Command::new("sleep");
            cmd.arg("300");
            tie_to_gasbench(&mut cmd, OnParentDeath::Kill);
            let child = cmd.spawn().unwrap();
            tx.send(child.id() as i32).unwrap();
            // Not waited for: the thread ends with its child running.
            std::mem::forget(child);
        })
        .join()
        .unwrap();
        let pid = rx.recv().unwrap();
        assert!(wait_gone(pid), "sleep {pid} outlived the thread");
        // Reap it.
        // SAFETY: waitpid on our own child.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    }

    #[test]
    fn dropping_a_running_tool_kills_its_whole_group() {
        let mut cmd = Command::new("sh");
        // A grandchild in the same group, as make's jobs are.
        cmd.args(["-c", "sleep 300 & echo $!; wait"])
            .stdout(Stdio::piped());
        let mut tool = Tool::spawn(&mut cmd, OnParentDeath::Kill).unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(tool.child_mut().stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let grandchild: i32 = line.trim().parse().unwrap();
        let pid = tool.id() as i32;
        assert!(tools().contains(&pid));
        drop(tool);
        assert!(!tools().contains(&pid));
        assert!(
            wait_gone(grandchild),
            "the grandchild {grandchild} lives on"
        );
    }
}
