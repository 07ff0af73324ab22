//! Snapshot tests: every pane, at 80×24 (one pane at a time) and at
//! 160×48 (the dashboard), over event logs in tests/fixtures/.
//!
//! The fixtures are event logs; the models are built by replaying them
//! through `update` exactly as the live TUI does. To test against a run
//! recorded by the real pipeline, replace the fixture's `events.jsonl` and
//! review the snapshots (`cargo insta review`); no code changes.
//!
//! Points in time are chosen by what happened ("the build is half done"),
//! not by sequence numbers, so they survive a change of fixture.

use std::path::{Path, PathBuf};

use gasbench_abi::protocol::AgentMsg;
use gasbench_events::kernel::KernelEvent;
use gasbench_events::run::RunEvent;
use gasbench_events::{Event, EventBody};
use gasbench_tui::store::MemEvents;
use gasbench_tui::{Action, Mode, Model, Pane, Theme, update, view};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::{Color, Modifier};

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn fixture(name: &str) -> Vec<Event> {
    let path = fixture_dir(name).join("events.jsonl");
    let (events, cut) = gasbench_trace::log::read_all(&path).expect("fixture reads");
    assert!(cut.is_none(), "{name}: {cut:?}");
    assert!(!events.is_empty());
    events
}

/// A model that has seen the events up to and including the first one
/// for which `stop` holds (all of them if none does).
fn model_until(events: &[Event], theme: Theme, stop: impl Fn(&Event) -> bool) -> Model {
    model_of("tests/fixtures/recorded-run", events, theme, stop)
}

/// [`model_until`] for a log browsed from `path`.
fn model_of(path: &str, events: &[Event], theme: Theme, stop: impl Fn(&Event) -> bool) -> Model {
    let end = events.iter().position(stop).map_or(events.len(), |i| i + 1);
    let prefix = events[..end].to_vec();
    let mut m = Model::new(
        Mode::Browse { path: path.into() },
        theme,
        Box::new(MemEvents(prefix.clone())),
    );
    update(&mut m, Action::Events(prefix));
    if end == events.len() {
        update(&mut m, Action::BusClosed);
    }
    m
}

fn whole_run() -> Model {
    model_until(&fixture("recorded-run"), Theme::colored(), |_| false)
}

fn render(m: &mut Model, w: u16, h: u16) -> Terminal<TestBackend> {
    update(
        m,
        Action::Resize {
            width: w,
            height: h,
        },
    );
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| view(m, f)).unwrap();
    t
}

fn screen(t: &Terminal<TestBackend>) -> String {
    let buf = t.backend().buffer();
    let mut s = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            s.push_str(buf[(x, y)].symbol());
        }
        s.push('\n');
    }
    s
}

fn act(m: &mut Model, actions: impl IntoIterator<Item = Action>) {
    for a in actions {
        update(m, a);
    }
}

fn typed(text: &str) -> Vec<Action> {
    let mut v = vec![Action::StartFilter];
    v.extend(text.chars().map(Action::FilterChar));
    v.push(Action::FilterSubmit);
    v
}

// --- 80×24: one pane at a time -------------------------------------------

#[test]
fn each_pane_at_80x24() {
    for pane in Pane::ALL {
        let mut m = whole_run();
        render(&mut m, 80, 24);
        act(&mut m, [Action::Focus(pane)]);
        let t = render(&mut m, 80, 24);
        let name = format!(
            "pane_80x24_{}",
            pane.title().replace(' ', "_").to_lowercase()
        );
        insta::assert_snapshot!(name, t.backend());
    }
}

