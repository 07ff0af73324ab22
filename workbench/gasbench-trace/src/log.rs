//! The event log: written line by line as events happen, read back with
//! tolerance for a last line cut short by a crash, and indexed so a viewer
//! can jump to any event of millions without holding them in memory.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use gasbench_events::run::RunEvent;
use gasbench_events::{Event, EventStream};

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: not an event: {error}")]
    Corrupt {
        path: String,
        line: u64,
        error: String,
    },
}

/// How often the recorder drains the bus. A consumer parked in `recv` is
/// woken by every event, and that wake-up lands on the sender's path —
/// which for device events is the vfio-user reply QEMU is waiting for
/// (measured: +4.7 µs per register access). Draining on a short tick
/// keeps the senders' cost at a channel push.
pub const DRAIN_TICK: std::time::Duration = std::time::Duration::from_millis(4);

/// How much of events.jsonl the guest may fill by default: generous (a
/// million-call trace is a few hundred MiB), and a bound.
pub const DEFAULT_GUEST_LOG_CAP: u64 = 1 << 30;

/// Whether a recorder is writing the log at `path` now (it holds a lock
/// on it; see [`record_capped`]).
pub fn writer_active(path: &Path) -> bool {
    let Ok(f) = File::open(path) else {
        return false;
    };
    matches!(
        rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockShared),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK
    )
}

/// [`record_capped`] with [`DEFAULT_GUEST_LOG_CAP`].
pub async fn record(
    rx: EventStream,
    path: &Path,
    forward: impl FnMut(&Event),
) -> Result<u64, LogError> {
    record_capped(rx, path, DEFAULT_GUEST_LOG_CAP, forward, |_| {}).await
}

