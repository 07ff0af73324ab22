//! `review.eml`: the review as a plain-text reply to the series, ready for
//! `git send-email` or `b4 send` (gasbench sends nothing itself).
//!
//! Wrapped at 72 columns; threaded under the cover letter (or the first
//! patch) with In-Reply-To and References; each finding quotes the hunk
//! it is about with `> ` (the hunk a compiler error points into, a
//! rejected hunk, the hunk that handles the call a scenario failed on)
//! and puts the evidence under it; `Tested-by:` only when the review is
//! clean. Everything from the mail or the guest is untrusted: header
//! values lose their line breaks and control characters, non-ASCII ones
//! are RFC 2047 encoded, and quoted text loses control characters.

use std::fmt::Write;

use gasbench_series::patch::{FileDiff, Hunk};

use crate::report::{Finding, MessageRef, Review, Severity};

/// One posted patch's diff, parsed, for quoting.
#[derive(Clone, Debug)]
pub struct PatchDiff {
    /// The posted index (`2` of `2/6`).
    pub index: u32,
    pub files: Vec<FileDiff>,
}

/// The posted patches of a series directory, parsed for quoting; a
/// patch file that cannot be read or parsed is left out (the reply then
/// quotes nothing from it).
pub fn patch_diffs(
    series_dir: &std::path::Path,
    m: &gasbench_series::manifest::SeriesManifest,
) -> Vec<PatchDiff> {
    m.patches
        .iter()
        .filter_map(|p| {
            let text = std::fs::read_to_string(series_dir.join(&p.file)).ok()?;
            let parts = gasbench_series::patch::PatchBody::split(&text)?;
            let files = gasbench_series::patch::parse_diff(&text[parts.diff]).ok()?;
            Some(PatchDiff {
                index: p.index,
                files,
            })
        })
        .collect()
}

/// Who the reply is from (`Name <address>`), and when it is written.
pub struct ReplyFrom<'a> {
    pub from: &'a str,
    /// RFC 2822 date.
    pub date: &'a str,
}

const WIDTH: usize = 72;
/// The most lines of one hunk a finding quotes.
const QUOTE_LINES: usize = 14;

/// One line of text with no control characters (tabs become spaces).
fn clean_line(s: &str) -> String {
    s.chars()
        .map(|c| if c == '\t' { ' ' } else { c })
        .filter(|c| !c.is_control())
        .collect()
}

/// A header value: one line, no control characters, at most 900
/// characters, RFC 2047 encoded when it is not ASCII.
fn header_value(s: &str) -> String {
    let one: String = clean_line(&s.replace(['\r', '\n'], " "))
        .chars()
        .take(900)
        .collect();
    if one.is_ascii() {
        return one;
    }
    // One encoded word per chunk of at most 45 bytes of UTF-8 (an
    // encoded word may be 75 characters long), split on char boundaries.
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in one.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(encode_word(&chunk));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(encode_word(&chunk));
    }
    words.join("\n ")
}

fn encode_word(s: &str) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::from("=?UTF-8?B?");
    for chunk in s.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out.push_str("?=");
    out
}

/// Prose wrapped at 72 columns with `indent` on every line.
fn wrap(out: &mut String, text: &str, indent: &str) {
    let opts = textwrap::Options::new(WIDTH)
        .initial_indent(indent)
        .subsequent_indent(indent)
        // A token longer than the line (a JSON list from the guest, a
        // long path) is broken too: the reply keeps its 72 columns.
        .break_words(true);
    for para in text.split('\n') {
        let para = clean_line(para);
        if para.trim().is_empty() {
            out.push('\n');
            continue;
        }
        for line in textwrap::wrap(&para, &opts) {
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
}

/// The message the reply answers: the cover letter, else patch 1.
fn answered(r: &Review) -> Option<&MessageRef> {
    r.series
        .cover
        .as_ref()
        .or_else(|| r.series.patches.iter().min_by_key(|p| p.index))
}

/// `path:line` at the start of a compiler error.
fn error_location(detail: &str) -> Option<(String, u32)> {
    for word in detail.split_whitespace() {
        let mut parts = word.split(':');
        let (Some(path), Some(line)) = (parts.next(), parts.next()) else {
            continue;
        };
        if (path.contains('/') || path.contains('.'))
            && let Ok(n) = line.parse::<u32>()
        {
            return Some((path.to_string(), n));
        }
    }
    None
}

/// The posted index a finding's title names (`2/6 "…"`).
fn posted_index(title: &str) -> Option<u32> {
    title.split_whitespace().find_map(|w| {
        let (a, b) = w.split_once('/')?;
        let b = b.trim_end_matches(|c: char| !c.is_ascii_digit());
        (b.parse::<u32>().is_ok()).then(|| a.parse().ok())?
    })
}

/// Identifiers worth looking for in the code (`ALLOCATE_BLOCK`,
/// `mkdirat2`), from a finding's title.
fn identifiers(title: &str) -> Vec<String> {
    title
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| {
            w.len() >= 5
                && w.chars().any(|c| c.is_ascii_alphabetic())
                && (w.contains('_') || w.chars().any(|c| c.is_ascii_digit()))
        })
        .map(|w| w.to_ascii_lowercase())
        .collect()
}

/// A hunk to quote: which patch, which file, which hunk, and the line in
/// it to centre on.
struct Quote<'a> {
    index: u32,
    path: &'a str,
    hunk: &'a Hunk,
    focus: Option<usize>,
    why: String,
}

