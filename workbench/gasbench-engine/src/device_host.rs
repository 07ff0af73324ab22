//! Where the goldfish device server runs: on a thread of this process (the
//! default: nothing to spawn, one less hop per register access) or as a
//! child process (`gasbench device serve --pipe-protocol`), which can be
//! killed, crash or be debugged on its own. The rest of the engine sees one
//! [`GoldfishDevice`] either way.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use gasbench_device::{DeviceConfig, DeviceState, FaultPlan};
use gasbench_events::EventSink;
use gasbench_events::vm::{Protection, VmEvent};
use gasbench_qemu::process::Supervised;
use gasbench_vfu::pipe::RemoteDevice;
use gasbench_vfu::{DeviceServer, ServerStatus};
use tokio::sync::watch;

/// How long a query to a device server process may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a device server process may take to listen.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(20);

/// The name the device server process has on the bus (process events,
/// errors).
pub const PROCESS_NAME: &str = "device server";

/// Where to run the device server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum DeviceHost {
    /// A thread of this process.
    #[default]
    InProcess,
    /// A child process: `program device serve --pipe-protocol …`
    /// (`program` is the gasbench binary).
    Process { program: PathBuf },
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceStartError {
    #[error("starting the goldfish device server: {0}")]
    Server(#[from] gasbench_vfu::ServerError),
    #[error("starting the goldfish device server process ({program}): {source}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the goldfish device server process did not come up: {0}")]
    NotListening(String),
}

/// A running goldfish device server.
pub enum GoldfishDevice {
    InProcess(DeviceServer),
    Process {
        /// First, so that on a drop it marks the exit as expected before
        /// `child` kills the process.
        guard: ProcessGuard,
        link: RemoteDevice,
        child: Supervised,
    },
}

impl GoldfishDevice {
    /// Start the server listening on `socket` (QEMU may start once this
    /// returns). A process's stderr goes to `log`.
    pub async fn start(
        host: &DeviceHost,
        socket: &Path,
        cfg: DeviceConfig,
        log: &Path,
        sink: &EventSink,
    ) -> Result<GoldfishDevice, DeviceStartError> {
        let program = match host {
            DeviceHost::InProcess => {
                sink.emit(VmEvent::Confinement {
                    protections: vec![Protection {
                        name: "device server".into(),
                        active: false,
                        detail: "a thread of gasbench itself, as gasbench's user; \
                                 --device-process runs it as a confined process of its own"
                            .into(),
                    }],
                });
                return Ok(GoldfishDevice::InProcess(DeviceServer::start(
                    socket,
                    cfg,
                    sink.clone(),
                )?));
            }
            DeviceHost::Process { program } => program,
        };
        let spawn_err = |source| DeviceStartError::Spawn {
            program: program.clone(),
            source,
        };
        let (child_in, to_child) = std::io::pipe().map_err(spawn_err)?;
        let (from_child, child_out) = std::io::pipe().map_err(spawn_err)?;
        // Reading starts before the child does: its first events wait for
        // our Ack.
        let link = RemoteDevice::new(Box::new(to_child), Box::new(from_child), sink.clone())
            .map_err(spawn_err)?;
        let mut cmd = std::process::Command::new(program);
        cmd.args(["device", "serve", "--pipe-protocol", "--socket"])
            .arg(socket)
            .arg("--bar1-size")
            .arg(cfg.bar1_size.to_string());
        if cfg.irq_on_command {
            cmd.arg("--irq-on-command");
        }
        // It binds its socket in the root-only run directory, then drops to
        // the VM user; rlimits and an empty network from the start.
        let choice = gasbench_confine::identity::vm_identity();
        if let Some(id) = &choice.identity {
            cmd.arg("--run-as").arg(format!("{}:{}", id.uid, id.gid));
        }
        let root = gasbench_confine::running_as_root();
        let confinement = gasbench_confine::Confinement {
            limits: gasbench_confine::Limits::device_server(),
            own_network: root,
            ..Default::default()
        };
        confinement.apply(&mut cmd);
        sink.emit(VmEvent::Confinement {
            protections: vec![Protection {
                name: "device server".into(),
                active: true,
                detail: format!(
                    "a process of its own: {}; rlimits {}{}",
                    choice.reason,
                    confinement.limits.describe(),
                    if root {
                        "; an empty network namespace"
                    } else {
                        ""
                    }
                ),
            }],
        });
        let log_path = log;
        let log = std::fs::File::create(log_path).map_err(spawn_err)?;
        let stopping = Arc::new(AtomicBool::new(false));
        let child = Supervised::spawn_piped(
            PROCESS_NAME,
            cmd,
            Stdio::from(child_in),
            Stdio::from(child_out),
            log,
            sink.clone(),
            stopping.clone(),
        )
        .map_err(spawn_err)?;
        let dev = GoldfishDevice::Process {
            guard: ProcessGuard {
                stopping,
                socket: socket.to_path_buf(),
            },
            link,
            child,
        };
        if let GoldfishDevice::Process { link, .. } = &dev
            && let Err(e) = link.wait_listening(LISTEN_TIMEOUT).await
        {
            dev.stop().await;
            // What the process said before it went is the useful part.
            let said = std::fs::read_to_string(log_path).unwrap_or_default();
            let tail: Vec<&str> = said.lines().rev().take(5).collect();
            let mut why = e.to_string();
            if !tail.is_empty() {
                why.push_str("; it said: ");
                why.push_str(&tail.into_iter().rev().collect::<Vec<_>>().join(" | "));
            }
            return Err(DeviceStartError::NotListening(why));
        }
        Ok(dev)
    }

    pub fn socket_path(&self) -> &Path {
        match self {
            GoldfishDevice::InProcess(s) => s.socket_path(),
            GoldfishDevice::Process { guard, .. } => &guard.socket,
        }
    }

    /// Drain the agent's port before device events go on the bus, so a
    /// call's `CallBegin` precedes the register accesses it caused.
    pub fn attach_agent(&self, drain: impl Fn() + Send + Sync + 'static) {
        match self {
            GoldfishDevice::InProcess(s) => s.set_before_message(drain),
            GoldfishDevice::Process { link, .. } => link.set_before_events(drain),
        }
    }

    pub fn status(&self) -> ServerStatus {
        match self {
            GoldfishDevice::InProcess(s) => s.status(),
            GoldfishDevice::Process { link, .. } => link.status(),
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<ServerStatus> {
        match self {
            GoldfishDevice::InProcess(s) => s.subscribe(),
            GoldfishDevice::Process { link, .. } => link.subscribe(),
        }
    }

    /// Wait until `pred` holds for the status; None at the timeout.
    pub async fn wait_status(
        &self,
        timeout: Duration,
        pred: impl Fn(&ServerStatus) -> bool,
    ) -> Option<ServerStatus> {
        let mut rx = self.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|s| pred(s)))
            .await
            .ok()?
            .ok()
            .map(|s| s.clone())
    }

    /// A snapshot of the device's state.
    pub fn state(&self) -> Result<DeviceState, String> {
        match self {
            GoldfishDevice::InProcess(s) => Ok(s.state()),
            GoldfishDevice::Process { link, .. } => {
                link.state(QUERY_TIMEOUT).map_err(|e| e.to_string())
            }
        }
    }

    /// Replace the fault plan; occurrences count from now.
    pub fn set_fault_plan(&self, plan: FaultPlan) -> Result<(), String> {
        match self {
            GoldfishDevice::InProcess(s) => {
                s.set_fault_plan(plan);
                Ok(())
            }
            GoldfishDevice::Process { link, .. } => link
                .set_fault_plan(plan, QUERY_TIMEOUT)
                .map_err(|e| e.to_string()),
        }
    }

    /// The server died under us (not stopped by us): why, naming the
    /// process and how it ended when it was one.
    pub async fn died(&mut self) -> Option<String> {
        let ServerStatus::Stopped {
            reason,
            error: true,
        } = self.status()
        else {
            return None;
        };
        match self {
            GoldfishDevice::InProcess(_) => Some(reason),
            GoldfishDevice::Process { child, .. } => {
                // The pipe closes as the process dies; its exit status
                // follows a moment later.
                let exit = child.wait_timeout(Duration::from_secs(2)).await;
                Some(match exit {
                    Some(status) => format!("{PROCESS_NAME} (pid {}) exited: {status}", child.pid),
                    None => format!("{PROCESS_NAME} (pid {}): {reason}", child.pid),
                })
            }
        }
    }

    /// Stop serving; a process is asked first and killed if it does not
    /// go.
    pub async fn stop(self) {
        match self {
            GoldfishDevice::InProcess(mut s) => {
                s.clear_before_message();
                s.stop();
            }
            GoldfishDevice::Process {
                mut link,
                mut child,
                guard,
            } => {
                guard
                    .stopping
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                link.clear_before_events();
                tokio::task::spawn_blocking(move || {
                    link.stop(Duration::from_secs(5));
                    link
                })
                .await
                .ok();
                if child.wait_timeout(Duration::from_secs(5)).await.is_none() {
                    child.kill();
                    child.wait().await;
                }
                // A server that was killed could not remove its socket.
                drop(guard);
            }
        }
    }
}

/// What must happen however a device server process goes, `stop` or a
/// drop (Ctrl-C drops the run's future): its exit is one we asked for, and
/// the socket it may not have removed goes. The process itself is killed
/// by its `Supervised` when that drops.
pub struct ProcessGuard {
    stopping: Arc<AtomicBool>,
    socket: PathBuf,
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        remove_socket(&self.socket);
    }
}

