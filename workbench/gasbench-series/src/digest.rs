//! public-inbox thread digests: a lore `/T/` page saved as text.
//!
//! Each message looks like this:
//!
//! ```text
//! * [RFC PATCH v2 1/2] vfs: syscalls: add mkdirat2() that returns an O_DIRECTORY fd
//! From: Jori Koolstra @ 2026-04-12 13:54 UTC (permalink / raw)
//!   To: Andy Lutomirski, Thomas Gleixner, ...
//!   Cc: H . Peter Anvin, ...
//!     linux-arch
//! In-Reply-To: <20260412135434.3095416-1-jkoolstra@xs4all.nl>
//!
//! body ...
//!
//! ^ permalink raw reply related
//! ```
//!
//! The quirks this parser copes with:
//! - `From:` has the name only, no address; the address is in the
//!   patch's own `Signed-off-by:` (see [`crate::series`]).
//! - Dates have minutes only and may be space-padded (`2026-04-11  0:12`).
//! - No message has a `Message-Id`; only `In-Reply-To` survives.
//! - `To:`/`Cc:` are indented by two spaces; continuation lines by a tab
//!   (shown as spaces above).
//! - A body line may itself start with `* ` (a quote attribution such as
//!   `* H. J. Lu:`): a message starts only where `* subject` is followed
//!   by a `From: ... (permalink / raw)` line.
//! - Messages come in thread order, not patch order, and unrelated threads
//!   are mixed in.
//! - The page has a title block before the first message and a footer
//!   (`This is a public inbox, ...`) after the last.

use crate::date::MailDate;
use crate::message::{Message, Person, split_addresses, strip_angles};
use crate::span::{Line, Span, lines};
use crate::{Error, Result};

const PERMALINK: &str = "^ permalink raw reply";
const FROM_TAIL: &str = "(permalink / raw)";

/// True when `text` has at least one digest message header.
pub fn looks_like_digest(text: &str) -> bool {
    let ls = lines(text, 0);
    ls.windows(2)
        .any(|w| w[0].text.starts_with("* ") && parse_from_line(w[1].trimmed_cr()).is_some())
}

/// `From: NAME @ DATE (permalink / raw)` → (name, date text).
fn parse_from_line(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix("From: ")?;
    let rest = rest.trim_end().strip_suffix(FROM_TAIL)?.trim_end();
    let at = rest.rfind(" @ ")?;
    Some((rest[..at].trim(), rest[at + 3..].trim()))
}

