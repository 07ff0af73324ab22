//! Actions (what happened: a key, an event batch, a tick) and the one
//! `update` that turns them into a new model and the effects the pipeline
//! must carry out. The TUI never runs pipeline work itself: it asks the
//! [`crate::Controller`] through [`Effect`]s.

use gasbench_events::Event;

use crate::layout;
use crate::model::{Cursor, FilterInput, Mode, Model, Pane, Status};
use crate::store::TraceFilter;

/// Which scenarios to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    All,
    One(String),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Events from the bus, in order.
    Events(Vec<Event>),
    /// The bus closed: the run (or the replayed log) is over.
    BusClosed,
    /// The clock moved (µs since the run started).
    Tick {
        now_us: u64,
    },
    /// A replay is reading the log: events so far, bytes read of total.
    Loading {
        events: u64,
        bytes: u64,
        total: u64,
    },
    Resize {
        width: u16,
        height: u16,
    },
    FocusNext,
    FocusPrev,
    Focus(Pane),
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    Enter,
    /// `J` / `K`: scroll the expanded call's detail by lines.
    ScrollDetail(isize),
    Escape,
    StartFilter,
    /// `n` / `N`: the next or previous row the pane's last filter matches.
    NextMatch {
        forward: bool,
    },
    /// `y`: copy the selected call, decoded, with its register accesses.
    Copy,
    FilterChar(char),
    FilterBackspace,
    FilterSubmit,
    FilterCancel,
    ToggleHelp,
    ToggleZoom,
    /// `r`: the selected scenario, or all when "all" is selected.
    RunSelected,
    RunAll,
    Rebuild,
    /// `p`: the next kernel profile (default → debug → race).
    NextProfile,
    StopVm,
    /// `q`, Ctrl-C: stop the VM cleanly, then leave.
    Quit,
    /// Leave now (a second `q` while the VM is being stopped).
    ForceQuit,
    /// The controller answered a request.
    Controlled {
        what: String,
        result: Result<(), String>,
    },
}

/// What the main loop must do after an update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    Run(Selection),
    RebuildKernel,
    NextProfile,
    StopVm,
    /// Ask the pipeline to stop the VM and close the bus.
    Quit,
    /// Restore the terminal and return.
    Exit,
    /// Put this text on the terminal's clipboard (OSC 52) and in the file
    /// (in the run directory), then say where it went.
    Copy {
        text: String,
        file: std::path::PathBuf,
    },
}

fn info(m: &mut Model, text: impl Into<String>) {
    m.status = Some(Status {
        text: text.into(),
        error: false,
    });
}

fn browse_only(m: &mut Model, what: &str) {
    m.status = Some(Status {
        text: format!("{what}: this is a past run opened for browsing; start `gasbench` to run"),
        error: true,
    });
}

/// Rows of the list in `pane` and the window it scrolls in.
fn list_len(m: &Model, pane: Pane) -> usize {
    match pane {
        Pane::Pipeline => m.pipeline.stages.len() + m.pipeline.patches.len(),
        Pane::Scenarios => m.scenario_entries().len(),
        Pane::Trace => m.trace.visible_len(),
        Pane::Device => m.device.handles.len() + m.device.faults.len(),
        Pane::Console => m.console.visible_len(),
        Pane::Build => m.build_log.visible_len(),
        Pane::Results => crate::view::results::line_count(m),
    }
}

fn cursor_mut(m: &mut Model, pane: Pane) -> &mut Cursor {
    match pane {
        Pane::Pipeline => &mut m.pipeline.cursor,
        Pane::Scenarios => &mut m.scenario_cursor,
        Pane::Trace => &mut m.trace_cursor,
        Pane::Device => &mut m.device_cursor,
        Pane::Console => &mut m.console.cursor,
        Pane::Build => &mut m.build_log.cursor,
        Pane::Results => &mut m.results_cursor,
    }
}

fn move_cursor(m: &mut Model, delta: isize) {
    let pane = m.focus;
    let len = list_len(m, pane);
    let rows = layout::list_rows(m, pane);
    let before = m.selected_scenario();
    cursor_mut(m, pane).step(delta, len, rows);
    if pane == Pane::Scenarios {
        let after = m.selected_scenario();
        if after != before {
            select_scenario(m, after);
        }
    }
}

