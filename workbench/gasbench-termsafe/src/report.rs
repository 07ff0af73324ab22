//! miette reports that are safe to print whatever they quote.
//!
//! A diagnostic about a mail quotes the mail: its message may hold a
//! subject with escape sequences, and its source the line the error is
//! on, which may be 70,000 characters long (miette's renderer then
//! panics: a label column past 65,535 is out of range for its padding).
//! [`safe`] copies a report into a [`SafeReport`]: every text made
//! visible and inert ([`crate::text`]), messages capped, and the quoted
//! source reduced, per label, to the lines around it — a long line to a
//! window around the label — with the line and column numbers of the
//! original file.

use std::fmt;

use miette::{
    Diagnostic, LabeledSpan, MietteError, MietteSpanContents, Report, Severity, SourceCode,
    SourceSpan, SpanContents,
};

/// Characters of a message or help text kept; the rest is counted.
pub const MAX_MESSAGE: usize = 16 * 1024;
/// Characters of a label kept.
pub const MAX_LABEL: usize = 200;
/// Bytes a label may span; a longer one is cut to its start.
pub const MAX_SPAN: usize = 256;
/// Bytes of a source line quoted whole; a longer one is quoted as a
/// window of about this size around the label.
pub const MAX_QUOTED_LINE: usize = 240;
/// Lines quoted before and after a label.
const CONTEXT_LINES: usize = 2;
/// Causes followed.
const MAX_CAUSES: usize = 16;
/// Related diagnostics kept (a scenario file reports at most 100).
const MAX_RELATED: usize = 200;

/// `report`, safe to print with `{:?}`.
pub fn safe(report: &Report) -> Report {
    Report::new(SafeReport::new(report.as_ref()))
}

/// A copy of a diagnostic with every text sanitised and the source cut
/// down to what its labels need.
#[derive(Debug)]
pub struct SafeReport {
    message: String,
    code: Option<String>,
    severity: Option<Severity>,
    help: Option<String>,
    url: Option<String>,
    labels: Vec<LabeledSpan>,
    source: Option<SafeSource>,
    related: Vec<SafeReport>,
    diagnostic_cause: Option<Box<SafeReport>>,
    cause: Option<Box<Cause>>,
}

/// One error of a plain (`std::error::Error`) cause chain.
#[derive(Debug)]
struct Cause {
    message: String,
    next: Option<Box<Cause>>,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.next.as_deref().map(|c| c as _)
    }
}

fn cause_chain(mut e: Option<&dyn std::error::Error>) -> Option<Box<Cause>> {
    let mut messages = Vec::new();
    while let Some(err) = e {
        if messages.len() == MAX_CAUSES {
            messages.push("… (more causes not shown)".to_string());
            break;
        }
        messages.push(crate::text_capped(&err.to_string(), MAX_MESSAGE).into_owned());
        e = err.source();
    }
    messages.into_iter().rev().fold(None, |next, message| {
        Some(Box::new(Cause { message, next }))
    })
}

impl SafeReport {
    pub fn new(d: &dyn Diagnostic) -> SafeReport {
        SafeReport::convert(d, None, 0)
    }

    fn convert(d: &dyn Diagnostic, inherited: Option<&dyn SourceCode>, depth: usize) -> SafeReport {
        let text = |s: String| crate::text_capped(&s, MAX_MESSAGE).into_owned();
        let src = d.source_code().or(inherited);
        let raw_labels: Vec<LabeledSpan> = d.labels().map(|l| l.collect()).unwrap_or_default();
        let (source, labels) = match src {
            Some(src) => {
                let spans: Vec<SourceSpan> = raw_labels.iter().map(|l| clamp(*l.inner())).collect();
                let source = SafeSource::build(src, &spans);
                // A label whose text could not be quoted is left out: the
                // renderer must never be asked for a span we do not have.
                let labels = raw_labels
                    .iter()
                    .zip(&spans)
                    .filter(|(_, s)| source.region_of(s).is_some())
                    .map(|(l, s)| safe_label(l, *s))
                    .collect();
                (Some(source), labels)
            }
            None => (None, Vec::new()),
        };
        let deeper = depth < MAX_CAUSES;
        SafeReport {
            message: text(d.to_string()),
            code: d
                .code()
                .map(|c| crate::line_capped(&c.to_string(), MAX_LABEL).into_owned()),
            severity: d.severity(),
            help: d.help().map(|h| text(h.to_string())),
            url: d
                .url()
                .map(|u| crate::line_capped(&u.to_string(), MAX_LABEL).into_owned()),
            labels,
            source,
            related: match (deeper, d.related()) {
                (true, Some(rel)) => rel
                    .take(MAX_RELATED)
                    .map(|r| SafeReport::convert(r, src, depth + 1))
                    .collect(),
                _ => Vec::new(),
            },
            diagnostic_cause: d
                .diagnostic_source()
                .filter(|_| deeper)
                .map(|c| Box::new(SafeReport::convert(c, src, depth + 1))),
            cause: if d.diagnostic_source().is_some() {
                None
            } else {
                cause_chain(d.source())
            },
        }
    }
}