/// The pipeline of a `gasbench repro --series mkdirat2 --cross-arch arm`
/// run (the review's recorded fixture): per patch, x86_64 then arm, the
/// posted 1/2 breaking arm, the replacement carrying the break, the port's
/// fixup repairing it.
#[test]
fn pipeline_of_a_per_patch_reproduction_with_arm_at_80x24() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../gasbench-review/tests/fixtures/mkdirat2-per-patch/events.jsonl");
    let (events, cut) = gasbench_trace::log::read_all(&path).expect("fixture reads");
    assert!(cut.is_none());
    let mut m = model_of("mkdirat2-per-patch", &events, Theme::colored(), |_| false);
    render(&mut m, 80, 24);
    act(&mut m, [Action::Focus(Pane::Pipeline)]);
    let t = render(&mut m, 80, 24);
    let text = screen(&t);
    let row = |needle: &str| {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no row with {needle}:\n{text}"))
            .to_string()
    };
    assert!(row("     1/2 ").contains("builds arm ✗"), "{text}");
    assert!(row("port 2/2").contains("builds arm ✗"), "{text}");
    assert!(row("[gasbench fixup").contains("builds arm ✓"), "{text}");
    // The error follows the subject where the width allows.
    assert_eq!(
        m.pipeline.patches[0].cross,
        Some((
            "arm".to_string(),
            Some(
                "include/linux/syscalls.h:1008:29: error: expected ';' after top level declarator"
                    .to_string()
            )
        ))
    );
    insta::assert_snapshot!("pipeline_per_patch_arm_80x24", t.backend());
}

#[test]
fn trace_expanded_at_80x24_shows_structs_and_register_accesses() {
    let mut m = whole_run();
    render(&mut m, 80, 24);
    act(&mut m, typed("alloc ok"));
    act(&mut m, [Action::Top, Action::Enter]);
    let t = render(&mut m, 80, 24);
    let s = screen(&t);
    assert!(s.contains("BLOCK_SIZE_LOW"), "{s}");
    assert!(s.contains("ALLOCATE_BLOCK"), "{s}");
    insta::assert_snapshot!("trace_expanded_80x24", t.backend());
}

/// A call with more device activity than the detail has rows (wait_path
/// polls the device for 186 ms): J/K and PgDn/PgUp scroll the detail,
/// through the same key map as the terminal, and the scroll stops at the
/// end (one K after running past the end moves back at once).
#[test]
fn the_expanded_call_detail_scrolls_with_keys() {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    let press = |m: &mut Model, code: KeyCode, times: usize| {
        for _ in 0..times {
            let key = KeyEvent::new(code, KeyModifiers::NONE);
            if let Some(a) = gasbench_tui::keys::map(m, key) {
                update(m, a);
            }
        }
    };
    let mut m = whole_run();
    render(&mut m, 80, 24);
    act(&mut m, typed("wait_path"));
    act(&mut m, [Action::Top, Action::Enter]);
    let start = screen(&render(&mut m, 80, 24));
    assert!(start.contains("more lines"), "{start}");
    assert!(!start.contains("above"), "{start}");

    press(&mut m, KeyCode::Char('J'), 1);
    let one = screen(&render(&mut m, 80, 24));
    assert_ne!(one, start, "J scrolls the detail");
    assert!(one.contains("↑ 1 line above"), "{one}");

    press(&mut m, KeyCode::Char('J'), 500);
    let end = screen(&render(&mut m, 80, 24));
    assert!(
        end.contains("lines above") && !end.contains("more lines"),
        "{end}"
    );
    press(&mut m, KeyCode::Char('K'), 1);
    let back = screen(&render(&mut m, 80, 24));
    assert!(back.contains("more lines"), "clamped at the end:\n{back}");

    press(&mut m, KeyCode::Char('K'), 500);
    assert_eq!(screen(&render(&mut m, 80, 24)), start);
    press(&mut m, KeyCode::PageDown, 1);
    let t = render(&mut m, 80, 24);
    let page = screen(&t);
    assert!(
        page.contains("lines above"),
        "PgDn pages the detail:\n{page}"
    );
    // The table's selection did not move: the same call is expanded.
    assert_eq!(m.trace_cursor.window(m.trace.visible_len(), 1).0, 0);
    insta::assert_snapshot!("trace_detail_scrolled_80x24", t.backend());
    press(&mut m, KeyCode::PageUp, 1);
    assert_eq!(screen(&render(&mut m, 80, 24)), start);
}