/// Scroll the expanded call's detail, within its length.
fn scroll_detail(m: &mut Model, delta: isize) {
    let Some(seq) = m.selected_call().map(|r| r.begin_seq) else {
        return;
    };
    let max = crate::view::trace::detail_max_scroll(
        crate::view::trace::detail_line_count(m),
        layout::detail_rows(m),
    );
    let now = m.detail_offset() as isize;
    m.detail_scroll = (seq, (now + delta).clamp(0, max as isize) as usize);
}

/// Selecting a scenario filters the trace to its calls.
fn select_scenario(m: &mut Model, name: Option<String>) {
    m.trace.set_scenario(name.as_deref());
    m.trace_cursor = Cursor::following();
    m.expanded = false;
}

fn focus(m: &mut Model, pane: Pane) {
    m.focus = pane;
    if matches!(pane, Pane::Console | Pane::Build) {
        m.log_slot = pane;
    }
}

/// Which of [`Model::searches`] belongs to `pane`.
fn search_slot(pane: Pane) -> Option<usize> {
    match pane {
        Pane::Trace => Some(0),
        Pane::Console => Some(1),
        Pane::Build => Some(2),
        _ => None,
    }
}

/// `n`/`N`: move to the next (previous) row of the focused pane that its
/// last filter matches, among the rows it shows now: with the filter
/// still on that is the next row; with it cleared (`/` then Esc) the
/// matches are seen among the lines around them.
fn next_match(m: &mut Model, forward: bool) {
    let pane = m.focus;
    let Some(search) = search_slot(pane)
        .map(|k| m.searches[k].clone())
        .filter(|s| !s.is_empty())
    else {
        info(
            m,
            "n/N: no search yet here: / to filter the trace, console or build log",
        );
        return;
    };
    let len = list_len(m, pane);
    let rows = layout::list_rows(m, pane);
    let (from, _) = cursor_mut(m, pane).window(len, rows);
    let found = if len == 0 {
        None
    } else {
        match pane {
            Pane::Trace => {
                let f = TraceFilter::parse(&search);
                crate::model::next_hit(len, from, forward, |i| m.trace.visible_matches(i, &f))
            }
            Pane::Console => crate::model::next_hit(len, from, forward, |i| {
                m.console.visible_matches(i, &search)
            }),
            _ => crate::model::next_hit(len, from, forward, |i| {
                m.build_log.visible_matches(i, &search)
            }),
        }
    };
    match found {
        Some(i) => {
            cursor_mut(m, pane).select(i, len, rows);
            if pane == Pane::Trace {
                m.expanded = false;
            }
        }
        None => info(m, format!("no match for \"{search}\"")),
    }
}

fn apply_filter(m: &mut Model, pane: Pane, text: &str) {
    if let Some(k) = search_slot(pane)
        && !text.is_empty()
    {
        m.searches[k] = text.to_string();
    }
    match pane {
        Pane::Trace => {
            m.trace.set_filter(TraceFilter::parse(text));
            m.trace_cursor = Cursor::following();
        }
        Pane::Console => m.console.set_filter(text),
        Pane::Build => m.build_log.set_filter(text),
        _ => {}
    }
}

fn current_filter(m: &Model, pane: Pane) -> String {
    match pane {
        Pane::Trace => m.trace.filter().text.clone(),
        Pane::Console => m.console.filter.clone(),
        Pane::Build => m.build_log.filter.clone(),
        _ => String::new(),
    }
}

