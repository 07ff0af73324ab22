//! The ioctl trace, kept small enough for millions of calls.
//!
//! Memory holds one fixed-size [`CallRow`] per call (its numbers and the
//! sequence numbers of its `CallBegin`/`CallEnd` events); names and errnos
//! are interned. Everything else (decoded arguments, the register accesses
//! a call caused) stays in the run's `events.jsonl` and is read back through
//! an [`EventLookup`] only for the rows on screen, so a frame costs the same
//! with a thousand calls or a million.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use gasbench_abi::protocol::CallRecord;
use gasbench_events::Event;
use gasbench_trace::log::LogIndex;

/// Random access to the run's events by sequence number.
pub trait EventLookup: Send {
    /// The event with sequence number `seq`, if it is on record.
    fn event(&self, seq: u64) -> Option<Event>;
    /// Pick up events written since the last call (a live log grows).
    fn refresh(&mut self) {}
}

/// Events held in memory (tests, small replays).
#[derive(Default)]
pub struct MemEvents(pub Vec<Event>);

impl EventLookup for MemEvents {
    fn event(&self, seq: u64) -> Option<Event> {
        // Sequence numbers are positions without gaps; fall back to a
        // search for logs that do not start at 0.
        match self.0.get(seq as usize) {
            Some(e) if e.seq == seq => Some(e.clone()),
            _ => self
                .0
                .binary_search_by_key(&seq, |e| e.seq)
                .ok()
                .map(|i| self.0[i].clone()),
        }
    }
}

/// Events in a run directory's `events.jsonl`, indexed by line.
pub struct DiskEvents {
    path: PathBuf,
    index: Option<LogIndex>,
}

impl DiskEvents {
    /// The log need not exist yet: a live run creates it after the TUI
    /// starts, and [`EventLookup::refresh`] opens it when it appears.
    pub fn new(path: &Path) -> DiskEvents {
        let mut d = DiskEvents {
            path: path.to_path_buf(),
            index: None,
        };
        d.refresh();
        d
    }

