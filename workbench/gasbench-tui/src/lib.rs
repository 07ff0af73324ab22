//! gasbench's TUI: the interactive face of the pipeline.
//!
//! The shape is The Elm Architecture:
//! - [`Model`] holds everything on screen, built only from bus [`Event`]s
//!   (plus the scroll positions and filters the user chose);
//! - [`Action`] is everything that can happen (an event batch, a key, a
//!   tick); [`keys::map`] turns keys into actions;
//! - [`update`] is the one state transition and returns [`Effect`]s;
//! - [`view`] draws a model, and nothing else.
//!
//! **Architecture invariant:** no pipeline logic lives here. Running a
//! scenario, rebuilding the kernel or stopping the VM are requests to a
//! [`Controller`] that the engine implements; their results come back as
//! events on the bus like everything else. Only this crate depends on
//! ratatui and crossterm.

pub mod action;
pub mod device;
pub mod fmt;
pub mod keys;
pub mod latency;
pub mod layout;
pub mod model;
pub mod replay;
pub mod store;
pub mod term;
pub mod theme;
pub mod view;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crossterm::event::{Event as TermEvent, EventStream as TermEvents};
use futures::StreamExt;
use gasbench_events::{Event, EventStream};
use ratatui::Terminal;
use ratatui::backend::Backend;

pub use action::{Action, Effect, Selection, update};
pub use model::{Mode, Model, Pane};
pub use theme::Theme;
pub use view::view;

use replay::{Feed, FeedRx};
use store::DiskEvents;

/// A request the pipeline refused or could not carry out.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ControlError(pub String);

/// What the TUI asks of the pipeline. The engine implements it; each call
/// only *requests* (it must return quickly) and the outcome arrives as
/// events on the bus. The same operations back the CLI's subcommands.
pub trait Controller: Send {
    /// Scenarios that can be run, so the list shows them before any ran.
    fn suite(&self) -> Vec<String> {
        Vec::new()
    }
    /// Run these scenarios (booting the VM first if needed).
    fn run(&mut self, which: Selection) -> Result<(), ControlError>;
    /// Rebuild the kernel (apply the series, build).
    fn rebuild_kernel(&mut self) -> Result<(), ControlError>;
    /// Switch to the next kernel profile (default, debug, race) and build
    /// its kernel (the next run boots it).
    fn next_profile(&mut self) -> Result<(), ControlError> {
        Err(ControlError(
            "this session cannot switch kernel profiles".into(),
        ))
    }
    /// Stop the VM cleanly (agent shutdown, then QMP quit).
    fn stop_vm(&mut self) -> Result<(), ControlError>;
    /// Stop everything cleanly and then close the bus. The TUI keeps
    /// drawing until the bus closes, so the user sees the VM stop.
    fn quit(&mut self) -> Result<(), ControlError>;
}

#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
    #[error("{path}: {source}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A live session: the bus (after the run directory's recorder, so every
/// event is on disk before it is shown), the log it is written to, and the
/// pipeline to send requests to.
pub struct Live {
    pub events: EventStream,
    /// The run's `events.jsonl` (need not exist yet).
    pub log: PathBuf,
    pub controller: Box<dyn Controller>,
    /// Colours or monochrome (`--color`, NO_COLOR): [`Theme::from_env`]
    /// when the caller has nothing more to say.
    pub theme: Theme,
}

/// A forwarder for `gasbench_trace::log::record` and the stream the TUI
/// reads, so every event is on disk before it is shown:
///
/// ```text
/// let (forward, tui_events) = gasbench_tui::tap();
/// tokio::spawn(async move { log::record(bus, &log, forward).await });
/// gasbench_tui::run_live(Live { events: tui_events, log, controller, theme }).await?;
/// ```
pub fn tap() -> (impl FnMut(&Event) + Send + 'static, EventStream) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    (
        move |e: &Event| {
            // The TUI may have quit already; the recorder carries on.
            let _ = tx.send(e.clone());
        },
        rx,
    )
}

/// How the TUI ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TuiEnd {
    /// It was left at once (a second q or Ctrl-C or signal, a quit whose
    /// teardown took longer than [`QUIT_GRACE`], the terminal gone) while
    /// the pipeline was still running: the caller stops it at once.
    pub forced: bool,
    /// The first of SIGINT, SIGTERM, SIGHUP it got, by number.
    pub signal: Option<i32>,
}

/// How long a quit may take to stop the VM cleanly before the TUI leaves
/// at once anyway.
pub const QUIT_GRACE: Duration = Duration::from_secs(15);

