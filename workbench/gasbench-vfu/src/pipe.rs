//! The device server as a child process: a line protocol over a pair of
//! pipes (the child's stdin and stdout), and both of its ends.
//!
//! The pipeline normally runs [`DeviceServer`] on a thread of its own
//! process. `gasbench run --device-process` runs it as `gasbench device
//! serve --pipe-protocol` instead, so the server can crash, be killed or be
//! debugged on its own. [`PipedServer`] is the child's end, [`RemoteDevice`]
//! the parent's; between them go JSON lines ([`FromServer`], [`ToServer`]).
//!
//! Order across the process boundary is kept the way the in-process server
//! keeps it (see gasbench-qemu's `agent_port`): after handling a message the
//! child writes that message's events and a `Sync`, and waits for the
//! parent's `Ack` before it replies to QEMU. The parent, before it puts the
//! first event of such a batch on the bus, runs its hook (the agent port
//! drain). So `CallBegin` — written by the guest before the access reached
//! QEMU, hence before the child wrote the batch — lands ahead of the
//! accesses, and `CallEnd` — which the guest can only write after the
//! reply, hence after the `Ack` — lands after them. One pipe round trip per
//! message that produced events.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gasbench_device::{DeviceConfig, DeviceState, DeviceTrace, FaultPlan};
use gasbench_events::EventSink;
use gasbench_events::device::DeviceEvent;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::server::{DeviceServer, ServerError, ServerStatus};

/// How long the child waits for the parent's `Ack` before it replies to
/// QEMU anyway (a parent that stopped reading must not hang the guest
/// forever; the order of that one batch is then not guaranteed).
pub const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// A line from the server (child) to the pipeline (parent).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum FromServer {
    Event {
        event: DeviceEvent,
    },
    /// The events since the last `Sync` are complete; the server waits for
    /// `Ack { n }` before it replies to QEMU.
    Sync {
        n: u64,
    },
    Status {
        status: ServerStatus,
    },
    State {
        id: u64,
        state: DeviceState,
    },
    /// A command without a result was carried out.
    Done {
        id: u64,
    },
}

/// A line from the pipeline (parent) to the server (child).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum ToServer {
    Ack { n: u64 },
    State { id: u64 },
    Faults { id: u64, plan: FaultPlan },
    Reset { id: u64, by: String },
    Stop,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn line_of<T: Serialize>(msg: &T) -> Vec<u8> {
    // These types always serialize (no maps with non-string keys).
    let mut line = serde_json::to_vec(msg).unwrap_or_default();
    line.push(b'\n');
    line
}

// ---------------------------------------------------------------- child

/// The child's stdout, shared by the trace and the command worker; and the
/// highest `Ack` the parent has sent.
struct ChildOut {
    /// None once closed: the parent sees EOF.
    out: Mutex<Option<Box<dyn Write + Send>>>,
    broken: AtomicBool,
    acked: Mutex<u64>,
    ack_arrived: Condvar,
    parent_gone: AtomicBool,
}

impl ChildOut {
    fn write(&self, bytes: &[u8]) {
        if self.broken.load(Ordering::Relaxed) {
            return;
        }
        let mut o = lock(&self.out);
        let Some(o) = o.as_mut() else { return };
        if o.write_all(bytes).and_then(|()| o.flush()).is_err() {
            // The parent went away; its stdin EOF ends the server.
            self.broken.store(true, Ordering::Relaxed);
        }
    }

    fn send(&self, msg: &FromServer) {
        self.write(&line_of(msg));
    }