fn clamp(s: SourceSpan) -> SourceSpan {
    SourceSpan::new(s.offset().into(), s.len().min(MAX_SPAN))
}

fn safe_label(l: &LabeledSpan, span: SourceSpan) -> LabeledSpan {
    let label = l
        .label()
        .map(|t| crate::line_capped(t, MAX_LABEL).into_owned());
    if l.primary() {
        LabeledSpan::new_primary_with_span(label, span)
    } else {
        LabeledSpan::new_with_span(label, span)
    }
}

impl fmt::Display for SafeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SafeReport {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.diagnostic_cause {
            Some(d) => Some(d.as_ref()),
            None => self.cause.as_deref().map(|c| c as _),
        }
    }
}

impl Diagnostic for SafeReport {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.code.as_ref().map(|c| Box::new(c) as _)
    }
    fn severity(&self) -> Option<Severity> {
        self.severity
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help.as_ref().map(|h| Box::new(h) as _)
    }
    fn url<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.url.as_ref().map(|u| Box::new(u) as _)
    }
    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.source.as_ref().map(|s| s as _)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        (!self.labels.is_empty()).then(|| Box::new(self.labels.iter().cloned()) as _)
    }
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        (!self.related.is_empty())
            .then(|| Box::new(self.related.iter().map(|r| r as &dyn Diagnostic)) as _)
    }
    fn diagnostic_source(&self) -> Option<&dyn Diagnostic> {
        self.diagnostic_cause.as_deref().map(|d| d as _)
    }
}

/// A stretch of the original source, sanitised without changing its
/// length, so offsets into it are offsets into the original.
#[derive(Debug)]
struct Region {
    /// Byte offset in the original source where `data` starts.
    offset: usize,
    data: String,
    /// 0-based line and column (in characters) of `data`'s start.
    line: usize,
    column: usize,
}

impl Region {
    fn end(&self) -> usize {
        self.offset + self.data.len()
    }
}

/// The quoted source of a [`SafeReport`]: only the regions its labels
/// need.
#[derive(Debug)]
struct SafeSource {
    name: Option<String>,
    regions: Vec<Region>,
}

impl SafeSource {
    fn build(src: &dyn SourceCode, spans: &[SourceSpan]) -> SafeSource {
        let mut name = None;
        let mut regions: Vec<Region> = Vec::new();
        for span in spans {
            let Ok(c) = src.read_span(span, CONTEXT_LINES, CONTEXT_LINES) else {
                continue;
            };
            if name.is_none() {
                name = c
                    .name()
                    .map(|n| crate::line_capped(n, MAX_LABEL).into_owned());
            }
            if let Some(r) = region_for(c.data(), c.span().offset(), c.line(), c.column(), span)
                && !regions
                    .iter()
                    .any(|o| o.offset < r.end() && r.offset < o.end())
            {
                regions.push(r);
            }
        }
        SafeSource { name, regions }
    }

    fn region_of(&self, span: &SourceSpan) -> Option<&Region> {
        let start = span.offset();
        let end = start + span.len();
        self.regions
            .iter()
            .find(|r| r.offset <= start && end <= r.end())
    }
}

impl SourceCode for SafeSource {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let Some(r) = self.region_of(span) else {
            // Not asked for by any label we kept: quote nothing.
            return Ok(Box::new(MietteSpanContents::new(
                b"",
                SourceSpan::new(span.offset().into(), 0),
                0,
                0,
                0,
            )));
        };
        let local = SourceSpan::new((span.offset() - r.offset).into(), span.len());
        let c = r.data.as_str().read_span(&local, before, after)?;
        let global = SourceSpan::new((c.span().offset() + r.offset).into(), c.span().len());
        let line = c.line() + r.line;
        let column = if c.line() == 0 {
            c.column() + r.column
        } else {
            c.column()
        };
        let data = c.data();
        Ok(Box::new(match &self.name {
            Some(n) => {
                MietteSpanContents::new_named(n.clone(), data, global, line, column, c.line_count())
            }
            None => MietteSpanContents::new(data, global, line, column, c.line_count()),
        }))
    }
}

