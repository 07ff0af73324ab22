//! A guest for scenarios: the device server (when the run has the
//! goldfish device), the VM, and its agent, wired so that agent and device
//! events keep their causal order.

use std::path::PathBuf;
use std::time::Duration;

use gasbench_device::DeviceConfig;
use gasbench_env::Runtime;
use gasbench_events::EventSink;
use gasbench_vfu::{DeviceServer, ServerStatus};

use crate::session::{BootSpec, Session, SessionError};

#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error("starting the goldfish device server: {0}")]
    Device(#[from] gasbench_vfu::ServerError),
    #[error(transparent)]
    Session(#[from] SessionError),
}

/// A booted guest and, when present, its goldfish device.
pub struct Guest {
    pub session: Session,
    pub device: Option<DeviceServer>,
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
        device: Option<DeviceConfig>,
        rt: &Runtime,
        sink: &EventSink,
        ready_timeout: Duration,
    ) -> Result<Guest, GuestError> {
        let mut spec = spec.clone();
        let server = match device {
            Some(cfg) => {
                let socket: PathBuf = spec.run_dir.join("goldfish.sock");
                std::fs::create_dir_all(&spec.run_dir).map_err(|e| {
                    GuestError::Device(gasbench_vfu::ServerError::Bind {
                        path: spec.run_dir.clone(),
                        source: e,
                    })
                })?;
                let s = DeviceServer::start(&socket, cfg, sink.clone())?;
                spec.goldfish_socket = Some(socket);
                Some(s)
            }
            None => {
                spec.goldfish_socket = None;
                None
            }
        };
        let session = Session::boot(&spec, rt, sink, ready_timeout).await?;
        if let Some(s) = &server {
            s.set_before_message(session.vm.agent.drainer());
        }
        Ok(Guest {
            plugged: server.is_some(),
            session,
            device: server,
            unfit: None,
        })
    }

    /// The device server died under us (not stopped by us): why.
    pub fn device_died(&self) -> Option<String> {
        match self.device.as_ref()?.status() {
            ServerStatus::Stopped {
                reason,
                error: true,
            } => Some(reason),
            _ => None,
        }
    }

    /// End it all: the agent powers off, QEMU goes, the server stops.
    pub async fn shutdown(mut self) -> String {
        let how = self.session.shutdown().await;
        if let Some(mut d) = self.device.take() {
            d.clear_before_message();
            d.stop();
        }
        how
    }
}
