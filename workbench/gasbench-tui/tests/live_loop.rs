//! The main loop with a fake pipeline: keys go in, the controller gets the
//! requests, the events it replays come back through the bus and show.
//!
//! The fake controller replays the fixture run: the pipeline up to the run
//! stage when the session starts, one scenario's events when asked to run
//! it, the teardown when asked to quit (then it closes the bus, as the
//! engine will once the VM is down).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use gasbench_events::run::{RunEvent, Stage};
use gasbench_events::{Event, EventBody};
use gasbench_tui::store::MemEvents;
use gasbench_tui::{ControlError, Controller, Mode, Model, Selection, Theme, drive, replay};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tokio::sync::mpsc;

fn fixture() -> Vec<Event> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/recorded-run/events.jsonl");
    gasbench_trace::log::read_all(&path).expect("fixture").0
}

fn scenario_of(e: &Event) -> Option<&str> {
    match &e.body {
        EventBody::Run(RunEvent::ScenarioBegin { scenario, .. })
        | EventBody::Run(RunEvent::ScenarioEnd { scenario, .. }) => Some(scenario),
        _ => None,
    }
}

struct Fake {
    events: Vec<Event>,
    bus: Option<mpsc::UnboundedSender<Event>>,
    asked: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    fn send(&self, evs: impl IntoIterator<Item = Event>) {
        if let Some(bus) = &self.bus {
            for e in evs {
                let _ = bus.send(e);
            }
        }
    }
}

impl Controller for Fake {
    fn suite(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .events
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::Run(RunEvent::ScenarioBegin { scenario, .. }) => Some(scenario.clone()),
                _ => None,
            })
            .collect();
        v.dedup();
        v
    }

    fn run(&mut self, which: Selection) -> Result<(), ControlError> {
        self.asked.lock().unwrap().push(format!("run {which:?}"));
        let Selection::One(name) = which else {
            return Err(ControlError("this fake runs one scenario at a time".into()));
        };
        let begin = self
            .events
            .iter()
            .position(|e| {
                scenario_of(e) == Some(&name)
                    && matches!(e.body, EventBody::Run(RunEvent::ScenarioBegin { .. }))
            })
            .ok_or_else(|| ControlError(format!("no scenario {name}")))?;
        let end = self.events[begin + 1..]
            .iter()
            .position(|e| scenario_of(e) == Some(&name))
            .map(|i| begin + 1 + i)
            .expect("the scenario ends");
        self.send(self.events[begin..=end].to_vec());
        Ok(())
    }

    fn rebuild_kernel(&mut self) -> Result<(), ControlError> {
        self.asked.lock().unwrap().push("rebuild".into());
        Err(ControlError("no kernel tree in this test".into()))
    }

    fn stop_vm(&mut self) -> Result<(), ControlError> {
        self.asked.lock().unwrap().push("stop".into());
        Ok(())
    }

    fn quit(&mut self) -> Result<(), ControlError> {
        self.asked.lock().unwrap().push("quit".into());
        let run_end = self
            .events
            .iter()
            .position(|e| {
                matches!(
                    e.body,
                    EventBody::Run(RunEvent::StageEnd {
                        stage: Stage::Run,
                        ..
                    })
                )
            })
            .expect("the run stage ends");
        self.send(self.events[run_end..].to_vec());
        // The VM is down: the bus closes.
        self.bus = None;
        Ok(())
    }
}

fn key(c: char) -> std::io::Result<TermEvent> {
    Ok(TermEvent::Key(KeyEvent::new(
        KeyCode::Char(c),
        KeyModifiers::NONE,
    )))
}

