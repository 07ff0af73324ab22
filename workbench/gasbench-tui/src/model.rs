//! The TUI's whole state, built from events. No terminal, no I/O here
//! (except through the [`EventLookup`] the trace reads details from).

use std::collections::HashMap;

use gasbench_abi::protocol::{AgentMsg, LogLevel};
use gasbench_events::kernel::{ApplyStatus, KernelEvent, PatchRole};
use gasbench_events::run::{Outcome, RunEvent, Stage};
use gasbench_events::vm::{ConsoleSeverity, VmEvent};
use gasbench_events::{Event, EventBody};
use gasbench_trace::RunSummary;

use crate::device::DeviceView;
use crate::latency::Latency;
use crate::store::{EventLookup, MemEvents, TraceStore};
use crate::theme::Theme;

/// The call whose latency the results pane charts.
pub const PING: &str = "ioctl:PING";

/// The panes, in Tab order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pane {
    Pipeline,
    Scenarios,
    Trace,
    Device,
    Console,
    Build,
    Results,
}

impl Pane {
    pub const ALL: [Pane; 7] = [
        Pane::Pipeline,
        Pane::Scenarios,
        Pane::Trace,
        Pane::Device,
        Pane::Console,
        Pane::Build,
        Pane::Results,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Pane::Pipeline => "Pipeline",
            Pane::Scenarios => "Scenarios",
            Pane::Trace => "Trace",
            Pane::Device => "Device",
            Pane::Console => "Console",
            Pane::Build => "Build log",
            Pane::Results => "Results",
        }
    }

    pub fn index(self) -> usize {
        Pane::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }

    pub fn next(self) -> Pane {
        Pane::ALL[(self.index() + 1) % Pane::ALL.len()]
    }

    pub fn prev(self) -> Pane {
        Pane::ALL[(self.index() + Pane::ALL.len() - 1) % Pane::ALL.len()]
    }

    /// Panes whose rows can be filtered with `/`.
    pub fn filterable(self) -> bool {
        matches!(self, Pane::Trace | Pane::Console | Pane::Build)
    }
}

/// Where the user is in a scrolling list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    pub selected: usize,
    /// First row on screen (kept so scrolling is minimal, not recentred).
    pub offset: usize,
    /// Stick to the newest row as rows arrive.
    pub follow: bool,
}

impl Cursor {
    pub fn following() -> Cursor {
        Cursor {
            follow: true,
            ..Cursor::default()
        }
    }

    /// Clamp to `len` rows and, for a window of `rows`, return the first
    /// row to draw such that the selection is visible. Pure: the view and
    /// `update` both call it and agree.
    pub fn window(&self, len: usize, rows: usize) -> (usize, usize) {
        if len == 0 {
            return (0, 0);
        }
        let selected = if self.follow {
            len - 1
        } else {
            self.selected.min(len - 1)
        };
        let rows = rows.max(1);
        let mut offset = self.offset.min(len.saturating_sub(1));
        if selected < offset {
            offset = selected;
        } else if selected >= offset + rows {
            offset = selected + 1 - rows;
        }
        // Never leave rows empty at the bottom while there are rows above
        // (after a resize to a taller window, say).
        offset = offset.min(len.saturating_sub(rows));
        if self.follow {
            offset = len.saturating_sub(rows);
        }
        (selected, offset)
    }

    /// Move by `delta` rows within `len`, dropping out of follow mode when
    /// moving away from the end and back into it when reaching it.
    pub fn step(&mut self, delta: isize, len: usize, rows: usize) {
        if len == 0 {
            *self = Cursor {
                follow: self.follow,
                ..Cursor::default()
            };
            return;
        }
        let (cur, off) = self.window(len, rows);
        let next = (cur as isize + delta).clamp(0, len as isize - 1) as usize;
        self.selected = next;
        self.offset = off;
        self.follow = self.follow && next == len - 1 && delta >= 0;
        let (sel, off) = self.window(len, rows);
        self.selected = sel;
        self.offset = off;
    }

    pub fn top(&mut self) {
        *self = Cursor::default();
    }

    pub fn bottom(&mut self) {
        self.follow = true;
    }

    /// Select row `i` of `len` (out of follow mode), scrolled so that it
    /// shows in a window of `rows`.
    pub fn select(&mut self, i: usize, len: usize, rows: usize) {
        self.follow = false;
        self.selected = i;
        let (sel, off) = self.window(len, rows);
        self.selected = sel;
        self.offset = off;
    }
}

/// The next position after `from` (before it when not `forward`) among
/// `len` rows where `hit` holds, wrapping around the end: how `n` and
/// `N` step through matches.
pub fn next_hit(
    len: usize,
    from: usize,
    forward: bool,
    hit: impl Fn(usize) -> bool,
) -> Option<usize> {
    (1..=len)
        .map(|k| {
            if forward {
                (from + k) % len
            } else {
                (from + len * 2 - k) % len
            }
        })
        .find(|&i| hit(i))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Normal,
    Warn,
    Bug,
    /// Not the guest's console: the agent's own log, a run note.
    Meta,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub t_us: u64,
    pub severity: Severity,
    pub text: String,
}

/// A scrolling, filterable text log (the console, the build log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogView {
    pub lines: Vec<LogLine>,
    pub filter: String,
    visible: Option<Vec<u32>>,
    pub cursor: Cursor,
    /// Lines dropped from the front to bound memory.
    pub dropped: u64,
}

impl Default for LogView {
    fn default() -> Self {
        LogView {
            lines: Vec::new(),
            filter: String::new(),
            visible: None,
            cursor: Cursor::following(),
            dropped: 0,
        }
    }
}