/// The one state transition.
pub fn update(m: &mut Model, action: Action) -> Vec<Effect> {
    let mut fx = Vec::new();
    match action {
        Action::Events(batch) => {
            for e in &batch {
                m.ingest(e);
            }
            m.lookup.refresh();
        }
        Action::BusClosed => {
            m.bus_closed = true;
            m.loading = None;
            if m.log_ended_early() {
                // Kept after what the replay reported (a line cut short).
                let note = "the log ends before the run did (no `finished` event: \
                            gasbench was stopped or crashed); nothing here is still running";
                m.status = Some(match m.status.take() {
                    Some(st) => Status {
                        text: format!("{} · {note}", st.text),
                        error: st.error,
                    },
                    None => Status {
                        text: note.into(),
                        error: true,
                    },
                });
            }
            if m.quitting {
                fx.push(Effect::Exit);
            }
        }
        Action::Tick { now_us } => {
            if m.run.finished.is_none() {
                m.now_us = m.now_us.max(now_us);
            }
        }
        Action::Loading {
            events,
            bytes,
            total,
        } => m.loading = Some((events, bytes, total)),
        Action::Resize { width, height } => {
            m.viewport.width = width;
            m.viewport.height = height;
        }
        Action::FocusNext => focus(m, m.focus.next()),
        Action::FocusPrev => focus(m, m.focus.prev()),
        Action::Focus(p) => focus(m, p),
        Action::Up => move_cursor(m, -1),
        Action::Down => move_cursor(m, 1),
        // With a call expanded, a page is a page of its detail (j/k still
        // move in the table).
        Action::PageUp | Action::PageDown if m.focus == Pane::Trace && m.expanded => {
            let page = layout::detail_rows(m).saturating_sub(1).max(1) as isize;
            let delta = if action == Action::PageUp {
                -page
            } else {
                page
            };
            scroll_detail(m, delta);
        }
        Action::PageUp => {
            let rows = layout::list_rows(m, m.focus) as isize;
            move_cursor(m, -rows.max(1));
        }
        Action::PageDown => {
            let rows = layout::list_rows(m, m.focus) as isize;
            move_cursor(m, rows.max(1));
        }
        Action::ScrollDetail(delta) => {
            if m.expanded {
                scroll_detail(m, delta);
            }
        }
        Action::Top => {
            let before = m.selected_scenario();
            cursor_mut(m, m.focus).top();
            if m.focus == Pane::Scenarios && before.is_some() {
                select_scenario(m, None);
            }
        }
        Action::Bottom => {
            if m.focus == Pane::Scenarios {
                let len = list_len(m, Pane::Scenarios);
                move_cursor(m, len as isize);
            } else {
                cursor_mut(m, m.focus).bottom();
            }
        }
        Action::Enter => match m.focus {
            Pane::Trace => m.expanded = !m.expanded && m.trace.visible_len() > 0,
            Pane::Scenarios => focus(m, Pane::Trace),
            _ => {}
        },
        Action::NextMatch { forward } => next_match(m, forward),
        Action::Copy => {
            let Some(text) = crate::view::trace::copy_text(m) else {
                info(m, "nothing to copy: select a call in the trace (3)");
                return vec![];
            };
            let Some(dir) = m.run_dir_path() else {
                info(
                    m,
                    "nothing to copy to: this session has no run directory yet",
                );
                return vec![];
            };
            let call = m.selected_call().map_or(0, |r| r.begin_seq);
            return vec![Effect::Copy {
                text,
                file: dir.join(format!("copied-call-{call}.txt")),
            }];
        }
        Action::Escape => {
            if m.help {
                m.help = false;
            } else if m.expanded {
                m.expanded = false;
            } else if m.zoom {
                m.zoom = false;
            } else {
                m.status = None;
            }
        }
        Action::StartFilter => {
            if !m.focus.filterable() {
                focus(m, Pane::Trace);
            }
            m.input = Some(FilterInput {
                pane: m.focus,
                text: current_filter(m, m.focus),
            });
        }
        Action::FilterChar(c) => {
            if let Some(inp) = &mut m.input {
                inp.text.push(c);
                let (pane, text) = (inp.pane, inp.text.clone());
                apply_filter(m, pane, &text);
            }
        }
        Action::FilterBackspace => {
            if let Some(inp) = &mut m.input {
                inp.text.pop();
                let (pane, text) = (inp.pane, inp.text.clone());
                apply_filter(m, pane, &text);
            }
        }
        Action::FilterSubmit => {
            m.input = None;
        }
        Action::FilterCancel => {
            // Esc while typing clears the filter: the quickest way back to
            // everything.
            if let Some(inp) = m.input.take() {
                apply_filter(m, inp.pane, "");
            }
        }
        Action::ToggleHelp => m.help = !m.help,
        Action::ToggleZoom => m.zoom = !m.zoom,
        Action::RunSelected | Action::RunAll => {
            if m.mode != Mode::Live {
                browse_only(m, "run");
            } else if m.quitting {
                info(m, "quitting: not starting anything");
            } else {
                let sel = match (&action, m.selected_scenario()) {
                    (Action::RunSelected, Some(name)) => Selection::One(name),
                    _ => Selection::All,
                };
                info(
                    m,
                    match &sel {
                        Selection::All => "run: all scenarios requested".to_string(),
                        Selection::One(n) => format!("run: {n} requested"),
                    },
                );
                fx.push(Effect::Run(sel));
            }
        }
        Action::Rebuild => {
            if m.mode != Mode::Live {
                browse_only(m, "rebuild");
            } else if !m.quitting {
                info(m, "rebuild: kernel build requested");
                fx.push(Effect::RebuildKernel);
            }
        }
        Action::NextProfile => {
            if m.mode != Mode::Live {
                browse_only(m, "profile");
            } else if !m.quitting {
                info(m, "profile: switching to the next kernel profile");
                fx.push(Effect::NextProfile);
            }
        }
        Action::StopVm => {
            if m.mode != Mode::Live {
                browse_only(m, "stop");
            } else if !m.quitting {
                info(m, "stop: stopping the VM");
                fx.push(Effect::StopVm);
            }
        }
        Action::Quit => {
            // Browsing, nothing left running, or a second q: leave now.
            if m.mode != Mode::Live || m.bus_closed || m.quitting {
                fx.push(Effect::Exit);
            } else {
                m.quitting = true;
                info(
                    m,
                    "quitting: stopping the VM cleanly (q again to leave at once)",
                );
                fx.push(Effect::Quit);
            }
        }
        Action::ForceQuit => fx.push(Effect::Exit),
        Action::Controlled { what, result } => match result {
            Ok(()) => {}
            Err(e) => {
                m.status = Some(Status {
                    text: format!("{what}: {e}"),
                    error: true,
                })
            }
        },
    }
    fx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::theme::Theme;

    fn browse() -> Model {
        Model::from_events(
            Vec::new(),
            Mode::Browse { path: "/r".into() },
            Theme::mono(),
        )
    }

    #[test]
    fn browsing_refuses_pipeline_actions_and_quits_at_once() {
        let mut m = browse();
        for a in [
            Action::RunSelected,
            Action::Rebuild,
            Action::NextProfile,
            Action::StopVm,
        ] {
            assert!(update(&mut m, a).is_empty());
            assert!(m.status.as_ref().unwrap().error);
        }
        assert_eq!(update(&mut m, Action::Quit), [Effect::Exit]);
    }

    #[test]
    fn p_asks_the_pipeline_for_the_next_kernel_profile() {
        let mut m = Model::from_events(Vec::new(), Mode::Live, Theme::mono());
        assert_eq!(update(&mut m, Action::NextProfile), [Effect::NextProfile]);
    }

    #[test]
    fn live_quit_stops_the_vm_first_and_exits_when_the_bus_closes() {
        let mut m = browse();
        m.mode = Mode::Live;
        m.bus_closed = false;
        assert_eq!(update(&mut m, Action::Quit), [Effect::Quit]);
        assert!(m.quitting);
        assert!(update(&mut m, Action::RunAll).is_empty());
        assert_eq!(update(&mut m, Action::BusClosed), [Effect::Exit]);
        // A second q while waiting leaves at once.
        let mut m = browse();
        m.mode = Mode::Live;
        m.bus_closed = false;
        update(&mut m, Action::Quit);
        assert_eq!(update(&mut m, Action::Quit), [Effect::Exit]);
    }

    #[test]
    fn run_asks_for_the_selected_scenario_or_all() {
        let mut m = browse();
        m.mode = Mode::Live;
        m.suite = vec!["alpha".into(), "beta".into()];
        assert_eq!(
            update(&mut m, Action::RunSelected),
            [Effect::Run(Selection::All)]
        );
        update(&mut m, Action::Focus(Pane::Scenarios));
        update(&mut m, Action::Down);
        update(&mut m, Action::Down);
        assert_eq!(
            update(&mut m, Action::RunSelected),
            [Effect::Run(Selection::One("beta".into()))]
        );
        assert_eq!(m.trace.scenario_filter(), Some("beta"));
        assert_eq!(
            update(&mut m, Action::RunAll),
            [Effect::Run(Selection::All)]
        );
        update(&mut m, Action::Top);
        assert_eq!(m.trace.scenario_filter(), None);
    }

    #[test]
    fn focus_cycles_through_every_pane_both_ways() {
        let mut m = browse();
        let start = m.focus;
        let mut seen = vec![];
        for _ in 0..Pane::ALL.len() {
            update(&mut m, Action::FocusNext);
            seen.push(m.focus);
        }
        assert_eq!(m.focus, start);
        seen.sort_by_key(|p| p.index());
        assert_eq!(seen, Pane::ALL);
        update(&mut m, Action::FocusPrev);
        assert_eq!(m.focus, start.prev());
    }

    #[test]
    fn typing_a_filter_applies_it_and_escape_clears_it() {
        let mut m = browse();
        m.console
            .push(0, crate::model::Severity::Normal, "PCI: probing".into());
        m.console
            .push(1, crate::model::Severity::Warn, "WARNING: x".into());
        update(&mut m, Action::Focus(Pane::Console));
        update(&mut m, Action::StartFilter);
        for c in "warn".chars() {
            update(&mut m, Action::FilterChar(c));
        }
        assert_eq!(m.console.visible_len(), 1);
        update(&mut m, Action::FilterSubmit);
        assert!(m.input.is_none());
        assert_eq!(m.console.visible_len(), 1);
        update(&mut m, Action::StartFilter);
        assert_eq!(m.input.as_ref().unwrap().text, "warn");
        update(&mut m, Action::FilterCancel);
        assert_eq!(m.console.visible_len(), 2);
        // From a pane without rows to filter, / filters the trace.
        update(&mut m, Action::Focus(Pane::Device));
        update(&mut m, Action::StartFilter);
        assert_eq!(m.focus, Pane::Trace);
    }

    /// `/warn`, Esc: every line is back, and n/N step through the lines
    /// that matched, wrapping at the ends; with no search yet they say so.
    #[test]
    fn n_and_shift_n_jump_between_the_last_filters_matches_in_context() {
        use crate::model::Severity;
        let mut m = browse();
        for (i, text) in ["boot", "WARNING: a", "probe", "probe", "WARNING: b", "end"]
            .iter()
            .enumerate()
        {
            m.console.push(i as u64, Severity::Normal, text.to_string());
        }
        update(&mut m, Action::Focus(Pane::Console));
        update(&mut m, Action::NextMatch { forward: true });
        assert!(m.status.as_ref().unwrap().text.contains("no search yet"));
        update(&mut m, Action::StartFilter);
        for c in "warning".chars() {
            update(&mut m, Action::FilterChar(c));
        }
        update(&mut m, Action::FilterCancel);
        assert_eq!(m.console.visible_len(), 6);
        let selected = |m: &mut Model| {
            let len = m.console.visible_len();
            m.console.cursor.window(len, 10).0
        };
        update(&mut m, Action::Top);
        update(&mut m, Action::NextMatch { forward: true });
        assert_eq!(selected(&mut m), 1);
        update(&mut m, Action::NextMatch { forward: true });
        assert_eq!(selected(&mut m), 4);
        update(&mut m, Action::NextMatch { forward: true });
        assert_eq!(selected(&mut m), 1, "wraps to the first match");
        update(&mut m, Action::NextMatch { forward: false });
        assert_eq!(selected(&mut m), 4, "N wraps back to the last");
        m.searches[1] = "nowhere".into();
        update(&mut m, Action::NextMatch { forward: true });
        assert!(m.status.as_ref().unwrap().text.contains("no match"));
        assert_eq!(selected(&mut m), 4);
    }
}