fn find_quote<'a>(f: &Finding, diffs: &'a [PatchDiff]) -> Option<Quote<'a>> {
    let detail = f.detail.as_deref().unwrap_or("");
    // A compiler error: the hunk whose new lines hold that line, else
    // (the tree the error came from has the file at other offsets) the
    // series' hunk of that file nearest to it.
    if let Some((path, line)) = error_location(detail) {
        let mut best: Option<(u32, Quote)> = None;
        for d in diffs.iter().rev() {
            for fd in d.files.iter().filter(|fd| fd.path() == path) {
                for h in &fd.hunks {
                    let end = h.new_start + h.new_len.max(1);
                    let distance = if line < h.new_start {
                        h.new_start - line
                    } else {
                        line.saturating_sub(end - 1)
                    };
                    // The line's place among the hunk's new lines.
                    let mut n = h.new_start;
                    let focus = h.lines.iter().position(|l| {
                        if l.starts_with('-') {
                            return false;
                        }
                        let here = n == line;
                        n += 1;
                        here
                    });
                    let why = if distance == 0 {
                        format!("the error is at {path}:{line}")
                    } else {
                        format!("the hunk of {path} nearest to the error at line {line}")
                    };
                    if best.as_ref().is_none_or(|(b, _)| distance < *b) {
                        best = Some((
                            distance,
                            Quote {
                                index: d.index,
                                path: fd.path(),
                                hunk: h,
                                focus,
                                why,
                            },
                        ));
                    }
                }
            }
        }
        if let Some((_, q)) = best {
            return Some(q);
        }
    }
    // A rejected hunk: `file hunk N (@@ … @@): rejected`.
    if let Some(k) = posted_index(&f.title)
        && let Some(d) = diffs.iter().find(|d| d.index == k)
    {
        for fd in &d.files {
            for h in &fd.hunks {
                if detail.contains(&format!("{} hunk", fd.path())) && detail.contains(&h.header()) {
                    return Some(Quote {
                        index: k,
                        path: fd.path(),
                        hunk: h,
                        focus: None,
                        why: "the hunk that does not apply".into(),
                    });
                }
            }
        }
    }
    // The code that handles what failed: the last patch whose added
    // lines name it, in the code (a .c or .rs file; not the uapi header),
    // and in the selftest only when the finding is about the selftest.
    let about_selftest = f.title.contains("selftest");
    for ident in identifiers(&f.title) {
        for d in diffs.iter().rev() {
            for fd in &d.files {
                let p = fd.path();
                if !(p.ends_with(".rs") || p.ends_with(".c"))
                    || p.contains("selftests") != about_selftest
                {
                    continue;
                }
                // Where the code dispatches on it (a match arm, a case)
                // beats where it is only named (a constant).
                let mut best: Option<(u8, &Hunk, usize)> = None;
                for h in &fd.hunks {
                    for (i, l) in h.lines.iter().enumerate() {
                        if !(l.starts_with('+') && l.to_ascii_lowercase().contains(&ident)) {
                            continue;
                        }
                        let score = if l.contains("=>") || l.contains("case ") {
                            2
                        } else if l.contains("fn ") || l.contains('(') {
                            1
                        } else {
                            0
                        };
                        if best.is_none_or(|(b, _, _)| score > b) {
                            best = Some((score, h, i));
                        }
                    }
                }
                if let Some((_, h, focus)) = best {
                    return Some(Quote {
                        index: d.index,
                        path: p,
                        hunk: h,
                        focus: Some(focus),
                        why: format!("the code that handles {ident}"),
                    });
                }
            }
        }
    }
    None
}