/// How bad one line of build output is, by the toolchain's own markers:
/// `file:line: error:` (gcc, clang, `ld.lld: error:`, modpost's
/// `ERROR:`), rustc's `error[E0425]`, make's `*** [...] Error 2`, the
/// linker's `undefined reference`. Not by the word "error" alone: file
/// names (`error.o`), `(os error 2)` in a note that says it is non-fatal,
/// or clang's `1 error generated.` summary are not errors of their own.
pub fn build_line_severity(line: &str) -> Severity {
    let lower = line.to_ascii_lowercase();
    let make_error = line.contains("*** ")
        && line
            .rsplit_once("Error ")
            .is_some_and(|(_, n)| !n.is_empty() && n.trim().bytes().all(|b| b.is_ascii_digit()));
    if lower.contains("error:")
        || line.contains("error[E")
        || make_error
        || line.contains("undefined reference")
    {
        Severity::Bug
    } else if lower.contains("warning:") || line.contains("warning[") {
        Severity::Warn
    } else {
        Severity::Normal
    }
}

/// A build log can be hundreds of thousands of lines; keep the newest.
const LOG_CAP: usize = 200_000;

/// Characters of one log line kept.
const MAX_LOG_LINE: usize = 4_000;

impl LogView {
    fn matches(filter: &str, line: &LogLine) -> bool {
        filter.is_empty() || line.text.to_ascii_lowercase().contains(filter)
    }

    pub fn push(&mut self, t_us: u64, severity: Severity, text: String) {
        // Console lines and agent text are the guest's: escape sequences
        // shown, not obeyed, and a 64 KiB line kept as its first 4,000
        // characters (200,000 of those are the most the log holds).
        let text = match gasbench_termsafe::line_capped(&text, MAX_LOG_LINE) {
            std::borrow::Cow::Borrowed(_) => text,
            std::borrow::Cow::Owned(s) => s,
        };
        if self.lines.len() >= LOG_CAP {
            let cut = LOG_CAP / 10;
            self.lines.drain(..cut);
            self.dropped += cut as u64;
            self.cursor.selected = self.cursor.selected.saturating_sub(cut);
            self.cursor.offset = self.cursor.offset.saturating_sub(cut);
            self.refilter();
        }
        let line = LogLine {
            t_us,
            severity,
            text,
        };
        if let Some(v) = &mut self.visible
            && Self::matches(&self.filter, &line)
        {
            v.push(self.lines.len() as u32);
        }
        self.lines.push(line);
    }

    pub fn set_filter(&mut self, filter: &str) {
        self.filter = filter.to_ascii_lowercase();
        self.refilter();
        self.cursor = Cursor::following();
    }

    fn refilter(&mut self) {
        self.visible = if self.filter.is_empty() {
            None
        } else {
            Some(
                (0..self.lines.len() as u32)
                    .filter(|&i| Self::matches(&self.filter, &self.lines[i as usize]))
                    .collect(),
            )
        };
    }

    pub fn visible_len(&self) -> usize {
        self.visible.as_ref().map_or(self.lines.len(), Vec::len)
    }

    /// Whether the line shown at position `i` contains `search`.
    pub fn visible_matches(&self, i: usize, search: &str) -> bool {
        let search = search.to_ascii_lowercase();
        self.visible_line(i)
            .is_some_and(|l| Self::matches(&search, l))
    }

