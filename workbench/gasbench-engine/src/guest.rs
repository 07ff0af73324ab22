//! A guest for scenarios: the device server (when the run has the
//! goldfish device), the VM, and its agent, wired so that agent and device
//! events keep their causal order.

use std::path::PathBuf;
use std::time::Duration;

use gasbench_device::DeviceConfig;
use gasbench_env::Runtime;
use gasbench_events::EventSink;

use crate::device_host::{DeviceHost, DeviceStartError, GoldfishDevice};
use crate::session::{BootSpec, Session, SessionError};

#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error(transparent)]
    Device(#[from] DeviceStartError),
    #[error("creating the run directory {path}: {source}")]
    RunDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Session(#[from] SessionError),
}

/// A booted guest and, when present, its goldfish device.
pub struct Guest {
    pub session: Session,
    pub device: Option<GoldfishDevice>,
    /// Whether the goldfish device is plugged into the VM now (hot-unplug
    /// scenarios change it).
    pub plugged: bool,
    /// Set when a scenario left the guest unfit for the next one (a hang,
    /// a device left unplugged).
    pub unfit: Option<String>,
}

impl Guest {
    /// Start the device server (listening before QEMU starts, as
    /// vfio-user-pci requires), boot, wait for the agent, then install the
    /// hook that drains the agent port before each device message.
    pub async fn boot(
        spec: &BootSpec,
        device: Option<(DeviceConfig, &DeviceHost)>,
        rt: &Runtime,
        sink: &EventSink,
        ready_timeout: Duration,
    ) -> Result<Guest, GuestError> {
        let mut spec = spec.clone();
        let server = match device {
            Some((cfg, host)) => {
                let socket: PathBuf = spec.run_dir.join("goldfish.sock");
                std::fs::create_dir_all(&spec.run_dir).map_err(|source| GuestError::RunDir {
                    path: spec.run_dir.clone(),
                    source,
                })?;
                let log = spec.run_dir.join("device.log");
                let s = GoldfishDevice::start(host, &socket, cfg, &log, sink).await?;
                spec.goldfish_socket = Some(socket);
                Some(s)
            }
            None => {
                spec.goldfish_socket = None;
                None
            }
        };
        let session = match Session::boot(&spec, rt, sink, ready_timeout).await {
            Ok(s) => s,
            Err(e) => {
                if let Some(d) = server {
                    d.stop().await;
                }
                return Err(e.into());
            }
        };
        if let Some(s) = &server {
            s.attach_agent(session.vm.agent.drainer());
        }
        Ok(Guest {
            plugged: server.is_some(),
            session,
            device: server,
            unfit: None,
        })
    }

    /// End it all: the agent powers off, QEMU goes, the server stops. An
    /// unfit guest may have a hung agent: it is aborted instead.
    pub async fn shutdown(self) -> String {
        let orderly = self.unfit.is_none();
        self.end(orderly).await
    }

    /// End it after a failure that stopped the run: QEMU goes without the
    /// agent's orderly power-off, then the server stops.
    pub async fn abort(self) -> String {
        self.end(false).await
    }

    async fn end(mut self, orderly: bool) -> String {
        let how = if orderly {
            self.session.shutdown().await
        } else {
            self.session.abort().await
        };
        if let Some(d) = self.device.take() {
            d.stop().await;
        }
        how
    }
}
