//! From the bytes of a mail file to the text the parsers read.
//!
//! Two things happen to mail on its way to a reviewer's disk that the
//! parsers should not have to know about:
//!
//! - **CRLF line ends.** Mail on the wire is CRLF; some clients and
//!   Windows tools save it that way. A message (an mbox message, or the
//!   whole file when it is not an mbox) in which *every* line ends in CRLF
//!   is read with LF line ends: one CR before each LF is dropped and
//!   nothing else. A message where only some lines end in CR (a patch that
//!   adds a file with CRLF line ends, a diff with a lone CR) is left
//!   byte for byte as it is.
//! - **Charsets.** An 8-bit body is in the charset its `Content-Type`
//!   declares; the message is decoded from that charset to UTF-8
//!   (see [`crate::charset`] for which ones). Bodies in quoted-printable or
//!   base64 are ASCII here and are decoded by [`crate::mbox`]. A message
//!   that is not valid in its charset, or declares one gasbench does not
//!   know, is an error naming the message and the charset.
//!
//! UTF-8 input comes out byte-identical (after the CRLF rule), so posted
//! diffs keep their hashes. Offsets in errors point into
//! `String::from_utf8_lossy(bytes)`, the text a caller can show.

use std::borrow::Cow;

use crate::charset::{Charset, charset_param, unknown_charset};
use crate::mbox::decode_words;
use crate::{Error, Result, Span};

/// The text of a mail file: CRLF messages read as LF, 8-bit bodies
/// decoded from their declared charset.
pub fn mail_text(bytes: &[u8]) -> Result<String> {
    let mut out = String::with_capacity(bytes.len());
    for seg in segments(bytes) {
        let raw = &bytes[seg.clone()];
        let unix: Cow<'_, [u8]> = if all_lines_crlf(raw) {
            Cow::Owned(without_crlf(raw))
        } else {
            Cow::Borrowed(raw)
        };
        out.push_str(&decode_message(&unix, raw, bytes, seg.start)?);
    }
    Ok(out)
}

/// Byte ranges of the messages: split at mbox `From ` separators (at the
/// start, or after a blank line), else the whole input.
fn segments(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut starts = vec![0];
    if bytes.starts_with(b"From ") {
        let mut prev_blank = false;
        let mut at = 0;
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            if at > 0 && prev_blank && is_separator(line) {
                starts.push(at);
            }
            prev_blank = trim_eol(line).is_empty();
            at += line.len();
        }
    }
    let mut out: Vec<_> = starts.windows(2).map(|w| w[0]..w[1]).collect();
    out.push(*starts.last().unwrap_or(&0)..bytes.len());
    out
}

/// `From <word> ...`, as [`crate::mbox`] recognises it.
fn is_separator(line: &[u8]) -> bool {
    line.strip_prefix(b"From ")
        .is_some_and(|rest| !trim_eol(rest).trim_ascii().is_empty())
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Every line break is CRLF (and there is at least one).
fn all_lines_crlf(raw: &[u8]) -> bool {
    let mut any = false;
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\n' {
            if i == 0 || raw[i - 1] != b'\r' {
                return false;
            }
            any = true;
        }
    }
    any
}

/// Drop the CR of each CRLF; a CR anywhere else stays.
fn without_crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\r' && raw.get(i + 1) == Some(&b'\n') {
            continue;
        }
        out.push(b);
    }
    out
}

/// What the headers of a message say about its body.
#[derive(Default)]
struct BodyHeaders {
    subject: Option<String>,
    charset: Option<String>,
    transfer_encoding: Option<String>,
}

/// The headers at the start of `msg` (after an mbox separator), as far as
/// they look like headers.
fn body_headers(msg: &[u8]) -> BodyHeaders {
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut lines = msg.split(|&b| b == b'\n').peekable();
    if lines.peek().is_some_and(|l| is_separator(l)) {
        lines.next();
    }
    for line in lines {
        let line = String::from_utf8_lossy(trim_eol(line));
        if line.trim().is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            match fields.last_mut() {
                Some((_, v)) => v.push_str(&line),
                None => break,
            }
        } else if let Some((name, value)) = line.split_once(':')
            && !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            fields.push((name.to_string(), value.trim().to_string()));
        } else {
            break;
        }
    }
    let get = |n: &str| {
        fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    BodyHeaders {
        subject: get("Subject").map(|s| decode_words(&s)),
        charset: get("Content-Type").and_then(|v| charset_param(&v)),
        transfer_encoding: get("Content-Transfer-Encoding").map(|v| v.to_ascii_lowercase()),
    }
}