fn write_quote(out: &mut String, q: &Quote, total: u32) {
    wrap(
        out,
        &format!("In patch {}/{total}, {} ({}):", q.index, q.path, q.why),
        "",
    );
    out.push('\n');
    let _ = writeln!(out, "> {}", clean_line(&q.hunk.header()));
    let lines = &q.hunk.lines;
    let (from, to) = if lines.len() <= QUOTE_LINES {
        (0, lines.len())
    } else {
        let centre = q.focus.unwrap_or(0);
        let from = centre.saturating_sub(QUOTE_LINES / 2);
        let from = from.min(lines.len() - QUOTE_LINES);
        (from, from + QUOTE_LINES)
    };
    if from > 0 {
        out.push_str("> [...]\n");
    }
    for l in &lines[from..to] {
        // Code keeps its tabs; nothing else that is not printable.
        let code: String = l
            .chars()
            .filter(|&c| c == '\t' || !c.is_control())
            .collect();
        let _ = writeln!(out, "> {}", code.trim_end());
    }
    if to < lines.len() {
        out.push_str("> [...]\n");
    }
    out.push('\n');
}

/// The reply, as an RFC 2822 message.
pub fn render(r: &Review, diffs: &[PatchDiff], from: &ReplyFrom) -> String {
    let s = &r.series;
    let mut o = String::new();
    let answered = answered(r);
    let subject = answered
        .map(|m| m.subject.clone())
        .unwrap_or_else(|| format!("[PATCH v{}] {}", s.version, s.title));
    let _ = writeln!(o, "From: {}", header_value(from.from));
    let _ = writeln!(o, "To: {}", header_value(&s.author));
    // Only addresses go in Cc; an archive's inbox name (what a digest
    // gives: `linux-api`) is not an address, and guessing one would send
    // mail somewhere unintended.
    let (addresses, names): (Vec<&String>, Vec<&String>) =
        s.lists.iter().partition(|l| l.contains('@'));
    if !addresses.is_empty() {
        let joined: Vec<&str> = addresses.iter().map(|a| a.as_str()).collect();
        let _ = writeln!(o, "Cc: {}", header_value(&joined.join(", ")));
    }
    if !names.is_empty() {
        let joined: Vec<&str> = names.iter().map(|a| a.as_str()).collect();
        let _ = writeln!(
            o,
            "X-Gasbench-Lists: {} (archive names: add the lists' addresses to Cc)",
            header_value(&joined.join(", "))
        );
    }
    let _ = writeln!(o, "Subject: {}", header_value(&format!("Re: {subject}")));
    let _ = writeln!(o, "Date: {}", header_value(from.date));
    if let Some(m) = answered {
        let id = header_value(&m.message_id);
        let _ = writeln!(o, "In-Reply-To: <{id}>");
        // The cover letter heads the thread; a reply to a patch refers
        // to both.
        let mut refs = Vec::new();
        if let Some(c) = &s.cover
            && c.message_id != m.message_id
        {
            refs.push(format!("<{}>", header_value(&c.message_id)));
        }
        refs.push(format!("<{id}>"));
        let _ = writeln!(o, "References: {}", refs.join(" "));
    }
    o.push_str("MIME-Version: 1.0\n");
    o.push_str("Content-Type: text/plain; charset=UTF-8\n");
    o.push_str("Content-Transfer-Encoding: 8bit\n");
    o.push('\n');

    // The body.
    let first_name = s
        .author
        .split(['<', ' '])
        .next()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or("there");
    let _ = writeln!(o, "Hi {},\n", clean_line(first_name));
    let built = match r.build.tree_builds {
        Some(true) => "the tree with the series builds",
        Some(false) => "the tree with the series does not build",
        None => "the tree was not built to the end",
    };
    let ran = if r.scenarios.is_empty() {
        "no scenario ran".to_string()
    } else {
        let held: usize = r.scenarios.iter().map(|x| x.held).sum();
        let total: usize = r.scenarios.iter().map(|x| x.total).sum();
        format!(
            "{} scenario(s) ran in a {} guest, {held} of {total} expectations held",
            r.scenarios.len(),
            r.run.accel.as_deref().unwrap_or("QEMU").to_uppercase()
        )
    };
    wrap(
        &mut o,
        &format!(
            "I applied v{} of \"{}\" to {}, {}, and built it{}: {built}; {ran}.",
            s.version,
            s.title,
            r.base.release,
            r.base.applied,
            if r.build.per_patch {
                " after every patch"
            } else {
                ""
            }
        ),
        "",
    );
    if let Some(choice) = &r.base.choice {
        wrap(&mut o, &format!("{choice}."), "");
    }
    o.push('\n');
    if r.findings.is_empty() {
        wrap(
            &mut o,
            "Every patch applies and builds, and every expectation held.",
            "",
        );
        o.push('\n');
    } else {
        wrap(
            &mut o,
            &format!("{}, most severe first.", r.verdict_line()),
            "",
        );
        o.push('\n');
    }
    for (i, f) in r.findings.iter().enumerate() {
        let _ = writeln!(o, "{}. [{}]", i + 1, f.severity.name());
        wrap(&mut o, &f.title, "   ");
        if let Some(loc) = &f.location {
            wrap(&mut o, &format!("({loc})"), "   ");
        }
        o.push('\n');
        if let Some(q) = find_quote(f, diffs) {
            write_quote(&mut o, &q, s.total);
        }
        if let Some(d) = &f.detail {
            wrap(&mut o, d, "   ");
            o.push('\n');
        }
        // A crash: the kernel's own lines are the evidence.
        if f.severity == Severity::Critical {
            for l in r.kernel_log.iter().filter(|l| l.kind == "bug").take(20) {
                let _ = writeln!(o, "   {}", clean_line(&l.line));
            }
            o.push('\n');
        }
    }
    if r.findings.iter().any(|f| f.tool_failure) {
        wrap(
            &mut o,
            "gasbench itself did not finish the run (see the findings marked as the tool's); \
             the verdicts above are incomplete.",
            "",
        );
        o.push('\n');
    }
    if r.passed() {
        let _ = writeln!(o, "Tested-by: {}", header_value(from.from));
        o.push('\n');
    }
    o.push_str("-- \n");
    wrap(
        &mut o,
        &format!(
            "gasbench {} (exit {}){}",
            env!("CARGO_PKG_VERSION"),
            r.exit_code,
            r.run
                .run_dir
                .as_deref()
                .map(|d| format!("; run directory {d}"))
                .unwrap_or_default()
        ),
        "",
    );
    o
}

