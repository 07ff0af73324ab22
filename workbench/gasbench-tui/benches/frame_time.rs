//! Frame time with a million calls in the trace, against a baseline of a
//! thousand measured in the same run. Prints figures; asserts nothing.
//!
//! `cargo bench -p gasbench-tui --bench frame_time` (GASBENCH_BENCH_CALLS
//! overrides the million).
//!
//! The big run goes through the real path: a synthetic `events.jsonl` is
//! written to a temporary run directory, replayed by the same reader
//! `gasbench open` uses, folded by `update`, and drawn by `view` with the
//! trace details read back from disk. Each case draws 500 frames of each, alternately, moving
//! the selection between frames so every frame has new rows to read.

#[path = "../synth/mod.rs"]
mod synth;

use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

use gasbench_tui::replay::{Feed, from_log};
use gasbench_tui::store::MemEvents;
use gasbench_tui::{Action, Mode, Model, Pane, Theme, update, view};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

const FRAMES: usize = 500;

struct Loaded {
    model: Model,
    calls: usize,
    events: u64,
    bytes: u64,
    write: Duration,
    load: Duration,
}

fn load(calls: u64) -> Loaded {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.jsonl");
    let t = Instant::now();
    let mut w = BufWriter::new(std::fs::File::create(&path).expect("create"));
    let events = synth::write_trace_heavy(calls, &mut w).expect("write");
    w.flush().expect("flush");
    drop(w);
    let write = t.elapsed();
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);

    let t = Instant::now();
    let mut model = Model::new(
        Mode::Browse {
            path: dir.path().display().to_string(),
        },
        Theme::colored(),
        Box::new(MemEvents::default()),
    );
    let mut rx = from_log(&path, false).expect("replay");
    while let Some(f) = rx.blocking_recv() {
        match f {
            Feed::Events(b) => {
                update(&mut model, Action::Events(b));
            }
            Feed::Lookup(l) => model.lookup = l,
            Feed::Closed => {
                update(&mut model, Action::BusClosed);
            }
            Feed::Loading { .. } | Feed::Note(_) | Feed::StillRunning => {}
        }
    }
    let load = t.elapsed();
    let calls = model.trace.len();
    // The model's lookup keeps the file open; the directory may go.
    std::mem::forget(dir);
    Loaded {
        model,
        calls,
        events,
        bytes,
        write,
        load,
    }
}

#[derive(Clone, Copy)]
struct Stats {
    median: Duration,
    p99: Duration,
}

fn stats(mut times: Vec<Duration>) -> Stats {
    times.sort();
    Stats {
        median: times[times.len() / 2],
        p99: times[times.len() * 99 / 100],
    }
}

/// Draw the two models' frames alternately, so that whatever else the
/// machine is doing weighs on both alike.
fn frames(
    models: [&mut Model; 2],
    w: u16,
    h: u16,
    setup: &[Action],
    step: Option<Action>,
) -> (Stats, Stats) {
    let mut terms = [
        Terminal::new(TestBackend::new(w, h)).expect("terminal"),
        Terminal::new(TestBackend::new(w, h)).expect("terminal"),
    ];
    let mut ms = models;
    for m in ms.iter_mut() {
        update(
            m,
            Action::Resize {
                width: w,
                height: h,
            },
        );
        for act in setup {
            update(m, act.clone());
        }
    }
    // Warm up (page cache, allocations).
    for _ in 0..10 {
        for (m, t) in ms.iter().zip(terms.iter_mut()) {
            t.draw(|f| view(m, f)).expect("draw");
        }
    }
    let mut times = [Vec::with_capacity(FRAMES), Vec::with_capacity(FRAMES)];
    for _ in 0..FRAMES {
        for i in 0..2 {
            if let Some(act) = &step {
                update(ms[i], act.clone());
            }
            let t = Instant::now();
            terms[i].draw(|f| view(ms[i], f)).expect("draw");
            times[i].push(t.elapsed());
        }
    }
    let [ta, tb] = times;
    (stats(ta), stats(tb))
}

/// Time to apply a filter over the whole trace (one keystroke's worth).
fn refilter(m: &mut Model, text: &str) -> Duration {
    update(m, Action::Focus(Pane::Trace));
    let t = Instant::now();
    update(m, Action::StartFilter);
    for c in text.chars() {
        update(m, Action::FilterChar(c));
    }
    update(m, Action::FilterSubmit);
    let d = t.elapsed() / text.chars().count().max(1) as u32;
    update(m, Action::StartFilter);
    update(m, Action::FilterCancel);
    d
}

/// A case: name, terminal size, actions before timing, action between frames.
type Case = (&'static str, u16, u16, Vec<Action>, Option<Action>);

fn cases() -> Vec<Case> {
    vec![
        (
            "dashboard 160x48, following the tail",
            160,
            48,
            vec![Action::Focus(Pane::Trace), Action::Bottom],
            None,
        ),
        (
            "dashboard 160x48, paging through the middle",
            160,
            48,
            vec![Action::Focus(Pane::Trace), Action::Top],
            Some(Action::PageDown),
        ),
        (
            "80x24 trace, call expanded, moving down",
            80,
            24,
            vec![
                Action::Focus(Pane::Trace),
                Action::Top,
                Action::PageDown,
                Action::Enter,
            ],
            Some(Action::Down),
        ),
        (
            "dashboard 160x48, filter `alloc`, paging",
            160,
            48,
            vec![
                Action::Focus(Pane::Trace),
                Action::StartFilter,
                Action::FilterChar('a'),
                Action::FilterChar('l'),
                Action::FilterChar('l'),
                Action::FilterChar('o'),
                Action::FilterChar('c'),
                Action::FilterSubmit,
                Action::Top,
            ],
            Some(Action::PageDown),
        ),
    ]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let big_calls: u64 = std::env::var("GASBENCH_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let small_calls = 1_000;

    println!(
        "gasbench-tui frame time: {big_calls} calls vs a {small_calls}-call baseline, {FRAMES} frames per case"
    );
    let mut small = load(small_calls);
    let mut big = load(big_calls);
    for (name, l) in [("baseline", &small), ("big", &big)] {
        println!(
            "{name:>8}: {} calls, {} events, {:.1} MiB log; written in {:.2} s, replayed in {:.2} s ({:.0} events/s)",
            l.calls,
            l.events,
            l.bytes as f64 / (1 << 20) as f64,
            l.write.as_secs_f64(),
            l.load.as_secs_f64(),
            l.events as f64 / l.load.as_secs_f64().max(1e-9),
        );
    }
    println!();
    println!(
        "{:<46} {:>12} {:>12} {:>12} {:>12} {:>7}",
        "case", "base median", "base p99", "big median", "big p99", "ratio"
    );
    for (name, w, h, setup, step) in cases() {
        let (s, b) = frames([&mut small.model, &mut big.model], w, h, &setup, step);
        println!(
            "{name:<46} {:>12} {:>12} {:>12} {:>12} {:>6.2}x",
            ms(s.median),
            ms(s.p99),
            ms(b.median),
            ms(b.p99),
            b.median.as_secs_f64() / s.median.as_secs_f64().max(1e-12)
        );
    }
    let fs = refilter(&mut small.model, "ping");
    let fb = refilter(&mut big.model, "ping");
    println!(
        "{:<46} {:>12} {:>12} {:>12} {:>12} {:>6.0}x",
        "refilter per keystroke (scans every call)",
        ms(fs),
        "",
        ms(fb),
        "",
        fb.as_secs_f64() / fs.as_secs_f64().max(1e-12)
    );
}