/// One message as UTF-8. `raw` is the message as it is in the file, at
/// `start` in `file`, for pointing at a bad byte.
fn decode_message(msg: &[u8], raw: &[u8], file: &[u8], start: usize) -> Result<String> {
    // ISO-2022-JP is the one charset mail uses whose bytes are all ASCII:
    // its escape sequences switch to JIS X 0208.
    let seven_bit_jis = |h: &BodyHeaders| {
        h.charset
            .as_deref()
            .and_then(Charset::from_name)
            .is_some_and(|c| c == Charset::Other(encoding_rs::ISO_2022_JP))
    };
    if msg.is_ascii() && (!msg.contains(&0x1b) || !seven_bit_jis(&body_headers(msg))) {
        return Ok(String::from_utf8_lossy(msg).into_owned());
    }
    let h = body_headers(msg);
    let eight_bit = matches!(
        h.transfer_encoding.as_deref(),
        None | Some("7bit" | "8bit" | "binary")
    );
    let declared = h.charset.as_deref().map(|c| (c, Charset::from_name(c)));
    let utf8 = std::str::from_utf8(msg).ok();
    let charset = match declared {
        // A declared charset other than UTF-8 is what an 8-bit body is in;
        // a quoted-printable or base64 body is ASCII, so raw 8-bit bytes
        // there (in headers) are taken as UTF-8 when they are.
        Some((_, Some(cs))) if cs != Charset::Utf8 && (eight_bit || utf8.is_none()) => cs,
        Some((name, None)) if eight_bit || utf8.is_none() => {
            return Err(charset_error(
                &h,
                unknown_charset(name),
                file,
                start,
                raw.len(),
            ));
        }
        _ => Charset::Utf8,
    };
    if charset == Charset::Utf8
        && let Some(text) = utf8
    {
        return Ok(text.to_string());
    }
    charset.decode(msg).map_err(|_| {
        // The same byte is bad in the message as saved (CRs are ASCII).
        let bad = charset.decode(raw).err().unwrap_or(0);
        let line = file[..start + bad].iter().filter(|&&b| b == b'\n').count() + 1;
        let name = match &h.charset {
            Some(c) => c.clone(),
            None => "UTF-8 (no charset declared)".into(),
        };
        charset_error(
            &h,
            format!(
                "byte 0x{:02X} on line {line} is not valid {name}",
                raw.get(bad).copied().unwrap_or(0)
            ),
            file,
            start + bad,
            1,
        )
    })
}

fn charset_error(h: &BodyHeaders, what: String, file: &[u8], at: usize, len: usize) -> Error {
    let line = file[..at].iter().filter(|&&b| b == b'\n').count() + 1;
    let offset = String::from_utf8_lossy(&file[..at]).len();
    let shown_len = String::from_utf8_lossy(&file[at..at + len]).len();
    Error::Charset {
        message: match &h.subject {
            Some(s) => format!("{s:?}"),
            None => format!("the message at line {line}"),
        },
        what,
        span: Span::new(offset, shown_len),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(headers: &str, body: &[u8]) -> Vec<u8> {
        let mut m = format!(
            "From 1 Mon Sep 17 00:00:00 2001\n\
             From: T <t@x>\n\
             Date: Mon, 4 May 2026 10:01:00 +0200\n\
             Subject: [PATCH 1/1] frob\n{headers}\n"
        )
        .into_bytes();
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn crlf_messages_read_as_lf_but_a_lone_cr_survives() {
        let lf = message("", b"x\n+a line ending in CR\r\n+mid\rline\n");
        let crlf: Vec<u8> = lf
            .split_inclusive(|&b| b == b'\n')
            .flat_map(|l| {
                let mut l = l.to_vec();
                l.insert(l.len() - 1, b'\r');
                l
            })
            .collect();
        // Wholly CRLF: one CR per line end goes, the diff's own CR and the
        // lone one stay.
        assert_eq!(mail_text(&crlf).unwrap().as_bytes(), &lf[..]);
        // Partly CRLF: nothing is touched.
        assert_eq!(mail_text(&lf).unwrap().as_bytes(), &lf[..]);

        // Per message of an mbox: a CRLF message after an LF one.
        let mut mixed = lf.clone();
        mixed.extend_from_slice(b"\n");
        let plain = message("", b"y\n");
        let crlf_plain: Vec<u8> = String::from_utf8(plain.clone())
            .unwrap()
            .replace('\n', "\r\n")
            .into_bytes();
        let mut want = mixed.clone();
        mixed.extend_from_slice(&crlf_plain);
        want.extend_from_slice(&plain);
        assert_eq!(mail_text(&mixed).unwrap().as_bytes(), &want[..]);
    }

    #[test]
    fn eight_bit_bodies_are_decoded_by_their_charset() {
        let latin1 = message(
            "Content-Type: text/plain; charset=ISO-8859-1\nContent-Transfer-Encoding: 8bit\n",
            b"caf\xe9\n",
        );
        let text = mail_text(&latin1).unwrap();
        assert!(text.ends_with("\ncafé\n"), "{text:?}");

        // UTF-8 stays byte for byte.
        let utf8 = message(
            "Content-Type: text/plain; charset=UTF-8\n",
            "café\n".as_bytes(),
        );
        assert_eq!(mail_text(&utf8).unwrap().as_bytes(), &utf8[..]);

        // Not UTF-8 and nothing declared: which message, which byte.
        let undeclared = message("", b"ok\ncaf\xe9\n");
        let err = mail_text(&undeclared).unwrap_err();
        let shown = err.to_string();
        assert!(matches!(err, Error::Charset { .. }), "{shown}");
        assert!(shown.contains("[PATCH 1/1] frob"), "{shown}");
        assert!(shown.contains("no charset declared"), "{shown}");
        assert!(shown.contains("0xE9 on line 7"), "{shown}");
        let lossy = String::from_utf8_lossy(&undeclared);
        let span = err.span().unwrap();
        assert_eq!(&lossy[span.offset..span.end()], "\u{FFFD}");

        // KOI8-R (and every other charset of the Encoding Standard) is
        // read; an unknown charset is named.
        let koi = message("Content-Type: text/plain; charset=koi8-r\n", b"\xc1\n");
        assert!(mail_text(&koi).unwrap().ends_with("а\n"));
        let jis = message(
            "Content-Type: text/plain; charset=ISO-2022-JP\nContent-Transfer-Encoding: 7bit\n",
            b"\x1b$B%F%9%H\x1b(B\n",
        );
        assert!(mail_text(&jis).unwrap().ends_with("テスト\n"));
        let unknown = message("Content-Type: text/plain; charset=x-klingon\n", b"\xc1\n");
        let shown = mail_text(&unknown).unwrap_err().to_string();
        assert!(shown.contains("x-klingon"), "{shown}");
    }
}
