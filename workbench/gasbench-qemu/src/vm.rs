//! One running VM: QEMU, its virtiofsd, and the host ends of its sockets.

use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gasbench_env::{HostProgram, Runtime};
use gasbench_events::EventSink;
use gasbench_events::run::RunEvent;
use gasbench_events::vm::{Protection, VmEvent};
use tokio::io::AsyncReadExt;
use tokio::sync::{broadcast, mpsc};

use crate::agent_port::{AgentPort, FromAgent};
use crate::confine;
use crate::console::{LineSplitter, classify};
use crate::process::{Supervised, capped_log};
use crate::qmp::{Qmp, QmpError};
use crate::spec::{
    GOLDFISH_ID, QemuFds, VmSpec, fd_path, goldfish_device_json, qemu_args, virtiofsd_args,
    virtiofsd_socket,
};

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("preparing the run directory {path}: {source}")]
    RunDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} exited ({status}) during start-up; its last words:\n{tail}")]
    DiedEarly {
        what: &'static str,
        status: String,
        tail: String,
    },
    #[error("{what} did not {doing} within {} s; log tail:\n{tail}", .timeout.as_secs())]
    StartTimeout {
        what: &'static str,
        doing: &'static str,
        timeout: Duration,
        tail: String,
    },
    #[error("opening the {what} {path} for QEMU: {source}")]
    Input {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Qmp(#[from] QmpError),
}

/// Why plugging or unplugging the goldfish device failed.
#[derive(Debug, thiserror::Error)]
pub enum HotplugError {
    #[error("this VM was started without the goldfish device's socket")]
    NoDevice,
    #[error(transparent)]
    Qmp(#[from] QmpError),
    #[error("no DEVICE_DELETED within {} s: the guest did not release the device", .0.as_secs())]
    NotReleased(Duration),
    #[error("waiting for DEVICE_DELETED: {0}")]
    Events(String),
}

/// How long QEMU and virtiofsd get to come up.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How large qemu.log and virtiofsd.log may grow: a guest that makes QEMU
/// or virtiofsd complain in a loop does not fill the disk.
pub const LOG_CAP: u64 = 8 << 20;

/// A running VM. Dropping it kills everything it started; [`Vm::shutdown`]
/// ends it in order.
pub struct Vm {
    pub qmp: Qmp,
    pub agent: AgentPort,
    /// Messages from the agent, in bus order. Take it once.
    pub agent_rx: Option<mpsc::UnboundedReceiver<FromAgent>>,
    /// Every protection of the host against this VM, in force or not.
    pub protections: Vec<Protection>,
    qemu: Supervised,
    virtiofsd: Option<Supervised>,
    console: broadcast::Sender<String>,
    /// The console's bytes as they come (for `gasbench shell`).
    console_bytes: broadcast::Sender<Vec<u8>>,
    /// The host's end of the console, for typing into it.
    console_in: Arc<tokio::sync::Mutex<tokio::net::unix::OwnedWriteHalf>>,
    virtiofsd_socket: PathBuf,
    /// The goldfish socket's descriptor number inside QEMU.
    goldfish_fd: Option<RawFd>,
    stopping: Arc<AtomicBool>,
    pub run_dir: PathBuf,
}

/// The last lines of a log, for error messages: read from its last
/// 64 KiB only (a guest can make the console log huge), each line cut
/// at 512 bytes. Raw text: whoever prints it sanitises it.
pub fn tail(path: &Path, lines: usize) -> String {
    const LINE: usize = 512;
    let bytes = gasbench_safefs::read_tail(path, 64 * 1024).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| match l.char_indices().nth(LINE) {
            Some((cut, _)) => format!("{}…", &l[..cut]),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl Vm {
    /// Start virtiofsd (when sharing) and QEMU, confined (see
    /// [`crate::confine`]), hand QEMU its connections, negotiate QMP.
    /// Returns once QEMU is running the guest.
    pub async fn launch(spec: &VmSpec, rt: &Runtime, sink: &EventSink) -> Result<Vm, VmError> {
        let run_dir = spec.run_dir.clone();
        let rd = |source| VmError::RunDir {
            path: run_dir.clone(),
            source,
        };
        std::fs::create_dir_all(&run_dir).map_err(rd)?;
        std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(0o700)).map_err(rd)?;
        let plan = confine::plan(spec, rt);
        let virtiofsd_socket = virtiofsd_socket(&run_dir);
        // Until the Vm exists (its Drop takes over), a failed start
        // removes what it made; its children die with their Supervised.
        let mut unlink = UnlinkOnDrop(Some(virtiofsd_socket.clone()));
        let stopping = Arc::new(AtomicBool::new(false));

        let mut virtiofsd = None;
        let mut virtiofsd_conn = None;
        if let Some(share) = &spec.share {
            std::fs::create_dir_all(share).map_err(rd)?;
            let _ = std::fs::remove_file(&virtiofsd_socket);
            let mut cmd = rt.host_program(HostProgram::Virtiofsd);
            cmd.args(virtiofsd_args(
                share,
                &virtiofsd_socket,
                plan.virtiofsd_sandbox,
            ));
            plan.virtiofsd.apply(&mut cmd);
            let log_path = run_dir.join("virtiofsd.log");
            std::fs::File::create(&log_path).map_err(rd)?;
            let log = capped_log(&log_path, LOG_CAP).map_err(rd)?;
            let mut p = Supervised::spawn("virtiofsd", cmd, log, sink.clone(), stopping.clone())
                .map_err(|source| VmError::Spawn {
                    what: "virtiofsd",
                    source,
                })?;
            // virtiofsd creates its socket when ready to serve.
            let deadline = Instant::now() + START_TIMEOUT;
            while !virtiofsd_socket.exists() {
                if let Some(status) = p.exit_status() {
                    return Err(VmError::DiedEarly {
                        what: "virtiofsd",
                        status,
                        tail: tail(&log_path, 20),
                    });
                }
                if Instant::now() > deadline {
                    p.kill();
                    return Err(VmError::StartTimeout {
                        what: "virtiofsd",
                        doing: "create its socket",
                        timeout: START_TIMEOUT,
                        tail: tail(&log_path, 20),
                    });
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Connect for QEMU: it cannot reach the run directory.
            let conn =
                std::os::unix::net::UnixStream::connect(&virtiofsd_socket).map_err(|source| {
                    VmError::Spawn {
                        what: "a connection to virtiofsd",
                        source,
                    }
                })?;
            virtiofsd_conn = Some(conn);
            virtiofsd = Some(p);
        }

        // QEMU's ends of its connections and files, inherited at exec.
        let pair = || std::os::unix::net::UnixStream::pair().map_err(rd);
        let (qmp_s, qmp_q) = pair()?;
        let (con_s, con_q) = pair()?;
        let (agent_s, agent_q) = pair()?;
        let open = |what: &'static str, path: &Path| {
            confine::open_for_qemu(path, &plan).map_err(|source| VmError::Input {
                what,
                path: path.to_path_buf(),
                source,
            })
        };
        let kernel = open("kernel image", &spec.kernel)?;
        let initramfs = open("initramfs", &spec.initramfs)?;
        let goldfish = match &spec.goldfish_socket {
            Some(socket) => {
                Some(
                    confine::socket_for_qemu(socket, &plan).map_err(|source| VmError::Input {
                        what: "goldfish device socket",
                        path: socket.clone(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        let fds = QemuFds {
            qmp: qmp_q.as_raw_fd(),
            console: con_q.as_raw_fd(),
            agent: agent_q.as_raw_fd(),
            virtiofsd: virtiofsd_conn.as_ref().map(|c| c.as_raw_fd()),
            kernel: kernel.as_raw_fd(),
            initramfs: initramfs.as_raw_fd(),
            goldfish: goldfish.as_ref().map(|g| g.as_raw_fd()),
        };

        let mut cmd = rt.host_program(HostProgram::Qemu);
        cmd.args(qemu_args(spec, &fds, plan.qemu_seccomp));
        let mut qemu_confinement = plan.qemu.clone();
        qemu_confinement.inherit = fds.all();
        qemu_confinement.apply(&mut cmd);
        let qemu_log = run_dir.join("qemu.log");
        {
            let mut f = std::fs::File::create(&qemu_log).map_err(rd)?;
            let _ = writeln!(f, "# {cmd:?}");
        }
        let log = capped_log(&qemu_log, LOG_CAP).map_err(rd)?;
        let mut qemu = Supervised::spawn("qemu", cmd, log, sink.clone(), stopping.clone())
            .map_err(|source| VmError::Spawn {
                what: "QEMU",
                source,
            })?;
        // QEMU holds its own copies now.
        drop((
            qmp_q,
            con_q,
            agent_q,
            virtiofsd_conn,
            kernel,
            initramfs,
            goldfish,
        ));
        let _ = std::fs::remove_file(&virtiofsd_socket);

        let protections = plan.protections.clone();
        sink.emit(VmEvent::Confinement {
            protections: protections.clone(),
        });

        // How a start-up that QEMU did not finish is told: its own words.
        let died = |status| VmError::DiedEarly {
            what: "QEMU",
            status,
            tail: tail(&qemu_log, 20),
        };
        let too_slow = |doing| VmError::StartTimeout {
            what: "QEMU",
            doing,
            timeout: START_TIMEOUT,
            tail: tail(&qemu_log, 20),
        };

        let stream = |s: std::os::unix::net::UnixStream| {
            s.set_nonblocking(true)?;
            tokio::net::UnixStream::from_std(s)
        };
        let qmp_s = stream(qmp_s).map_err(rd)?;
        let con_s = stream(con_s).map_err(rd)?;

        let (console_tx, _) = broadcast::channel(1024);
        let (bytes_tx, _) = broadcast::channel(1024);
        let (con_read, con_write) = con_s.into_split();
        spawn_console_reader(
            con_read,
            run_dir.join("console.log"),
            spec.console_log_cap,
            sink.clone(),
            console_tx.clone(),
            bytes_tx.clone(),
        );
        let (agent, agent_rx) = AgentPort::new(agent_s, sink.clone()).map_err(rd)?;
        // QEMU can still die after it started (a CPU or memory setting
        // it rejects, a descriptor it cannot use): then its own words
        // matter, not "QMP closed".
        let handshake = async {
            let qmp = Qmp::negotiate(qmp_s, sink.clone()).await?;
            let status = qmp.status().await?;
            Ok::<_, QmpError>((qmp, status))
        };
        let (qmp, status) = tokio::select! {
            r = tokio::time::timeout(START_TIMEOUT, handshake) => match r {
                Ok(Ok(q)) => q,
                Ok(Err(e)) => {
                    // A closed QMP is usually QEMU on its way out.
                    if let Some(status) = qemu.wait_timeout(Duration::from_secs(2)).await {
                        return Err(died(status));
                    }
                    return Err(e.into());
                }
                Err(_) => {
                    qemu.kill();
                    return Err(too_slow("answer on QMP"));
                }
            },
            status = qemu.wait() => return Err(died(status)),
        };
        sink.emit(VmEvent::State { status });
        unlink.0 = None;

        Ok(Vm {
            qmp,
            agent,
            agent_rx: Some(agent_rx),
            protections,
            qemu,
            virtiofsd,
            console: console_tx,
            console_bytes: bytes_tx,
            console_in: Arc::new(tokio::sync::Mutex::new(con_write)),
            virtiofsd_socket,
            goldfish_fd: fds.goldfish,
            stopping,
            run_dir,
        })
    }

    /// The goldfish device as QMP `device_add` takes it: QEMU reaches the
    /// device server's socket through the descriptor it inherited.
    pub fn goldfish_device(&self) -> Option<serde_json::Value> {
        self.goldfish_fd
            .map(|fd| goldfish_device_json(&fd_path(fd)))
    }

    /// Ask the guest to release the goldfish device (`device_del`, as a
    /// user's hot unplug reaches it: the PCIe attention button) and wait
    /// until QEMU says it is gone (DEVICE_DELETED): only then has the
    /// driver's remove path run.
    pub async fn unplug_goldfish(&self, timeout: Duration) -> Result<(), HotplugError> {
        let mut events = self.qmp.subscribe();
        self.qmp
            .execute_raw("device_del", serde_json::json!({ "id": GOLDFISH_ID }))
            .await?;
        let deleted = tokio::time::timeout(timeout, async {
            loop {
                match events.recv().await {
                    Ok(e) if e.name == "DEVICE_DELETED" && e.data["device"] == GOLDFISH_ID => {
                        return Ok(());
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(e) => return Err(HotplugError::Events(e.to_string())),
                }
            }
        })
        .await;
        deleted.unwrap_or(Err(HotplugError::NotReleased(timeout)))
    }

    /// Plug the goldfish device back in (`device_add`); QEMU connects to
    /// the device server as part of it, through the descriptor it
    /// inherited (it runs as a user that cannot reach the run directory).
    pub async fn plug_goldfish(&self) -> Result<(), HotplugError> {
        let device = self.goldfish_device().ok_or(HotplugError::NoDevice)?;
        self.qmp.execute_raw("device_add", device).await?;
        Ok(())
    }

    /// The pids of QEMU and virtiofsd (the one gasbench started; its
    /// sandbox runs in a child of it).
    pub fn pids(&self) -> (u32, Option<u32>) {
        (self.qemu.pid, self.virtiofsd.as_ref().map(|v| v.pid))
    }

    /// From now on, QEMU and virtiofsd exiting is what we asked for (the
    /// guest was told to power off).
    pub fn expect_exit(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Console lines from now on.
    pub fn console(&self) -> broadcast::Receiver<String> {
        self.console.subscribe()
    }

    /// The console's raw bytes from now on (a terminal attached to it;
    /// they are also in console.log and, as lines, on the bus).
    pub fn console_bytes(&self) -> broadcast::Receiver<Vec<u8>> {
        self.console_bytes.subscribe()
    }

    /// Type into the console (the guest's ttyS0).
    pub async fn console_write(&self, bytes: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        let mut w = self.console_in.lock().await;
        w.write_all(bytes).await?;
        w.flush().await
    }

    /// Resolves when QEMU or virtiofsd exits while we did not ask it to:
    /// names what died and how.
    pub async fn died(&mut self) -> String {
        let qemu = &mut self.qemu;
        match &mut self.virtiofsd {
            Some(v) => tokio::select! {
                s = qemu.wait() => format!("QEMU exited ({s})"),
                s = v.wait() => {
                    // virtiofsd ends by itself when QEMU hangs up: if QEMU
                    // is gone too, QEMU is the news.
                    match qemu.wait_timeout(Duration::from_secs(1)).await {
                        Some(q) => format!("QEMU exited ({q})"),
                        None => format!("virtiofsd exited ({s})"),
                    }
                }
            },
            None => format!("QEMU exited ({})", qemu.wait().await),
        }
    }

    /// The tail of QEMU's own log.
    pub fn qemu_log_tail(&self, lines: usize) -> String {
        tail(&self.run_dir.join("qemu.log"), lines)
    }

    /// End the VM in order: QMP `quit`, wait, then kill what is left.
    /// Returns how QEMU ended.
    pub async fn shutdown(mut self, grace: Duration) -> String {
        self.stopping.store(true, Ordering::SeqCst);
        self.agent.stop();
        if self.qemu.exit_status().is_none() {
            let _ = self
                .qmp
                .execute_raw_timeout("quit", serde_json::json!({}), Duration::from_secs(3))
                .await;
        }
        let status = match self.qemu.wait_timeout(grace).await {
            Some(s) => s,
            None => {
                self.qemu.kill();
                self.qemu
                    .wait_timeout(Duration::from_secs(5))
                    .await
                    .unwrap_or_else(|| "did not die".into())
            }
        };
        if let Some(v) = &mut self.virtiofsd {
            // virtiofsd ends by itself once QEMU hangs up.
            if v.wait_timeout(Duration::from_secs(2)).await.is_none() {
                v.kill();
                let _ = v.wait_timeout(Duration::from_secs(5)).await;
            }
        }
        status
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.agent.stop();
        self.qemu.kill();
        if let Some(v) = &mut self.virtiofsd {
            v.kill();
        }
        remove_virtiofsd_socket(&self.virtiofsd_socket);
    }
}

fn remove_virtiofsd_socket(socket: &Path) {
    let _ = std::fs::remove_file(socket);
    // virtiofsd's lock file beside its socket.
    let mut pid = socket.to_path_buf().into_os_string();
    pid.push(".pid");
    let _ = std::fs::remove_file(pid);
}

/// Removes a start-up's virtiofsd socket unless disarmed (`.0 = None`).
struct UnlinkOnDrop(Option<PathBuf>);

impl Drop for UnlinkOnDrop {
    fn drop(&mut self) {
        if let Some(s) = &self.0 {
            remove_virtiofsd_socket(s);
        }
    }
}

fn spawn_console_reader(
    mut stream: tokio::net::unix::OwnedReadHalf,
    log_path: PathBuf,
    cap: u64,
    sink: EventSink,
    lines_tx: broadcast::Sender<String>,
    bytes_tx: broadcast::Sender<Vec<u8>>,
) {
    tokio::spawn(async move {
        // The log is raw bytes, flushed as they come: a crash loses
        // nothing. Up to `cap` bytes: a guest can print without end.
        let mut log = CappedLog {
            file: std::fs::File::create(&log_path).ok(),
            cap,
            written: 0,
            dropped: 0,
        };
        let mut splitter = LineSplitter::default();
        let mut buf = vec![0u8; 8192];
        let emit = |line: String| {
            let severity = classify(&line);
            let _ = lines_tx.send(line.clone());
            sink.emit(VmEvent::Console { line, severity });
        };
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    // Only when a terminal is attached (no receiver: no copy).
                    if bytes_tx.receiver_count() > 0 {
                        let _ = bytes_tx.send(buf[..n].to_vec());
                    }
                    if log.write(&buf[..n]) {
                        sink.emit(RunEvent::Note {
                            text: format!(
                                "console.log reached its cap of {cap} bytes; the rest of the \
                                 console is counted, not written"
                            ),
                        });
                    }
                    splitter.push(&buf[..n], emit);
                }
            }
        }
        if let Some(rest) = splitter.finish() {
            emit(rest);
        }
        if log.dropped > 0 {
            sink.emit(RunEvent::Note {
                text: format!(
                    "console.log: {} byte(s) of console output past its cap of {cap} bytes were \
                     not written",
                    log.dropped
                ),
            });
        }
    });
}

/// console.log, written up to a cap; a line at the cap says where the
/// rest went.
struct CappedLog {
    file: Option<std::fs::File>,
    cap: u64,
    written: u64,
    dropped: u64,
}

impl CappedLog {
    /// Write what fits; true when this write reached the cap.
    fn write(&mut self, bytes: &[u8]) -> bool {
        let room = self.cap.saturating_sub(self.written);
        let take = (bytes.len() as u64).min(room) as usize;
        if let Some(f) = &mut self.file
            && take > 0
        {
            let _ = f.write_all(&bytes[..take]);
        }
        self.written += take as u64;
        self.dropped += (bytes.len() - take) as u64;
        if take < bytes.len() && self.dropped == (bytes.len() - take) as u64 {
            if let Some(f) = &mut self.file {
                let _ = write!(
                    f,
                    "\n[gasbench: console.log reached its cap of {} bytes; the rest is not written]\n",
                    self.cap
                );
            }
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_log_stops_at_its_cap_and_says_so_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let mut log = CappedLog {
            file: Some(std::fs::File::create(&path).unwrap()),
            cap: 100,
            written: 0,
            dropped: 0,
        };
        assert!(!log.write(&[b'a'; 60]));
        assert!(log.write(&[b'b'; 60]), "this write reached the cap");
        assert!(!log.write(&[b'c'; 1000]), "said once");
        assert_eq!(log.dropped, 1020);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(&format!("{}{}", "a".repeat(60), "b".repeat(40))));
        assert!(text.ends_with("reached its cap of 100 bytes; the rest is not written]\n"));
        assert!(!text.contains("cc"));
    }

    #[test]
    fn a_tail_of_a_huge_log_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let mut text = "x".repeat(10 << 20);
        text.push_str("\nlast but one\n\x1b[2J");
        text.push_str(&"y".repeat(5000));
        std::fs::write(&path, text).unwrap();
        let t = tail(&path, 8);
        assert!(t.len() < 2048, "{}", t.len());
        assert!(t.contains("last but one"), "{t}");
        assert!(t.ends_with("y…"), "{t}");
    }
}
