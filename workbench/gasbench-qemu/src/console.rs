//! The guest console: lines from the serial port, classified by how bad
//! they are, written to console.log and onto the bus.

use gasbench_events::vm::ConsoleSeverity;

/// Kernel markers of trouble. BUG-class lines mean the kernel is hurt;
/// WARN-class lines mean it noticed something it did not like.
pub fn classify(line: &str) -> ConsoleSeverity {
    const BUG: &[&str] = &[
        "Kernel panic",
        "BUG:",
        "Oops:",
        "Oops#",
        "general protection fault",
        "kernel BUG at",
        "Unable to handle kernel",
        "Call Trace:",
        "rust_panic",
        "panicked at",
        "watchdog: BUG: soft lockup",
        "INFO: task ",
        "rcu_sched self-detected stall",
        "rcu: INFO:",
    ];
    const WARN: &[&str] = &[
        "WARNING:",
        "------------[ cut here ]------------",
        "UBSAN:",
        "refcount_t:",
    ];
    if BUG.iter().any(|m| line.contains(m)) {
        ConsoleSeverity::Bug
    } else if WARN.iter().any(|m| line.contains(m)) {
        ConsoleSeverity::Warn
    } else {
        ConsoleSeverity::Normal
    }
}

/// Split a byte stream into lines: `\n` ends a line, `\r` is dropped,
/// invalid UTF-8 is replaced rather than fatal.
#[derive(Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
}

impl LineSplitter {
    /// Longest line kept whole; a guest that never prints a newline must
    /// not grow the buffer without bound.
    pub const MAX_LINE: usize = 64 * 1024;

    pub fn push(&mut self, bytes: &[u8], mut out: impl FnMut(String)) {
        for &b in bytes {
            match b {
                b'\n' => out(self.take()),
                b'\r' => {}
                _ => {
                    self.buf.push(b);
                    if self.buf.len() >= Self::MAX_LINE {
                        out(self.take());
                    }
                }
            }
        }
    }

    /// Whatever is left without a final newline.
    pub fn finish(&mut self) -> Option<String> {
        (!self.buf.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> String {
        let line = String::from_utf8_lossy(&self.buf).into_owned();
        self.buf.clear();
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_trouble_is_classified() {
        assert_eq!(
            classify("[    3.1] WARNING: CPU: 0 PID: 1 at drivers/x.c:10 f+0x1/0x2"),
            ConsoleSeverity::Warn
        );
        assert_eq!(
            classify("[    3.1] BUG: kernel NULL pointer dereference, address: 0000000000000008"),
            ConsoleSeverity::Bug
        );
        assert_eq!(
            classify("[    3.1] Kernel panic - not syncing: Attempted to kill init!"),
            ConsoleSeverity::Bug
        );
        assert_eq!(
            classify("[    0.2] rust_kernel: panicked at drivers/platform/goldfish/x.rs:10:5"),
            ConsoleSeverity::Bug
        );
        assert_eq!(
            classify("[    0.0] Linux version 7.3.4"),
            ConsoleSeverity::Normal
        );
    }

    #[test]
    fn splitter_handles_crlf_partial_lines_and_bad_bytes() {
        let mut s = LineSplitter::default();
        let mut lines = Vec::new();
        s.push(b"abc\r\nde", |l| lines.push(l));
        s.push(b"f\n\xff\xfeg\n", |l| lines.push(l));
        assert_eq!(lines, ["abc", "def", "\u{fffd}\u{fffd}g"]);
        s.push(b"tail", |l| lines.push(l));
        assert_eq!(s.finish().as_deref(), Some("tail"));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn a_line_without_end_is_cut_not_grown_forever() {
        let mut s = LineSplitter::default();
        let mut n = 0;
        s.push(&vec![b'x'; LineSplitter::MAX_LINE * 3], |l| {
            assert_eq!(l.len(), LineSplitter::MAX_LINE);
            n += 1;
        });
        assert_eq!(n, 3);
    }
}