    pub fn len(&self) -> usize {
        self.index.as_ref().map_or(0, LogIndex::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl EventLookup for DiskEvents {
    fn event(&self, seq: u64) -> Option<Event> {
        let idx = self.index.as_ref()?;
        // The log is written in bus order, so line `seq` holds event `seq`;
        // a log that does not start at 0 is searched (it is still sorted).
        if let Some(e) = idx.read(seq as usize)
            && e.seq == seq
        {
            return Some(e);
        }
        let (mut lo, mut hi) = (0usize, idx.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let e = idx.read(mid)?;
            match e.seq.cmp(&seq) {
                std::cmp::Ordering::Equal => return Some(e),
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        None
    }

    fn refresh(&mut self) {
        match &mut self.index {
            Some(idx) => {
                let _ = idx.refresh();
            }
            None => self.index = LogIndex::open(&self.path).ok(),
        }
    }
}

/// No value, for the packed fields below.
const NONE_U64: u64 = u64::MAX;
const NONE_FD: i32 = i32::MIN;

/// One call, packed: 64 bytes whatever its arguments were (a test holds
/// it to that).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallRow {
    pub begin_seq: u64,
    end_seq: u64,
    /// Host time of the `CallBegin`, µs since the run started.
    pub t_us: u64,
    pub duration_ns: u64,
    pub ret: i64,
    pub thread: u32,
    pub step: u32,
    fd: i32,
    pub name: u16,
    /// Interned errno, 0 = none.
    pub errno: u16,
    /// Interned scenario, 0 = none.
    pub scenario: u16,
    /// Device register accesses seen while the call was open.
    pub regs: u16,
    /// Another call was open at the same time: the register accesses
    /// cannot be attributed to this call alone.
    pub overlapped: bool,
}

impl CallRow {
    pub fn end_seq(&self) -> Option<u64> {
        (self.end_seq != NONE_U64).then_some(self.end_seq)
    }
    pub fn fd(&self) -> Option<i32> {
        (self.fd != NONE_FD).then_some(self.fd)
    }
    pub fn finished(&self) -> bool {
        self.end_seq != NONE_U64
    }
    pub fn failed(&self) -> bool {
        self.errno != 0
    }
}

/// Strings seen many times (call names, errnos, scenarios), stored once.
#[derive(Default)]
pub struct Interner {
    names: Vec<String>,
    ids: HashMap<String, u16>,
}

impl Interner {
    fn new_with_empty() -> Interner {
        let mut i = Interner::default();
        i.intern("");
        i
    }

    pub fn intern(&mut self, s: &str) -> u16 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        // A run with more than 65535 distinct names is not a real run;
        // fold the rest into the last slot rather than fail.
        let id = u16::try_from(self.names.len()).unwrap_or(u16::MAX);
        if id < u16::MAX {
            self.names.push(s.to_owned());
            self.ids.insert(s.to_owned(), id);
        }
        id
    }

    pub fn get(&self, id: u16) -> &str {
        self.names.get(id as usize).map_or("?", String::as_str)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// What the trace filter asks for. Every term must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceFilter {
    pub text: String,
    terms: Vec<Term>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Term {
    /// Substring of the call name or the errno (case-insensitive).
    Text(String),
    Fd(i32),
    Thread(u32),
    Step(u32),
    Failed,
    Succeeded,
    /// Caused at least one register access.
    Regs,
    Not(Box<Term>),
}

impl TraceFilter {
    /// Parse `alloc fd:3 t:2 err !ping`. Unknown `key:value` terms are
    /// plain text, so nothing typed is ever an error.
    pub fn parse(text: &str) -> TraceFilter {
        fn term(w: &str) -> Term {
            if let Some(rest) = w.strip_prefix('!').filter(|r| !r.is_empty()) {
                return Term::Not(Box::new(term(rest)));
            }
            let lower = w.to_ascii_lowercase();
            if let Some((k, v)) = lower.split_once(':') {
                match k {
                    "fd" => {
                        if let Ok(n) = v.parse() {
                            return Term::Fd(n);
                        }
                    }
                    "t" | "thread" => {
                        if let Ok(n) = v.parse() {
                            return Term::Thread(n);
                        }
                    }
                    "step" => {
                        if let Ok(n) = v.parse() {
                            return Term::Step(n);
                        }
                    }
                    _ => {}
                }
            }
            match lower.as_str() {
                "err" | "failed" | "fail" => Term::Failed,
                "ok" => Term::Succeeded,
                "regs" | "dev" => Term::Regs,
                _ => Term::Text(lower),
            }
        }
        TraceFilter {
            text: text.to_owned(),
            terms: text.split_whitespace().map(term).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    fn matches(&self, row: &CallRow, names: &Interner, lower_names: &[String]) -> bool {
        fn one(t: &Term, row: &CallRow, names: &Interner, lower: &[String]) -> bool {
            match t {
                Term::Text(s) => {
                    let name = lower.get(row.name as usize).map_or("", String::as_str);
                    name.contains(s.as_str())
                        || (row.errno != 0
                            && names
                                .get(row.errno)
                                .to_ascii_lowercase()
                                .contains(s.as_str()))
                }
                Term::Fd(n) => row.fd() == Some(*n),
                Term::Thread(n) => row.thread == *n,
                Term::Step(n) => row.step == *n,
                Term::Failed => row.failed(),
                Term::Succeeded => row.finished() && !row.failed(),
                Term::Regs => row.regs > 0,
                Term::Not(t) => !one(t, row, names, lower),
            }
        }
        self.terms.iter().all(|t| one(t, row, names, lower_names))
    }
}

/// The calls, and which of them the current filter shows.
pub struct TraceStore {
    rows: Vec<CallRow>,
    /// Open calls: call id → row.
    open: HashMap<u64, usize>,
    pub strings: Interner,
    /// Lower-cased call names by id, for filtering without allocating.
    lower_names: Vec<String>,
    filter: TraceFilter,
    /// Only calls of this interned scenario (0 = all).
    scenario: u16,
    /// Rows the filter shows; `None` = all of them (no copy for the common
    /// unfiltered case).
    visible: Option<Vec<u32>>,
    /// The agent's thread ids (unique within a boot) → the thread's index
    /// in its bundle (0 the main thread, then in the order they started),
    /// which is what the thread column and `t:N` show.
    thread_index: HashMap<u32, u32>,
}

impl Default for TraceStore {
    fn default() -> Self {
        TraceStore {
            rows: Vec::new(),
            open: HashMap::new(),
            strings: Interner::new_with_empty(),
            lower_names: vec![String::new()],
            filter: TraceFilter::default(),
            scenario: 0,
            visible: None,
            thread_index: HashMap::new(),
        }
    }
}

impl TraceStore {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn row(&self, i: usize) -> Option<&CallRow> {
        self.rows.get(i)
    }

    pub fn name(&self, row: &CallRow) -> &str {
        self.strings.get(row.name)
    }

    pub fn errno(&self, row: &CallRow) -> Option<&str> {
        (row.errno != 0).then(|| self.strings.get(row.errno))
    }

    pub fn scenario(&self, row: &CallRow) -> Option<&str> {
        (row.scenario != 0).then(|| self.strings.get(row.scenario))
    }

    fn intern(&mut self, s: &str) -> u16 {
        let id = self.strings.intern(s);
        while self.lower_names.len() < self.strings.len() {
            let n = self.strings.get(self.lower_names.len() as u16);
            self.lower_names.push(n.to_ascii_lowercase());
        }
        id
    }

    /// Calls still open (their `CallEnd` has not arrived).
    pub fn open_calls(&self) -> usize {
        self.open.len()
    }

    /// A bundle began: its threads are numbered from 0 again.
    pub fn new_bundle(&mut self) {
        self.thread_index.clear();
    }

    /// The agent announced a thread (the bundle's main thread first).
    pub fn thread_started(&mut self, thread: u32) {
        let next = self.thread_index.len() as u32;
        self.thread_index.entry(thread).or_insert(next);
    }

    /// The index of agent thread `thread` in its bundle; one never
    /// announced (a log that began mid-bundle) gets the next free index.
    fn thread_of(&mut self, thread: u32) -> u32 {
        let next = self.thread_index.len() as u32;
        *self.thread_index.entry(thread).or_insert(next)
    }

    /// A `CallBegin` arrived.
    pub fn begin(
        &mut self,
        ev: &Event,
        call: u64,
        step: u32,
        thread: u32,
        name: &str,
        scenario: Option<&str>,
    ) {
        let name = self.intern(name);
        let scenario = scenario.map_or(0, |s| self.intern(s));
        let thread = self.thread_of(thread);
        let overlapped = !self.open.is_empty();
        if overlapped {
            for &i in self.open.values() {
                self.rows[i].overlapped = true;
            }
        }
        let row = CallRow {
            begin_seq: ev.seq,
            end_seq: NONE_U64,
            t_us: ev.t_us,
            duration_ns: 0,
            ret: 0,
            thread,
            step,
            fd: NONE_FD,
            name,
            errno: 0,
            scenario,
            regs: 0,
            overlapped,
        };
        self.open.insert(call, self.rows.len());
        self.push(row);
    }

    /// A `CallEnd` arrived. A record without a `CallBegin` (the log began
    /// mid-call) still gets a row.
    pub fn end(&mut self, ev: &Event, rec: &CallRecord, scenario: Option<&str>) {
        let errno = rec.errno.as_deref().map_or(0, |e| self.intern(e));
        match self.open.remove(&rec.call) {
            Some(i) => {
                let before = self.visible.is_some() && self.shows(&self.rows[i]);
                let r = &mut self.rows[i];
                r.end_seq = ev.seq;
                r.duration_ns = rec.duration_ns;
                r.ret = rec.ret;
                r.fd = rec.fd.unwrap_or(NONE_FD);
                r.errno = errno;
                // A finished row may now match (or stop matching) a filter
                // that tests the result: move just that row.
                let after = self.visible.is_some() && self.shows(&self.rows[i]);
                if let Some(v) = &mut self.visible
                    && before != after
                {
                    let key = i as u32;
                    match (v.binary_search(&key), after) {
                        (Err(at), true) => v.insert(at, key),
                        (Ok(at), false) => {
                            v.remove(at);
                        }
                        _ => {}
                    }
                }
            }
            None => {
                let name = self.intern(&rec.name);
                let scenario = scenario.map_or(0, |s| self.intern(s));
                let thread = self.thread_of(rec.thread);
                self.push(CallRow {
                    begin_seq: ev.seq,
                    end_seq: ev.seq,
                    t_us: ev.t_us.saturating_sub(rec.duration_ns / 1000),
                    duration_ns: rec.duration_ns,
                    ret: rec.ret,
                    thread,
                    step: rec.step,
                    fd: rec.fd.unwrap_or(NONE_FD),
                    name,
                    errno,
                    scenario,
                    regs: 0,
                    overlapped: false,
                });
            }
        }
    }

    /// A device register access arrived: it belongs to every open call.
    pub fn device_access(&mut self) {
        for &i in self.open.values() {
            self.rows[i].regs = self.rows[i].regs.saturating_add(1);
        }
    }

    fn push(&mut self, row: CallRow) {
        let i = self.rows.len() as u32;
        let shown = self.shows(&row);
        self.rows.push(row);
        if let Some(v) = &mut self.visible
            && shown
        {
            v.push(i);
        }
    }

    fn shows(&self, row: &CallRow) -> bool {
        (self.scenario == 0 || row.scenario == self.scenario)
            && self.filter.matches(row, &self.strings, &self.lower_names)
    }

    fn recompute(&mut self) {
        if self.filter.is_empty() && self.scenario == 0 {
            self.visible = None;
            return;
        }
        let v: Vec<u32> = (0..self.rows.len() as u32)
            .filter(|&i| self.shows(&self.rows[i as usize]))
            .collect();
        self.visible = Some(v);
    }

    pub fn set_filter(&mut self, f: TraceFilter) {
        self.filter = f;
        self.recompute();
    }

    pub fn filter(&self) -> &TraceFilter {
        &self.filter
    }

    /// Show only the calls made by `scenario` (None = all).
    pub fn set_scenario(&mut self, scenario: Option<&str>) {
        self.scenario = match scenario {
            Some(s) => self.intern(s),
            None => 0,
        };
        self.recompute();
    }

    pub fn scenario_filter(&self) -> Option<&str> {
        (self.scenario != 0).then(|| self.strings.get(self.scenario))
    }

    /// Whether the row shown at position `i` is one `f` matches.
    pub fn visible_matches(&self, i: usize, f: &TraceFilter) -> bool {
        self.visible_row(i)
            .is_some_and(|(_, row)| f.matches(row, &self.strings, &self.lower_names))
    }

    /// How many rows the filter shows.
    pub fn visible_len(&self) -> usize {
        self.visible.as_ref().map_or(self.rows.len(), Vec::len)
    }

    /// The row shown at position `i`.
    pub fn visible_row(&self, i: usize) -> Option<(usize, &CallRow)> {
        let idx = match &self.visible {
            Some(v) => *v.get(i)? as usize,
            None => i,
        };
        Some((idx, self.rows.get(idx)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gasbench_abi::protocol::AgentMsg;
    use gasbench_events::EventBody;

    #[test]
    fn a_call_row_is_64_bytes() {
        assert_eq!(std::mem::size_of::<CallRow>(), 64);
    }

    fn ev(seq: u64, msg: AgentMsg) -> Event {
        Event {
            seq,
            t_us: seq * 100,
            body: EventBody::Agent(msg),
        }
    }

    fn rec(call: u64, name: &str, errno: Option<&str>) -> CallRecord {
        CallRecord {
            call,
            step: 1,
            thread: call as u32 % 2,
            iteration: 0,
            name: name.into(),
            fd: Some(3),
            args_in: serde_json::Value::Null,
            args_out: serde_json::Value::Null,
            ret: if errno.is_some() { -1 } else { 0 },
            errno: errno.map(Into::into),
            duration_ns: 1000,
            fault: None,
        }
    }

    #[test]
    fn rows_are_small() {
        assert!(std::mem::size_of::<CallRow>() <= 64);
    }

    #[test]
    fn calls_pair_up_count_register_accesses_and_flag_overlap() {
        let mut s = TraceStore::default();
        let b1 = ev(
            0,
            AgentMsg::CallBegin {
                call: 1,
                step: 1,
                thread: 0,
                name: "ioctl:PING".into(),
            },
        );
        s.begin(&b1, 1, 1, 0, "ioctl:PING", Some("a"));
        s.device_access();
        s.begin(&b1, 2, 1, 1, "ioctl:ALLOCATE_BLOCK", Some("a"));
        s.device_access();
        s.end(
            &ev(
                4,
                AgentMsg::Log {
                    level: gasbench_abi::protocol::LogLevel::Info,
                    text: String::new(),
                },
            ),
            &rec(1, "ioctl:PING", None),
            Some("a"),
        );
        s.end(
            &ev(
                5,
                AgentMsg::Log {
                    level: gasbench_abi::protocol::LogLevel::Info,
                    text: String::new(),
                },
            ),
            &rec(2, "ioctl:ALLOCATE_BLOCK", Some("ENOMEM")),
            Some("a"),
        );
        let r0 = *s.row(0).unwrap();
        let r1 = *s.row(1).unwrap();
        assert_eq!((r0.regs, r1.regs), (2, 1));
        assert!(r0.overlapped && r1.overlapped);
        assert_eq!(r0.end_seq(), Some(4));
        assert_eq!(s.errno(&r1), Some("ENOMEM"));
        assert_eq!(s.open_calls(), 0);
    }

    #[test]
    fn filters_combine_terms_and_follow_new_rows() {
        let mut s = TraceStore::default();
        for i in 0..10u64 {
            let e = ev(
                i,
                AgentMsg::BundleEnd {
                    bundle: 0,
                    error: None,
                },
            );
            let name = if i % 2 == 0 { "ioctl:PING" } else { "open" };
            let errno = (i == 3).then_some("ENOENT");
            s.end(
                &e,
                &rec(i, name, errno),
                Some(if i < 5 { "a" } else { "b" }),
            );
        }
        assert_eq!(s.visible_len(), 10);
        s.set_filter(TraceFilter::parse("ping"));
        assert_eq!(s.visible_len(), 5);
        s.set_filter(TraceFilter::parse("err"));
        assert_eq!(s.visible_len(), 1);
        assert_eq!(s.visible_row(0).unwrap().0, 3);
        s.set_filter(TraceFilter::parse("enoent"));
        assert_eq!(s.visible_len(), 1);
        s.set_filter(TraceFilter::parse("!ping t:1"));
        assert_eq!(s.visible_len(), 5);
        s.set_scenario(Some("b"));
        assert_eq!(s.visible_len(), 3);
        s.end(
            &ev(
                10,
                AgentMsg::BundleEnd {
                    bundle: 0,
                    error: None,
                },
            ),
            &rec(11, "open", None),
            Some("b"),
        );
        assert_eq!(s.visible_len(), 4);
        s.set_filter(TraceFilter::default());
        s.set_scenario(None);
        assert_eq!(s.visible_len(), 11);
        assert!(s.visible.is_none());
    }

    #[test]
    fn disk_lookup_finds_events_by_sequence_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut text = String::new();
        for i in 5..20u64 {
            let e = ev(
                i,
                AgentMsg::BundleEnd {
                    bundle: i,
                    error: None,
                },
            );
            text.push_str(&serde_json::to_string(&e).unwrap());
            text.push('\n');
        }
        let mut d = DiskEvents::new(&path);
        assert!(d.event(5).is_none(), "no log yet");
        std::fs::write(&path, &text).unwrap();
        d.refresh();
        assert_eq!(d.len(), 15);
        // The log starts at 5, so line n is not event n: found by search.
        assert_eq!(d.event(7).unwrap().seq, 7);
        assert_eq!(d.event(19).unwrap().seq, 19);
        assert!(d.event(20).is_none());
        assert!(d.event(2).is_none());
    }
}