/// The region to quote for `span` out of `data` (the label's lines with
/// context, starting at byte `offset` of the source, at `line`/`column`):
/// lines up to [`MAX_QUOTED_LINE`] bytes around the label, or a window of
/// the label's own line when that line is longer.
fn region_for(
    data: &[u8],
    offset: usize,
    line: usize,
    column: usize,
    span: &SourceSpan,
) -> Option<Region> {
    let start = span.offset().checked_sub(offset)?;
    let end = (start + span.len()).min(data.len());
    if start > data.len() {
        return None;
    }
    // Lines of `data` as byte ranges (without their newline).
    let mut lines = Vec::new();
    let mut at = 0;
    for piece in data.split(|&b| b == b'\n') {
        lines.push(at..at + piece.len());
        at += piece.len() + 1;
    }
    let here = lines
        .iter()
        .position(|l| l.start <= start && start <= l.end)?;
    let long = |i: usize| lines[i].len() > MAX_QUOTED_LINE;
    let (from, to, first_line, first_col) = if long(here) {
        // A window of the label's line: half before the label, the label
        // (capped), the rest after, on character boundaries.
        let l = &lines[here];
        let half = MAX_QUOTED_LINE / 2;
        let mut from = start.saturating_sub(half).max(l.start);
        let mut to = (end.max(start) + half).min(l.end);
        while from > l.start && !is_char_start(data, from) {
            from -= 1;
        }
        while to < l.end && !is_char_start(data, to) {
            to += 1;
        }
        let col_in_line = chars(&data[l.start..from]);
        let col = if here == 0 {
            column + col_in_line
        } else {
            col_in_line
        };
        (from, to, line + here, col)
    } else {
        // Whole lines: the label's and its short neighbours.
        let mut first = here;
        while first > 0 && !long(first - 1) {
            first -= 1;
        }
        let mut last = here;
        while last + 1 < lines.len() && !long(last + 1) {
            last += 1;
        }
        let col = if first == 0 { column } else { 0 };
        (
            lines[first].start,
            lines[last].end.max(end),
            line + first,
            col,
        )
    };
    let to = to.min(data.len());
    if from > start || to < start {
        return None;
    }
    Some(Region {
        offset: offset + from,
        data: same_length_clean(&data[from..to]),
        line: first_line,
        column: first_col,
    })
}

fn is_char_start(data: &[u8], i: usize) -> bool {
    data.get(i).is_none_or(|&b| (b & 0xC0) != 0x80)
}

fn chars(bytes: &[u8]) -> usize {
    String::from_utf8_lossy(bytes).chars().count()
}

