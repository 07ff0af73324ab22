//! A line-at-a-time KTAP (and kselftest's TAP 13) parser.
//!
//! kselftest binaries built on `kselftest_harness.h` print:
//!
//! ```text
//! TAP version 13
//! 1..7
//! # Starting 7 tests from 1 test cases.
//! #  RUN           mkdirat2.returns_fd ...
//! #            OK  mkdirat2.returns_fd
//! ok 1 mkdirat2.returns_fd
//! not ok 2 mkdirat2.ebadf
//! ok 3 mkdirat2.x # SKIP no such thing
//! # Totals: pass:5 fail:1 xfail:0 xpass:0 skip:1 error:0
//! ```
//!
//! Nested subtests are indented by four spaces (or a tab) per level. Lines
//! starting with `#` are diagnostics, even when they look like results
//! (the harness's own `#  OK` lines).

use crate::protocol::KtapStatus;

/// What one line of output is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KtapLine {
    /// `TAP version 13` / `KTAP version 1`.
    Version { depth: u32, version: u32 },
    /// `1..N`.
    Plan { depth: u32, count: u32 },
    /// `ok N name # directive` / `not ok N name`.
    Result {
        depth: u32,
        number: u32,
        name: String,
        status: KtapStatus,
        directive: Option<String>,
    },
    /// `# text`.
    Diagnostic { depth: u32, text: String },
    /// `Bail out! reason`.
    BailOut { reason: String },
    /// Anything else (a test's own stray output).
    Other,
}

fn depth_and_rest(line: &str) -> (u32, &str) {
    let mut depth = 0;
    let mut rest = line;
    loop {
        if let Some(r) = rest.strip_prefix("    ") {
            rest = r;
        } else if let Some(r) = rest.strip_prefix('\t') {
            rest = r;
        } else {
            break;
        }
        depth += 1;
    }
    (depth, rest)
}

/// Classify one line (without its newline).
pub fn parse_line(line: &str) -> KtapLine {
    let line = line.trim_end_matches(['\r', '\n']);
    let (depth, rest) = depth_and_rest(line);
    let rest = rest.trim_start_matches(' ');
    if let Some(text) = rest.strip_prefix('#') {
        return KtapLine::Diagnostic {
            depth,
            text: text.strip_prefix(' ').unwrap_or(text).to_string(),
        };
    }
    if let Some(reason) = rest.strip_prefix("Bail out!") {
        return KtapLine::BailOut {
            reason: reason.trim().to_string(),
        };
    }
    for prefix in ["TAP version ", "KTAP version "] {
        if let Some(v) = rest.strip_prefix(prefix)
            && let Ok(version) = v.trim().parse()
        {
            return KtapLine::Version { depth, version };
        }
    }
    if let Some(count) = rest.strip_prefix("1..") {
        // `1..N` may carry a trailing comment.
        let count = count.split_whitespace().next().unwrap_or("");
        if let Ok(count) = count.parse() {
            return KtapLine::Plan { depth, count };
        }
    }
    let (ok, after) = if let Some(a) = rest.strip_prefix("not ok") {
        (false, a)
    } else if let Some(a) = rest.strip_prefix("ok") {
        (true, a)
    } else {
        return KtapLine::Other;
    };
    // "ok" must be a word of its own, followed by a number.
    let Some(after) = after.strip_prefix(' ') else {
        return KtapLine::Other;
    };
    let after = after.trim_start();
    let digits_end = after
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(after.len());
    let Ok(number) = after[..digits_end].parse::<u32>() else {
        return KtapLine::Other;
    };
    let mut tail = after[digits_end..].trim_start();
    // TAP 13 allows "ok 1 - name".
    if let Some(t) = tail.strip_prefix("- ") {
        tail = t;
    }
    let (name, directive) = match tail
        .find(" #")
        .or_else(|| tail.strip_prefix('#').map(|_| 0))
    {
        Some(at) => {
            let d = tail[at..].trim_start().trim_start_matches('#').trim();
            (tail[..at].trim(), Some(d.to_string()))
        }
        None => (tail.trim(), None),
    };
    let word = directive
        .as_deref()
        .and_then(|d| d.split_whitespace().next())
        .map(str::to_ascii_uppercase);
    let status = match (ok, word.as_deref()) {
        (_, Some("SKIP")) => KtapStatus::Skip,
        (true, Some("XFAIL")) | (false, Some("TODO")) => KtapStatus::Xfail,
        (true, _) => KtapStatus::Ok,
        (false, _) => KtapStatus::NotOk,
    };
    KtapLine::Result {
        depth,
        number,
        name: name.to_string(),
        status,
        directive: directive.filter(|d| !d.is_empty()),
    }
}

/// One result, as collected by [`KtapSummary`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestResult {
    pub depth: u32,
    pub number: u32,
    pub name: String,
    pub status: KtapStatus,
    pub directive: Option<String>,
}

/// Everything a run printed, folded line by line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KtapSummary {
    pub version: Option<u32>,
    /// The top-level plan.
    pub planned: Option<u32>,
    pub results: Vec<TestResult>,
    pub bail_out: Option<String>,
}