#[tokio::test]
async fn keys_reach_the_controller_and_its_events_come_back_on_screen() {
    let events = fixture();
    let (bus_tx, bus_rx) = mpsc::unbounded_channel();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let fake = Fake {
        events: events.clone(),
        bus: Some(bus_tx),
        asked: asked.clone(),
    };
    // The pipeline boots before any scenario runs.
    let run_begin = events
        .iter()
        .position(|e| {
            matches!(
                e.body,
                EventBody::Run(RunEvent::StageBegin {
                    stage: Stage::Run,
                    ..
                })
            )
        })
        .expect("a run stage");
    fake.send(events[..=run_begin].to_vec());

    let mut model = Model::new(
        Mode::Live,
        Theme::colored(),
        Box::new(MemEvents(events.clone())),
    );
    model.suite = fake.suite();
    // Entry 0 is "all scenarios".
    let downs = 1 + model
        .suite
        .iter()
        .position(|s| s == "goldfish-errors")
        .expect("the fixture has goldfish-errors");
    let (keys_tx, keys_rx) = futures::channel::mpsc::unbounded();
    let script = tokio::spawn(async move {
        let pause = |ms| tokio::time::sleep(Duration::from_millis(ms));
        pause(200).await;
        let keys = std::iter::once('2')
            .chain(std::iter::repeat_n('j', downs))
            .chain(std::iter::once('r'));
        for c in keys {
            keys_tx.unbounded_send(key(c)).unwrap();
            pause(30).await;
        }
        pause(300).await;
        keys_tx.unbounded_send(key('b')).unwrap();
        pause(100).await;
        keys_tx.unbounded_send(key('s')).unwrap();
        pause(100).await;
        keys_tx.unbounded_send(key('3')).unwrap();
        pause(200).await;
        keys_tx.unbounded_send(key('q')).unwrap();
        // Keep the key stream open: the loop must end because the bus
        // closed after quit, not because input ran dry.
        pause(5_000).await;
        drop(keys_tx);
    });

    let mut terminal = Terminal::new(TestBackend::new(160, 48)).unwrap();
    let done = tokio::time::timeout(
        Duration::from_secs(15),
        drive(
            &mut terminal,
            model,
            keys_rx,
            replay::from_bus(bus_rx),
            Some(Box::new(fake)),
            gasbench_tui::QUIT_GRACE,
        ),
    )
    .await;
    script.abort();
    let end = done
        .expect("the loop ends after quit, once the bus closes")
        .expect("no terminal error");
    assert_eq!(end, gasbench_tui::TuiEnd::default(), "a clean quit");

    assert_eq!(
        *asked.lock().unwrap(),
        ["run One(\"goldfish-errors\")", "rebuild", "stop", "quit"]
    );
    let buf = terminal.backend().buffer();
    let mut screen = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            screen.push_str(buf[(x, y)].symbol());
        }
        screen.push('\n');
    }
    assert!(
        screen.contains("✗ goldfish-errors"),
        "the verdict:\n{screen}"
    );
    assert!(
        screen.contains("scenario goldfish-errors"),
        "the trace is filtered:\n{screen}"
    );
    // The tail of goldfish-errors: the bad-pointer cases.
    assert!(screen.contains("EFAULT"), "the scenario's calls:\n{screen}");
    assert!(
        screen.contains("stopping"),
        "quitting is shown while the VM stops:\n{screen}"
    );
}

/// A pipeline whose teardown never ends: it keeps the bus open.
struct Stuck {
    _bus: mpsc::UnboundedSender<Event>,
}

impl Controller for Stuck {
    fn run(&mut self, _: Selection) -> Result<(), ControlError> {
        Ok(())
    }
    fn rebuild_kernel(&mut self) -> Result<(), ControlError> {
        Ok(())
    }
    fn stop_vm(&mut self) -> Result<(), ControlError> {
        Ok(())
    }
    fn quit(&mut self) -> Result<(), ControlError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_quit_whose_teardown_outlasts_its_grace_still_leaves_and_says_it_was_forced() {
    let (bus_tx, bus_rx) = mpsc::unbounded_channel();
    let model = Model::new(Mode::Live, Theme::colored(), Box::new(MemEvents(vec![])));
    let (keys_tx, keys_rx) = futures::channel::mpsc::unbounded();
    keys_tx.unbounded_send(key('q')).unwrap();
    let mut terminal = Terminal::new(TestBackend::new(100, 30)).unwrap();
    let done = tokio::time::timeout(
        Duration::from_secs(60),
        drive(
            &mut terminal,
            model,
            keys_rx,
            replay::from_bus(bus_rx),
            Some(Box::new(Stuck { _bus: bus_tx })),
            Duration::from_millis(100),
        ),
    )
    .await;
    // The key stream is still open: the loop ended on the grace.
    let end = done
        .expect("the loop ends after its quit grace")
        .expect("no terminal error");
    assert!(end.forced, "{end:?}");
    assert_eq!(end.signal, None);
    drop(keys_tx);
}