/// Run the TUI on a live pipeline until the user quits and the pipeline
/// has stopped (or was left at once: see [`TuiEnd`]).
pub async fn run_live(live: Live) -> Result<TuiEnd, TuiError> {
    let mut model = Model::new(Mode::Live, live.theme, Box::new(DiskEvents::new(&live.log)));
    model.bus_closed = false;
    model.suite = live.controller.suite();
    let feed = replay::from_bus(live.events);
    let mut guard = term::setup()?;
    drive(
        &mut guard.terminal,
        model,
        TermEvents::new(),
        feed,
        Some(live.controller),
        QUIT_GRACE,
    )
    .await
}

/// Browse a past run: its `events.jsonl`, read on a thread; with
/// `follow`, a run still going is followed to its end (`open --follow`).
pub async fn run_browse(run_dir: &Path, follow: bool, theme: Theme) -> Result<TuiEnd, TuiError> {
    let log = run_dir.join(gasbench_trace::run_dir::EVENTS);
    let feed = replay::from_log(&log, follow).map_err(|source| TuiError::Open {
        path: log.display().to_string(),
        source,
    })?;
    let model = Model::new(
        Mode::Browse {
            path: run_dir.display().to_string(),
        },
        theme,
        Box::new(store::MemEvents::default()),
    );
    let mut guard = term::setup()?;
    drive(
        &mut guard.terminal,
        model,
        TermEvents::new(),
        feed,
        None,
        QUIT_GRACE,
    )
    .await
}

/// `y`: the text to the terminal's clipboard (OSC 52: the terminal, or
/// tmux with `set-clipboard on`, takes it; over ssh too) and to `file`.
/// The text is the host's rendering of the call with every control
/// character made visible (`view::trace::copy_text`).
fn copy(text: &str, file: &Path) -> model::Status {
    use base64::Engine;
    use std::io::Write;
    let encoded = base64::engine::general_purpose::STANDARD.encode(text);
    let mut out = std::io::stdout();
    let _ = write!(out, "\x1b]52;c;{encoded}\x07");
    let _ = out.flush();
    match std::fs::write(file, text) {
        Ok(()) => model::Status {
            text: format!("copied the call (clipboard, and {})", file.display()),
            error: false,
        },
        Err(e) => model::Status {
            text: format!(
                "copied to the clipboard; {} could not be written: {e}",
                file.display()
            ),
            error: true,
        },
    }
}

/// At most this many frames a second.
const FRAME: Duration = Duration::from_millis(16);
/// The clock in the header moves this often.
const TICK: Duration = Duration::from_millis(250);