#[test]
fn help_overlay_at_80x24_lists_every_key() {
    let mut m = whole_run();
    act(&mut m, [Action::ToggleHelp]);
    let t = render(&mut m, 80, 24);
    let s = screen(&t);
    for b in gasbench_tui::keys::BINDINGS {
        assert!(s.contains(b.keys), "help lacks {}:\n{s}", b.keys);
    }
    insta::assert_snapshot!("help_80x24", t.backend());
}

// --- 160×48: the dashboard -------------------------------------------------

/// The apply queue holds both series and the port's patches (17 in the
/// recorded run); the header and the patch rows count each posting by its
/// own numbering.
#[test]
fn header_and_patch_rows_count_each_series_by_its_posting() {
    let mut m = whole_run();
    let t = render(&mut m, 160, 48);
    let s = screen(&t);
    let header = s.lines().next().unwrap();
    assert!(
        header.contains("mkdirat2 v2 1/2 as posted, 1 ported")
            && header.contains("goldfish v3 2/6 as posted, 4 ported"),
        "{header}"
    );
    assert!(!s.contains("/17"), "no queue-wide positions:\n{s}");
    let row = |needle: &str| {
        s.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no row with {needle}:\n{s}"))
            .to_string()
    };
    assert!(row("goldfish      2/6").contains('✗'), "{s}");
    assert!(row("goldfish port 2/6").contains('✓'), "{s}");
    assert!(row("mkdirat2     port").contains("gasbench fixup"), "{s}");
}

#[test]
fn dashboard_after_the_run() {
    let mut m = whole_run();
    let t = render(&mut m, 160, 48);
    insta::assert_snapshot!("dashboard_160x48_done", t.backend());
}

#[test]
fn dashboard_while_the_kernel_builds() {
    let events = fixture("recorded-run");
    let mut m = model_until(&events, Theme::colored(), |e| {
        matches!(&e.body, EventBody::Kernel(KernelEvent::BuildProgress { done, total, .. })
            if *total > 0 && done * 2 >= *total)
    });
    act(&mut m, [Action::Focus(Pane::Build)]);
    let t = render(&mut m, 160, 48);
    let s = screen(&t);
    assert!(s.contains('━') && s.contains('%'), "a progress bar:\n{s}");
    insta::assert_snapshot!("dashboard_160x48_building", t.backend());
}

#[test]
fn dashboard_with_calls_in_flight_on_two_threads() {
    let events = fixture("recorded-run");
    // Stop inside the threads scenario, with a call still open.
    let threads_begin = events
        .iter()
        .position(|e| {
            matches!(&e.body, EventBody::Run(RunEvent::ScenarioBegin { scenario, .. })
                if scenario == "goldfish-threads")
        })
        .expect("the fixture has a threads scenario");
    // The first moment in it when calls on two threads are open at once.
    let mut open: std::collections::BTreeMap<u64, u32> = Default::default();
    let stop_seq = events[threads_begin..]
        .iter()
        .find_map(|e| {
            match &e.body {
                EventBody::Agent(AgentMsg::CallBegin { call, thread, .. }) => {
                    open.insert(*call, *thread);
                }
                EventBody::Agent(AgentMsg::CallEnd(r)) => {
                    open.remove(&r.call);
                }
                _ => {}
            }
            let threads: std::collections::BTreeSet<_> = open.values().collect();
            (threads.len() >= 2).then_some(e.seq)
        })
        .expect("two threads have calls open at once");
    let mut m = model_until(&events, Theme::colored(), |e| e.seq == stop_seq);
    m.mode = Mode::Live;
    act(
        &mut m,
        [Action::Focus(Pane::Trace), Action::Up, Action::Enter],
    );
    let t = render(&mut m, 160, 48);
    let s = screen(&t);
    assert!(s.contains("running"), "an open call:\n{s}");
    assert!(s.contains("attribution shared"), "overlap is said:\n{s}");
    insta::assert_snapshot!("dashboard_160x48_threads_live", t.backend());
}