    /// Wait for `Ack { n }`; false when it did not come in time.
    fn wait_ack(&self, n: u64) -> bool {
        let deadline = Instant::now() + ACK_TIMEOUT;
        let mut acked = lock(&self.acked);
        while *acked < n {
            if self.broken.load(Ordering::Relaxed) || self.parent_gone.load(Ordering::Relaxed) {
                return false;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            acked = self
                .ack_arrived
                .wait_timeout(acked, left.min(Duration::from_millis(200)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }
}

/// The device's trace in the child: events become lines, a flush ends a
/// batch with `Sync` and waits for the parent's `Ack`.
struct PipeTrace {
    out: Arc<ChildOut>,
    batch: Vec<u8>,
    n: u64,
    late_acks: u64,
}

impl DeviceTrace for PipeTrace {
    fn emit(&mut self, event: DeviceEvent) {
        self.batch
            .extend_from_slice(&line_of(&FromServer::Event { event }));
    }

    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        self.n += 1;
        self.batch
            .extend_from_slice(&line_of(&FromServer::Sync { n: self.n }));
        self.out.write(&self.batch);
        self.batch.clear();
        // Waiting ends early, and quietly, when the parent is gone.
        if !self.out.wait_ack(self.n)
            && !self.out.broken.load(Ordering::Relaxed)
            && !self.out.parent_gone.load(Ordering::Relaxed)
        {
            self.late_acks += 1;
            if self.late_acks == 1 {
                eprintln!(
                    "gasbench device: the pipeline did not acknowledge events within {} s; replying anyway",
                    ACK_TIMEOUT.as_secs()
                );
            }
        }
    }
}

/// What the child's stdin reader hands the command worker.
enum Command {
    Run(ToServer),
    /// stdin closed: the parent is gone.
    ParentGone,
}

/// The child's end: a [`DeviceServer`] whose events go to `output` and
/// whose commands come from `input`.
pub struct PipedServer {
    server: DeviceServer,
    out: Arc<ChildOut>,
    commands: mpsc::Receiver<Command>,
}

impl PipedServer {
    /// Listen on `socket`; the first `Status` line is the parent's sign
    /// that QEMU may start.
    pub fn start(
        socket: &Path,
        cfg: DeviceConfig,
        faults: FaultPlan,
        input: Box<dyn Read + Send>,
        output: Box<dyn Write + Send>,
    ) -> Result<PipedServer, ServerError> {
        let out = Arc::new(ChildOut {
            out: Mutex::new(Some(output)),
            broken: AtomicBool::new(false),
            acked: Mutex::new(0),
            ack_arrived: Condvar::new(),
            parent_gone: AtomicBool::new(false),
        });
        // Acks are taken on the reader thread itself: the command worker
        // may be waiting for the device lock, which a flush holds while it
        // waits for an Ack. The reader ends at stdin EOF; nobody joins it.
        let (tx, commands) = mpsc::channel();
        {
            let out = out.clone();
            std::thread::Builder::new()
                .name("device-pipe-in".into())
                .spawn(move || read_commands(input, &out, &tx))
                .map_err(ServerError::Thread)?;
        }
        let trace = PipeTrace {
            out: out.clone(),
            batch: Vec::with_capacity(4096),
            n: 0,
            late_acks: 0,
        };
        let server = DeviceServer::start_with(socket, cfg, Box::new(trace), faults)?;
        // Every change goes to the parent as it happens (Connected before
        // the session's first message is handled).
        {
            let out = out.clone();
            server.on_status_change(move |status| {
                out.send(&FromServer::Status {
                    status: status.clone(),
                })
            });
        }
        out.send(&FromServer::Status {
            status: server.status(),
        });
        Ok(PipedServer {
            server,
            out,
            commands,
        })
    }

    /// Serve until the parent says `Stop` or goes away, the server stops
    /// by itself, or `interrupted` returns a reason (a signal). Returns why
    /// it ended, whether that was an error, and the device's last state.
    pub fn run(mut self, interrupted: impl Fn() -> Option<String>) -> (String, bool, DeviceState) {
        let (reason, error) = loop {
            match self.commands.recv_timeout(Duration::from_millis(50)) {
                Ok(Command::Run(ToServer::Stop)) => {
                    break ("stopped by the pipeline".into(), false);
                }
                Ok(Command::Run(cmd)) => self.carry_out(cmd),
                Ok(Command::ParentGone) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    break ("the pipeline went away (stdin closed)".into(), true);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if let Some(why) = interrupted() {
                break (why, false);
            }
            if let ServerStatus::Stopped { reason, error } = self.server.status() {
                break (reason, error);
            }
        };
        let state = self.server.state();
        let status = self.server.stop();
        let status = match status {
            ServerStatus::Stopped { .. } => ServerStatus::Stopped {
                reason: reason.clone(),
                error,
            },
            other => other,
        };
        self.out.send(&FromServer::Status { status });
        // Our stdout closes now, not when the process exits: the parent
        // waits for that EOF.
        lock(&self.out.out).take();
        (reason, error, state)
    }

    fn carry_out(&self, cmd: ToServer) {
        match cmd {
            ToServer::State { id } => {
                let state = self.server.state();
                self.out.send(&FromServer::State { id, state });
            }
            ToServer::Faults { id, plan } => {
                self.server.set_fault_plan(plan);
                self.out.send(&FromServer::Done { id });
            }
            ToServer::Reset { id, by } => {
                self.server.reset_device(&by);
                self.out.send(&FromServer::Done { id });
            }
            ToServer::Ack { .. } | ToServer::Stop => {}
        }
    }
}

fn read_commands(input: Box<dyn Read + Send>, out: &ChildOut, tx: &mpsc::Sender<Command>) {
    for line in BufReader::new(input).lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<ToServer>(&line) {
            Ok(ToServer::Ack { n }) => {
                let mut acked = lock(&out.acked);
                *acked = (*acked).max(n);
                out.ack_arrived.notify_all();
            }
            Ok(cmd) => {
                if tx.send(Command::Run(cmd)).is_err() {
                    return;
                }
            }
            Err(e) => eprintln!("gasbench device: ignored a line from the pipeline: {e}"),
        }
    }
    out.parent_gone.store(true, Ordering::Relaxed);
    out.ack_arrived.notify_all();
    let _ = tx.send(Command::ParentGone);
}

// --------------------------------------------------------------- parent

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("the device server process is gone: {0}")]
    Gone(String),
    #[error("the device server process did not answer within {0:?}")]
    Timeout(Duration),
    #[error("writing to the device server process: {0}")]
    Write(#[source] std::io::Error),
}

enum Reply {
    State(Box<DeviceState>),
    Done,
}

type Hook = Box<dyn Fn() + Send + Sync>;

struct RemoteInner {
    /// None once the parent's end is dropped: the child sees EOF.
    to_child: Mutex<Option<Box<dyn Write + Send>>>,
    sink: EventSink,
    before_events: Mutex<Option<Hook>>,
    pending: Mutex<HashMap<u64, mpsc::Sender<Reply>>>,
    next_id: AtomicU64,
    status: watch::Sender<ServerStatus>,
    /// Whether the child has said anything about its status yet.
    heard: watch::Sender<bool>,
    stopping: AtomicBool,
    /// Why the pipe ended, once it has.
    ended: Mutex<Option<String>>,
}

/// The parent's end: talks to a device server process over its stdin and
/// stdout, puts its events on the bus in causal order, and offers what
/// [`DeviceServer`] offers in-process.
pub struct RemoteDevice {
    inner: Arc<RemoteInner>,
    reader: Option<JoinHandle<()>>,
}

impl RemoteDevice {
    /// Start reading `from_child` (the child's stdout) on a thread.
    pub fn new(
        to_child: Box<dyn Write + Send>,
        from_child: Box<dyn Read + Send>,
        sink: EventSink,
    ) -> std::io::Result<RemoteDevice> {
        // Until the child speaks, nothing listens: the status is only
        // meaningful once `heard` is set.
        let (status, _) = watch::channel(ServerStatus::Stopped {
            reason: "the device server process has not started yet".into(),
            error: false,
        });
        let (heard, _) = watch::channel(false);
        let inner = Arc::new(RemoteInner {
            to_child: Mutex::new(Some(to_child)),
            sink,
            before_events: Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            status,
            heard,
            stopping: AtomicBool::new(false),
            ended: Mutex::new(None),
        });
        let reader = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name("device-pipe-out".into())
                .spawn(move || read_server(&inner, from_child))?
        };
        Ok(RemoteDevice {
            inner,
            reader: Some(reader),
        })
    }

    /// Wait until the child listens on its socket (QEMU may start then).
    pub async fn wait_listening(&self, timeout: Duration) -> Result<(), RemoteError> {
        let mut heard = self.inner.heard.subscribe();
        match tokio::time::timeout(timeout, heard.wait_for(|h| *h)).await {
            Err(_) => return Err(RemoteError::Timeout(timeout)),
            Ok(Err(_)) => return Err(RemoteError::Gone("its pipe closed".into())),
            Ok(Ok(_)) => {}
        }
        match self.status() {
            ServerStatus::Stopped { reason, .. } => Err(RemoteError::Gone(reason)),
            _ => Ok(()),
        }
    }

    /// Run `hook` before each batch of device events goes on the bus (the
    /// engine drains the agent port here).
    pub fn set_before_events(&self, hook: impl Fn() + Send + Sync + 'static) {
        *lock(&self.inner.before_events) = Some(Box::new(hook));
    }

    pub fn clear_before_events(&self) {
        *lock(&self.inner.before_events) = None;
    }

    pub fn status(&self) -> ServerStatus {
        self.inner.status.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<ServerStatus> {
        self.inner.status.subscribe()
    }

    /// A snapshot of the device in the child.
    pub fn state(&self, timeout: Duration) -> Result<DeviceState, RemoteError> {
        match self.request(|id| ToServer::State { id }, timeout)? {
            Reply::State(s) => Ok(*s),
            Reply::Done => Err(RemoteError::Gone("answered a state query with done".into())),
        }
    }

    /// Replace the fault plan; occurrences count from now.
    pub fn set_fault_plan(&self, plan: FaultPlan, timeout: Duration) -> Result<(), RemoteError> {
        self.request(|id| ToServer::Faults { id, plan }, timeout)
            .map(|_| ())
    }

    /// Reset the device as a client DEVICE_RESET would.
    pub fn reset_device(&self, by: &str, timeout: Duration) -> Result<(), RemoteError> {
        let by = by.to_string();
        self.request(|id| ToServer::Reset { id, by }, timeout)
            .map(|_| ())
    }

    fn request(
        &self,
        make: impl FnOnce(u64) -> ToServer,
        timeout: Duration,
    ) -> Result<Reply, RemoteError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        lock(&self.inner.pending).insert(id, tx);
        // Checked after registering: the reader sets `ended` before it
        // clears `pending`, so no request waits out its timeout for a
        // child that is already gone.
        if let Some(why) = lock(&self.inner.ended).clone() {
            lock(&self.inner.pending).remove(&id);
            return Err(RemoteError::Gone(why));
        }
        if let Err(e) = self.inner.send(&make(id)) {
            lock(&self.inner.pending).remove(&id);
            return Err(RemoteError::Write(e));
        }
        match rx.recv_timeout(timeout) {
            Ok(r) => Ok(r),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                lock(&self.inner.pending).remove(&id);
                Err(RemoteError::Timeout(timeout))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(RemoteError::Gone(
                lock(&self.inner.ended)
                    .clone()
                    .unwrap_or_else(|| "its pipe closed".into()),
            )),
        }
    }

    /// Ask the child to stop and wait (up to `timeout`) for its pipe to
    /// close. Whatever happens, our end is closed afterwards.
    pub fn stop(&mut self, timeout: Duration) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        let _ = self.inner.send(&ToServer::Stop);
        let deadline = Instant::now() + timeout;
        while lock(&self.inner.ended).is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if lock(&self.inner.ended).is_some()
            && let Some(r) = self.reader.take()
        {
            let _ = r.join();
        }
    }
}

