//! Child processes that cannot outlive us: each runs in its own process
//! group (a terminal's Ctrl-C reaches gasbench, which then tears down in
//! order) and dies with SIGKILL if gasbench itself dies (PR_SET_PDEATHSIG),
//! through `gasbench_env::process`, the mechanism every child shares.
//! A supervisor task reports every exit on the bus, saying whether we
//! asked for it.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gasbench_env::process::OnParentDeath;
use gasbench_events::EventSink;
use gasbench_events::vm::VmEvent;
use tokio::sync::{oneshot, watch};

/// A supervised child.
pub struct Supervised {
    pub name: String,
    pub pid: u32,
    kill: Option<oneshot::Sender<()>>,
    exit: watch::Receiver<Option<String>>,
}

impl Supervised {
    /// Spawn `cmd` (stdout and stderr into `log`: a file, or the pipe of
    /// a [`capped_log`]) and supervise it. `stopping` says whether an exit
    /// from now on is one we asked for.
    pub fn spawn(
        name: &str,
        mut cmd: std::process::Command,
        log: impl Into<OwnedFd>,
        sink: EventSink,
        stopping: Arc<AtomicBool>,
    ) -> std::io::Result<Supervised> {
        let log: OwnedFd = log.into();
        let err = log.try_clone()?;
        cmd.stdin(Stdio::null()).stdout(log).stderr(err);
        Supervised::supervise(name, cmd, sink, stopping)
    }

    /// [`Supervised::spawn`] for a child we talk to over its stdin and
    /// stdout (the ends given); its stderr goes into `log`.
    pub fn spawn_piped(
        name: &str,
        mut cmd: std::process::Command,
        stdin: Stdio,
        stdout: Stdio,
        log: std::fs::File,
        sink: EventSink,
        stopping: Arc<AtomicBool>,
    ) -> std::io::Result<Supervised> {
        cmd.stdin(stdin).stdout(stdout).stderr(log);
        Supervised::supervise(name, cmd, sink, stopping)
    }

