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

/// What [`LineSplitter::push_pieces`] hands on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    Line(String),
    /// A line longer than the splitter keeps, dropped whole (only from a
    /// splitter made with [`LineSplitter::dropping`]); its length in bytes.
    TooLong(u64),
}

/// Split a byte stream into lines: `\n` ends a line, `\r` is dropped,
/// invalid UTF-8 is replaced rather than fatal. A line never grows past
/// the splitter's limit: the console's is cut into pieces of
/// [`LineSplitter::MAX_LINE`] bytes (every byte of a console matters), a
/// protocol's is dropped whole and reported as [`Piece::TooLong`] (a
/// piece of a message is not a message).
pub struct LineSplitter {
    buf: Vec<u8>,
    max: usize,
    /// Bytes of an over-long line being skipped, in dropping mode.
    skipping: Option<u64>,
    drop_long: bool,
}

impl Default for LineSplitter {
    fn default() -> Self {
        LineSplitter {
            buf: Vec::new(),
            max: Self::MAX_LINE,
            skipping: None,
            drop_long: false,
        }
    }
}

impl LineSplitter {
    /// Longest line kept whole; a guest that never prints a newline must
    /// not grow the buffer without bound.
    pub const MAX_LINE: usize = 64 * 1024;

    /// A splitter that drops lines longer than `max` bytes whole.
    pub fn dropping(max: usize) -> LineSplitter {
        LineSplitter {
            buf: Vec::new(),
            max: max.max(1),
            skipping: None,
            drop_long: true,
        }
    }

    pub fn push(&mut self, bytes: &[u8], mut out: impl FnMut(String)) {
        self.push_pieces(bytes, |p| {
            if let Piece::Line(l) = p {
                out(l)
            }
        })
    }

    pub fn push_pieces(&mut self, bytes: &[u8], mut out: impl FnMut(Piece)) {
        for &b in bytes {
            if let Some(n) = &mut self.skipping {
                if b == b'\n' {
                    out(Piece::TooLong(*n));
                    self.skipping = None;
                } else {
                    *n += 1;
                }
                continue;
            }
            match b {
                b'\n' => out(Piece::Line(self.take())),
                b'\r' => {}
                _ => {
                    self.buf.push(b);
                    if self.buf.len() >= self.max {
                        if self.drop_long {
                            self.skipping = Some(self.buf.len() as u64);
                            self.buf = Vec::new();
                        } else {
                            out(Piece::Line(self.take()));
                        }
                    }
                }
            }
        }
    }

    /// Whatever is left without a final newline.
    pub fn finish(&mut self) -> Option<String> {
        match self.finish_piece()? {
            Piece::Line(l) => Some(l),
            Piece::TooLong(_) => None,
        }
    }

    /// [`LineSplitter::finish`], saying when the last line was too long.
    pub fn finish_piece(&mut self) -> Option<Piece> {
        if let Some(n) = self.skipping.take() {
            return Some(Piece::TooLong(n));
        }
        (!self.buf.is_empty()).then(|| Piece::Line(self.take()))
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
    fn a_protocol_splitter_drops_an_overlong_line_whole_and_says_how_long() {
        let mut s = LineSplitter::dropping(16);
        let mut got = Vec::new();
        s.push_pieces(b"short\n", |p| got.push(p));
        s.push_pieces(&[b'x'; 40], |p| got.push(p));
        s.push_pieces(b"yy\nafter\n", |p| got.push(p));
        s.push_pieces(&[b'z'; 20], |p| got.push(p));
        assert_eq!(s.finish_piece(), Some(Piece::TooLong(20)));
        assert_eq!(
            got,
            [
                Piece::Line("short".into()),
                Piece::TooLong(42),
                Piece::Line("after".into())
            ]
        );
        // The buffer never held more than the limit.
        assert!(s.buf.capacity() <= 64, "{}", s.buf.capacity());
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