#[test]
fn selecting_a_scenario_filters_the_trace() {
    let mut m = whole_run();
    render(&mut m, 160, 48);
    act(&mut m, [Action::Focus(Pane::Scenarios)]);
    // Move down to goldfish-errors.
    for _ in 0..20 {
        if m.selected_scenario().as_deref() == Some("goldfish-errors") {
            break;
        }
        act(&mut m, [Action::Down]);
    }
    assert_eq!(m.selected_scenario().as_deref(), Some("goldfish-errors"));
    let t = render(&mut m, 160, 48);
    let s = screen(&t);
    assert!(s.contains("scenario goldfish-errors"), "{s}");
    // As many calls as the scenario made, and no others.
    let events = fixture("recorded-run");
    let begin = events
        .iter()
        .position(|e| matches!(&e.body, EventBody::Run(RunEvent::ScenarioBegin { scenario, .. }) if scenario == "goldfish-errors"))
        .unwrap();
    let calls = events[begin..]
        .iter()
        .take_while(|e| !matches!(&e.body, EventBody::Run(RunEvent::ScenarioEnd { .. })))
        .filter(|e| matches!(&e.body, EventBody::Agent(AgentMsg::CallEnd(_))))
        .count();
    assert!(
        s.contains(&format!("{calls} shown")),
        "other scenarios' calls are hidden ({calls} calls):\n{s}"
    );
    insta::assert_snapshot!("dashboard_160x48_scenario_selected", t.backend());
}

/// goldfish-errors has 59 checks, 2 of them failed (steps 18 and 24); the
/// checks under the list cannot all fit, and the failed ones are the ones
/// to see. The cut is said.
#[test]
fn a_failing_scenarios_failed_checks_are_shown_first_and_the_cut_is_said() {
    let mut m = whole_run();
    render(&mut m, 80, 24);
    act(&mut m, [Action::Focus(Pane::Scenarios)]);
    for _ in 0..20 {
        if m.selected_scenario().as_deref() == Some("goldfish-errors") {
            break;
        }
        act(&mut m, [Action::Down]);
    }
    let res = m
        .summary
        .scenarios
        .iter()
        .find(|s| s.name == "goldfish-errors")
        .expect("the fixture ran goldfish-errors")
        .clone();
    let failed: Vec<u32> = res.failed_expectations().map(|e| e.step).collect();
    assert!(!failed.is_empty());
    let t = render(&mut m, 80, 24);
    let s = screen(&t);
    let checks: Vec<&str> = s
        .lines()
        .skip_while(|l| !l.contains("checks of goldfish-errors"))
        .skip(1)
        .take_while(|l| !l.contains('─') && !l.contains('━'))
        .collect();
    for step in &failed {
        assert!(
            checks
                .iter()
                .any(|l| l.contains(&format!("✗ step {step} "))),
            "failed check at step {step} hidden:\n{s}"
        );
    }
    let shown = checks.iter().filter(|l| l.contains(" step ")).count();
    assert!(shown < res.expectations.len(), "the list is cut here:\n{s}");
    let more = res.expectations.len() - shown;
    assert!(
        checks.iter().any(|l| l.contains(&format!("… {more} more"))),
        "the cut is said ({more} more):\n{s}"
    );
    insta::assert_snapshot!("scenarios_failed_checks_80x24", t.backend());
}

#[test]
fn trace_filter_and_expanded_call_at_160x48() {
    let mut m = whole_run();
    render(&mut m, 160, 48);
    act(&mut m, [Action::Focus(Pane::Trace)]);
    act(&mut m, typed("err"));
    act(&mut m, [Action::Top, Action::Enter]);
    let t = render(&mut m, 160, 48);
    let s = screen(&t);
    assert!(s.contains("EINVAL") && s.contains("ENOMEM"), "{s}");
    assert!(!s.contains("✓ 0 "), "only failed calls:\n{s}");
    insta::assert_snapshot!("dashboard_160x48_trace_filtered_expanded", t.backend());
}

