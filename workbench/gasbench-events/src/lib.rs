//! The event bus: one stream of typed events per run.
//!
//! Every stage (kernel build, VM, device model, guest agent, scenario
//! engine) reports what it does as an [`EventBody`] through an [`EventSink`].
//! The sink stamps each event with a run-wide sequence number and the time
//! since the run began, so the order in the channel *is* the order of the
//! run. Consumers (the run-directory writer, the headless summary, the TUI)
//! read the same [`Event`]s; none of them contains pipeline logic.
//!
//! **Architecture invariant:** this crate only defines data and the channel.
//! It knows nothing about QEMU, sockets, terminals or files, so every other
//! crate can depend on it.

pub mod device;
pub mod kernel;
pub mod report;
pub mod run;
pub mod vm;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub use gasbench_abi::protocol::AgentMsg;

/// One thing that happened during a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the run, from 0, without gaps on the bus (events.jsonl
    /// skips the guest's events past its cap, and says so in a note).
    pub seq: u64,
    /// Microseconds since the run started (host monotonic clock).
    pub t_us: u64,
    #[serde(flatten)]
    pub body: EventBody,
}

/// What happened, by source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "src", content = "ev", rename_all = "snake_case")]
pub enum EventBody {
    /// Run-level bookkeeping: started, stage transitions, finished.
    Run(run::RunEvent),
    /// Kernel preparation: patches applied, build progress, artifacts.
    Kernel(kernel::KernelEvent),
    /// QEMU and its helpers: state, QMP events, console lines.
    Vm(vm::VmEvent),
    /// The emulated goldfish device: register accesses and commands.
    Device(device::DeviceEvent),
    /// The guest agent, as received over the serial port.
    Agent(AgentMsg),
}

impl EventBody {
    /// Whether the guest decides how many of these there are: what it
    /// prints on the console, what its agent (or anything on the agent's
    /// port) sends, the device accesses it makes. A guest can send such
    /// events without end; the run's own (stages, notes, verdicts, the
    /// kernel build, QEMU's life) it cannot.
    pub fn from_guest(&self) -> bool {
        match self {
            EventBody::Agent(_) | EventBody::Device(_) => true,
            EventBody::Vm(v) => matches!(
                v,
                vm::VmEvent::Console { .. } | vm::VmEvent::AgentText { .. }
            ),
            EventBody::Run(_) | EventBody::Kernel(_) => false,
        }
    }
}

/// The sending half of the bus. Cheap to clone; usable from any thread.
#[derive(Clone)]
pub struct EventSink {
    inner: Arc<SinkInner>,
}

struct SinkInner {
    start: Instant,
    // Stamping and sending happen under one lock so that sequence numbers
    // and channel order never disagree, even with senders on many threads.
    next_seq: Mutex<u64>,
    tx: mpsc::UnboundedSender<Event>,
}

/// The receiving half of the bus.
pub type EventStream = mpsc::UnboundedReceiver<Event>;

/// A new bus whose clock starts now.
pub fn bus() -> (EventSink, EventStream) {
    let (tx, rx) = mpsc::unbounded_channel();
    let sink = EventSink {
        inner: Arc::new(SinkInner {
            start: Instant::now(),
            next_seq: Mutex::new(0),
            tx,
        }),
    };
    (sink, rx)
}

impl EventSink {
    /// Stamp and send. Returns the event's sequence number. Sending never
    /// fails loudly: a run whose consumers are gone keeps running (a TUI
    /// that quit must not crash the teardown that follows).
    pub fn emit(&self, body: impl Into<EventBody>) -> u64 {
        let body = body.into();
        let mut next = self
            .inner
            .next_seq
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let seq = *next;
        *next += 1;
        let t_us = u64::try_from(self.inner.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        let _ = self.inner.tx.send(Event { seq, t_us, body });
        seq
    }

    /// Microseconds since the run started, on the bus's clock.
    pub fn now_us(&self) -> u64 {
        u64::try_from(self.inner.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

impl From<run::RunEvent> for EventBody {
    fn from(e: run::RunEvent) -> Self {
        EventBody::Run(e)
    }
}
impl From<kernel::KernelEvent> for EventBody {
    fn from(e: kernel::KernelEvent) -> Self {
        EventBody::Kernel(e)
    }
}
impl From<vm::VmEvent> for EventBody {
    fn from(e: vm::VmEvent) -> Self {
        EventBody::Vm(e)
    }
}
impl From<device::DeviceEvent> for EventBody {
    fn from(e: device::DeviceEvent) -> Self {
        EventBody::Device(e)
    }
}
impl From<AgentMsg> for EventBody {
    fn from(e: AgentMsg) -> Self {
        EventBody::Agent(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_follow_channel_order_across_threads() {
        let (sink, mut rx) = bus();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    for i in 0..250 {
                        sink.emit(run::RunEvent::Note {
                            text: format!("{t}/{i}"),
                        });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut expected = 0;
        while let Ok(ev) = rx.try_recv() {
            assert_eq!(ev.seq, expected);
            expected += 1;
        }
        assert_eq!(expected, 1000);
    }

    #[test]
    fn events_serialize_as_one_tagged_json_line() {
        let ev = Event {
            seq: 3,
            t_us: 42,
            body: EventBody::Run(run::RunEvent::Note { text: "hi".into() }),
        };
        let line = serde_json::to_string(&ev).unwrap();
        assert!(
            line.starts_with(r#"{"seq":3,"t_us":42,"src":"run","ev":"#),
            "{line}"
        );
        assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), ev);
    }
}
