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
    /// Pass on anything held back (see [`Deferred`]).
    fn flush(&mut self) {}
}

/// Holds events until [`DeviceTrace::flush`], then passes them on in
/// order. The transport flushes once per message, before it replies, so a
/// message's events go out together and before the guest can react.
pub struct Deferred {
    inner: Box<dyn DeviceTrace>,
    held: Vec<DeviceEvent>,
}

impl Deferred {
    pub fn new(inner: Box<dyn DeviceTrace>) -> Self {
        Deferred {
            inner,
            held: Vec::with_capacity(16),
        }
    }
}

impl DeviceTrace for Deferred {
    fn emit(&mut self, ev: DeviceEvent) {
        self.held.push(ev);
    }
    fn enabled(&self) -> bool {
        self.inner.enabled()
    }
    fn flush(&mut self) {
        for ev in self.held.drain(..) {
            self.inner.emit(ev);
        }
        self.inner.flush();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deferred_holds_until_flushed_in_order() {
        let c = Collect::default();
        let mut d = Deferred::new(Box::new(c.clone()));
        for i in 0..3 {
            d.emit(DeviceEvent::Anomaly {
                text: i.to_string(),
            });
        }
        assert!(c.take().is_empty());
        d.flush();
        let got: Vec<String> = c
            .take()
            .into_iter()
            .map(|e| match e {
                DeviceEvent::Anomaly { text } => text,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(got, ["0", "1", "2"]);
        assert!(!Deferred::new(Box::new(NoTrace)).enabled());
    }
}