    pub fn visible_line(&self, i: usize) -> Option<&LogLine> {
        match &self.visible {
            Some(v) => self.lines.get(*v.get(i)? as usize),
            None => self.lines.get(i),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StageState {
    Pending,
    Running,
    Done(Outcome),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageRow {
    pub stage: Stage,
    pub state: StageState,
    pub done: u64,
    pub total: u64,
    pub detail: String,
    pub began_us: u64,
    pub elapsed_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatchRow {
    pub series: String,
    /// Position in the whole apply queue (all series, the port's patches
    /// included): what per-patch build results refer to.
    pub index: u32,
    pub total: u32,
    pub subject: String,
    pub fixup: bool,
    /// Posted, reconstructed, the port's replacement or its own fixup.
    pub role: PatchRole,
    /// The posted position this patch is or stands for (`3` of `3/6`);
    /// `None` for the port's fixups.
    pub posted_index: Option<u32>,
    /// The series' posted size (`6` of `3/6`), from the subject's
    /// `[RFC PATCH v3 3/6]` when it has one.
    pub posted_total: Option<u32>,
    pub status: ApplyStatus,
    pub detail: String,
    /// Per-patch build result, when the build checked this patch alone.
    pub builds: Option<bool>,
    pub first_error: Option<String>,
    /// The second architecture's check (`--cross-arch`): its name and
    /// the error when it did not build.
    pub cross: Option<(String, Option<String>)>,
}

/// `[RFC PATCH v3 3/6] rust: …` → `(3, 6)`: the position the posting
/// itself gives a patch. The port's fixups (`[gasbench fixup v7.2.12]`)
/// have none.
pub fn posted_position(subject: &str) -> Option<(u32, u32)> {
    let tag = subject.trim_start().strip_prefix('[')?.split(']').next()?;
    let (n, of) = tag.split_whitespace().next_back()?.split_once('/')?;
    Some((n.parse().ok()?, of.parse().ok()?))
}

/// How one series' posted patches went into the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeriesApply {
    pub series: String,
    /// Patches in the posting (`6` of `3/6`).
    pub posted: u32,
    /// Applied as posted (or as reconstructed from quotes).
    pub as_posted: u32,
    /// Did not apply as posted; the port's replacement did.
    pub ported: u32,
    /// Did not apply, and nothing replaced them.
    pub failed: u32,
}

impl SeriesApply {
    /// Posted patches not reported yet (the apply stage is still running).
    pub fn pending(&self) -> u32 {
        self.posted
            .saturating_sub(self.as_posted + self.ported + self.failed)
    }
}

/// The stages drawn even before they start, so the pipeline's shape is
/// visible from the first frame.
pub const CORE_STAGES: [Stage; 5] = [
    Stage::Apply,
    Stage::Build,
    Stage::Initramfs,
    Stage::Boot,
    Stage::Run,
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pipeline {
    pub stages: Vec<StageRow>,
    pub patches: Vec<PatchRow>,
    pub artifacts: Vec<(String, String)>,
    pub cursor: Cursor,
}

impl Default for Pipeline {
    fn default() -> Self {
        Pipeline {
            stages: CORE_STAGES
                .iter()
                .map(|&stage| StageRow {
                    stage,
                    state: StageState::Pending,
                    done: 0,
                    total: 0,
                    detail: String::new(),
                    began_us: 0,
                    elapsed_ms: 0,
                })
                .collect(),
            patches: Vec::new(),
            artifacts: Vec::new(),
            cursor: Cursor::default(),
        }
    }
}

impl Pipeline {
    /// Per series, in the order the series were applied: how many of its
    /// posted patches applied as posted, were replaced by the port, or
    /// failed. Counted over the posting's own numbering, not the apply
    /// queue (which also holds the port's patches and the other series).
    pub fn series_apply(&self) -> Vec<SeriesApply> {
        let mut names: Vec<&str> = Vec::new();
        for p in &self.patches {
            if !names.contains(&p.series.as_str()) {
                names.push(&p.series);
            }
        }
        names
            .into_iter()
            .map(|name| {
                let rows: Vec<&PatchRow> =
                    self.patches.iter().filter(|p| p.series == name).collect();
                let posted = rows
                    .iter()
                    .filter_map(|p| p.posted_total.or(p.posted_index))
                    .max()
                    .unwrap_or(0);
                let mut out = SeriesApply {
                    series: name.to_owned(),
                    posted,
                    as_posted: 0,
                    ported: 0,
                    failed: 0,
                };
                for k in 1..=posted {
                    let at = |roles: &[PatchRole]| {
                        rows.iter()
                            .filter(|p| p.posted_index == Some(k) && roles.contains(&p.role))
                            .map(|p| p.status != ApplyStatus::Failed)
                            .collect::<Vec<bool>>()
                    };
                    let own = at(&[PatchRole::Posted, PatchRole::Reconstructed]);
                    let port = at(&[PatchRole::Replacement]);
                    if own.contains(&true) {
                        out.as_posted += 1;
                    } else if port.contains(&true) {
                        out.ported += 1;
                    } else if !own.is_empty() || !port.is_empty() {
                        out.failed += 1;
                    }
                }
                out
            })
            .collect()
    }

    fn stage(&mut self, stage: Stage) -> &mut StageRow {
        let i = match self.stages.iter().position(|s| s.stage == stage) {
            Some(i) => i,
            None => {
                // Keep the pipeline's order, whatever order stages appear in.
                let rank = |s: Stage| Stage::ALL.iter().position(|x| *x == s).unwrap_or(0);
                let at = self
                    .stages
                    .iter()
                    .position(|s| rank(s.stage) > rank(stage))
                    .unwrap_or(self.stages.len());
                self.stages.insert(
                    at,
                    StageRow {
                        stage,
                        state: StageState::Pending,
                        done: 0,
                        total: 0,
                        detail: String::new(),
                        began_us: 0,
                        elapsed_ms: 0,
                    },
                );
                at
            }
        };
        &mut self.stages[i]
    }
}

/// The header's facts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunInfo {
    pub run_dir: Option<String>,
    pub command: Option<String>,
    pub accel: Option<String>,
    pub accel_reason: Option<String>,
    pub kernel_release: Option<String>,
    /// The base tree, from the apply stage's detail.
    pub base: Option<String>,
    pub vm_state: Option<String>,
    pub finished: Option<(bool, u64)>,
    /// The kernel's profile (`default`, `debug`, `race`).
    pub profile: Option<String>,
}

/// Live session or a past run opened for browsing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Live,
    Browse { path: String },
}

/// A filter being typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterInput {
    pub pane: Pane,
    pub text: String,
}

/// The footer's transient message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub text: String,
    pub error: bool,
}

/// One entry of the scenario list; entry 0 is "all scenarios".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioEntry {
    pub name: String,
    pub running: bool,
}

/// Sizes of the scrolling windows, from the last layout (see `layout`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Viewport {
    pub width: u16,
    pub height: u16,
}

pub struct Model {
    pub mode: Mode,
    pub theme: Theme,
    pub focus: Pane,
    /// The focused pane fills the screen.
    pub zoom: bool,
    pub help: bool,
    pub input: Option<FilterInput>,
    /// The last filter typed in each of the trace, the console and the
    /// build log, kept when the filter is cleared: `n`/`N` jump between
    /// its matches with everything else in view.
    pub searches: [String; 3],
    pub status: Option<Status>,
    /// Quit was asked for; waiting for the pipeline to stop the VM.
    pub quitting: bool,
    pub viewport: Viewport,
    /// µs since the run started: the newest event's time, or the clock.
    pub now_us: u64,
    pub events_seen: u64,
    /// Replaying a log: (events so far, bytes read, bytes total).
    pub loading: Option<(u64, u64, u64)>,
    /// The event stream has ended (the run is over or the log was read).
    pub bus_closed: bool,
    /// The log was read to its end while its run is still being recorded
    /// elsewhere: what is not finished is still going, not cut off.
    pub still_running: bool,

    pub run: RunInfo,
    pub summary: RunSummary,
    pub pipeline: Pipeline,
    /// Known scenarios (from the controller), before any has run.
    pub suite: Vec<String>,
    pub scenario_cursor: Cursor,
    pub trace: TraceStore,
    pub trace_cursor: Cursor,
    /// Enter on a trace row: show its decoded structs and register accesses.
    pub expanded: bool,
    /// Lines the expanded detail is scrolled by (J/K, PgDn/PgUp), and the
    /// call (its CallBegin's seq) that applies to: another call's detail
    /// starts at its top.
    pub detail_scroll: (u64, usize),
    pub lookup: Box<dyn EventLookup>,
    pub device: DeviceView,
    pub device_cursor: Cursor,
    pub console: LogView,
    pub build_log: LogView,
    pub results_cursor: Cursor,
    /// Durations of successful PING ioctls (ns).
    pub ping: Latency,
    /// Which of console/build log shares the bottom-right slot.
    pub log_slot: Pane,

