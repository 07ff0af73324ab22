//! Markers the agent writes into the kernel log (`/dev/kmsg`) around each
//! call, so the host can tell which call a kernel report belongs to: the
//! kernel's log keeps them in order with everything the call made the
//! kernel print, which the agent's own port (a separate channel) cannot.
//!
//! `gasbench: call 17 begin b1 s3 t0 k97` … `gasbench: call 17 end b1 s3 t0 k97`
//! (call, bundle, step, the agent's thread, the kernel's task id).

use crate::protocol::{CallId, ThreadId};

/// The kernel command line argument that lets the agent write one line
/// per call to `/dev/kmsg` (the default rate limit drops most of them).
pub const CMDLINE_DEVKMSG: &str = "printk.devkmsg=on";

/// One marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marker {
    pub call: CallId,
    pub begin: bool,
    pub bundle: u64,
    pub step: u32,
    pub thread: ThreadId,
    /// The kernel's id of the task making the call (gettid()): the PID a
    /// kernel report names.
    pub tid: u32,
}

const PREFIX: &str = "gasbench: call ";

impl Marker {
    /// The line the agent writes.
    pub fn line(&self) -> String {
        format!(
            "{PREFIX}{} {} b{} s{} t{} k{}",
            self.call,
            if self.begin { "begin" } else { "end" },
            self.bundle,
            self.step,
            self.thread,
            self.tid
        )
    }

    /// A marker anywhere in a console line (after the kernel's timestamp
    /// and caller prefixes). The guest can print anything: a line that is
    /// not exactly a marker is none.
    pub fn find(line: &str) -> Option<Marker> {
        let at = line.find(PREFIX)?;
        let mut words = line[at + PREFIX.len()..].split_ascii_whitespace();
        let call = words.next()?.parse().ok()?;
        let begin = match words.next()? {
            "begin" => true,
            "end" => false,
            _ => return None,
        };
        let mut num = |p: char| -> Option<u64> { words.next()?.strip_prefix(p)?.parse().ok() };
        let bundle = num('b')?;
        let step = u32::try_from(num('s')?).ok()?;
        let thread = ThreadId::try_from(num('t')?).ok()?;
        let tid = u32::try_from(num('k')?).ok()?;
        if words.next().is_some() {
            return None;
        }
        Some(Marker {
            call,
            begin,
            bundle,
            step,
            thread,
            tid,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_through_a_console_line() {
        let m = Marker {
            call: 17,
            begin: true,
            bundle: 1,
            step: 3,
            thread: 0,
            tid: 97,
        };
        assert_eq!(m.line(), "gasbench: call 17 begin b1 s3 t0 k97");
        let console = format!("[   12.345678] [   T97] {}", m.line());
        assert_eq!(Marker::find(&console), Some(m));
        let end = Marker { begin: false, ..m };
        assert_eq!(Marker::find(&end.line()), Some(end));
    }

    #[test]
    fn anything_else_is_not_a_marker() {
        for bad in [
            "gasbench: call x begin b1 s3 t0 k1",
            "gasbench: call 1 start b1 s3 t0 k1",
            "gasbench: call 1 begin b1 s3 t0",
            "gasbench: call 1 begin b1 s3 t0 k1 extra",
            "gasbench: call 1 begin b1 s99999999999 t0 k1",
            "gasbench: call 1 begin 1 3 0 1",
            "unrelated",
        ] {
            assert_eq!(Marker::find(bad), None, "{bad}");
        }
    }
}