/// The main loop: keys, feed and clock in; a frame out whenever something
/// changed, at most every [`FRAME`]. `keys` is crossterm's event stream in
/// real use and a scripted stream in tests. SIGINT, SIGTERM and SIGHUP
/// act as Ctrl-C does (quit cleanly; again: leave at once); a quit the
/// pipeline has not finished within `quit_grace` leaves at once.
pub async fn drive<B, K>(
    terminal: &mut Terminal<B>,
    mut model: Model,
    mut keys: K,
    mut feed: FeedRx,
    mut controller: Option<Box<dyn Controller>>,
    quit_grace: Duration,
) -> Result<TuiEnd, TuiError>
where
    B: Backend,
    B::Error: std::error::Error + Send + Sync + 'static,
    K: futures::Stream<Item = std::io::Result<TermEvent>> + Unpin,
{
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let size = terminal.size().map_err(std::io::Error::other)?;
    update(
        &mut model,
        Action::Resize {
            width: size.width,
            height: size.height,
        },
    );
    let mut dirty = true;
    let mut last_draw = Instant::now() - FRAME;
    // When the bus's clock started, from the first event (for the header).
    let mut bus_start: Option<Instant> = None;
    let mut feed_open = true;
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut end = TuiEnd::default();
    // Set once a quit was asked of the pipeline: past it, leave at once.
    let mut quit_deadline: Option<tokio::time::Instant> = None;

    loop {
        let next_frame = tokio::time::Instant::from_std(last_draw + FRAME);
        let mut actions: Vec<Action> = Vec::new();
        tokio::select! {
            biased;
            _ = tokio::time::sleep_until(next_frame), if dirty => {
                terminal.draw(|f| view(&model, f)).map_err(std::io::Error::other)?;
                last_draw = Instant::now();
                dirty = false;
                continue;
            }
            ev = keys.next() => match ev {
                Some(Ok(TermEvent::Key(k))) => {
                    if let Some(a) = keys::map(&model, k) {
                        actions.push(a);
                    }
                }
                Some(Ok(TermEvent::Resize(w, h))) => {
                    // Redraw from scratch: a resize can leave stale cells.
                    terminal.autoresize().map_err(std::io::Error::other)?;
                    actions.push(Action::Resize { width: w, height: h });
                }
                Some(Ok(_)) => {}
                // The terminal is gone: nothing can be shown any more.
                Some(Err(_)) | None => actions.push(Action::ForceQuit),
            },
            f = feed.recv(), if feed_open => match f {
                Some(Feed::Events(batch)) => {
                    if bus_start.is_none()
                        && let Some(first) = batch.first()
                    {
                        bus_start = Instant::now().checked_sub(Duration::from_micros(first.t_us));
                    }
                    actions.push(Action::Events(batch));
                }
                Some(Feed::Loading { events, bytes, total }) => {
                    actions.push(Action::Loading { events, bytes, total });
                }
                Some(Feed::Lookup(l)) => {
                    model.lookup = l;
                    dirty = true;
                }
                Some(Feed::Note(text)) => {
                    model.status = Some(model::Status { text, error: true });
                    dirty = true;
                }
                Some(Feed::StillRunning) => {
                    model.still_running = true;
                    model.status = Some(model::Status {
                        text: "this run is still going: what is shown is what it had written \
                               (`gasbench open --follow` follows it)"
                            .into(),
                        error: false,
                    });
                    dirty = true;
                }
                Some(Feed::Closed) | None => {
                    feed_open = false;
                    actions.push(Action::BusClosed);
                }
            },
            _ = tick.tick() => {
                if model.is_live() && !model.bus_closed
                    && let Some(start) = bus_start
                {
                    actions.push(Action::Tick { now_us: start.elapsed().as_micros() as u64 });
                }
            }
            Some(n) = async {
                tokio::select! {
                    s = sigint.recv() => s.map(|()| libc_signal::SIGINT),
                    s = sigterm.recv() => s.map(|()| libc_signal::SIGTERM),
                    s = sighup.recv() => s.map(|()| libc_signal::SIGHUP),
                }
            } => {
                end.signal.get_or_insert(n);
                // As Ctrl-C: quit cleanly, or leave at once when quitting.
                actions.push(if model.quitting { Action::ForceQuit } else { Action::Quit });
            }
            _ = async {
                match quit_deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => {
                quit_deadline = None;
                actions.push(Action::ForceQuit);
            }
        }
        for a in actions {
            dirty = true;
            for fx in update(&mut model, a) {
                match fx {
                    Effect::Exit => {
                        // The last state, so a terminal without an
                        // alternate screen (and a test) sees how it ended.
                        terminal
                            .draw(|f| view(&model, f))
                            .map_err(std::io::Error::other)?;
                        end.forced = model.is_live() && feed_open;
                        return Ok(end);
                    }
                    Effect::Copy { text, file } => {
                        let status = copy(&text, &file);
                        model.status = Some(status);
                    }
                    other => {
                        let Some(c) = controller.as_mut() else {
                            if other == Effect::Quit {
                                return Ok(end);
                            }
                            continue;
                        };
                        let (what, result) = match other {
                            Effect::Run(sel) => ("run", c.run(sel)),
                            Effect::RebuildKernel => ("rebuild", c.rebuild_kernel()),
                            Effect::NextProfile => ("profile", c.next_profile()),
                            Effect::StopVm => ("stop", c.stop_vm()),
                            Effect::Quit => ("quit", c.quit()),
                            Effect::Exit | Effect::Copy { .. } => unreachable!("handled above"),
                        };
                        let failed_quit = what == "quit" && result.is_err();
                        update(
                            &mut model,
                            Action::Controlled {
                                what: what.into(),
                                result: result.map_err(|e| e.0),
                            },
                        );
                        if failed_quit || (what == "quit" && !feed_open) {
                            end.forced = failed_quit && feed_open;
                            return Ok(end);
                        }
                        if what == "quit" {
                            quit_deadline = Some(tokio::time::Instant::now() + quit_grace);
                        }
                    }
                }
            }
        }
    }
}

/// The signal numbers [`TuiEnd::signal`] holds (Linux's).
pub mod libc_signal {
    pub const SIGHUP: i32 = 1;
    pub const SIGINT: i32 = 2;
    pub const SIGTERM: i32 = 15;
}

#[cfg(test)]
mod tests {
    use super::*;
    use gasbench_events::run::RunEvent;

    #[tokio::test]
    async fn the_tap_shows_what_the_recorder_has_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let (sink, bus) = gasbench_events::bus();
        for i in 0..3 {
            sink.emit(RunEvent::Note {
                text: format!("n{i}"),
            });
        }
        drop(sink);
        let (forward, mut rx) = tap();
        let n = gasbench_trace::log::record(bus, &path, forward)
            .await
            .unwrap();
        assert_eq!(n, 3);
        let lookup = DiskEvents::new(&path);
        for i in 0..3 {
            let e = rx.recv().await.unwrap();
            assert_eq!(e.seq, i);
            // Already on disk when it reaches the TUI.
            assert_eq!(store::EventLookup::event(&lookup, i).unwrap(), e);
        }
        assert!(rx.recv().await.is_none(), "the stream ends with the bus");
    }
}