    current_scenario: Option<String>,
    /// Bundle id → scenario (the agent names bundles, the engine scenarios).
    bundles: HashMap<u64, String>,
}

impl Model {
    pub fn new(mode: Mode, theme: Theme, lookup: Box<dyn EventLookup>) -> Model {
        Model {
            mode,
            theme,
            focus: Pane::Trace,
            zoom: false,
            help: false,
            input: None,
            searches: Default::default(),
            status: None,
            quitting: false,
            viewport: Viewport::default(),
            now_us: 0,
            events_seen: 0,
            loading: None,
            bus_closed: false,
            still_running: false,
            run: RunInfo::default(),
            summary: RunSummary::default(),
            pipeline: Pipeline::default(),
            suite: Vec::new(),
            scenario_cursor: Cursor::default(),
            trace: TraceStore::default(),
            trace_cursor: Cursor::following(),
            expanded: false,
            detail_scroll: (0, 0),
            lookup,
            device: DeviceView::default(),
            device_cursor: Cursor::default(),
            console: LogView::default(),
            build_log: LogView::default(),
            results_cursor: Cursor::default(),
            ping: Latency::default(),
            log_slot: Pane::Console,
            current_scenario: None,
            bundles: HashMap::new(),
        }
    }

    /// A model over events held in memory (tests, benchmarks).
    pub fn from_events(events: Vec<Event>, mode: Mode, theme: Theme) -> Model {
        let mut m = Model::new(mode, theme, Box::new(MemEvents::default()));
        for e in &events {
            m.ingest(e);
        }
        m.lookup = Box::new(MemEvents(events));
        m.bus_closed = true;
        m
    }

    pub fn is_live(&self) -> bool {
        self.mode == Mode::Live
    }

    /// The scenario list: "all", then every scenario known or seen.
    pub fn scenario_entries(&self) -> Vec<ScenarioEntry> {
        let mut out = vec![ScenarioEntry {
            name: String::new(),
            running: false,
        }];
        let mut push = |name: &str, running: bool| {
            if !out[1..].iter().any(|e| e.name == name) {
                out.push(ScenarioEntry {
                    name: name.to_owned(),
                    running,
                });
            }
        };
        for s in &self.suite {
            push(s, false);
        }
        for s in &self.summary.scenarios {
            push(&s.name, false);
        }
        if let Some(cur) = &self.current_scenario {
            for e in &mut out[1..] {
                e.running = &e.name == cur;
            }
        }
        out
    }

    /// The scenario selected in the list (None = all).
    pub fn selected_scenario(&self) -> Option<String> {
        let entries = self.scenario_entries();
        let (sel, _) = self.scenario_cursor.window(entries.len(), 1);
        entries
            .get(sel)
            .map(|e| e.name.clone())
            .filter(|n| !n.is_empty())
    }

    /// A past run whose log ends before the run did: the replay is over,
    /// there is no `finished` event, and something was still going on
    /// (a stage, a scenario, the VM) when the log stops. gasbench was
    /// killed or crashed; nothing is running any more. (Interactive
    /// sessions recorded before they wrote `finished` have none either,
    /// but their stages all ended and their VM stopped.)
    pub fn log_ended_early(&self) -> bool {
        matches!(self.mode, Mode::Browse { .. })
            && self.bus_closed
            && !self.still_running
            && self.run.finished.is_none()
            && (self
                .pipeline
                .stages
                .iter()
                .any(|s| s.state == StageState::Running)
                || self.current_scenario.is_some()
                || matches!(self.run.vm_state.as_deref(), Some("running" | "starting")))
    }

    /// The run directory: the one browsed, or the live run's.
    pub fn run_dir_path(&self) -> Option<std::path::PathBuf> {
        match &self.mode {
            Mode::Browse { path } => Some(path.into()),
            _ => self.run.run_dir.as_ref().map(Into::into),
        }
    }

    /// Whether the VM is going away on purpose: QEMU shut down or exited
    /// as expected, or teardown is running. A device that disconnects
    /// then is the end of the run, not a fault.
    pub fn vm_ending(&self) -> bool {
        matches!(self.run.vm_state.as_deref(), Some("shutdown" | "stopped"))
            || self
                .pipeline
                .stages
                .iter()
                .any(|s| s.stage == Stage::Teardown && s.state == StageState::Running)
    }

    /// The trace row selected (the one Enter expands).
    pub fn selected_call(&self) -> Option<&crate::store::CallRow> {
        let (sel, _) = self.trace_cursor.window(self.trace.visible_len(), 1);
        self.trace.visible_row(sel).map(|(_, row)| row)
    }

    /// Lines the selected call's detail is scrolled by.
    pub fn detail_offset(&self) -> usize {
        match (self.selected_call(), self.detail_scroll) {
            (Some(row), (seq, lines)) if row.begin_seq == seq => lines,
            _ => 0,
        }
    }

    /// The scenario running now.
    pub fn current_scenario(&self) -> Option<&str> {
        self.current_scenario.as_deref()
    }

    /// Fold one event in.
    pub fn ingest(&mut self, e: &Event) {
        self.events_seen += 1;
        self.now_us = self.now_us.max(e.t_us);
        self.summary.apply(e);
        match &e.body {
            EventBody::Run(r) => self.ingest_run(e, r),
            EventBody::Kernel(k) => self.ingest_kernel(e, k),
            EventBody::Vm(v) => self.ingest_vm(e, v),
            EventBody::Device(d) => {
                if matches!(d, gasbench_events::device::DeviceEvent::Reg(_)) {
                    self.trace.device_access();
                }
                self.device.apply(e.seq, d);
                if let gasbench_events::device::DeviceEvent::Disconnected { .. }
                | gasbench_events::device::DeviceEvent::Stopped { .. } = d
                {
                    self.device.ended_with_vm = self.vm_ending();
                }
            }
            EventBody::Agent(a) => self.ingest_agent(e, a),
        }
    }