/// `secs` since the epoch as an RFC 2822 date in UTC
/// (`Mon, 07 Dec 2026 05:12:00 +0000`).
pub fn rfc2822_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} +0000",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_rfc2822() {
        assert_eq!(rfc2822_utc(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc2822_utc(1_796_619_600),
            "Mon, 07 Dec 2026 05:00:00 +0000"
        );
        assert_eq!(rfc2822_utc(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

    #[test]
    fn header_values_cannot_inject_headers_and_non_ascii_is_encoded() {
        assert_eq!(header_value("a\r\nBcc: x@y"), "a  Bcc: x@y");
        let enc = header_value("Jörg Rödel <j@r>");
        assert!(enc.starts_with("=?UTF-8?B?"), "{enc}");
        assert!(enc.is_ascii());
        assert_eq!(encode_word("ö"), "=?UTF-8?B?w7Y=?=");
        assert_eq!(encode_word("abc"), "=?UTF-8?B?YWJj?=");
    }

    #[test]
    fn locations_indexes_and_identifiers_from_findings() {
        assert_eq!(
            error_location("fs/namei.c:4321:9: error: x"),
            Some(("fs/namei.c".into(), 4321))
        );
        assert_eq!(error_location("make failed"), None);
        assert_eq!(
            posted_index("2/2 \"selftest: add\" does not apply"),
            Some(2)
        );
        assert_eq!(posted_index("posting defect in 6/6 \"x\""), Some(6));
        assert_eq!(
            identifiers("goldfish-errors: ALLOCATE_BLOCK with a read-only result"),
            ["allocate_block"]
        );
    }
}