impl KtapSummary {
    /// Fold in one line; returns the result it carried, if any.
    pub fn feed(&mut self, line: &str) -> Option<TestResult> {
        match parse_line(line) {
            KtapLine::Version { depth: 0, version } => self.version = Some(version),
            KtapLine::Plan { depth: 0, count } => self.planned = Some(count),
            KtapLine::BailOut { reason } => self.bail_out = Some(reason),
            KtapLine::Result {
                depth,
                number,
                name,
                status,
                directive,
            } => {
                let r = TestResult {
                    depth,
                    number,
                    name,
                    status,
                    directive,
                };
                self.results.push(r.clone());
                return Some(r);
            }
            _ => {}
        }
        None
    }

    /// Top-level results only.
    pub fn top_level(&self) -> impl Iterator<Item = &TestResult> {
        self.results.iter().filter(|r| r.depth == 0)
    }

    pub fn count(&self, status: KtapStatus) -> usize {
        self.top_level().filter(|r| r.status == status).count()
    }

    /// The plan was announced, every planned test reported, none failed,
    /// and nobody bailed out.
    pub fn all_passed(&self) -> bool {
        let reported = self.top_level().count();
        self.bail_out.is_none()
            && self.planned == Some(reported as u32)
            && self.count(KtapStatus::NotOk) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The output of a kselftest_harness binary like mkdirat_fd_test, with
    /// one failure and one skip added, as kselftest prints it.
    const HARNESS_OUTPUT: &str = "\
TAP version 13
1..4
# Starting 4 tests from 1 test cases.
#  RUN           mkdirat2.returns_fd ...
#            OK  mkdirat2.returns_fd
ok 1 mkdirat2.returns_fd
#  RUN           mkdirat2.ebadf ...
# mkdirat_fd_test.c:97:ebadf:Expected errno (2) == EBADF (9)
# ebadf: Test failed
#          FAIL  mkdirat2.ebadf
not ok 2 mkdirat2.ebadf
ok 3 mkdirat2.einval_unknown_flags # SKIP not supported
ok 4 - mkdirat2.enotdir_dfd
# FAILED: 2 / 4 tests passed.
# Totals: pass:2 fail:1 xfail:0 xpass:0 skip:1 error:0
";

    #[test]
    fn harness_output_is_folded_into_results() {
        let mut s = KtapSummary::default();
        let got: Vec<_> = HARNESS_OUTPUT.lines().filter_map(|l| s.feed(l)).collect();
        assert_eq!(s.version, Some(13));
        assert_eq!(s.planned, Some(4));
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].name, "mkdirat2.returns_fd");
        assert_eq!(got[0].status, KtapStatus::Ok);
        assert_eq!(got[1].status, KtapStatus::NotOk);
        assert_eq!(got[1].number, 2);
        assert_eq!(got[2].status, KtapStatus::Skip);
        assert_eq!(got[2].directive.as_deref(), Some("SKIP not supported"));
        assert_eq!(got[3].name, "mkdirat2.enotdir_dfd");
        assert_eq!(s.count(KtapStatus::Ok), 2);
        assert!(!s.all_passed());
    }

    #[test]
    fn all_passed_needs_the_whole_plan() {
        let mut s = KtapSummary::default();
        for l in ["KTAP version 1", "1..2", "ok 1 a"] {
            s.feed(l);
        }
        assert!(!s.all_passed(), "one of two reported");
        s.feed("ok 2 b");
        assert!(s.all_passed());
        s.feed("Bail out! disk on fire");
        assert!(!s.all_passed());
        assert_eq!(s.bail_out.as_deref(), Some("disk on fire"));
    }

    #[test]
    fn nested_and_odd_lines() {
        assert_eq!(
            parse_line("    ok 1 sub # XFAIL known"),
            KtapLine::Result {
                depth: 1,
                number: 1,
                name: "sub".into(),
                status: KtapStatus::Xfail,
                directive: Some("XFAIL known".into()),
            }
        );
        assert_eq!(
            parse_line("\t\tnot ok 12 deep # TODO later"),
            KtapLine::Result {
                depth: 2,
                number: 12,
                name: "deep".into(),
                status: KtapStatus::Xfail,
                directive: Some("TODO later".into()),
            }
        );
        assert_eq!(
            parse_line("not ok 3 # SKIP"),
            KtapLine::Result {
                depth: 0,
                number: 3,
                name: "".into(),
                status: KtapStatus::Skip,
                directive: Some("SKIP".into()),
            }
        );
        assert_eq!(
            parse_line("    1..3"),
            KtapLine::Plan { depth: 1, count: 3 }
        );
        // The harness's own "OK" lines are diagnostics, not results.
        assert!(matches!(
            parse_line("#            OK  x"),
            KtapLine::Diagnostic { .. }
        ));
        assert!(matches!(
            parse_line("# ok 1 x"),
            KtapLine::Diagnostic { .. }
        ));
        for other in [
            "okay",
            "ok",
            "ok x",
            "not okay 1",
            "",
            "1..x",
            "random output",
        ] {
            assert_eq!(parse_line(other), KtapLine::Other, "{other:?}");
        }
        assert!(
            matches!(parse_line("ok 1 name\r"), KtapLine::Result { name, .. } if name == "name")
        );
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        // Every prefix of every line of a messy transcript, byte-wise
        // (lossy), including multi-byte characters cut in half.
        let text = "ok 1 ü # SKIP ✓\nnot ok 99999999999 x\n    \t ok 2\n#\n1..\nBail out!";
        let bytes = text.as_bytes();
        for end in 0..=bytes.len() {
            let s = String::from_utf8_lossy(&bytes[..end]);
            let _ = parse_line(&s);
        }
    }
}
