//! The agent's virtio-serial port, host side.
//!
//! One JSON message per line in each direction. Reading is done by
//! [`AgentPort::drain`], which takes whatever bytes are available without
//! blocking, decodes complete lines and emits them on the bus — all under
//! one lock. A background thread calls it whenever the socket is readable;
//! the device server calls it too, before it handles each vfio-user
//! message. Because the agent writes `CallBegin` to this port before it
//! makes a call (and the write returns only once QEMU has passed the bytes
//! on), draining first puts `CallBegin` on the bus ahead of the register
//! accesses the call causes.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gasbench_abi::protocol::{AgentMsg, HostMsg, MAX_LINE_BYTES};
use gasbench_events::EventSink;
use gasbench_events::run::RunEvent;
use gasbench_events::vm::VmEvent;
use tokio::sync::mpsc;

use crate::console::{LineSplitter, Piece};

/// What the engine receives from the agent, in bus order.
#[derive(Clone, Debug, PartialEq)]
pub enum FromAgent {
    Msg(AgentMsg),
    /// The port closed: the guest went away.
    Closed,
}

struct ReadState {
    stream: UnixStream,
    lines: LineSplitter,
    closed: bool,
    junk: Junk,
}

/// Lines on the port that are not protocol messages. A hostile or broken
/// guest can send them without end: the first [`Junk::SHOWN`] go on
/// record as `AgentText` (cut to [`Junk::SHOWN_CHARS`]), after that a
/// note at 100, 1,000, 10,000, … and one when the port closes say how
/// many there were. Lines over the protocol's length are counted apart.
#[derive(Default)]
struct Junk {
    lines: u64,
    too_long: u64,
    too_long_bytes: u64,
}

impl Junk {
    const SHOWN: u64 = 8;
    const SHOWN_CHARS: usize = 1024;

    /// Whether the `n`th such line is reported: each of the first
    /// [`Junk::SHOWN`], then the 10th, 100th, 1,000th, …
    fn reported(n: u64) -> bool {
        n <= Self::SHOWN || {
            let mut p = 10;
            while p < n {
                p = p.saturating_mul(10);
            }
            p == n
        }
    }
}

struct Inner {
    read: Mutex<ReadState>,
    write: Mutex<UnixStream>,
    sink: EventSink,
    tx: mpsc::UnboundedSender<FromAgent>,
    stop: AtomicBool,
}

/// The host end of the agent port. Cloning shares it.
#[derive(Clone)]
pub struct AgentPort {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AgentPort {
    /// Wrap a connected socket. Returns the port and the stream of
    /// messages; starts the thread that drains the socket when readable.
    pub fn new(
        stream: UnixStream,
        sink: EventSink,
    ) -> std::io::Result<(AgentPort, mpsc::UnboundedReceiver<FromAgent>)> {
        stream.set_nonblocking(true)?;
        let write = stream.try_clone()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let port = AgentPort {
            inner: Arc::new(Inner {
                read: Mutex::new(ReadState {
                    stream,
                    lines: LineSplitter::dropping(MAX_LINE_BYTES),
                    closed: false,
                    junk: Junk::default(),
                }),
                write: Mutex::new(write),
                sink,
                tx,
                stop: AtomicBool::new(false),
            }),
        };
        let bg = port.clone();
        std::thread::Builder::new()
            .name("agent-port".into())
            .spawn(move || bg.watch())?;
        Ok((port, rx))
    }

    fn watch(&self) {
        let fd = lock(&self.inner.read).stream.as_raw_fd();
        while !self.inner.stop.load(Ordering::Relaxed) {
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, its count, a finite timeout.
            let n = unsafe { libc::poll(&mut pfd, 1, 200) };
            if n > 0 && !self.drain() {
                return;
            }
        }
    }

