//! mbox files and single RFC 5322 messages (git format-patch, b4, mail
//! clients), with folded headers, RFC 2047 encoded words and
//! quoted-printable or base64 bodies.

use crate::charset::{Charset, charset_param, unknown_charset};
use crate::date::MailDate;
use crate::message::{Message, Person, split_addresses, strip_angles};
use crate::span::{Line, Span, lines};
use crate::{Error, Result};

/// An mbox starts with a `From ` separator line.
pub fn looks_like_mbox(text: &str) -> bool {
    text.starts_with("From ")
}

/// A bare message starts with a header line (`Name: value`).
pub fn looks_like_message(text: &str) -> bool {
    let first = text.lines().next().unwrap_or("");
    match first.split_once(':') {
        Some((name, _)) => {
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && text.lines().any(|l| {
                    let l = l.to_ascii_lowercase();
                    l.starts_with("subject:") || l.starts_with("from:")
                })
        }
        None => false,
    }
}

fn is_separator(l: &Line<'_>) -> bool {
    // `From <addr-or-sha> <asctime>`: at least a word after `From `.
    l.text.starts_with("From ") && l.text.len() > 5 && !l.text[5..].trim().is_empty()
}

/// All messages of an mbox.
pub fn parse(text: &str) -> Result<Vec<Message>> {
    let ls = lines(text, 0);
    // A separator is a `From ` line at the start or after a blank line.
    let starts: Vec<usize> = (0..ls.len())
        .filter(|&i| is_separator(&ls[i]) && (i == 0 || ls[i - 1].is_blank()))
        .collect();
    let mut out = Vec::new();
    for (n, &s) in starts.iter().enumerate() {
        let from = ls[s].next;
        let to = starts.get(n + 1).map_or(text.len(), |&e| ls[e].start);
        if from >= to {
            continue;
        }
        out.push(parse_message(&text[from..to], from)?);
    }
    Ok(out)
}

struct Header<'a> {
    name: &'a str,
    /// Unfolded value.
    value: String,
    span: Span,
}

/// One message (headers, blank line, body) found at `base` in the input.
pub fn parse_message(text: &str, base: usize) -> Result<Message> {
    let ls = lines(text, base);
    let mut headers: Vec<Header<'_>> = Vec::new();
    let mut i = 0;
    while i < ls.len() && !ls[i].is_blank() {
        let l = ls[i].trimmed_cr();
        if l.starts_with(' ') || l.starts_with('\t') {
            match headers.last_mut() {
                // Unfolding removes the line break only (RFC 5322 2.2.3).
                Some(h) => {
                    h.value.push_str(l);
                    h.span.len = ls[i].start + l.len() - h.span.offset;
                }
                None => {
                    return Err(Error::BadHeader {
                        what: "the message starts with a continuation line".into(),
                        span: ls[i].span(),
                    });
                }
            }
        } else if let Some((name, value)) = l.split_once(':') {
            headers.push(Header {
                name,
                value: value.trim_start().to_string(),
                span: ls[i].span(),
            });
        } else {
            return Err(Error::BadHeader {
                what: format!("expected `Name: value`, found {l:?}"),
                span: ls[i].span(),
            });
        }
        i += 1;
    }
    let body_rel = ls.get(i).map_or(text.len(), |l| l.next - base);
    let raw_body = text.get(body_rel..).unwrap_or("");
    let get = |name: &str| {
        headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| (h.value.trim().to_string(), h.span))
    };
    let whole = Span::new(base, text.len());
    let subject = get("Subject")
        .map(|(v, _)| decode_words(&v))
        .unwrap_or_default();
    let (from_text, from_span) = get("From").ok_or_else(|| Error::BadHeader {
        what: "no From: header".into(),
        span: Span::new(base, ls.first().map_or(0, |l| l.text.len())),
    })?;
    let from = Person::parse(&decode_words(&from_text));
    let (date_text, date_span) = get("Date").ok_or_else(|| Error::BadHeader {
        what: "no Date: header".into(),
        span: from_span,
    })?;
    let date = MailDate::parse_rfc5322(&date_text).ok_or_else(|| Error::BadDate {
        text: date_text.clone(),
        what: "expected RFC 5322 `Day, DD Mon YYYY HH:MM:SS +ZZZZ`".into(),
        span: date_span,
    })?;
    let cte = get("Content-Transfer-Encoding")
        .map(|(v, _)| v.to_ascii_lowercase())
        .unwrap_or_default();
    // mbox separates messages by a blank line that is not part of the body.
    let trimmed = match raw_body.strip_suffix("\n\n") {
        Some(b) => &raw_body[..b.len() + 1],
        None => raw_body,
    };
    let content_type = get("Content-Type").map(|(v, _)| v).unwrap_or_default();
    let body = match multipart_boundary(&content_type) {
        // A patch sent as MIME: its text parts, in order (an inline body
        // and a `text/x-patch` attachment alike).
        Some(boundary) => multipart_text(trimmed, &boundary, &subject, whole, 0)?,
        None => decode_body(
            &cte,
            charset_param(&content_type).as_deref(),
            trimmed,
            &subject,
            whole,
        )?,
    };
    Ok(Message {
        subject,
        from,
        date,
        date_text,
        to: get("To")
            .map(|(v, _)| split_addresses(&decode_words(&v)))
            .unwrap_or_default(),
        cc: get("Cc")
            .map(|(v, _)| split_addresses(&decode_words(&v)))
            .unwrap_or_default(),
        message_id: get("Message-Id").and_then(|(v, _)| strip_angles(&v)),
        in_reply_to: get("In-Reply-To").and_then(|(v, _)| strip_angles(&v)),
        body,
        span: whole,
        body_offset: base + body_rel,
    })
}

