//! Feeding the TUI: events from a live bus, or from a past run's
//! `events.jsonl` read on a thread (the screen is up while a million
//! events load).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use gasbench_events::{Event, EventStream};
use tokio::sync::mpsc;

use crate::store::{DiskEvents, EventLookup};

/// What the main loop receives besides keys.
pub enum Feed {
    Events(Vec<Event>),
    /// A replay's progress: events so far, bytes read of total.
    Loading {
        events: u64,
        bytes: u64,
        total: u64,
    },
    /// The replay's index of the log is ready for detail lookups.
    Lookup(Box<dyn EventLookup>),
    /// Something to tell the user (lines that were not events).
    Note(String),
    /// The log's end was reached while its run is still being recorded
    /// (by another gasbench): what was read is not cut off.
    StillRunning,
    Closed,
}

pub type FeedRx = mpsc::UnboundedReceiver<Feed>;

const BATCH: usize = 4096;

/// The run directory `gasbench open PATH` means: PATH itself, or the
/// directory holding it when PATH is a run's `events.jsonl`. Any other
/// file is refused with what is expected instead.
pub fn run_dir_for(path: &Path) -> Result<PathBuf, String> {
    if !path.is_file() {
        return Ok(path.to_path_buf());
    }
    if path.file_name() == Some(std::ffi::OsStr::new(gasbench_trace::run_dir::EVENTS)) {
        return Ok(match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        });
    }
    Err(format!(
        "{} is a file: gasbench open takes a run directory (the one holding {}), or that {} itself",
        path.display(),
        gasbench_trace::run_dir::EVENTS,
        gasbench_trace::run_dir::EVENTS,
    ))
}

/// Forward a live bus, in batches of whatever is queued.
pub fn from_bus(mut rx: EventStream) -> FeedRx {
    let (tx, out) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(_) => break,
                }
            }
            if tx.send(Feed::Events(batch)).is_err() {
                return;
            }
        }
        let _ = tx.send(Feed::Closed);
    });
    out
}