/// Remove `path` if it is a socket (the run directory is ours, so a socket
/// there is the server's).
fn remove_socket(path: &Path) {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A "device server" that is not one: it complains and exits. The
    /// start fails with what it said, and leaves no socket.
    #[tokio::test]
    async fn a_server_process_that_never_listens_is_an_error_with_its_words() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("fake-gasbench");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho \"gasbench device: cannot listen: address in use\" >&2\nexit 1\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (sink, _bus) = gasbench_events::bus();
        let socket = dir.path().join("goldfish.sock");
        let err = GoldfishDevice::start(
            &DeviceHost::Process { program: fake },
            &socket,
            DeviceConfig::default(),
            &dir.path().join("device.log"),
            &sink,
        )
        .await
        .err()
        .expect("a process that never listens is an error");
        let text = err.to_string();
        assert!(text.contains("did not come up"), "{text}");
        assert!(text.contains("cannot listen: address in use"), "{text}");
        assert!(!socket.exists());
    }

    #[tokio::test]
    async fn a_program_that_does_not_exist_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (sink, _bus) = gasbench_events::bus();
        let err = GoldfishDevice::start(
            &DeviceHost::Process {
                program: dir.path().join("no-such-gasbench"),
            },
            &dir.path().join("goldfish.sock"),
            DeviceConfig::default(),
            &dir.path().join("device.log"),
            &sink,
        )
        .await
        .err()
        .expect("spawning nothing is an error");
        assert!(err.to_string().contains("no-such-gasbench"), "{err}");
    }
}