    fn ingest_run(&mut self, e: &Event, r: &RunEvent) {
        match r {
            RunEvent::Started { run_dir, command } => {
                self.run.run_dir = Some(run_dir.clone());
                self.run.command = Some(command.clone());
            }
            RunEvent::StageBegin { stage, detail } => {
                let st = self.pipeline.stage(*stage);
                st.state = StageState::Running;
                st.detail = detail.clone();
                st.began_us = e.t_us;
                st.done = 0;
                st.total = 0;
                if *stage == Stage::Apply && !detail.is_empty() {
                    self.run.base = Some(detail.clone());
                }
            }
            RunEvent::StageProgress {
                stage,
                done,
                total,
                detail,
            } => {
                let st = self.pipeline.stage(*stage);
                // After its end a stage's line is its end detail; late
                // progress (a later stage reusing the stage's reporter)
                // must not overwrite it.
                if matches!(st.state, StageState::Done(_)) {
                    return;
                }
                st.done = *done;
                st.total = *total;
                if !detail.is_empty() {
                    st.detail = detail.clone();
                }
            }
            RunEvent::StageEnd {
                stage,
                outcome,
                detail,
                elapsed_ms,
            } => {
                let st = self.pipeline.stage(*stage);
                st.state = StageState::Done(*outcome);
                if !detail.is_empty() {
                    st.detail = detail.clone();
                }
                st.elapsed_ms = *elapsed_ms;
                if st.total > 0 && *outcome == Outcome::Ok {
                    st.done = st.total;
                }
            }
            RunEvent::Accel(a) => {
                self.run.accel = Some(a.accel.clone());
                self.run.accel_reason = Some(a.reason.clone());
            }
            RunEvent::Profile(p) => self.run.profile = Some(p.name.clone()),
            RunEvent::ScenarioSkipped { scenario, why } => {
                self.build_log.push(
                    e.t_us,
                    Severity::Meta,
                    format!("» {scenario} skipped: {why}"),
                );
            }
            RunEvent::DetectorProven {
                detector,
                scenario,
                step,
                report,
            } => {
                self.console.push(
                    e.t_us,
                    Severity::Meta,
                    format!("» {detector} proven: report #{report} from {scenario} step {step}"),
                );
            }
            RunEvent::ScenarioBegin { scenario, .. } => {
                self.current_scenario = Some(scenario.clone());
            }
            RunEvent::ScenarioEnd { scenario, .. } => {
                if self.current_scenario.as_deref() == Some(scenario) {
                    self.current_scenario = None;
                }
            }
            RunEvent::Expectation { .. } => {}
            RunEvent::Note { text } => {
                self.build_log
                    .push(e.t_us, Severity::Meta, format!("» {text}"));
            }
            RunEvent::Error { text } => {
                self.build_log
                    .push(e.t_us, Severity::Bug, format!("» error: {text}"));
                self.status = Some(Status {
                    text: format!("error: {text}"),
                    error: true,
                });
            }
            RunEvent::Finished { passed, elapsed_ms } => {
                self.run.finished = Some((*passed, *elapsed_ms));
                self.now_us = self.now_us.max(elapsed_ms * 1000);
                self.current_scenario = None;
            }
        }
    }

    fn ingest_kernel(&mut self, e: &Event, k: &KernelEvent) {
        match k {
            KernelEvent::Patch(p) => {
                let from_subject = posted_position(&p.subject);
                // Logs written before roles existed say `posted` for the
                // port's patches too; a replacement keeps the posted
                // subject (and its `n/m`), a fixup has its own.
                let role = match (p.role, p.fixup, from_subject) {
                    (PatchRole::Posted, true, Some(_)) => PatchRole::Replacement,
                    (PatchRole::Posted, true, None) => PatchRole::Fixup,
                    (role, _, _) => role,
                };
                let posted_index = match role {
                    PatchRole::Fixup => None,
                    _ => p.posted_index.or(from_subject.map(|(n, _)| n)),
                };
                let row = PatchRow {
                    series: p.series.clone(),
                    index: p.index,
                    total: p.total,
                    subject: p.subject.clone(),
                    fixup: p.fixup,
                    role,
                    posted_index,
                    posted_total: from_subject.map(|(_, of)| of),
                    status: p.status,
                    detail: p.detail.clone(),
                    builds: None,
                    first_error: None,
                    cross: None,
                };
                match self
                    .pipeline
                    .patches
                    .iter_mut()
                    .find(|r| r.series == p.series && r.index == p.index && r.fixup == p.fixup)
                {
                    Some(r) => *r = row,
                    None => self.pipeline.patches.push(row),
                }
            }
            KernelEvent::BuildLine { line } => {
                self.build_log
                    .push(e.t_us, build_line_severity(line), line.clone());
            }
            KernelEvent::BuildProgress {
                done,
                total,
                current,
            } => {
                let st = self.pipeline.stage(Stage::Build);
                // The selftests stage builds too and reports the same
                // way, after the Build stage has ended: that progress is
                // not the kernel build's.
                if matches!(st.state, StageState::Done(_)) {
                    return;
                }
                if st.state == StageState::Pending {
                    st.state = StageState::Running;
                    st.began_us = e.t_us;
                }
                st.done = *done;
                st.total = *total;
                st.detail = current.clone();
            }
            KernelEvent::PatchBuild {
                series,
                index,
                builds,
                first_error,
                cross_arch,
                cross_error,
                ..
            } => {
                if let Some(r) = self
                    .pipeline
                    .patches
                    .iter_mut()
                    .find(|r| &r.series == series && r.index == *index)
                {
                    r.builds = Some(*builds);
                    r.first_error = first_error.clone();
                    r.cross = cross_arch.clone().map(|a| (a, cross_error.clone()));
                }
            }
            KernelEvent::Artifact { kind, path } => {
                self.pipeline.artifacts.push((kind.clone(), path.clone()));
            }
            // Per-symbol config verification; a failure also ends the
            // Configure stage with the symbols named.
            KernelEvent::ConfigChecked { .. } => {}
        }
    }