/// How often a followed log is read again at its end.
pub const FOLLOW_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// Read `events.jsonl` on a thread. Lines that are not events (a newer or
/// older schema, a line cut by a crash) are counted and reported, never
/// fatal: browsing a damaged run shows what can be shown. With `follow`,
/// the end of the log is waited at for as long as its recorder runs
/// (`gasbench_trace::log::writer_active`), as `tail -f` does; without,
/// a log whose run is still going ends with [`Feed::StillRunning`].
pub fn from_log(path: &Path, follow: bool) -> std::io::Result<FeedRx> {
    let file = File::open(path)?;
    let total = file.metadata()?.len();
    let path: PathBuf = path.to_path_buf();
    let (tx, out) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("gasbench-replay".into())
        .spawn(move || {
            let mut reader = BufReader::with_capacity(1 << 20, file);
            // Bytes, not String: one line that is not UTF-8 is one bad
            // line, not the end of the log.
            let mut line: Vec<u8> = Vec::new();
            let (mut bytes, mut n, mut bad, mut first_bad) = (0u64, 0u64, 0u64, None);
            let mut batch = Vec::with_capacity(BATCH);
            let mut lineno = 0u64;
            let mut lookup_sent = false;
            loop {
                match reader.read_until(b'\n', &mut line) {
                    Ok(k) => bytes += k as u64,
                    Err(e) => {
                        let _ = tx.send(Feed::Note(format!("reading {}: {e}", path.display())));
                        break;
                    }
                }
                if !line.ends_with(b"\n") {
                    // The end of what is written so far.
                    if follow && gasbench_trace::log::writer_active(&path) {
                        if !batch.is_empty() {
                            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                            if tx.send(Feed::Events(full)).is_err() {
                                return;
                            }
                        }
                        if !lookup_sent {
                            lookup_sent = true;
                            let _ = tx.send(Feed::Lookup(Box::new(DiskEvents::new(&path))));
                        }
                        if tx.is_closed() {
                            return;
                        }
                        // A partial line stays in `line`: the rest is
                        // appended to it by the next read.
                        std::thread::sleep(FOLLOW_POLL);
                        continue;
                    }
                    if !line.is_empty() {
                        let _ = tx.send(Feed::Note(format!(
                            "line {} was cut short (the run ended mid-write)",
                            lineno + 1
                        )));
                    }
                    break;
                }
                lineno += 1;
                match serde_json::from_slice::<Event>(&line) {
                    Ok(e) => {
                        batch.push(e);
                        n += 1;
                    }
                    Err(e) => {
                        bad += 1;
                        first_bad.get_or_insert(format!("line {lineno}: {e}"));
                    }
                }
                line.clear();
                if batch.len() == BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    if tx.send(Feed::Events(full)).is_err() {
                        return;
                    }
                    let _ = tx.send(Feed::Loading {
                        events: n,
                        bytes,
                        total: total.max(bytes),
                    });
                }
            }
            if !batch.is_empty() {
                let _ = tx.send(Feed::Events(batch));
            }
            if bad > 0 {
                let _ = tx.send(Feed::Note(format!(
                    "{bad} line(s) of the log are not events this gasbench understands (first: {})",
                    first_bad.unwrap_or_default()
                )));
            }
            if !follow && gasbench_trace::log::writer_active(&path) {
                let _ = tx.send(Feed::StillRunning);
            }
            let _ = tx.send(Feed::Lookup(Box::new(DiskEvents::new(&path))));
            let _ = tx.send(Feed::Closed);
        })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gasbench_events::run::RunEvent;

    #[test]
    fn a_log_replays_with_bad_lines_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut text: Vec<u8> = Vec::new();
        for i in 0..10_000u64 {
            if i == 5_000 {
                // A line that is not even UTF-8, in the middle.
                text.extend_from_slice(b"{\"seq\":\xff}\n");
            }
            let e = Event {
                seq: i,
                t_us: i,
                body: RunEvent::Note {
                    text: format!("n{i}"),
                }
                .into(),
            };
            text.extend_from_slice(serde_json::to_string(&e).unwrap().as_bytes());
            text.push(b'\n');
        }
        text.extend_from_slice(b"{\"not\":\"an event\"}\n");
        std::fs::write(&path, text).unwrap();
        let mut rx = from_log(&path, false).unwrap();
        let (mut events, mut notes, mut lookup, mut closed) = (0, vec![], None, false);
        while let Some(f) = rx.blocking_recv() {
            match f {
                Feed::Events(b) => events += b.len(),
                Feed::Note(n) => notes.push(n),
                Feed::Lookup(l) => lookup = Some(l),
                Feed::Loading { .. } | Feed::StillRunning => {}
                Feed::Closed => closed = true,
            }
        }
        assert!(closed);
        assert_eq!(events, 10_000);
        assert_eq!(notes.len(), 1);
        // Every event on both sides of the bad lines is there.
        assert!(
            notes[0].contains("2 line(s)") && notes[0].contains("line 5001"),
            "{notes:?}"
        );
        assert_eq!(lookup.unwrap().event(9_999).unwrap().seq, 9_999);
    }

    fn note(i: u64) -> Vec<u8> {
        let e = Event {
            seq: i,
            t_us: i,
            body: RunEvent::Note {
                text: format!("n{i}"),
            }
            .into(),
        };
        let mut v = serde_json::to_vec(&e).unwrap();
        v.push(b'\n');
        v
    }

    /// A recorder's lock, as `gasbench_trace::log::record` holds it.
    fn hold_writer_lock(path: &Path) -> File {
        let f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
        f
    }

    #[test]
    fn a_log_still_being_written_is_followed_to_its_end_lines_split_across_writes() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, note(0)).unwrap();
        let mut writer = hold_writer_lock(&path);
        let mut rx = from_log(&path, true).unwrap();
        let mut seen = Vec::new();
        let take = |rx: &mut FeedRx, want: usize, seen: &mut Vec<u64>| {
            while seen.len() < want {
                match rx.blocking_recv().unwrap() {
                    Feed::Events(b) => seen.extend(b.iter().map(|e| e.seq)),
                    Feed::Closed => panic!("closed while the writer runs"),
                    _ => {}
                }
            }
        };
        take(&mut rx, 1, &mut seen);
        // Half a line, then the rest: one event, not a cut line.
        let second = note(1);
        writer.write_all(&second[..10]).unwrap();
        writer.flush().unwrap();
        std::thread::sleep(FOLLOW_POLL * 2);
        writer.write_all(&second[10..]).unwrap();
        writer.write_all(&note(2)).unwrap();
        writer.flush().unwrap();
        take(&mut rx, 3, &mut seen);
        assert_eq!(seen, vec![0, 1, 2]);
        drop(writer);
        let mut closed = false;
        while let Some(f) = rx.blocking_recv() {
            match f {
                Feed::Closed => closed = true,
                Feed::Note(n) => panic!("unexpected note: {n}"),
                Feed::StillRunning => panic!("followed to the end"),
                _ => {}
            }
        }
        assert!(closed);
    }

    #[test]
    fn a_log_opened_while_its_run_goes_on_says_so_instead_of_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, note(0)).unwrap();
        let _writer = hold_writer_lock(&path);
        let mut rx = from_log(&path, false).unwrap();
        let mut still = false;
        while let Some(f) = rx.blocking_recv() {
            if let Feed::StillRunning = f {
                still = true;
            }
        }
        assert!(still);
    }

    #[test]
    fn a_run_directory_or_its_events_log_opens_and_another_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("events.jsonl");
        std::fs::write(&log, "").unwrap();
        assert_eq!(run_dir_for(dir.path()).unwrap(), dir.path());
        assert_eq!(run_dir_for(&log).unwrap(), dir.path());
        let other = dir.path().join("console.log");
        std::fs::write(&other, "").unwrap();
        let err = run_dir_for(&other).unwrap_err();
        assert!(
            err.contains("console.log is a file") && err.contains("run directory"),
            "{err}"
        );
    }
}
