//! Where the model's events go. The model builds an event only when its
//! trace is enabled, so a model without observers pays nothing for them.

use std::sync::{Arc, Mutex};

use gasbench_events::device::DeviceEvent;

pub trait DeviceTrace: Send {
    fn emit(&mut self, ev: DeviceEvent);
    /// False: the model skips building events (and their text) entirely.
    fn enabled(&self) -> bool {
        true
    }
}

/// The run's event bus.
impl DeviceTrace for gasbench_events::EventSink {
    fn emit(&mut self, ev: DeviceEvent) {
        gasbench_events::EventSink::emit(self, ev);
    }
}

/// Discards everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoTrace;

impl DeviceTrace for NoTrace {
    fn emit(&mut self, _ev: DeviceEvent) {}
    fn enabled(&self) -> bool {
        false
    }
}

/// Collects events in memory; clones share the list (for tests).
#[derive(Clone, Debug, Default)]
pub struct Collect(pub Arc<Mutex<Vec<DeviceEvent>>>);

impl Collect {
    /// Take what was collected so far.
    pub fn take(&self) -> Vec<DeviceEvent> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl DeviceTrace for Collect {
    fn emit(&mut self, ev: DeviceEvent) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(ev);
    }
}