    fn ingest_vm(&mut self, e: &Event, v: &VmEvent) {
        match v {
            VmEvent::ProcessStarted { name, pid } => {
                if name.contains("qemu") {
                    self.run.vm_state = Some("starting".into());
                }
                self.console.push(
                    e.t_us,
                    Severity::Meta,
                    format!("» {name} started (pid {pid})"),
                );
            }
            VmEvent::ProcessExited {
                name,
                status,
                expected,
            } => {
                if name.contains("qemu") {
                    self.run.vm_state = Some(if *expected {
                        "stopped".into()
                    } else {
                        "died".into()
                    });
                }
                let sev = if *expected {
                    Severity::Meta
                } else {
                    Severity::Bug
                };
                self.console
                    .push(e.t_us, sev, format!("» {name} exited: {status}"));
            }
            VmEvent::State { status } => self.run.vm_state = Some(status.clone()),
            VmEvent::Qmp { name, .. } => {
                // QMP events that change the run state name it.
                let state = match name.as_str() {
                    "STOP" => Some("paused"),
                    "RESUME" => Some("running"),
                    "SHUTDOWN" | "POWERDOWN" => Some("shutdown"),
                    "RESET" => Some("reset"),
                    _ => None,
                };
                if let Some(s) = state {
                    self.run.vm_state = Some(s.into());
                }
                self.console
                    .push(e.t_us, Severity::Meta, format!("» QMP {name}"));
            }
            VmEvent::AgentText { line } => {
                self.console
                    .push(e.t_us, Severity::Meta, format!("agent│ {line}"));
            }
            VmEvent::Confinement { protections } => {
                let off: Vec<&str> = protections
                    .iter()
                    .filter(|p| !p.active)
                    .map(|p| p.name.as_str())
                    .collect();
                let mut line = format!(
                    "» confinement: {} of {} protections in force",
                    protections.len() - off.len(),
                    protections.len()
                );
                if !off.is_empty() {
                    line.push_str(&format!("; not: {}", off.join(", ")));
                }
                self.console.push(e.t_us, Severity::Meta, line);
            }
            VmEvent::Console { line, severity } => {
                let sev = match severity {
                    ConsoleSeverity::Normal => Severity::Normal,
                    ConsoleSeverity::Warn => Severity::Warn,
                    ConsoleSeverity::Bug => Severity::Bug,
                };
                self.console.push(e.t_us, sev, line.clone());
            }
            VmEvent::KernelReport(r) => {
                self.console.push(
                    e.t_us,
                    Severity::Bug,
                    format!(
                        "» report #{} {}: {} ({})",
                        r.id,
                        r.kind.name(),
                        r.one_line(),
                        where_of(&r.attribution)
                    ),
                );
                if let Some(stack) = r.stacks.first() {
                    for f in stack.frames.iter().filter(|f| f.reliable).take(6) {
                        let at = f.location.as_deref().unwrap_or("");
                        self.console.push(
                            e.t_us,
                            Severity::Meta,
                            format!("»     {} {at}", f.function),
                        );
                    }
                }
            }
            VmEvent::KernelReportAgain {
                id,
                count,
                attribution,
            } => self.console.push(
                e.t_us,
                Severity::Meta,
                format!(
                    "» report #{id} again ({count} times; {})",
                    where_of(attribution)
                ),
            ),
        }
    }

    fn ingest_agent(&mut self, e: &Event, a: &AgentMsg) {
        match a {
            AgentMsg::Ready(r) => {
                self.run.kernel_release = Some(r.kernel_release.clone());
                for m in &r.missing {
                    self.console
                        .push(e.t_us, Severity::Warn, format!("agent│ missing: {m}"));
                }
            }
            AgentMsg::BundleBegin {
                bundle, scenario, ..
            } => {
                self.bundles.insert(*bundle, scenario.clone());
                self.trace.new_bundle();
                if self.current_scenario.is_none() {
                    self.current_scenario = Some(scenario.clone());
                }
            }
            AgentMsg::CallBegin {
                call,
                step,
                thread,
                name,
            } => {
                let sc = self.current_scenario.clone();
                self.trace
                    .begin(e, *call, *step, *thread, name, sc.as_deref());
            }
            AgentMsg::CallEnd(rec) => {
                let sc = self.current_scenario.clone();
                self.trace.end(e, rec, sc.as_deref());
                if rec.name == PING && rec.errno.is_none() {
                    self.ping.record(rec.duration_ns);
                }
            }
            AgentMsg::Kmemleak {
                step, text, error, ..
            } => {
                let after = step.map_or("the scenario".to_string(), |s| format!("step {s}"));
                let (sev, what) = match error {
                    Some(why) => (Severity::Warn, format!("not made: {why}")),
                    None => {
                        let n = text.matches("unreferenced object").count();
                        let sev = if n > 0 { Severity::Bug } else { Severity::Meta };
                        (sev, format!("{n} unreferenced object(s)"))
                    }
                };
                self.console.push(
                    e.t_us,
                    sev,
                    format!("agent│ kmemleak scan after {after}: {what}"),
                );
            }
            AgentMsg::Log { level, text } => {
                let sev = match level {
                    LogLevel::Info => Severity::Meta,
                    LogLevel::Warn => Severity::Warn,
                    LogLevel::Error => Severity::Bug,
                };
                self.console.push(e.t_us, sev, format!("agent│ {text}"));
            }
            AgentMsg::Output { line, .. } => {
                self.console
                    .push(e.t_us, Severity::Meta, format!("agent│ {line}"));
            }
            AgentMsg::BundleEnd { bundle, error } => {
                if let Some(err) = error {
                    let name = self.bundles.get(bundle).cloned().unwrap_or_default();
                    self.console.push(
                        e.t_us,
                        Severity::Bug,
                        format!("agent│ bundle {bundle} {name} stopped: {err}"),
                    );
                }
            }
            AgentMsg::ShellEnded { status, error } => self.console.push(
                e.t_us,
                Severity::Meta,
                match error {
                    Some(err) => format!("agent│ the shell could not run: {err}"),
                    None => format!("agent│ the shell exited with status {status}"),
                },
            ),
            AgentMsg::Thread { thread, .. } => self.trace.thread_started(*thread),
            AgentMsg::StepBegin { .. }
            | AgentMsg::StepEnd { .. }
            | AgentMsg::SyncWait { .. }
            | AgentMsg::Ktap(_) => {}
        }
    }
}