    fn supervise(
        name: &str,
        mut cmd: std::process::Command,
        sink: EventSink,
        stopping: Arc<AtomicBool>,
    ) -> std::io::Result<Supervised> {
        // The one mechanism for every child of gasbench: its own group,
        // SIGKILL when the spawning thread (a runtime worker) dies.
        gasbench_env::process::tie_to_gasbench(&mut cmd, OnParentDeath::Kill);
        let mut child = tokio::process::Command::from(cmd)
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().unwrap_or(0);
        sink.emit(VmEvent::ProcessStarted {
            name: name.into(),
            pid,
        });
        let (kill_tx, kill_rx) = oneshot::channel::<()>();
        let (exit_tx, exit_rx) = watch::channel(None);
        let task_name = name.to_owned();
        tokio::spawn(async move {
            let status = tokio::select! {
                s = child.wait() => s,
                _ = kill_rx => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            let status = match status {
                Ok(s) => s.to_string(),
                Err(e) => format!("unknown ({e})"),
            };
            sink.emit(VmEvent::ProcessExited {
                name: task_name,
                status: status.clone(),
                expected: stopping.load(Ordering::SeqCst),
            });
            let _ = exit_tx.send(Some(status));
        });
        Ok(Supervised {
            name: name.into(),
            pid,
            kill: Some(kill_tx),
            exit: exit_rx,
        })
    }

    /// The exit status, once it has exited.
    pub fn exit_status(&self) -> Option<String> {
        self.exit.borrow().clone()
    }

    /// Wait for the exit; returns its status.
    pub async fn wait(&mut self) -> String {
        let mut rx = self.exit.clone();
        loop {
            if let Some(s) = rx.borrow().clone() {
                return s;
            }
            if rx.changed().await.is_err() {
                return "unknown (supervisor gone)".into();
            }
        }
    }

    /// Wait up to `timeout`; `None` if it is still running.
    pub async fn wait_timeout(&mut self, timeout: std::time::Duration) -> Option<String> {
        tokio::time::timeout(timeout, self.wait()).await.ok()
    }

    /// SIGKILL it (its whole process group).
    pub fn kill(&mut self) {
        if self.pid != 0 && self.exit_status().is_none() {
            // SAFETY: killpg on the group the child leads; harmless if gone.
            unsafe { libc::killpg(self.pid as libc::pid_t, libc::SIGKILL) };
        }
        if let Some(k) = self.kill.take() {
            let _ = k.send(());
        }
    }
}

/// A pipe whose reading end a thread copies into the file at `path`
/// (appending), up to `cap` bytes; what comes after is read and dropped,
/// so a child that floods its log neither fills the disk nor blocks. Give
/// the returned writer to the child as its stdout/stderr.
pub fn capped_log(path: &Path, cap: u64) -> std::io::Result<std::io::PipeWriter> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let (mut reader, writer) = std::io::pipe()?;
    std::thread::Builder::new()
        .name("capped-log".into())
        .spawn(move || {
            let mut written = 0u64;
            let mut dropped = 0u64;
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                let room = cap.saturating_sub(written).min(n as u64) as usize;
                if room > 0 && file.write_all(&buf[..room]).is_ok() {
                    written += room as u64;
                }
                dropped += (n - room) as u64;
            }
            if dropped > 0 {
                let _ = writeln!(
                    file,
                    "\n[gasbench: this log is capped at {cap} bytes; {dropped} more were dropped]"
                );
            }
        })?;
    Ok(writer)
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_flooding_child_fills_its_log_to_the_cap_and_no_further() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qemu.log");
        std::fs::write(&path, "# header\n").unwrap();
        let w = capped_log(&path, 1000).unwrap();
        let mut child = std::process::Command::new("sh")
            .args(["-c", "head -c 100000 /dev/zero | tr '\\0' x"])
            .stdout(w)
            .spawn()
            .unwrap();
        assert!(
            child.wait().unwrap().success(),
            "the child was never blocked"
        );
        // The copier ends when the pipe closes; wait for its last line.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let text = loop {
            let t = std::fs::read_to_string(&path).unwrap();
            if t.contains("gasbench:") || std::time::Instant::now() > deadline {
                break t;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(text.starts_with("# header\n"));
        assert_eq!(text.matches('x').count(), 1000);
        assert!(
            text.ends_with("capped at 1000 bytes; 99000 more were dropped]\n"),
            "{}",
            &text[1000..]
        );
    }

    #[tokio::test]
    async fn exits_are_reported_expected_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let (sink, mut bus) = gasbench_events::bus();
        let stopping = Arc::new(AtomicBool::new(false));
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", "echo hi; exit 3"]);
        let mut p = Supervised::spawn("sh", cmd, log, sink.clone(), stopping.clone()).unwrap();
        assert_eq!(p.wait().await, "exit status: 3");
        let started = bus.recv().await.unwrap();
        assert!(matches!(
            started.body,
            gasbench_events::EventBody::Vm(VmEvent::ProcessStarted { .. })
        ));
        let exited = bus.recv().await.unwrap();
        assert!(matches!(
            exited.body,
            gasbench_events::EventBody::Vm(VmEvent::ProcessExited {
                expected: false,
                ..
            })
        ));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("log")).unwrap(),
            "hi\n"
        );

        let log = std::fs::File::create(dir.path().join("log2")).unwrap();
        let mut cmd = std::process::Command::new("sleep");
        cmd.arg("60");
        let mut p = Supervised::spawn("sleep", cmd, log, sink, stopping.clone()).unwrap();
        assert_eq!(p.wait_timeout(Duration::from_millis(100)).await, None);
        stopping.store(true, Ordering::SeqCst);
        p.kill();
        let status = p.wait_timeout(Duration::from_secs(5)).await.unwrap();
        assert!(status.contains("signal: 9"), "{status}");
    }
}