    /// Take every complete message that has arrived, without blocking;
    /// emit each on the bus and pass it to the engine. Returns false once
    /// the port has closed.
    pub fn drain(&self) -> bool {
        let mut st = lock(&self.inner.read);
        if st.closed {
            return false;
        }
        let mut buf = [0u8; 16 * 1024];
        let st = &mut *st;
        loop {
            match st.stream.read(&mut buf) {
                Ok(0) => {
                    st.closed = true;
                    if let Some(rest) = st.lines.finish_piece() {
                        self.deliver(&mut st.junk, rest);
                    }
                    self.closing_note(&st.junk);
                    let _ = self.inner.tx.send(FromAgent::Closed);
                    return false;
                }
                Ok(n) => {
                    let mut pieces = Vec::new();
                    st.lines.push_pieces(&buf[..n], |p| pieces.push(p));
                    for p in pieces {
                        self.deliver(&mut st.junk, p);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    st.closed = true;
                    self.inner.sink.emit(VmEvent::AgentText {
                        line: format!("(agent port read error: {e})"),
                    });
                    let _ = self.inner.tx.send(FromAgent::Closed);
                    return false;
                }
            }
        }
    }

    fn deliver(&self, junk: &mut Junk, piece: Piece) {
        let line = match piece {
            Piece::Line(l) => l,
            Piece::TooLong(bytes) => {
                junk.too_long += 1;
                junk.too_long_bytes += bytes;
                if Junk::reported(junk.too_long) {
                    self.inner.sink.emit(RunEvent::Note {
                        text: format!(
                            "agent port: a line of {bytes} bytes is longer than the protocol \
                             allows ({MAX_LINE_BYTES}); dropped ({} such line(s) so far)",
                            junk.too_long
                        ),
                    });
                }
                return;
            }
        };
        if line.trim().is_empty() {
            return;
        }
        match serde_json::from_str::<AgentMsg>(&line) {
            Ok(msg) => {
                self.inner.sink.emit(msg.clone());
                let _ = self.inner.tx.send(FromAgent::Msg(msg));
            }
            Err(_) => {
                junk.lines += 1;
                let n = junk.lines;
                if !Junk::reported(n) {
                    return;
                }
                if n <= Junk::SHOWN {
                    let line = match line.char_indices().nth(Junk::SHOWN_CHARS) {
                        Some((cut, _)) => {
                            format!("{}… ({} more bytes)", &line[..cut], line.len() - cut)
                        }
                        None => line,
                    };
                    self.inner.sink.emit(VmEvent::AgentText { line });
                    if n == Junk::SHOWN {
                        self.inner.sink.emit(RunEvent::Note {
                            text: format!(
                                "agent port: {n} lines that are not agent messages; from here on \
                                 they are counted, not recorded one by one"
                            ),
                        });
                    }
                } else {
                    self.inner.sink.emit(RunEvent::Note {
                        text: format!("agent port: {n} lines that are not agent messages so far"),
                    });
                }
            }
        }
    }

    /// When the port closes: how much was not protocol, if anything was.
    fn closing_note(&self, junk: &Junk) {
        if junk.lines > Junk::SHOWN || junk.too_long > 0 {
            self.inner.sink.emit(RunEvent::Note {
                text: format!(
                    "agent port closed: {} line(s) that were not agent messages ({} on record), \
                     {} line(s) over the protocol's length ({} bytes) dropped",
                    junk.lines,
                    junk.lines.min(Junk::SHOWN),
                    junk.too_long,
                    junk.too_long_bytes
                ),
            });
        }
    }

    /// A closure for the device server's before-message hook.
    pub fn drainer(&self) -> impl Fn() + Send + Sync + 'static {
        let port = self.clone();
        move || {
            port.drain();
        }
    }

