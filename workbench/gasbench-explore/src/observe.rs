//! What a batch run showed, keyed by the explorer's own step names.
//!
//! The explorer names every step it writes `<tag>.<key> <what>` (`x3.7
//! ALLOCATE_BLOCK`, `x3.live`): the part before the first space is the key
//! it looks results up by. [`Observed::build`] turns what the engine
//! recorded (call records, device snapshots and console lines by step id)
//! into maps by that key, using the compiled plan's step names.

use std::collections::BTreeMap;

use gasbench_abi::protocol::CallRecord;
use gasbench_events::device::DeviceState;
use gasbench_scenario::HostPlan;

/// A step's key: its name up to the first space.
pub fn key_of(name: &str) -> &str {
    name.split(' ').next().unwrap_or(name)
}

/// Everything one batch run showed.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Call records by step key, in the order they arrived.
    pub calls: BTreeMap<String, Vec<CallRecord>>,
    /// Device snapshots taken after a step, by step key.
    pub snapshots: BTreeMap<String, DeviceState>,
    /// Steps the agent could not run, with its reason.
    pub step_errors: BTreeMap<String, String>,
    /// Console lines with the key of the step that was running.
    pub console: Vec<(Option<String>, String)>,
    /// The agent ran the bundle to its end.
    pub finished: bool,
    /// Why the run ended early, when it did (a part died, a timeout).
    pub stopped: Option<String>,
    /// Expectations of the scenario that did not hold (a reproducer's).
    pub failed_expectations: Vec<String>,
}

/// What the engine recorded of one scenario, by step id.
#[derive(Clone, Debug, Default)]
pub struct Recorded<'a> {
    pub calls: &'a [CallRecord],
    pub snapshots: &'a [(u32, DeviceState)],
    pub console: &'a [(Option<u32>, String)],
    pub step_errors: &'a [(u32, String)],
    pub finished: bool,
    pub stopped: Option<String>,
    pub failed_expectations: Vec<String>,
}

impl Observed {
    /// Key what the engine recorded by the plan's step names.
    pub fn build(plan: &HostPlan, r: Recorded<'_>) -> Observed {
        let key = |step: u32| {
            plan.step(step)
                .map(|i| key_of(&i.name).to_string())
                .unwrap_or_else(|| format!("#{step}"))
        };
        let mut o = Observed {
            finished: r.finished,
            stopped: r.stopped,
            failed_expectations: r.failed_expectations,
            ..Observed::default()
        };
        for c in r.calls {
            o.calls.entry(key(c.step)).or_default().push(c.clone());
        }
        for (step, s) in r.snapshots {
            o.snapshots.insert(key(*step), s.clone());
        }
        for (step, e) in r.step_errors {
            o.step_errors.insert(key(*step), e.clone());
        }
        o.console = r
            .console
            .iter()
            .map(|(s, l)| (s.map(key), l.clone()))
            .collect();
        o
    }

    /// The one call of step `key` (the last, if it ran several).
    pub fn call(&self, key: &str) -> Option<&CallRecord> {
        self.calls.get(key).and_then(|v| v.last())
    }

    /// Calls recorded for keys that start with `prefix` (a sequence's tag
    /// and a dot).
    pub fn calls_under(&self, prefix: &str) -> usize {
        self.calls
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.len())
            .sum()
    }

    /// Whether any step of the sequence `tag` began (a call, an error, a
    /// snapshot).
    pub fn reached(&self, tag: &str) -> bool {
        let p = format!("{tag}.");
        self.calls.keys().any(|k| k.starts_with(&p))
            || self.step_errors.keys().any(|k| k.starts_with(&p))
            || self.snapshots.keys().any(|k| k.starts_with(&p))
    }
}

/// An errno name from the guest, if it looks like one: the guest is
/// hostile, and what it reports is never printed as it came.
pub fn errno_name(r: &CallRecord) -> Option<String> {
    r.errno.as_deref().map(|e| {
        if !e.is_empty()
            && e.len() <= 16
            && e.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            e.to_string()
        } else {
            "E?".to_string()
        }
    })
}

/// A numeric field of a record's `args_in` or `args_out`.
pub fn field(v: &serde_json::Value, name: &str) -> Option<u64> {
    v.get(name)
        .and_then(|x| x.as_u64().or_else(|| x.as_i64().map(|i| i as u64)))
}