#[test]
fn zoomed_console_at_160x48_highlights_the_warning() {
    // The recorded run had no kernel warning (good news for the posting,
    // no use for this test): one WARN line is appended, the only event in
    // these tests that was not recorded.
    let mut events = fixture("recorded-run");
    let last = events.last().unwrap().clone();
    events.push(Event {
        seq: last.seq + 1,
        t_us: last.t_us + 1,
        body: EventBody::Vm(gasbench_events::vm::VmEvent::Console {
            line: "[  760.123456] WARNING: CPU: 0 PID: 31 at drivers/platform/goldfish/goldfish_address_space.rs:612 goldfish_address_space::unbind+0x1f2/0x240".into(),
            severity: gasbench_events::vm::ConsoleSeverity::Warn,
        }),
    });
    let mut m = model_until(&events, Theme::colored(), |_| false);
    act(&mut m, [Action::Focus(Pane::Console), Action::ToggleZoom]);
    let t = render(&mut m, 160, 48);
    let buf = t.backend().buffer();
    let s = screen(&t);
    let row = s
        .lines()
        .position(|l| l.contains("WARNING: CPU"))
        .expect("the warning is on screen");
    let x = s
        .lines()
        .nth(row)
        .unwrap()
        .chars()
        .position(|c| c == 'W')
        .unwrap();
    assert_eq!(buf[(x as u16, row as u16)].fg, Color::Yellow);
    insta::assert_snapshot!("console_zoomed_160x48", t.backend());
}

/// A guest that prints escape sequences and bidi overrides on its
/// console, and an agent whose call names carry them: the console pane
/// shows them as visible text, and no cell of the screen holds a
/// character a terminal would act on.
#[test]
fn what_the_guest_prints_cannot_drive_the_terminal() {
    let mut events = fixture("recorded-run");
    let last = events.last().unwrap().clone();
    let hostile = "\x1b[2J\x1b]52;c;cm0gLXJmIH4=\x07 cleared \u{9b}31m \u{202e}gnp.exe \x08\x08";
    events.push(Event {
        seq: last.seq + 1,
        t_us: last.t_us + 1,
        body: EventBody::Vm(gasbench_events::vm::VmEvent::Console {
            line: format!("[  760.1] {hostile}"),
            severity: gasbench_events::vm::ConsoleSeverity::Normal,
        }),
    });
    events.push(Event {
        seq: last.seq + 2,
        t_us: last.t_us + 2,
        body: EventBody::Agent(AgentMsg::Log {
            level: gasbench_abi::protocol::LogLevel::Warn,
            text: format!("{hostile}\u{2066}"),
        }),
    });
    let mut m = model_until(&events, Theme::colored(), |_| false);
    act(&mut m, [Action::Focus(Pane::Console), Action::ToggleZoom]);
    let t = render(&mut m, 160, 48);
    let s = screen(&t);
    assert!(
        s.contains("␛[2J␛]52;c;cm0gLXJmIH4=␇ cleared <U+009B>31m <U+202E>gnp.exe ␈␈"),
        "{s}"
    );
    for cell in t.backend().buffer().content.iter() {
        assert!(
            gasbench_termsafe::is_clean_line(cell.symbol()),
            "{:?} on screen",
            cell.symbol()
        );
    }
}

