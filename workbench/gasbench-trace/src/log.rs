//! The event log: written line by line as events happen, read back with
//! tolerance for a last line cut short by a crash, and indexed so a viewer
//! can jump to any event of millions without holding them in memory.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

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

/// Write every event from `rx` to `path`, forwarding each to `forward`
/// (the headless printer or the TUI) after it is on disk. Each tick's
/// batch is flushed before the next, so what was observed is on disk
/// within a few milliseconds. Returns when the bus closes.
pub async fn record(
    rx: EventStream,
    path: &Path,
    forward: impl FnMut(&Event),
) -> Result<u64, LogError> {
    record_reporting(rx, path, forward, |_| {}).await
}

/// [`record`] that goes on when the log cannot be written (a full disk):
/// it stops writing, tells `failed` at once, and keeps forwarding every
/// event, so what is shown and folded into the summary stays whole. The
/// write error is returned when the bus closes.
pub async fn record_reporting(
    mut rx: EventStream,
    path: &Path,
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
        Ok(f) => Some(BufWriter::new(f)),
        Err(e) => {
            fail(write_error(e), &mut error);
            None
        }
    };
    let mut n = 0;
    let mut tick = tokio::time::interval(DRAIN_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::new();
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
        if let Some(w) = &mut out {
            let written = batch
                .iter()
                .try_for_each(|ev| {
                    serde_json::to_writer(&mut *w, ev).map_err(std::io::Error::from)?;
                    w.write_all(b"\n")
                })
                .and_then(|()| w.flush());
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
        for ev in &batch {
            forward(ev);
        }
        n += batch.len() as u64;
        batch.clear();
        if closed {
            return match error {
                Some(e) => Err(e),
                None => Ok(n),
            };
        }
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
mod tests {
    use super::*;
    use gasbench_events::run::RunEvent;

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
        let r = record_reporting(
            rx,
            Path::new("/dev/full"),
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