impl RemoteInner {
    fn send(&self, msg: &ToServer) -> std::io::Result<()> {
        let mut w = lock(&self.to_child);
        let w = w.as_mut().ok_or(std::io::ErrorKind::BrokenPipe)?;
        w.write_all(&line_of(msg))?;
        w.flush()
    }
}

fn read_server(inner: &RemoteInner, from_child: Box<dyn Read + Send>) {
    let mut in_batch = false;
    let mut reader = BufReader::new(from_child);
    let mut line = String::new();
    let why = loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => break "its pipe closed".to_string(),
            Ok(_) => {}
            Err(e) => break format!("reading its pipe failed: {e}"),
        }
        if line.trim().is_empty() {
            continue;
        }
        let msg = match serde_json::from_str::<FromServer>(&line) {
            Ok(m) => m,
            Err(e) => {
                let mut text = line.trim_end().to_string();
                text.truncate(200);
                inner.sink.emit(DeviceEvent::Anomaly {
                    text: format!("unreadable line from the device server process ({e}): {text}"),
                });
                continue;
            }
        };
        match msg {
            FromServer::Event { event } => {
                if !in_batch {
                    in_batch = true;
                    if let Some(h) = lock(&inner.before_events).as_ref() {
                        h();
                    }
                }
                inner.sink.emit(event);
            }
            FromServer::Sync { n } => {
                in_batch = false;
                // A failed write means the child is gone; EOF follows.
                let _ = inner.send(&ToServer::Ack { n });
            }
            FromServer::Status { status } => {
                inner.status.send_replace(status);
                inner.heard.send_replace(true);
            }
            FromServer::State { id, state } => {
                if let Some(tx) = lock(&inner.pending).remove(&id) {
                    let _ = tx.send(Reply::State(Box::new(state)));
                }
            }
            FromServer::Done { id } => {
                if let Some(tx) = lock(&inner.pending).remove(&id) {
                    let _ = tx.send(Reply::Done);
                }
            }
        }
    };
    let asked = inner.stopping.load(Ordering::SeqCst);
    let heard = *inner.heard.borrow();
    let last = inner.status.borrow().clone();
    let status = match last {
        // The child said why it stopped before closing: keep its words.
        ServerStatus::Stopped { reason, error } if heard => ServerStatus::Stopped {
            reason,
            error: error && !asked,
        },
        _ => ServerStatus::Stopped {
            reason: format!("the device server process went away ({why})"),
            error: !asked,
        },
    };
    inner.status.send_replace(status);
    inner.heard.send_replace(true);
    // Only now (the status says why): waiting requests fail at once
    // instead of at their timeout.
    *lock(&inner.ended) = Some(why);
    lock(&inner.pending).clear();
}

impl Drop for RemoteDevice {
    fn drop(&mut self) {
        // Close the child's stdin: a child we did not stop ends itself.
        self.inner.stopping.store(true, Ordering::SeqCst);
        lock(&self.inner.to_child).take();
    }
}