/// Write every event from `rx` to `path`, forwarding each to `forward`
/// (the headless printer or the TUI) after it is on disk. Each tick's
/// batch is flushed before the next, so what was observed is on disk
/// within a few milliseconds. Returns when the bus closes, with the
/// number of events written.
///
/// The events a guest can send without end ([`EventBody::from_guest`]:
/// console lines, agent messages, device accesses) may take up
/// `guest_cap` bytes of the log. Past that they are counted and dropped —
/// neither written nor forwarded, so no consumer grows with them either —
/// and one note says so when it starts, another how many when the bus
/// closes. The run's own events (stages, notes, errors, verdicts) are
/// always written.
///
/// When the log cannot be written (a full disk) it stops writing, tells
/// `failed` at once, and keeps forwarding every event, so what is shown
/// and folded into the summary stays whole. The write error is returned
/// when the bus closes.
///
/// [`EventBody::from_guest`]: gasbench_events::EventBody::from_guest
pub async fn record_capped(
    mut rx: EventStream,
    path: &Path,
    guest_cap: u64,
    mut forward: impl FnMut(&Event),
    failed: impl FnOnce(&LogError),
) -> Result<u64, LogError> {
    let write_error = |source| LogError::Write {
        path: path.display().to_string(),
        source,
    };
    let mut failed = Some(failed);
    let mut error: Option<LogError> = None;
    let mut fail = |e: LogError, error: &mut Option<LogError>| {
        if let Some(tell) = failed.take() {
            tell(&e);
        }
        error.get_or_insert(e);
    };
    let mut out = match File::create(path) {
        Ok(f) => {
            // Held while this recorder writes: a reader (`gasbench open`)
            // tells a run still going from one that was cut off by it,
            // and the kernel drops it however this process ends.
            let _ = rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive);
            Some(BufWriter::new(f))
        }
        Err(e) => {
            fail(write_error(e), &mut error);
            None
        }
    };
    let mut n = 0;
    let mut tick = tokio::time::interval(DRAIN_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::new();
    let mut cap = GuestCap::new(guest_cap);
    let mut line = Vec::new();
    loop {
        tick.tick().await;
        let mut closed = false;
        loop {
            match rx.try_recv() {
                Ok(ev) => batch.push(ev),
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        // What is kept (written, when the log can be): the batch past
        // the guest's cap, and the notes that say so.
        let mut kept = Vec::with_capacity(batch.len());
        let mut bytes = Vec::new();
        for ev in batch.drain(..) {
            line.clear();
            if serde_json::to_writer(&mut line, &ev).is_err() {
                continue;
            }
            line.push(b'\n');
            match cap.admit(&ev, line.len() as u64) {
                Admit::Write => {
                    bytes.extend_from_slice(&line);
                    kept.push(ev);
                }
                Admit::Drop => {}
                Admit::WriteNoteFirst(note) => {
                    push_line(&mut bytes, &note);
                    kept.push(*note);
                }
            }
        }
        if closed && let Some(note) = cap.closing_note() {
            push_line(&mut bytes, &note);
            kept.push(note);
        }
        if let Some(w) = &mut out {
            let written = w.write_all(&bytes).and_then(|()| w.flush());
            if let Err(e) = written {
                // Nothing more is written (a partial line is what a crash
                // leaves too: readers skip it); everything is still shown.
                fail(write_error(e), &mut error);
                // Dropped without the flush a BufWriter's drop would try.
                if let Some(w) = out.take() {
                    let _ = w.into_parts();
                }
            }
        }
        for ev in &kept {
            forward(ev);
        }
        n += kept.len() as u64;
        if closed {
            return match error {
                Some(e) => Err(e),
                None => Ok(n),
            };
        }
    }
}

/// One event as a line of the log.
fn push_line(bytes: &mut Vec<u8>, ev: &Event) {
    if serde_json::to_writer(&mut *bytes, ev).is_ok() {
        bytes.push(b'\n');
    }
}

/// What [`GuestCap::admit`] says of one event.
enum Admit {
    Write,
    /// Over the cap: counted, not written.
    Drop,
    /// The first event over the cap: in its place, the note that says
    /// the cap was reached.
    WriteNoteFirst(Box<Event>),
}

/// The guest's share of the log and what was dropped past it.
struct GuestCap {
    cap: u64,
    written: u64,
    dropped_events: u64,
    dropped_bytes: u64,
    last: (u64, u64),
}

impl GuestCap {
    fn new(cap: u64) -> GuestCap {
        GuestCap {
            cap,
            written: 0,
            dropped_events: 0,
            dropped_bytes: 0,
            last: (0, 0),
        }
    }

    fn admit(&mut self, ev: &Event, bytes: u64) -> Admit {
        self.last = (self.last.0.max(ev.seq), ev.t_us);
        if !ev.body.from_guest() {
            return Admit::Write;
        }
        if self.dropped_events == 0 && self.written.saturating_add(bytes) <= self.cap {
            self.written += bytes;
            return Admit::Write;
        }
        self.dropped_events += 1;
        self.dropped_bytes += bytes;
        if self.dropped_events > 1 {
            return Admit::Drop;
        }
        // The note takes the place (and sequence number) of the first
        // event it stands for.
        Admit::WriteNoteFirst(Box::new(Event {
            seq: ev.seq,
            t_us: ev.t_us,
            body: RunEvent::Note {
                text: format!(
                    "events.jsonl: the guest's events reached the cap of {} bytes; from here on \
                     its console lines, agent messages and device accesses are counted, not \
                     recorded (the run's own events and verdicts still are)",
                    self.cap
                ),
            }
            .into(),
        }))
    }

    /// How much was dropped, once the bus has closed.
    fn closing_note(&self) -> Option<Event> {
        (self.dropped_events > 0).then(|| Event {
            seq: self.last.0 + 1,
            t_us: self.last.1,
            body: RunEvent::Note {
                text: format!(
                    "events.jsonl: {} event(s) of the guest ({} bytes) were over the cap of {} \
                     bytes and not recorded",
                    self.dropped_events, self.dropped_bytes, self.cap
                ),
            }
            .into(),
        })
    }
}

/// Read every event. A last line without its newline (the writer died
/// mid-line) is skipped and reported in the second value; corruption
/// anywhere else is an error.
pub fn read_all(path: &Path) -> Result<(Vec<Event>, Option<String>), LogError> {
    let io = |source| LogError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut reader = BufReader::new(File::open(path).map_err(io)?);
    let mut events = Vec::new();
    // Bytes: a line that is not UTF-8 is a corrupt line with its number.
    let mut line: Vec<u8> = Vec::new();
    let mut number = 0;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(io)?;
        if n == 0 {
            return Ok((events, None));
        }
        number += 1;
        if !line.ends_with(b"\n") {
            return Ok((
                events,
                Some(format!(
                    "line {number} was cut short (the run ended mid-write)"
                )),
            ));
        }
        match serde_json::from_slice::<Event>(&line) {
            Ok(ev) => events.push(ev),
            Err(e) => {
                return Err(LogError::Corrupt {
                    path: path.display().to_string(),
                    line: number,
                    error: e.to_string(),
                });
            }
        }
    }
}

/// Byte offsets of every complete line of an event log: random access to
/// event `i` without parsing the others.
pub struct LogIndex {
    file: File,
    offsets: Vec<u64>,
    /// End of the last complete line indexed.
    end: u64,
}

impl LogIndex {
    pub fn open(path: &Path) -> std::io::Result<LogIndex> {
        let file = File::open(path)?;
        let mut idx = LogIndex {
            file,
            offsets: Vec::new(),
            end: 0,
        };
        idx.refresh()?;
        Ok(idx)
    }

    /// Index lines appended since the last call (a live run's log grows).
    pub fn refresh(&mut self) -> std::io::Result<usize> {
        let before = self.offsets.len();
        self.file.seek(SeekFrom::Start(self.end))?;
        let mut reader = BufReader::with_capacity(1 << 20, &self.file);
        let mut pos = self.end;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = reader.read_until(b'\n', &mut buf)?;
            if n == 0 || buf.last() != Some(&b'\n') {
                break;
            }
            self.offsets.push(pos);
            pos += n as u64;
        }
        self.end = pos;
        Ok(self.offsets.len() - before)
    }

    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Event `i`, parsed, through a shared reference (positioned reads, no
    /// seek): a viewer can look events up while drawing. `None` past the
    /// end or if the line is not an event.
    pub fn read(&self, i: usize) -> Option<Event> {
        use std::os::unix::fs::FileExt;
        let start = *self.offsets.get(i)?;
        let end = self.offsets.get(i + 1).copied().unwrap_or(self.end);
        let mut buf = vec![0u8; (end - start) as usize];
        self.file.read_exact_at(&mut buf, start).ok()?;
        serde_json::from_slice(&buf).ok()
    }

    /// Event `i`, parsed; `None` past the end or if the line is not an event.
    pub fn get(&mut self, i: usize) -> Option<Event> {
        let start = *self.offsets.get(i)?;
        let end = self.offsets.get(i + 1).copied().unwrap_or(self.end);
        let mut buf = vec![0u8; (end - start) as usize];
        self.file.seek(SeekFrom::Start(start)).ok()?;
        self.file.read_exact(&mut buf).ok()?;
        serde_json::from_slice(&buf).ok()
    }
}

#[cfg(test)]
mod writer_tests {
    use super::*;

    #[tokio::test]
    async fn a_log_is_known_to_be_written_while_its_recorder_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        assert!(!writer_active(&path));
        let (sink, rx) = gasbench_events::bus();
        let task = tokio::spawn({
            let path = path.clone();
            async move { record(rx, &path, |_| {}).await }
        });
        sink.emit(gasbench_events::run::RunEvent::Note { text: "a".into() });
        while !path.exists() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(writer_active(&path));
        drop(sink);
        task.await.unwrap().unwrap();
        assert!(!writer_active(&path));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gasbench_events::vm::{ConsoleSeverity, VmEvent};

    #[tokio::test]
    async fn recorded_events_read_back_and_index_randomly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let (sink, rx) = gasbench_events::bus();
        for i in 0..1000 {
            sink.emit(RunEvent::Note {
                text: format!("note {i}"),
            });
        }
        drop(sink);
        let mut forwarded = 0;
        let n = record(rx, &path, |_| forwarded += 1).await.unwrap();
        assert_eq!((n, forwarded), (1000, 1000));

        let (events, cut) = read_all(&path).unwrap();
        assert_eq!(events.len(), 1000);
        assert!(cut.is_none());
        assert_eq!(events[999].seq, 999);

        let mut idx = LogIndex::open(&path).unwrap();
        assert_eq!(idx.len(), 1000);
        let ev = idx.get(517).unwrap();
        assert_eq!(ev.seq, 517);
        assert_eq!(idx.read(517).unwrap(), ev);
        assert_eq!(idx.read(999).unwrap().seq, 999);
        assert!(idx.read(1000).is_none());
        assert!(idx.get(1000).is_none());
    }

    #[tokio::test]
    async fn a_log_that_cannot_be_written_says_so_once_and_every_event_is_still_forwarded() {
        // /dev/full: every write fails with ENOSPC, as on a full disk.
        let (sink, rx) = gasbench_events::bus();
        for i in 0..5000 {
            sink.emit(RunEvent::Note {
                text: format!("note {i}"),
            });
        }
        drop(sink);
        let mut forwarded = 0;
        let mut told = Vec::new();
        let r = record_capped(
            rx,
            Path::new("/dev/full"),
            DEFAULT_GUEST_LOG_CAP,
            |_| forwarded += 1,
            |e| told.push(e.to_string()),
        )
        .await;
        assert_eq!(forwarded, 5000);
        assert_eq!(told.len(), 1);
        assert!(
            told[0].starts_with("cannot write /dev/full: No space left on device"),
            "{told:?}"
        );
        assert!(matches!(r, Err(LogError::Write { .. })));
    }

    /// A guest that floods its console past the cap: its lines stop being
    /// recorded (one note says when, one how many), the run's own events
    /// before, among and after them are all there, and the consumer did
    /// not see the dropped lines either.
    #[tokio::test]
    async fn the_guest_fills_the_log_up_to_its_cap_and_the_verdicts_still_get_through() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let (sink, rx) = gasbench_events::bus();
        sink.emit(RunEvent::Note {
            text: "before".into(),
        });
        for i in 0..10_000 {
            sink.emit(VmEvent::Console {
                line: format!("flood {i:05} {}", "x".repeat(80)),
                severity: ConsoleSeverity::Normal,
            });
            if i == 5_000 {
                sink.emit(RunEvent::Expectation {
                    scenario: "s".into(),
                    step: 1,
                    line: 3,
                    step_name: "x".into(),
                    what: "the verdict".into(),
                    expected: "a".into(),
                    actual: "a".into(),
                    held: true,
                });
            }
        }
        sink.emit(RunEvent::Finished {
            passed: true,
            elapsed_ms: 1,
        });
        drop(sink);
        let mut seen = Vec::new();
        let n = record_capped(rx, &path, 64 * 1024, |e| seen.push(e.clone()), |_| {})
            .await
            .unwrap();
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size < 64 * 1024 + 4096, "{size} bytes");
        let (events, cut) = read_all(&path).unwrap();
        assert!(cut.is_none());
        assert_eq!(events.len() as u64, n);
        assert_eq!(events, seen, "forwarded exactly what was written");
        let consoles = events.iter().filter(|e| e.body.from_guest()).count();
        assert!((300..1000).contains(&consoles), "{consoles}");
        let notes: Vec<&str> = events
            .iter()
            .filter_map(|e| match &e.body {
                gasbench_events::EventBody::Run(RunEvent::Note { text }) => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert!(
            notes[1].contains("reached the cap of 65536 bytes"),
            "{}",
            notes[1]
        );
        assert!(
            notes[2].contains(&format!("{} event(s) of the guest", 10_000 - consoles)),
            "{}",
            notes[2]
        );
        assert!(events.iter().any(|e| matches!(&e.body,
            gasbench_events::EventBody::Run(RunEvent::Expectation { what, .. }) if what == "the verdict")));
        assert!(events.iter().any(|e| matches!(
            &e.body,
            gasbench_events::EventBody::Run(RunEvent::Finished { .. })
        )));
        // Sequence numbers still increase: the log can be searched by them.
        assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    }

    #[test]
    fn a_line_cut_by_a_crash_is_reported_not_fatal_and_the_index_grows_live() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let good = r#"{"seq":0,"t_us":1,"src":"run","ev":{"type":"note","text":"a"}}"#;
        std::fs::write(&path, format!("{good}\n{{\"seq\":1,\"t_")).unwrap();
        let (events, cut) = read_all(&path).unwrap();
        assert_eq!(events.len(), 1);
        assert!(cut.unwrap().contains("line 2 was cut short"));

        let mut idx = LogIndex::open(&path).unwrap();
        assert_eq!(idx.len(), 1);
        // The writer finishes the line and adds another.
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let second = r#"{"seq":1,"t_us":2,"src":"run","ev":{"type":"note","text":"b"}}"#;
        f.seek(SeekFrom::Start(good.len() as u64 + 1)).unwrap();
        f.write_all(format!("{second}\n{second}\n").as_bytes())
            .unwrap();
        assert_eq!(idx.refresh().unwrap(), 2);
        assert_eq!(idx.get(1).unwrap().seq, 1);

        std::fs::write(&path, format!("garbage\n{good}\n")).unwrap();
        assert!(matches!(
            read_all(&path),
            Err(LogError::Corrupt { line: 1, .. })
        ));
        // Not UTF-8: a corrupt line with its number, not an I/O error.
        let mut bytes = format!("{good}\n").into_bytes();
        bytes.extend_from_slice(b"{\"seq\":\xff}\n");
        std::fs::write(&path, bytes).unwrap();
        assert!(matches!(
            read_all(&path),
            Err(LogError::Corrupt { line: 2, .. })
        ));
    }
}