/// A log that ends mid-build (gasbench killed or crashed: no `finished`
/// event), browsed after the replay ended: nothing is drawn as running.
#[test]
fn a_log_that_ends_before_the_run_did_says_so() {
    let events = fixture("recorded-run");
    let mut m = model_until(&events, Theme::colored(), |e| {
        matches!(&e.body, EventBody::Kernel(KernelEvent::BuildProgress { done, total, .. })
            if *total > 0 && done * 2 >= *total)
    });
    update(&mut m, Action::BusClosed);
    let t = render(&mut m, 160, 48);
    let s = screen(&t);
    let header = s.lines().next().unwrap();
    assert!(header.contains("log ends"), "{header}");
    let footer = s.lines().last().unwrap();
    assert!(
        footer.contains("the log ends before the run did"),
        "{footer}"
    );
    let build = s
        .lines()
        .find(|l| l.contains(" build "))
        .expect("a build row");
    assert!(
        !build.contains('●') && build.contains("cut off"),
        "the build is not running any more:\n{s}"
    );
    assert!(!build.contains('%'), "no progress bar:\n{s}");
    insta::assert_snapshot!("dashboard_160x48_log_cut_mid_build", t.backend());
}

/// At 120×36 the left column is 40 wide: the PING figures end complete
/// (`… max 68.5ms`, not `… m`), and the device's hint is not cut.
#[test]
fn narrow_panes_keep_their_labels_whole_at_120x36() {
    let mut m = whole_run();
    let s = screen(&render(&mut m, 120, 36));
    let ping = s
        .lines()
        .find(|l| l.contains("PING") && l.contains("p50"))
        .expect("a PING latency line");
    let inside = ping.split('│').nth(1).unwrap_or("").trim_end();
    assert!(
        inside.ends_with('s') && !inside.contains('…'),
        "the figures end with a unit: {inside:?}"
    );
    assert!(inside.contains("max "), "{inside:?}");

    let events = fixture("recorded-run");
    let mut m = model_until(&events, Theme::colored(), |e| {
        matches!(
            &e.body,
            EventBody::Kernel(KernelEvent::BuildProgress { .. })
        )
    });
    let s = screen(&render(&mut m, 120, 36));
    assert!(s.contains("not attached yet"), "{s}");
}

/// A filter longer than the screen: the footer keeps its end (and the
/// cursor) visible, and the pane keeps its title.
#[test]
fn a_long_filter_keeps_its_tail_and_the_pane_title_visible() {
    let mut m = whole_run();
    render(&mut m, 80, 24);
    act(&mut m, [Action::Focus(Pane::Trace), Action::StartFilter]);
    let text = "alloc ".repeat(20) + "THE-END";
    act(&mut m, text.chars().map(Action::FilterChar));
    let s = screen(&render(&mut m, 80, 24));
    let footer = s.lines().last().unwrap();
    assert!(footer.contains("THE-END█"), "{footer}");
    let title = s.lines().find(|l| l.contains('┏')).unwrap();
    assert!(title.contains("3 Trace"), "{title}");
    assert!(
        title.contains("THE-END"),
        "the title shows the filter's end: {title}"
    );
    act(&mut m, [Action::FilterSubmit]);
    let s = screen(&render(&mut m, 80, 24));
    let title = s.lines().find(|l| l.contains('┏')).unwrap();
    assert!(
        title.contains("3 Trace") && title.contains("THE-END"),
        "{title}"
    );
}

// --- behaviour across sizes and themes ------------------------------------

#[test]
fn a_resize_redraws_exactly_like_a_fresh_start() {
    for (w, h) in [(80, 24), (100, 30), (120, 32), (200, 60)] {
        let mut m = whole_run();
        let mut t = render(&mut m, 160, 48);
        t.backend_mut().resize(w, h);
        update(
            &mut m,
            Action::Resize {
                width: w,
                height: h,
            },
        );
        t.draw(|f| view(&m, f)).unwrap();
        let fresh = render(&mut m, w, h);
        assert_eq!(screen(&t), screen(&fresh), "{w}x{h}");
    }
}

#[test]
fn tiny_terminals_do_not_panic() {
    for (w, h) in [(1, 1), (10, 3), (20, 5), (40, 10), (79, 23)] {
        let mut m = whole_run();
        act(&mut m, [Action::ToggleHelp]);
        render(&mut m, w, h);
        act(
            &mut m,
            [
                Action::ToggleHelp,
                Action::Focus(Pane::Trace),
                Action::Enter,
            ],
        );
        render(&mut m, w, h);
    }
}