fn is_message_start(ls: &[Line<'_>], i: usize) -> bool {
    i + 1 < ls.len()
        && ls[i].text.starts_with("* ")
        && parse_from_line(ls[i + 1].trimmed_cr()).is_some()
}

/// All messages of the digest, in page order.
pub fn parse(text: &str) -> Result<Vec<Message>> {
    let ls = lines(text, 0);
    let starts: Vec<usize> = (0..ls.len())
        .filter(|&i| is_message_start(&ls, i))
        .collect();
    let mut out = Vec::with_capacity(starts.len());
    for (n, &start) in starts.iter().enumerate() {
        let limit = starts.get(n + 1).copied().unwrap_or(ls.len());
        out.push(parse_one(text, &ls[start..limit])?);
    }
    Ok(out)
}

fn parse_one(text: &str, ls: &[Line<'_>]) -> Result<Message> {
    let subject = ls[0].trimmed_cr()["* ".len()..].trim().to_string();
    let from_line = ls[1];
    let (name, date_text) =
        parse_from_line(from_line.trimmed_cr()).ok_or_else(|| Error::BadHeader {
            what: "expected `From: NAME @ DATE (permalink / raw)`".into(),
            span: from_line.span(),
        })?;
    let date = MailDate::parse_digest(date_text).ok_or_else(|| Error::BadDate {
        text: date_text.to_string(),
        what: "expected `YYYY-MM-DD HH:MM UTC`".into(),
        span: from_line.span(),
    })?;

    // Headers: `  To:`/`  Cc:` with tab-indented continuations, then
    // `In-Reply-To:`/`References:`, up to the first blank line.
    let mut to = String::new();
    let mut cc = String::new();
    let mut in_reply_to = None;
    let mut current: Option<&mut String> = None;
    let mut i = 2;
    while i < ls.len() && !ls[i].is_blank() {
        let l = ls[i].trimmed_cr();
        let t = l.trim_start();
        if let Some(v) = t.strip_prefix("To:").filter(|_| l.starts_with("  ")) {
            to.push_str(v);
            current = Some(&mut to);
        } else if let Some(v) = t.strip_prefix("Cc:").filter(|_| l.starts_with("  ")) {
            cc.push_str(v);
            current = Some(&mut cc);
        } else if let Some(v) = l.strip_prefix("In-Reply-To:") {
            in_reply_to = strip_angles(v);
            current = None;
        } else if l.starts_with("References:") {
            current = None;
        } else if l.starts_with(char::is_whitespace) {
            match current.as_deref_mut() {
                Some(list) => {
                    list.push(' ');
                    list.push_str(t);
                }
                None => {
                    return Err(Error::BadHeader {
                        what: "continuation line outside To:/Cc:".into(),
                        span: ls[i].span(),
                    });
                }
            }
        } else {
            // Anything else means the header block is over without a blank
            // line; treat it as the start of the body.
            break;
        }
        i += 1;
    }
    while i < ls.len() && ls[i].is_blank() {
        i += 1;
    }
    let body_start = ls.get(i).map_or(ls[ls.len() - 1].next, |l| l.start);

    // The body runs to the permalink line (or the page footer, or the end).
    let mut end = ls.len();
    for (j, l) in ls.iter().enumerate().skip(i) {
        if l.text.starts_with(PERMALINK) || l.text.starts_with("This is a public inbox") {
            end = j;
            break;
        }
    }
    // Trailing blank lines belong to the page layout, not the message.
    let mut last = end;
    while last > i && ls[last - 1].is_blank() {
        last -= 1;
    }
    let body_end = if last > i {
        ls[last - 1].next
    } else {
        body_start
    };
    let mut body = text[body_start..body_end].to_string();
    if !body.is_empty() && !body.ends_with('\n') {
        body.push('\n');
    }
    let msg_end = if end < ls.len() {
        ls[end].next
    } else {
        ls[ls.len() - 1].next
    };
    Ok(Message {
        subject,
        from: Person {
            name: name.to_string(),
            email: None,
        },
        date,
        date_text: date_text.to_string(),
        to: split_addresses(&to),
        cc: split_addresses(&cc),
        message_id: None,
        in_reply_to,
        body,
        span: Span::new(ls[0].start, msg_end - ls[0].start),
        body_offset: body_start,
    })
}

/// The list named in the page's title block (`Linux userland API
/// discussions`), when there is one.
pub fn archive_title(text: &str) -> Option<String> {
    let first = text.lines().next()?.trim();
    (!first.is_empty() && !first.starts_with("* ")).then(|| first.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = concat!(
        "Some list\n help / color / mirror / Atom feed\n",
        "* [PATCH 1/1] foo: bar\n",
        "From: A Person @ 2026-04-11  0:12 UTC (permalink / raw)\n",
        "  To: B, C\n",
        "  Cc: D,\n",
        "\tlinux-api\n",
        "In-Reply-To: <x@y>\n",
        "\n",
        "body line\n",
        "* H. J. Lu:\n",
        "\n",
        "more\n",
        "\n",
        "\n",
        "^ permalink raw reply related\n",
        "\n",
        "* Re: other\n",
        "From: Q @ 2026-04-12 13:54 UTC (permalink / raw)\n",
        "\n",
        "reply\n",
        "^ permalink raw reply\n",
        "\n",
        "This is a public inbox, see mirroring instructions\n",
    );

    #[test]
    fn messages_headers_and_bodies() {
        assert!(looks_like_digest(TWO));
        let m = parse(TWO).unwrap();
        assert_eq!(m.len(), 2, "a `* H. J. Lu:` body line is not a message");
        assert_eq!(m[0].subject, "[PATCH 1/1] foo: bar");
        assert_eq!(m[0].from.name, "A Person");
        assert_eq!(m[0].from.email, None);
        assert_eq!(m[0].to, vec!["B", "C"]);
        assert_eq!(m[0].cc, vec!["D", "linux-api"]);
        assert_eq!(m[0].in_reply_to.as_deref(), Some("x@y"));
        assert_eq!(m[0].body, "body line\n* H. J. Lu:\n\nmore\n");
        assert_eq!(&TWO[m[0].body_offset..m[0].body_offset + 9], "body line");
        assert_eq!(m[0].date.hour, 0);
        assert_eq!(m[1].subject, "Re: other");
        assert_eq!(m[1].body, "reply\n");
        assert_eq!(m[1].in_reply_to, None);
        assert_eq!(archive_title(TWO).as_deref(), Some("Some list"));
    }

    #[test]
    fn a_bad_date_is_an_error_with_a_span() {
        let text = "* [PATCH] x\nFrom: A @ 2026-04-31 10:00 UTC (permalink / raw)\n\nb\n";
        let err = parse(text).unwrap_err();
        assert!(matches!(err, Error::BadDate { .. }), "{err}");
        let span = err.span().unwrap();
        assert!(text[span.offset..span.end()].starts_with("From: A @"));
    }

    #[test]
    fn a_last_message_without_permalink_runs_to_the_end() {
        let text = "* [PATCH] x\nFrom: A @ 2026-04-01 10:00 UTC (permalink / raw)\n\nline\n";
        let m = parse(text).unwrap();
        assert_eq!(m[0].body, "line\n");
    }
}
