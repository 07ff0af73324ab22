//! A booted guest with its agent: boot, wait for `Ready`, talk, end.

use std::path::PathBuf;
use std::time::Duration;

use gasbench_abi::protocol::{AgentMsg, HostMsg, Ready};
use gasbench_env::Runtime;
use gasbench_events::EventSink;
use gasbench_qemu::{Accel, FromAgent, Vm, VmError, VmSpec};
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error("the guest did not report ready within {} s; the console's last lines:\n{console}", .timeout.as_secs())]
    NotReady { timeout: Duration, console: String },
    #[error("{what} while {doing}; the console's last lines:\n{console}")]
    Died {
        what: String,
        doing: String,
        console: String,
    },
    #[error("the guest agent closed its port while {doing}; the console's last lines:\n{console}")]
    AgentGone { doing: String, console: String },
    #[error(
        "the guest agent speaks protocol {agent}, this gasbench speaks {host}: rebuild the initramfs"
    )]
    Protocol { agent: u32, host: u32 },
    #[error("sending to the guest agent: {0}")]
    Send(#[source] std::io::Error),
    #[error("no message from the guest agent within {} s while {doing}", .timeout.as_secs())]
    Silent { timeout: Duration, doing: String },
}

/// What to boot.
#[derive(Clone, Debug)]
pub struct BootSpec {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    /// Passed to the agent as `gasbench.mkdirat2=N`.
    pub mkdirat2: Option<i64>,
    pub accel: Accel,
    pub memory_mib: u32,
    pub cpus: u32,
    pub goldfish_socket: Option<PathBuf>,
    pub run_dir: PathBuf,
    /// More kernel command line (the profile's, `kasan_multi_shot`).
    pub cmdline: String,
    /// The most of console.log the guest may fill.
    pub guest_log_cap: u64,
}

/// A running guest whose agent said it is ready.
pub struct Session {
    pub vm: Vm,
    pub ready: Ready,
    rx: mpsc::UnboundedReceiver<FromAgent>,
    console_log: PathBuf,
}

fn console_tail(path: &std::path::Path) -> String {
    gasbench_qemu::vm::tail(path, 8)
}

impl Session {
    /// Boot and wait for the agent's `Ready`.
    pub async fn boot(
        spec: &BootSpec,
        rt: &Runtime,
        sink: &EventSink,
        ready_timeout: Duration,
    ) -> Result<Session, SessionError> {
        // The agent marks every call in the kernel log; the default rate
        // limit of /dev/kmsg would drop most of the markers.
        let mut cmdline = gasbench_abi::kmsg::CMDLINE_DEVKMSG.to_string();
        if let Some(n) = spec.mkdirat2 {
            cmdline.push_str(&format!(
                " {}={n}",
                gasbench_abi::protocol::CMDLINE_MKDIRAT2
            ));
        }
        if !spec.cmdline.is_empty() {
            cmdline.push(' ');
            cmdline.push_str(&spec.cmdline);
        }
        let vm_spec = VmSpec {
            kernel: spec.kernel.clone(),
            initramfs: spec.initramfs.clone(),
            cmdline,
            memory_mib: spec.memory_mib,
            cpus: spec.cpus,
            accel: spec.accel,
            run_dir: spec.run_dir.clone(),
            share: Some(spec.run_dir.join("share")),
            goldfish_socket: spec.goldfish_socket.clone(),
            tsc_khz: match spec.accel {
                Accel::Tcg => gasbench_qemu::spec::host_tsc_khz(),
                Accel::Kvm => None,
            },
            console_log_cap: spec.guest_log_cap,
        };
        let mut vm = Vm::launch(&vm_spec, rt, sink).await?;
        let mut rx = vm
            .agent_rx
            .take()
            .expect("a fresh VM has its agent receiver");
        let console_log = spec.run_dir.join("console.log");
        let ready = tokio::select! {
            r = tokio::time::timeout(ready_timeout, next_ready(&mut rx)) => match r {
                Ok(Some(ready)) => ready,
                Ok(None) => return Err(SessionError::AgentGone {
                    doing: "booting".into(),
                    console: console_tail(&console_log),
                }),
                Err(_) => return Err(SessionError::NotReady {
                    timeout: ready_timeout,
                    console: console_tail(&console_log),
                }),
            },
            what = vm.died() => return Err(SessionError::Died {
                what,
                doing: "booting".into(),
                console: console_tail(&console_log),
            }),
        };
        if ready.protocol != gasbench_abi::protocol::PROTOCOL_VERSION {
            return Err(SessionError::Protocol {
                agent: ready.protocol,
                host: gasbench_abi::protocol::PROTOCOL_VERSION,
            });
        }
        Ok(Session {
            vm,
            ready,
            rx,
            console_log,
        })
    }

    pub fn send(&self, msg: &HostMsg) -> Result<(), SessionError> {
        self.vm
            .agent
            .send(msg, Duration::from_secs(10))
            .map_err(SessionError::Send)
    }

    /// The next message from the agent, bounded by `timeout`; fails when
    /// the agent or the VM goes away, naming which.
    pub async fn next(&mut self, timeout: Duration, doing: &str) -> Result<AgentMsg, SessionError> {
        tokio::select! {
            r = tokio::time::timeout(timeout, self.rx.recv()) => match r {
                Ok(Some(FromAgent::Msg(m))) => Ok(m),
                Ok(Some(FromAgent::Closed)) | Ok(None) => {
                    // The port closes when QEMU dies, often a moment before
                    // QEMU's exit is noticed: if QEMU is going, that is the news.
                    match tokio::time::timeout(Duration::from_secs(2), self.vm.died()).await {
                        Ok(what) => Err(SessionError::Died {
                            what,
                            doing: doing.into(),
                            console: console_tail(&self.console_log),
                        }),
                        Err(_) => Err(SessionError::AgentGone {
                            doing: doing.into(),
                            console: console_tail(&self.console_log),
                        }),
                    }
                }
                Err(_) => Err(SessionError::Silent { timeout, doing: doing.into() }),
            },
            what = self.vm.died() => Err(SessionError::Died {
                what,
                doing: doing.into(),
                console: console_tail(&self.console_log),
            }),
        }
    }

    /// Ask the agent to power off, then make sure QEMU is gone.
    pub async fn shutdown(self) -> String {
        self.vm.expect_exit();
        let _ = self
            .vm
            .agent
            .send(&HostMsg::Shutdown, Duration::from_secs(2));
        let mut vm = self.vm;
        // The agent syncs and reboots (reboot=t, -no-reboot): QEMU exits.
        let _ = tokio::time::timeout(Duration::from_secs(15), vm.died()).await;
        vm.shutdown(Duration::from_secs(5)).await
    }

    /// End it without asking the agent (it may be stuck in a step, and its
    /// filesystem is of no further use): QMP quit, then SIGKILL.
    pub async fn abort(self) -> String {
        self.vm.expect_exit();
        self.vm.shutdown(Duration::from_secs(5)).await
    }
}

async fn next_ready(rx: &mut mpsc::UnboundedReceiver<FromAgent>) -> Option<Ready> {
    loop {
        match rx.recv().await? {
            FromAgent::Msg(AgentMsg::Ready(r)) => return Some(r),
            FromAgent::Msg(_) => continue,
            FromAgent::Closed => return None,
        }
    }
}