/// `goldfish-leaks step 3 call 17`: where a report was attributed.
pub fn where_of(a: &gasbench_events::report::Attribution) -> String {
    let mut s = a.scenario.clone().unwrap_or_else(|| "no scenario".into());
    if let Some(step) = a.step {
        s.push_str(&format!(" step {step}"));
    }
    if let Some(call) = a.call {
        s.push_str(&format!(" call #{call}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use gasbench_events::kernel::PatchApplied;

    /// A `patch` event as the apply stage writes it: `index`/`total` over
    /// the whole queue, `posted_index` the posting's own number.
    fn patch(
        series: &str,
        index: u32,
        posted: Option<(u32, u32)>,
        role: PatchRole,
        status: ApplyStatus,
    ) -> Event {
        let subject = match (role, posted) {
            (PatchRole::Fixup, _) | (_, None) => "[gasbench fixup v7.2.12] port".to_string(),
            (_, Some((n, of))) => format!("[RFC PATCH v2 {n}/{of}] subject"),
        };
        Event {
            seq: u64::from(index),
            t_us: u64::from(index),
            body: EventBody::Kernel(KernelEvent::Patch(PatchApplied {
                series: series.into(),
                index,
                total: 17,
                posted_index: posted.map(|(n, _)| n),
                subject,
                fixup: matches!(role, PatchRole::Replacement | PatchRole::Fixup),
                role,
                status,
                files: Vec::new(),
                hunks: Vec::new(),
                detail: String::new(),
            })),
        }
    }

    /// The default suite's queue: mkdirat2 v2 (1/2 applies, 2/2 is
    /// replaced, one fixup), then goldfish v3 (1/6 reconstructed, 2–5
    /// replaced, 6/6 applies, three fixups): 17 patches in all.
    fn default_queue() -> Vec<Event> {
        use ApplyStatus::{Applied, Failed};
        use PatchRole::{Fixup, Posted, Reconstructed, Replacement};
        let mut ev = vec![
            patch("mkdirat2-v2", 1, Some((1, 2)), Posted, Applied),
            patch("mkdirat2-v2", 2, Some((2, 2)), Posted, Failed),
            patch("mkdirat2-v2", 3, Some((2, 2)), Replacement, Applied),
            patch("mkdirat2-v2", 4, None, Fixup, Applied),
            patch(
                "goldfish-address-space-v3",
                5,
                Some((1, 6)),
                Reconstructed,
                Applied,
            ),
        ];
        let mut i = 6;
        for k in 2..=5 {
            ev.push(patch(
                "goldfish-address-space-v3",
                i,
                Some((k, 6)),
                Posted,
                Failed,
            ));
            ev.push(patch(
                "goldfish-address-space-v3",
                i + 1,
                Some((k, 6)),
                Replacement,
                Applied,
            ));
            i += 2;
        }
        ev.push(patch(
            "goldfish-address-space-v3",
            14,
            Some((6, 6)),
            Posted,
            Applied,
        ));
        for j in 15..=17 {
            ev.push(patch("goldfish-address-space-v3", j, None, Fixup, Applied));
        }
        ev
    }

    #[test]
    fn series_counts_use_each_postings_numbering_not_the_apply_queue() {
        let m = Model::from_events(
            default_queue(),
            Mode::Browse { path: "/r".into() },
            Theme::mono(),
        );
        let s = m.pipeline.series_apply();
        assert_eq!(
            s,
            [
                SeriesApply {
                    series: "mkdirat2-v2".into(),
                    posted: 2,
                    as_posted: 1,
                    ported: 1,
                    failed: 0
                },
                SeriesApply {
                    series: "goldfish-address-space-v3".into(),
                    posted: 6,
                    as_posted: 2,
                    ported: 4,
                    failed: 0
                },
            ]
        );
        assert!(s.iter().all(|s| s.pending() == 0));
        // The port's fixups have no posted position.
        let last = m.pipeline.patches.last().unwrap();
        assert_eq!((last.role, last.posted_index), (PatchRole::Fixup, None));
    }

    #[test]
    fn a_failed_patch_without_replacement_counts_as_failed_and_unseen_ones_as_pending() {
        use ApplyStatus::{Applied, Failed};
        let ev = vec![
            patch("s-v1", 1, Some((1, 3)), PatchRole::Posted, Applied),
            patch("s-v1", 2, Some((2, 3)), PatchRole::Posted, Failed),
        ];
        let m = Model::from_events(ev, Mode::Browse { path: "/r".into() }, Theme::mono());
        let s = &m.pipeline.series_apply()[0];
        assert_eq!((s.posted, s.as_posted, s.ported, s.failed), (3, 1, 0, 1));
        assert_eq!(s.pending(), 1);
    }

    #[test]
    fn logs_without_roles_tell_replacements_from_fixups_by_the_subject() {
        let mut ev = patch(
            "s-v1",
            2,
            Some((1, 1)),
            PatchRole::Replacement,
            ApplyStatus::Applied,
        );
        if let EventBody::Kernel(KernelEvent::Patch(p)) = &mut ev.body {
            p.role = PatchRole::Posted;
            p.posted_index = None;
        }
        let m = Model::from_events(vec![ev], Mode::Browse { path: "/r".into() }, Theme::mono());
        let row = &m.pipeline.patches[0];
        assert_eq!(
            (row.role, row.posted_index, row.posted_total),
            (PatchRole::Replacement, Some(1), Some(1))
        );
        assert_eq!(posted_position("[gasbench fixup v7.2.12] x"), None);
        assert_eq!(posted_position("[RFC PATCH v3 3/6] x"), Some((3, 6)));
    }

    fn at(seq: u64, body: EventBody) -> Event {
        Event {
            seq,
            t_us: seq * 1000,
            body,
        }
    }

    #[test]
    fn an_ended_stage_keeps_its_end_detail_when_later_stages_build() {
        use gasbench_events::run::Outcome;
        let progress = |seq, done, current: &str| {
            at(
                seq,
                EventBody::Kernel(KernelEvent::BuildProgress {
                    done,
                    total: 1500,
                    current: current.into(),
                }),
            )
        };
        let ev = vec![
            at(
                1,
                EventBody::Run(RunEvent::StageBegin {
                    stage: Stage::Build,
                    detail: "make bzImage".into(),
                }),
            ),
            progress(2, 700, "fs/namei.o"),
            at(
                3,
                EventBody::Run(RunEvent::StageEnd {
                    stage: Stage::Build,
                    outcome: Outcome::Ok,
                    detail: "759 kbuild steps in 248.2 s".into(),
                    elapsed_ms: 248_200,
                }),
            ),
            // The selftests stage builds too, and says so the same way.
            at(
                4,
                EventBody::Run(RunEvent::StageBegin {
                    stage: Stage::Selftests,
                    detail: String::new(),
                }),
            ),
            progress(5, 1, "/var/cache/gasbench/kernel/headers/include"),
            at(
                6,
                EventBody::Run(RunEvent::StageProgress {
                    stage: Stage::Build,
                    done: 1,
                    total: 1,
                    detail: "mkdirat_fd_test".into(),
                }),
            ),
        ];
        let m = Model::from_events(ev, Mode::Browse { path: "/r".into() }, Theme::mono());
        let build = m
            .pipeline
            .stages
            .iter()
            .find(|s| s.stage == Stage::Build)
            .unwrap();
        assert_eq!(build.state, StageState::Done(Outcome::Ok));
        assert_eq!(build.detail, "759 kbuild steps in 248.2 s");
        assert_eq!(build.elapsed_ms, 248_200);
    }

    /// Lines from real kernel and selftest builds here.
    #[test]
    fn build_lines_are_classified_by_the_toolchains_markers() {
        let bug = [
            "/src/include/linux/syscalls.h:1008:29: error: expected ';' after top level declarator",
            "error[E0425]: cannot find value `x` in this scope",
            "make[3]: *** [/src/scripts/Makefile.build:184: kernel/sched/rq-offsets.s] Error 1",
            "make: *** [Makefile:260: __sub-make] Error 2",
            "ld.lld: error: undefined symbol: goldfish_x",
            "drivers/x.o: in function `f': x.c:(.text+0x1): undefined reference to `g'",
            "ERROR: modpost: \"foo\" [drivers/x.ko] undefined!",
        ];
        let normal = [
            "Failed to run rustfmt: No such file or directory (os error 2) (non-fatal, continuing)",
            "  CC      arch/x86/boot/compressed/error.o",
            "  CC      lib/zstd/common/error_private.o",
            "  HDRINST usr/include/linux/can/error.h",
            "1 error generated.",
        ];
        for l in bug {
            assert_eq!(build_line_severity(l), Severity::Bug, "{l}");
        }
        for l in normal {
            assert_eq!(build_line_severity(l), Severity::Normal, "{l}");
        }
        assert_eq!(
            build_line_severity("fs/namei.c:12:1: warning: unused variable"),
            Severity::Warn
        );
        assert_eq!(
            build_line_severity("warning[unused_imports]: unused import"),
            Severity::Warn
        );
    }

    /// A device that disconnects while the VM runs is a fault; one that
    /// disconnects once QEMU shut down is the end of the run.
    #[test]
    fn a_disconnect_is_an_error_only_while_the_vm_runs() {
        use gasbench_events::device::DeviceEvent;
        let gone = |seq| {
            at(
                seq,
                EventBody::Device(DeviceEvent::Disconnected {
                    reason: "client closed the connection".into(),
                }),
            )
        };
        let running = at(
            1,
            EventBody::Vm(VmEvent::Qmp {
                name: "RESUME".into(),
                data: serde_json::Value::Null,
            }),
        );
        let m = Model::from_events(vec![running.clone(), gone(2)], Mode::Live, Theme::mono());
        assert!(!m.device.ended_with_vm);
        let shutdown = at(
            2,
            EventBody::Vm(VmEvent::Qmp {
                name: "SHUTDOWN".into(),
                data: serde_json::Value::Null,
            }),
        );
        let m = Model::from_events(vec![running, shutdown, gone(3)], Mode::Live, Theme::mono());
        assert!(m.device.ended_with_vm);
    }

    /// Interactive sessions before the engine's service wrote `finished`
    /// left none: such a session quit normally is over, not cut off; one
    /// whose log stops with a stage running was.
    #[test]
    fn a_log_without_finished_is_cut_off_only_when_something_was_still_going() {
        use gasbench_events::run::Outcome;
        let begin = at(
            1,
            EventBody::Run(RunEvent::StageBegin {
                stage: Stage::Teardown,
                detail: String::new(),
            }),
        );
        let end = at(
            2,
            EventBody::Run(RunEvent::StageEnd {
                stage: Stage::Teardown,
                outcome: Outcome::Ok,
                detail: "exit status: 0".into(),
                elapsed_ms: 60,
            }),
        );
        let browse = Mode::Browse { path: "/r".into() };
        let quit_normally =
            Model::from_events(vec![begin.clone(), end], browse.clone(), Theme::mono());
        assert!(!quit_normally.log_ended_early());
        let mut killed = Model::from_events(vec![begin.clone()], browse, Theme::mono());
        assert!(killed.log_ended_early());
        // The same log while its recorder still runs: still going.
        killed.still_running = true;
        assert!(!killed.log_ended_early());
        // Live, the run is still going: nothing is cut off.
        let mut live = Model::from_events(vec![begin], Mode::Live, Theme::mono());
        live.bus_closed = false;
        assert!(!live.log_ended_early());
    }
}