#[test]
fn no_color_uses_no_colour_and_still_marks_failures() {
    let events = fixture("recorded-run");
    let mut m = model_until(&events, Theme::mono(), |_| false);
    let t = render(&mut m, 160, 48);
    let buf = t.backend().buffer();
    for cell in buf.content() {
        assert!(
            matches!(cell.fg, Color::Reset) && matches!(cell.bg, Color::Reset),
            "a coloured cell in NO_COLOR mode: {cell:?}"
        );
    }
    // The failing scenario is marked by a symbol and a text modifier.
    let s = screen(&t);
    let row = s
        .lines()
        .position(|l| l.contains("✗ goldfish-errors"))
        .expect("the failed scenario");
    let x = s
        .lines()
        .nth(row)
        .unwrap()
        .chars()
        .position(|c| c == '✗')
        .unwrap();
    let cell = &buf[(x as u16, row as u16)];
    assert!(cell.modifier.contains(Modifier::BOLD), "{cell:?}");
    // The focused pane is told apart without colour too.
    assert!(
        buf.content()
            .iter()
            .any(|c| c.modifier.contains(Modifier::REVERSED))
    );
}

#[test]
fn an_empty_live_session_says_what_to_do() {
    let mut m = Model::new(Mode::Live, Theme::colored(), Box::new(MemEvents::default()));
    m.suite = vec!["goldfish-open-close".into(), "mkdirat2-kselftest".into()];
    let t = render(&mut m, 80, 24);
    let s = screen(&t);
    assert!(s.contains("no calls yet"), "{s}");
    insta::assert_snapshot!("empty_live_80x24", t.backend());
}

/// `y` on a call: its decoded row and detail as text, to a file in the
/// run directory (and to the clipboard), with the register accesses.
#[test]
fn y_copies_the_selected_call_with_its_register_accesses() {
    let tmp = tempfile::tempdir().unwrap();
    let mut m = model_of(
        tmp.path().to_str().unwrap(),
        &fixture("recorded-run"),
        Theme::mono(),
        |_| false,
    );
    render(&mut m, 80, 24);
    act(&mut m, typed("alloc ok"));
    act(&mut m, [Action::Top]);
    let fx = update(&mut m, Action::Copy);
    let [gasbench_tui::action::Effect::Copy { text, file }] = fx.as_slice() else {
        panic!("{fx:?}");
    };
    assert!(text.contains("ALLOCATE_BLOCK"), "{text}");
    assert!(
        text.contains("BLOCK_SIZE_LOW"),
        "the register accesses: {text}"
    );
    assert!(text.contains("size=0x"), "the decoded struct: {text}");
    assert!(file.starts_with(tmp.path()), "{}", file.display());
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{text:?}"
    );
}

/// The footer at 80 columns keeps `? help` and `q quit` whatever else it
/// would say (a live session with a call expanded has the most hints),
/// and a long message ends with … instead of at the edge.
#[test]
fn the_footer_never_clips_at_80_columns() {
    let events = fixture("recorded-run");
    let mut m = Model::new(
        Mode::Live,
        Theme::mono(),
        Box::new(MemEvents(events.clone())),
    );
    update(&mut m, Action::Events(events));
    render(&mut m, 80, 24);
    act(&mut m, typed("alloc ok"));
    act(&mut m, [Action::Top, Action::Enter]);
    let s = screen(&render(&mut m, 80, 24));
    let footer = s.lines().last().unwrap();
    assert!(footer.contains("? help"), "{footer}");
    assert!(footer.contains("q quit"), "{footer}");
    m.status = Some(gasbench_tui::model::Status {
        text: "x".repeat(200),
        error: false,
    });
    let s = screen(&render(&mut m, 80, 24));
    assert!(s.lines().last().unwrap().contains('…'), "{s}");
}