/// A body in its transfer encoding and charset, as text. Quoted-printable
/// and base64 carry bytes in the declared charset; 8-bit bodies are text
/// already (`crate::input` decoded them).
fn decode_body(
    cte: &str,
    charset_name: Option<&str>,
    body: &str,
    subject: &str,
    whole: Span,
) -> Result<String> {
    let decode_bytes = |bytes: Vec<u8>| -> Result<String> {
        let name = charset_name.unwrap_or("UTF-8");
        let charset = Charset::from_name(name).ok_or_else(|| Error::Charset {
            message: format!("{subject:?}"),
            what: unknown_charset(name),
            span: whole,
        })?;
        charset.decode(&bytes).map_err(|at| Error::Charset {
            message: format!("{subject:?}"),
            what: format!(
                "byte {} of its {cte} body, 0x{:02X} once decoded, is not valid {}",
                at + 1,
                bytes[at],
                charset_name.unwrap_or("UTF-8 (no charset declared)")
            ),
            span: whole,
        })
    };
    match cte {
        "" | "7bit" | "8bit" | "binary" => Ok(body.to_string()),
        "quoted-printable" => decode_bytes(decode_quoted_printable(body)),
        "base64" => decode_bytes(decode_base64(body).ok_or_else(|| Error::BadEncoding {
            subject: subject.to_string(),
            what: "invalid base64".into(),
            span: whole,
        })?),
        other => Err(Error::BadEncoding {
            subject: subject.to_string(),
            what: format!("unknown Content-Transfer-Encoding {other:?}"),
            span: whole,
        }),
    }
}

/// The boundary of a `multipart/*` Content-Type.
fn multipart_boundary(content_type: &str) -> Option<String> {
    let mut fields = content_type.split(';');
    let kind = fields.next()?.trim();
    if !kind.to_ascii_lowercase().starts_with("multipart/") {
        return None;
    }
    fields.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
            .filter(|b| !b.is_empty())
    })
}