/// `bytes` as text a terminal can show, every byte where it was: each
/// unsafe character replaced by placeholders of its own UTF-8 length, each
/// invalid byte by `?`. Newlines stay (they separate the quoted lines),
/// tabs stay (the renderer expands them).
fn same_length_clean(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\n' || c == '\t' || !super::is_unsafe(c) {
                out.push(c);
            } else if c.len_utf8() == 3 {
                out.push('\u{FFFD}');
            } else {
                out.extend(std::iter::repeat_n('?', c.len_utf8()));
            }
        }
        out.extend(std::iter::repeat_n('?', chunk.invalid().len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use miette::{GraphicalReportHandler, GraphicalTheme, MietteDiagnostic, NamedSource};

    fn render(r: &Report) -> String {
        let mut out = String::new();
        GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
            .with_width(100)
            .render_report(&mut out, r.as_ref())
            .unwrap();
        out
    }

    fn no_escapes(s: &str) -> bool {
        !s.chars()
            .any(|c| c == '\x1b' || c == '\u{9b}' || c == '\x07' || c == '\u{202e}')
    }

    /// The mail from the issue: a header line of 70,000 characters with
    /// an invalid byte at its end, quoted by a diagnostic with a label
    /// there (miette 7.6 itself panics rendering that). The safe copy
    /// quotes a window and says where.
    #[test]
    fn a_label_at_column_70000_renders_as_a_window() {
        let mut text = String::from("From: a <a@b>\nSubject: [PATCH 1/1] x\n");
        text.push_str("X-Long: ");
        text.push_str(&"X".repeat(70_000));
        let at = text.len();
        text.push_str("\u{fffd}\n\nbody\n");
        let d = MietteDiagnostic::new("byte 0xFF on line 3 is not valid UTF-8")
            .with_label(LabeledSpan::at(at..at + 3, "here"));
        let raw = Report::new(d).with_source_code(NamedSource::new("long.mbox", text.clone()));
        let shown = render(&safe(&raw));
        assert!(shown.contains("[long.mbox:3:70009]"), "{shown}");
        assert!(shown.contains("here"), "{shown}");
        let longest = shown.lines().map(|l| l.chars().count()).max().unwrap();
        assert!(longest < 400, "a line of {longest} characters was printed");
        assert!(shown.contains("XXXX"));
    }

    #[test]
    fn messages_labels_help_and_quoted_source_are_inert() {
        let text = "Subject: \x1b]52;c;cm0gLXJmIH4=\x07evil\u{202e}txt\nnext \x1b[2J line\n";
        let d = MietteDiagnostic::new("cannot read \"\x1b[2Jsubject\x1b[0m\"")
            .with_help("rename \u{9b}31m it")
            .with_label(LabeledSpan::at(9..13, "\x1b[31mlabel"));
        let raw = Report::new(d).with_source_code(NamedSource::new("m\x1bbox", text));
        let shown = render(&safe(&raw));
        assert!(no_escapes(&shown), "{shown:?}");
        assert!(shown.contains("cannot read \"␛[2Jsubject␛[0m\""), "{shown}");
        assert!(shown.contains("rename <U+009B>31m it"), "{shown}");
        assert!(shown.contains("␛[31mlabel"), "{shown}");
        // Quoted lines keep their length (placeholders) and line numbers.
        assert!(
            shown.contains("1 │ Subject: ?]52;c;cm0gLXJmIH4=?evil\u{fffd}txt"),
            "{shown}"
        );
        assert!(shown.contains("2 │ next ?[2J line"), "{shown}");
    }

    /// A diagnostic with a plain std error as its cause.
    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("reading \x1b[2Jthe mail")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    impl Diagnostic for Outer {}

    #[test]
    fn causes_and_related_are_sanitised_too() {
        let inner = std::io::Error::other("the guest said \x1b]0;pwned\x07");
        let r = Report::new(Outer(inner));
        let shown = render(&safe(&r));
        assert!(no_escapes(&shown), "{shown:?}");
        assert!(shown.contains("␛]0;pwned␇"), "{shown}");

        #[derive(Debug)]
        struct Many {
            src: NamedSource<String>,
            rel: Vec<MietteDiagnostic>,
        }
        impl fmt::Display for Many {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("2 problems")
            }
        }
        impl std::error::Error for Many {}
        impl Diagnostic for Many {
            fn source_code(&self) -> Option<&dyn SourceCode> {
                Some(&self.src)
            }
            fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
                Some(Box::new(self.rel.iter().map(|d| d as &dyn Diagnostic)))
            }
        }
        let long = format!("a = 1\nb = \"{}\x1b[2J\"\n", "y".repeat(100_000));
        let end = long.len() - 3;
        let many = Many {
            src: NamedSource::new("s.toml", long),
            rel: vec![
                MietteDiagnostic::new("first").with_label(LabeledSpan::at(0..1, "a")),
                MietteDiagnostic::new("second \x07")
                    .with_label(LabeledSpan::at(end - 4..end, "end")),
            ],
        };
        let shown = render(&safe(&Report::new(many)));
        assert!(no_escapes(&shown), "{shown:?}");
        assert!(shown.contains("[s.toml:1:1]"), "{shown}");
        assert!(shown.contains("[s.toml:2:"), "{shown}");
        assert!(shown.contains("second ␇"), "{shown}");
        let longest = shown.lines().map(|l| l.chars().count()).max().unwrap();
        assert!(longest < 400, "{longest}");
    }

    #[test]
    fn spans_outside_the_source_are_dropped_not_fatal() {
        let d = MietteDiagnostic::new("odd")
            .with_label(LabeledSpan::at(500..510, "past the end"))
            .with_label(LabeledSpan::at(0..2, "fine"));
        let raw = Report::new(d).with_source_code("ab\ncd\n".to_string());
        let shown = render(&safe(&raw));
        assert!(shown.contains("fine"), "{shown}");
        assert!(!shown.contains("past the end"), "{shown}");
    }

    #[test]
    fn same_length_cleaning_keeps_every_offset() {
        for s in [
            "plain",
            "\x1b[2J",
            "a\u{9b}b",
            "x\u{202e}y",
            "tab\tand\nnewline",
        ] {
            let c = same_length_clean(s.as_bytes());
            assert_eq!(c.len(), s.len(), "{s:?} -> {c:?}");
            assert!(no_escapes(&c));
        }
        assert_eq!(same_length_clean(b"a\xffb"), "a?b");
    }
}
