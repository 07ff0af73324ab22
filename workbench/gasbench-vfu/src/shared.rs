//! What the server thread, its sessions and the handle share: the device
//! behind its lock, the hooks, the limits, the status and the counters;
//! and the status itself. Apart from `server`, so a session needs nothing
//! of the server but this.

use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use gasbench_device::Device;
use gasbench_events::device::DeviceEvent;
use tokio::sync::watch;

use crate::dma::DmaLimits;

/// Where the server is in its life.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ServerStatus {
    /// Waiting for a client. `sessions` clients have come and gone;
    /// `last_disconnect` says why the last one left.
    Listening {
        sessions: u64,
        last_disconnect: Option<String>,
    },
    /// A client (QEMU) is attached; this is its session number (from 1).
    Connected { session: u64 },
    /// The thread has exited; `error` when it died rather than was stopped.
    Stopped { reason: String, error: bool },
}

impl ServerStatus {
    pub fn is_stopped(&self) -> bool {
        matches!(self, ServerStatus::Stopped { .. })
    }
}

pub(crate) type Hook = Box<dyn FnMut() + Send>;
pub(crate) type StatusHook = Box<dyn Fn(&ServerStatus) + Send>;

/// What the server thread and the handle share.
pub(crate) struct Shared {
    pub(crate) device: Mutex<Device>,
    pub(crate) hook: Mutex<Option<Hook>>,
    pub(crate) hook_set: AtomicBool,
    pub(crate) on_status: Mutex<Option<StatusHook>>,
    /// How long a message's body may take after its header, in ms.
    pub(crate) body_timeout_ms: AtomicU64,
    /// How long a client has from connecting to a completed VERSION, in ms.
    pub(crate) handshake_timeout_ms: AtomicU64,
    pub(crate) dma_limits: Mutex<DmaLimits>,
    pub(crate) stop: AtomicBool,
    /// A second handle on the live connection, so `stop` can shut it down.
    pub(crate) conn: Mutex<Option<UnixStream>>,
    pub(crate) status: Mutex<ServerStatus>,
    pub(crate) status_changed: Condvar,
    pub(crate) watch: watch::Sender<ServerStatus>,
    pub(crate) messages: AtomicU64,
    pub(crate) busy_ns: AtomicU64,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock is caught and reported by the thread;
    // the data is still the best there is.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub(crate) fn device(&self) -> MutexGuard<'_, Device> {
        lock(&self.device)
    }

    pub(crate) fn account(&self, busy: Duration) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        self.busy_ns
            .fetch_add(busy.as_nanos() as u64, Ordering::Relaxed);
    }

    pub(crate) fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms.load(Ordering::Relaxed).max(1))
    }

    pub(crate) fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms.load(Ordering::Relaxed).max(1))
    }

    pub(crate) fn dma_limits(&self) -> DmaLimits {
        *lock(&self.dma_limits)
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Run the engine's hook, if one is set. One atomic load otherwise.
    pub(crate) fn before_message(&self) {
        if self.hook_set.load(Ordering::Acquire)
            && let Some(h) = lock(&self.hook).as_mut()
        {
            h();
        }
    }

    /// Report an event now (not held back).
    pub(crate) fn emit(&self, ev: DeviceEvent) {
        let mut d = self.device();
        d.emit(ev);
        d.flush_trace();
    }

    pub(crate) fn flush(&self) {
        self.device().flush_trace();
    }

    pub(crate) fn set_status(&self, s: ServerStatus) {
        if let Some(tell) = lock(&self.on_status).as_ref() {
            tell(&s);
        }
        *lock(&self.status) = s.clone();
        self.watch.send_replace(s);
        self.status_changed.notify_all();
    }
}