    /// Send one message to the agent. Bounded: a guest that stops reading
    /// makes this fail after `timeout` instead of hanging the host.
    pub fn send(&self, msg: &HostMsg, timeout: Duration) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut w = lock(&self.inner.write);
        let deadline = std::time::Instant::now() + timeout;
        let mut off = 0;
        while off < line.len() {
            match w.write(&line[off..]) {
                Ok(n) => off += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return Err(std::io::Error::new(
                            ErrorKind::TimedOut,
                            "the guest agent stopped reading its port",
                        ));
                    }
                    let mut pfd = libc::pollfd {
                        fd: w.as_raw_fd(),
                        events: libc::POLLOUT,
                        revents: 0,
                    };
                    let ms = left.as_millis().min(200) as libc::c_int;
                    // SAFETY: one valid pollfd, its count, a finite timeout.
                    unsafe { libc::poll(&mut pfd, 1, ms) };
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Stop the background thread (the socket closes when the last clone
    /// is dropped).
    pub fn stop(&self) {
        self.inner.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gasbench_events::EventBody;

    #[tokio::test]
    async fn messages_arrive_in_order_and_junk_is_kept_as_text() {
        let (host, mut guest) = UnixStream::pair().unwrap();
        let (sink, mut bus) = gasbench_events::bus();
        let (port, mut rx) = AgentPort::new(host, sink).unwrap();
        let begin = AgentMsg::CallBegin {
            call: 1,
            step: 0,
            thread: 0,
            name: "open".into(),
        };
        let mut bytes = serde_json::to_vec(&begin).unwrap();
        bytes.extend_from_slice(b"\nnot json\n");
        guest.write_all(&bytes).unwrap();
        // The hook path: drain synchronously, no waiting for the thread.
        port.drain();
        assert_eq!(rx.recv().await, Some(FromAgent::Msg(begin.clone())));
        let first = bus.recv().await.unwrap();
        assert_eq!(first.body, EventBody::Agent(begin));
        let second = bus.recv().await.unwrap();
        assert!(
            matches!(second.body, EventBody::Vm(VmEvent::AgentText { ref line }) if line == "not json")
        );

        port.send(&HostMsg::Shutdown, Duration::from_secs(1))
            .unwrap();
        let mut got = String::new();
        let mut b = [0u8; 64];
        let n = guest.read(&mut b).unwrap();
        got.push_str(std::str::from_utf8(&b[..n]).unwrap());
        assert_eq!(got, "{\"op\":\"shutdown\"}\n");

        drop(guest);
        // The background thread notices the hang-up.
        let closed = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap();
        assert_eq!(closed, Some(FromAgent::Closed));
    }

    /// A guest that floods the port: 100,000 lines of garbage, a line of
    /// 20 MiB and one without end. The host keeps up, stays bounded, puts
    /// 8 garbage lines on record and a note per power of ten, and the
    /// protocol message after the flood still arrives.
    #[tokio::test]
    async fn a_flood_of_garbage_and_endless_lines_is_counted_not_recorded() {
        let (host, mut guest) = UnixStream::pair().unwrap();
        let (sink, mut bus) = gasbench_events::bus();
        let (_port, mut rx) = AgentPort::new(host, sink).unwrap();
        let after = AgentMsg::Log {
            level: gasbench_abi::protocol::LogLevel::Info,
            text: "still here".into(),
        };
        let last = serde_json::to_vec(&after).unwrap();
        let writer = std::thread::spawn(move || {
            let mut junk = Vec::new();
            for i in 0..100_000 {
                junk.extend_from_slice(format!("\x1b[2Jgarbage {i} {{not json\n").as_bytes());
            }
            guest.write_all(&junk).unwrap();
            let big = vec![b'x'; 20 << 20];
            guest.write_all(&big).unwrap();
            guest.write_all(b"\n").unwrap();
            guest.write_all(&last).unwrap();
            guest.write_all(b"\n").unwrap();
            guest.write_all(&big).unwrap();
            // The port closes with the endless line unfinished.
        });
        let got = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .unwrap();
        assert_eq!(got, Some(FromAgent::Msg(after.clone())));
        writer.join().unwrap();
        let closed = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .unwrap();
        assert_eq!(closed, Some(FromAgent::Closed));
        let mut texts = Vec::new();
        let mut notes = Vec::new();
        while let Ok(ev) = bus.try_recv() {
            match ev.body {
                EventBody::Vm(VmEvent::AgentText { line }) => texts.push(line),
                EventBody::Run(RunEvent::Note { text }) => notes.push(text),
                EventBody::Agent(_) => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(texts.len(), 8, "{texts:?}");
        assert!(texts[0].starts_with("\x1b[2Jgarbage 0 "), "{:?}", texts[0]);
        assert!(
            notes
                .iter()
                .any(|n| n.contains("100000 lines that are not agent messages so far")),
            "{notes:#?}"
        );
        assert!(
            notes
                .iter()
                .any(|n| n.contains(&format!("a line of {} bytes is longer", 20 << 20))),
            "{notes:#?}"
        );
        let closing = notes.last().unwrap();
        assert!(
            closing.contains("100000 line(s) that were not agent messages (8 on record), 2 line(s) over the protocol's length"),
            "{closing}"
        );
        assert!(notes.len() < 20, "{notes:#?}");
    }

    #[test]
    fn a_guest_that_stops_reading_makes_send_time_out() {
        let (host, _guest) = UnixStream::pair().unwrap();
        let (sink, _bus) = gasbench_events::bus();
        let (port, _rx) = AgentPort::new(host, sink).unwrap();
        let big = HostMsg::RunBundle {
            id: 1,
            path: "x".repeat(64 * 1024),
        };
        let err = (0..64)
            .find_map(|_| port.send(&big, Duration::from_millis(100)).err())
            .expect("the socket buffer fills up");
        assert_eq!(err.kind(), ErrorKind::TimedOut);
    }
}