/// The text parts of a multipart body, decoded and joined in order:
/// `text/plain` and the patch types git and mail clients use; other
/// parts (signatures, HTML) are left out. Nested multiparts are followed
/// a few levels deep.
fn multipart_text(
    body: &str,
    boundary: &str,
    subject: &str,
    whole: Span,
    depth: u32,
) -> Result<String> {
    let no_text = |what: &str| Error::BadEncoding {
        subject: subject.to_string(),
        what: what.to_string(),
        span: whole,
    };
    if depth > 4 {
        return Err(no_text("multipart nested more than 4 deep"));
    }
    let delimiter = format!("--{boundary}");
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for line in body.split_inclusive('\n') {
        let l = line.trim_end_matches(['\n', '\r']);
        if let Some(rest) = l.strip_prefix(delimiter.as_str())
            && (rest.is_empty() || rest == "--" || rest.trim().is_empty())
        {
            parts.extend(current.take());
            if rest == "--" {
                break;
            }
            current = Some(String::new());
            continue;
        }
        if let Some(c) = current.as_mut() {
            c.push_str(line);
        }
    }
    parts.extend(current.take());
    if parts.is_empty() {
        // No delimiter at all: a mislabelled body, read as it is.
        return Ok(body.to_string());
    }
    let mut out = String::new();
    for part in parts {
        // The line break before a delimiter belongs to the delimiter.
        let part = part.strip_suffix('\n').unwrap_or(&part);
        let (head, part_body) = match part.split_once("\n\n") {
            Some((h, b)) => (h, b),
            None if part.starts_with('\n') => ("", &part[1..]),
            None => (part, ""),
        };
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some((_, v)) = fields.last_mut() {
                    v.push_str(line);
                }
            } else if let Some((k, v)) = line.split_once(':') {
                fields.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let field = |n: &str| fields.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let ctype = field("content-type").unwrap_or_else(|| "text/plain".into());
        let kind = ctype
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let text = if let Some(inner) = multipart_boundary(&ctype) {
            multipart_text(part_body, &inner, subject, whole, depth + 1)?
        } else if matches!(
            kind.as_str(),
            "text/plain" | "text/x-patch" | "text/x-diff" | "text/x-log" | "application/x-patch"
        ) {
            let cte = field("content-transfer-encoding")
                .unwrap_or_default()
                .to_ascii_lowercase();
            decode_body(
                &cte,
                charset_param(&ctype).as_deref(),
                part_body,
                subject,
                whole,
            )?
        } else {
            continue;
        };
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&text);
    }
    if out.is_empty() {
        return Err(no_text("a multipart message with no text part"));
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

/// Decode RFC 2047 encoded words (`=?UTF-8?q?...?=`, `=?utf-8?b?...?=`).
/// Whitespace between adjacent encoded words is dropped, as the RFC says.
pub fn decode_words(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    let mut last_was_word = false;
    while let Some(start) = rest.find("=?") {
        let (before, after) = rest.split_at(start);
        let decoded = parse_word(after);
        match decoded {
            Some((word, used)) => {
                if !(last_was_word && before.trim().is_empty()) {
                    out.push_str(before);
                }
                out.push_str(&word);
                rest = &after[used..];
                last_was_word = true;
            }
            None => {
                out.push_str(before);
                out.push_str("=?");
                rest = &after[2..];
                last_was_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `=?charset?enc?text?=` at the start of `s` → (decoded, bytes used).
fn parse_word(s: &str) -> Option<(String, usize)> {
    let inner = s.strip_prefix("=?")?;
    let q1 = inner.find('?')?;
    let charset = inner[..q1].to_ascii_lowercase();
    let rest = &inner[q1 + 1..];
    let q2 = rest.find('?')?;
    let enc = rest[..q2].to_ascii_lowercase();
    let payload_and_tail = &rest[q2 + 1..];
    let end = payload_and_tail.find("?=")?;
    let payload = &payload_and_tail[..end];
    let bytes = match enc.as_str() {
        "q" => {
            let mut v = Vec::new();
            let b = payload.as_bytes();
            let mut i = 0;
            while i < b.len() {
                match b[i] {
                    b'_' => v.push(b' '),
                    b'=' => {
                        let h = payload.get(i + 1..i + 3)?;
                        v.push(u8::from_str_radix(h, 16).ok()?);
                        i += 2;
                    }
                    c => v.push(c),
                }
                i += 1;
            }
            v
        }
        "b" => decode_base64(payload)?,
        _ => return None,
    };
    // A word in a charset gasbench does not read stays as written.
    let text = Charset::from_name(&charset)?.decode(&bytes).ok()?;
    let used = 2 + q1 + 1 + q2 + 1 + end + 2;
    Some((text, used))
}

/// Encode a header value as RFC 2047 words if it is not plain ASCII.
pub fn encode_word(text: &str) -> String {
    if text.is_ascii() {
        return text.to_string();
    }
    let mut out = String::from("=?UTF-8?q?");
    for b in text.bytes() {
        match b {
            b' ' => out.push('_'),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'!' | b'*' | b'+' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("={b:02X}")),
        }
    }
    out.push_str("?=");
    out
}

fn decode_quoted_printable(text: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (content, nl) = match line.strip_suffix('\n') {
            Some(c) => (c.strip_suffix('\r').unwrap_or(c), true),
            None => (line, false),
        };
        let soft = content.ends_with('=');
        let content = if soft {
            &content[..content.len() - 1]
        } else {
            content
        };
        let b = content.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'='
                && let Some(v) = content
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                bytes.push(v);
                i += 3;
                continue;
            }
            bytes.push(b[i]);
            i += 1;
        }
        if nl && !soft {
            bytes.push(b'\n');
        }
    }
    bytes
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            b' ' | b'\n' | b'\r' | b'\t' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MBOX: &str = "From 1234 Mon Sep 17 00:00:00 2001\n\
From: =?UTF-8?q?Thomas_Wei=C3=9Fschuh?= <t@w.de>\n\
Date: Mon, 6 Apr 2026 18:51:20 +0200\n\
Subject: [PATCH v2 1/2] a very long subject that\n is folded\n\
Message-Id: <abc@def>\n\
In-Reply-To: <cover@def>\n\
\n\
body\n\
From the start of a line, not a separator (no blank before)\n\
\n\
From 5678 Mon Sep 17 00:00:00 2001\n\
From: B <b@c>\n\
Date: Tue, 7 Apr 2026 10:00:00 +0000\n\
Subject: =?utf-8?b?W1BBVENIIDIvMl0gw6k=?=\n\
Content-Transfer-Encoding: quoted-printable\n\
\n\
caf=C3=A9 soft=\n\
break\n";

    #[test]
    fn mbox_messages_with_folding_and_encodings() {
        assert!(looks_like_mbox(MBOX));
        let m = parse(MBOX).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].from.name, "Thomas Weißschuh");
        assert_eq!(
            m[0].subject,
            "[PATCH v2 1/2] a very long subject that is folded"
        );
        assert_eq!(m[0].message_id.as_deref(), Some("abc@def"));
        assert_eq!(m[0].in_reply_to.as_deref(), Some("cover@def"));
        assert_eq!(
            m[0].body,
            "body\nFrom the start of a line, not a separator (no blank before)\n"
        );
        assert_eq!(&MBOX[m[0].body_offset..m[0].body_offset + 5], "body\n");
        assert_eq!(m[1].subject, "[PATCH 2/2] é");
        assert_eq!(m[1].body, "café softbreak\n", "a soft line break joins");
    }

    fn qp_message(content_type: &str, body: &str) -> String {
        format!(
            "From: T <t@x>\n\
             Date: Mon, 4 May 2026 10:01:00 +0200\n\
             Subject: [PATCH] x\n\
             {content_type}\
             Content-Transfer-Encoding: quoted-printable\n\
             \n\
             {body}"
        )
    }

    #[test]
    fn quoted_printable_bodies_are_decoded_by_their_charset() {
        let latin1 = qp_message("Content-Type: text/plain; charset=ISO-8859-1\n", "caf=E9\n");
        assert_eq!(parse_message(&latin1, 0).unwrap().body, "café\n");
        let cp = qp_message(
            "Content-Type: text/plain; charset=windows-1252\n",
            "=93q=94\n",
        );
        assert_eq!(parse_message(&cp, 0).unwrap().body, "\u{201C}q\u{201D}\n");
        let utf8 = qp_message("Content-Type: text/plain; charset=utf-8\n", "caf=C3=A9\n");
        assert_eq!(parse_message(&utf8, 0).unwrap().body, "café\n");

        // Bytes that are not valid in the declared (or default) charset
        // are an error naming the message and the charset, not U+FFFD.
        let bad = qp_message("Content-Type: text/plain; charset=UTF-8\n", "caf=E9\n");
        let err = parse_message(&bad, 0).unwrap_err();
        let shown = err.to_string();
        assert!(matches!(err, Error::Charset { .. }), "{shown}");
        assert!(shown.contains("\"[PATCH] x\""), "{shown}");
        assert!(shown.contains("UTF-8"), "{shown}");
        assert!(shown.contains("0xE9"), "{shown}");
        let koi = qp_message("Content-Type: text/plain; charset=koi8-r\n", "=C1\n");
        assert_eq!(parse_message(&koi, 0).unwrap().body, "а\n");
        let unknown = qp_message("Content-Type: text/plain; charset=x-klingon\n", "=C1\n");
        let shown = parse_message(&unknown, 0).unwrap_err().to_string();
        assert!(shown.contains("x-klingon"), "{shown}");
    }

    fn multipart(parts: &str) -> String {
        format!(
            "From: A <a@b>\nDate: Mon, 4 May 2026 10:00:00 +0000\n\
             Subject: [PATCH] frob: fix\nMIME-Version: 1.0\n\
             Content-Type: multipart/mixed; boundary=\"XyZ\"\n\n\
             This is a multi-part message in MIME format.\n{parts}"
        )
    }

    const DIFF: &str =
        "diff --git a/f.c b/f.c\n--- a/f.c\n+++ b/f.c\n@@ -1 +1 @@\n-a\n+b /* caf\u{e9} */\n";

    #[test]
    fn multipart_mail_gives_its_text_parts_decoded_in_order() {
        // An inline explanation, then the patch as a base64 attachment,
        // then a signature part that is not text.
        let b64 = {
            const A: &[u8; 64] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let bytes = DIFF.as_bytes();
            let mut out = String::new();
            for c in bytes.chunks(3) {
                let n = (c[0] as u32) << 16
                    | (*c.get(1).unwrap_or(&0) as u32) << 8
                    | *c.get(2).unwrap_or(&0) as u32;
                for i in 0..4 {
                    if i <= c.len() {
                        out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
                    } else {
                        out.push('=');
                    }
                }
            }
            out
        };
        let text = multipart(&format!(
            "--XyZ\nContent-Type: text/plain; charset=utf-8\n\nFix the frob.\n\n---\n\
             --XyZ\nContent-Type: text/x-patch; name=\"f.patch\"\n\
             Content-Disposition: attachment\nContent-Transfer-Encoding: base64\n\n{b64}\n\
             --XyZ\nContent-Type: application/pgp-signature\n\n-----BEGIN PGP-----\n\
             --XyZ--\n"
        ));
        let m = parse_message(&text, 0).unwrap();
        assert_eq!(m.body, format!("Fix the frob.\n\n---\n{DIFF}"));
        assert!(!m.body.contains("PGP"));
    }

    #[test]
    fn multipart_parts_are_decoded_by_their_own_encoding_and_charset() {
        // Quoted-printable Latin-1, in a multipart/alternative with HTML.
        let text = multipart(
            "--XyZ\nContent-Type: multipart/alternative; boundary=inner\n\n\
             --inner\nContent-Type: text/plain; charset=iso-8859-1\n\
             Content-Transfer-Encoding: quoted-printable\n\n\
             diff --git a/f.c b/f.c\n--- a/f.c\n+++ b/f.c\n@@ -1 +1 @@\n-a\n+b /* caf=E9 */\n\
             --inner\nContent-Type: text/html\n\n<p>html</p>\n--inner--\n--XyZ--\n",
        );
        let m = parse_message(&text, 0).unwrap();
        assert_eq!(m.body, DIFF);
        // A boundary that never appears: the body as it is.
        let odd = multipart("no delimiter here\n");
        let m = parse_message(&odd, 0).unwrap();
        assert!(m.body.contains("no delimiter here"));
        // Only non-text parts: an error that says so.
        let e = parse_message(
            &multipart("--XyZ\nContent-Type: image/png\n\nPNG\n--XyZ--\n"),
            0,
        )
        .unwrap_err();
        assert!(e.to_string().contains("no text part"), "{e}");
    }

    #[test]
    fn missing_headers_are_errors_with_spans() {
        let err = parse_message("Subject: x\nDate: Mon, 6 Apr 2026 18:51:20 +0200\n\nb\n", 0)
            .unwrap_err();
        assert!(err.to_string().contains("no From"), "{err}");
        let err = parse_message("From: a@b\nDate: someday\n\nb\n", 0).unwrap_err();
        let span = err.span().unwrap();
        assert_eq!(span.offset, 10);
    }

    #[test]
    fn encoded_words_round_trip() {
        let name = "Krzysztof Wilczyński";
        assert_eq!(decode_words(&encode_word(name)), name);
        assert_eq!(encode_word("plain"), "plain");
        assert_eq!(decode_words("=?bogus"), "=?bogus");
    }
}
