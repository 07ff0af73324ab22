//! The server: a listening socket, one std thread that accepts a client
//! and serves it, and a handle the pipeline keeps.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gasbench_device::{Deferred, Device, DeviceConfig, DeviceState, DeviceTrace, FaultPlan};
use gasbench_events::EventSink;
use gasbench_events::device::DeviceEvent;
use tokio::sync::watch;

use crate::dma::DmaLimits;
use crate::session::Session;
pub use crate::shared::ServerStatus;
use crate::shared::{Shared, lock};
use crate::sock;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] gasbench_device::ConfigError),
    #[error("{path}: a server is already listening there")]
    InUse { path: PathBuf },
    #[error("{path} exists and is not a socket; refusing to replace it")]
    NotASocket { path: PathBuf },
    #[error("{path}: cannot remove the stale socket: {source}")]
    RemoveStale {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot listen: {source}")]
    Bind {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the server thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// A client that sends part of a message and stalls this long in the
/// rest is dropped (QEMU sends a message in one go).
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(5);

/// A client must complete the VERSION handshake this soon after it
/// connects (QEMU sends VERSION at once), or it is dropped: the server
/// serves one client at a time, and one that connects and says nothing
/// must not keep QEMU out. Once negotiated, a client may idle: a guest
/// that does not touch the device sends nothing.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// How busy the server has been.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Messages handled (all sessions).
    pub messages: u64,
    /// Time spent between having read a message and having replied to it.
    pub busy_ns: u64,
}

impl TransportStats {
    /// Mean time in the server per message, in microseconds.
    pub fn mean_us(&self) -> f64 {
        if self.messages == 0 {
            0.0
        } else {
            self.busy_ns as f64 / self.messages as f64 / 1000.0
        }
    }
}

/// A running vfio-user server for one goldfish device.
pub struct DeviceServer {
    shared: Arc<Shared>,
    listener: Arc<UnixListener>,
    path: PathBuf,
    /// (dev, inode) of the socket we bound, so Drop removes only ours.
    inode: (u64, u64),
    thread: Option<JoinHandle<()>>,
}

impl DeviceServer {
    /// Listen on `socket` and serve on a new thread, reporting to `sink`.
    /// The socket accepts connections when this returns.
    pub fn start(
        socket: &Path,
        cfg: DeviceConfig,
        sink: EventSink,
    ) -> Result<DeviceServer, ServerError> {
        DeviceServer::start_with(socket, cfg, Box::new(sink), FaultPlan::default())
    }

    /// [`DeviceServer::start`] with any trace and a fault plan from the
    /// first message on.
    pub fn start_with(
        socket: &Path,
        cfg: DeviceConfig,
        trace: Box<dyn DeviceTrace>,
        faults: FaultPlan,
    ) -> Result<DeviceServer, ServerError> {
        // Events are held while a message is handled and passed on, in
        // order, before its reply is sent.
        let mut device = Device::new(cfg.clone(), Box::new(Deferred::new(trace)))?;
        device.set_fault_plan(faults);
        let listener = bind(socket)?;
        let meta = std::fs::symlink_metadata(socket).map_err(|source| ServerError::Bind {
            path: socket.to_path_buf(),
            source,
        })?;
        let initial = ServerStatus::Listening {
            sessions: 0,
            last_disconnect: None,
        };
        let (watch, _) = watch::channel(initial.clone());
        let shared = Arc::new(Shared {
            device: Mutex::new(device),
            hook: Mutex::new(None),
            hook_set: AtomicBool::new(false),
            on_status: Mutex::new(None),
            body_timeout_ms: AtomicU64::new(DEFAULT_BODY_TIMEOUT.as_millis() as u64),
            handshake_timeout_ms: AtomicU64::new(DEFAULT_HANDSHAKE_TIMEOUT.as_millis() as u64),
            dma_limits: Mutex::new(DmaLimits::default()),
            stop: AtomicBool::new(false),
            conn: Mutex::new(None),
            status: Mutex::new(initial),
            status_changed: Condvar::new(),
            watch,
            messages: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
        });
        shared.emit(DeviceEvent::Listening {
            socket: socket.display().to_string(),
            bar1_size: cfg.bar1_size,
        });
        let listener = Arc::new(listener);
        let thread = {
            let shared = shared.clone();
            let listener = listener.clone();
            std::thread::Builder::new()
                .name("gasbench-vfu".into())
                .spawn(move || serve(&shared, &listener))
                .map_err(ServerError::Thread)?
        };
        Ok(DeviceServer {
            shared,
            listener,
            path: socket.to_path_buf(),
            inode: (meta.dev(), meta.ino()),
            thread: Some(thread),
        })
    }

    pub fn socket_path(&self) -> &Path {
        &self.path
    }

    /// A consistent snapshot of the device, from any thread.
    pub fn state(&self) -> DeviceState {
        self.shared.device().state()
    }

    /// Messages handled and time spent on them.
    pub fn stats(&self) -> TransportStats {
        TransportStats {
            messages: self.shared.messages.load(Ordering::Relaxed),
            busy_ns: self.shared.busy_ns.load(Ordering::Relaxed),
        }
    }

    /// The device model's internal invariants (see
    /// `gasbench_device::Device::check_invariants`).
    pub fn check_invariants(&self) -> Result<(), String> {
        self.shared.device().check_invariants()
    }

    /// Replace the fault plan; occurrences count from now.
    pub fn set_fault_plan(&self, plan: FaultPlan) {
        self.shared.device().set_fault_plan(plan);
    }

    /// Install a hook called on the server thread before each incoming
    /// message is handled (after it has been read, before the device sees
    /// it). The engine drains the agent's socket here so that agent events
    /// precede the register accesses they caused.
    pub fn set_before_message(&self, hook: impl FnMut() + Send + 'static) {
        *lock(&self.shared.hook) = Some(Box::new(hook));
        self.shared.hook_set.store(true, Ordering::Release);
    }

    /// How long a message's body may take to arrive after its header
    /// before the session is ended (default [`DEFAULT_BODY_TIMEOUT`]).
    pub fn set_body_timeout(&self, limit: Duration) {
        self.shared
            .body_timeout_ms
            .store(limit.as_millis() as u64, Ordering::Relaxed);
    }

    /// How long a client has from connecting to a completed VERSION
    /// handshake before the session is ended (default
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`]).
    pub fn set_handshake_timeout(&self, limit: Duration) {
        self.shared
            .handshake_timeout_ms
            .store(limit.as_millis() as u64, Ordering::Relaxed);
    }

    /// How many DMA windows, and how many bytes of them, a client may map
    /// (from its next session on; default [`DmaLimits::default`]).
    pub fn set_dma_limits(&self, limits: DmaLimits) {
        *lock(&self.shared.dma_limits) = limits;
    }

    /// Call `tell` with every status change from now on, on the thread
    /// that makes it (before `status()` shows it).
    pub fn on_status_change(&self, tell: impl Fn(&ServerStatus) + Send + 'static) {
        *lock(&self.shared.on_status) = Some(Box::new(tell));
    }

    pub fn clear_before_message(&self) {
        self.shared.hook_set.store(false, Ordering::Release);
        *lock(&self.shared.hook) = None;
    }

    /// Reset the device as a client DEVICE_RESET would.
    pub fn reset_device(&self, by: &str) {
        let mut d = self.shared.device();
        d.reset(by);
        d.flush_trace();
    }

    pub fn status(&self) -> ServerStatus {
        lock(&self.shared.status).clone()
    }

    /// Status changes, for async consumers.
    pub fn subscribe(&self) -> watch::Receiver<ServerStatus> {
        self.shared.watch.subscribe()
    }

    /// Block until `pred` holds for the status, or `timeout` passes.
    pub fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&ServerStatus) -> bool,
    ) -> Option<ServerStatus> {
        // A huge timeout means "forever", not an overflow.
        let deadline = Instant::now().checked_add(timeout);
        let mut s = lock(&self.shared.status);
        loop {
            if pred(&s) {
                return Some(s.clone());
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return None;
            }
            s = self
                .shared
                .status_changed
                .wait_timeout(s, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Stop serving: wake the thread, wait for it, remove the socket.
    pub fn stop(&mut self) -> ServerStatus {
        self.shared.stop.store(true, Ordering::Release);
        sock::shutdown(&*self.listener);
        if let Some(c) = lock(&self.shared.conn).as_ref() {
            sock::shutdown(c);
        }
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            self.shared.set_status(ServerStatus::Stopped {
                reason: "the server thread panicked".into(),
                error: true,
            });
        }
        self.unlink();
        self.status()
    }

    fn unlink(&self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path)
            && (m.dev(), m.ino()) == self.inode
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Drop for DeviceServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Bind `path`, replacing a stale socket nobody listens on.
fn bind(path: &Path) -> Result<UnixListener, ServerError> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(ServerError::NotASocket {
                path: path.to_path_buf(),
            });
        }
        if UnixStream::connect(path).is_ok() {
            return Err(ServerError::InUse {
                path: path.to_path_buf(),
            });
        }
        std::fs::remove_file(path).map_err(|source| ServerError::RemoveStale {
            path: path.to_path_buf(),
            source,
        })?;
    }
    UnixListener::bind(path).map_err(|source| ServerError::Bind {
        path: path.to_path_buf(),
        source,
    })
}

/// The thread: accept, serve, repeat, until stopped.
fn serve(shared: &Shared, listener: &UnixListener) {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        accept_loop(shared, listener)
    }));
    let (reason, error) = match result {
        Ok(Ok(())) => ("stopped".to_string(), false),
        Ok(Err(e)) => (e, true),
        Err(p) => {
            let what = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".into());
            (format!("the server thread panicked: {what}"), true)
        }
    };
    shared.emit(DeviceEvent::Stopped {
        reason: reason.clone(),
    });
    shared.set_status(ServerStatus::Stopped { reason, error });
}

fn accept_loop(shared: &Shared, listener: &UnixListener) -> Result<(), String> {
    let mut sessions = 0u64;
    let mut transient = 0u32;
    loop {
        if shared.stopping() {
            return Ok(());
        }
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(_) if shared.stopping() => return Ok(()),
            Err(e) => {
                // EMFILE and friends pass; anything persistent ends us.
                transient += 1;
                if transient > 100 {
                    return Err(format!("accept keeps failing: {e}"));
                }
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        transient = 0;
        sessions += 1;
        *lock(&shared.conn) = stream.try_clone().ok();
        if shared.stopping() {
            return Ok(());
        }
        shared.set_status(ServerStatus::Connected { session: sessions });
        let reason = Session::new(shared, stream).run();
        *lock(&shared.conn) = None;
        shared.emit(DeviceEvent::Disconnected {
            reason: reason.clone(),
        });
        if shared.stopping() {
            return Ok(());
        }
        shared.set_status(ServerStatus::Listening {
            sessions,
            last_disconnect: Some(reason),
        });
    }
}
