//! Writing patches back out as git-am-able mbox messages.
//!
//! The body is written exactly as posted, so the diff in the file is
//! byte-identical to the diff in the source. Only the headers are made:
//! From (with the address found), Date (RFC 5322), Subject, Message-Id and
//! In-Reply-To, plus `X-Gasbench-*` provenance headers that git am ignores.

use sha2::{Digest, Sha256};

use crate::mbox::encode_word;
use crate::message::{Message, Person};
use crate::series::{IdSource, Series, SeriesCover, SeriesPatch};

/// File name for patch `index` in format-patch style
/// (`0001-uapi-add-goldfish_address_space-userspace-ABI-header.patch`).
pub fn patch_file_name(index: u32, title: &str) -> String {
    let mut slug = String::new();
    for c in title.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
            slug.push(c);
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let mut slug = slug.trim_matches(['-', '.']).to_string();
    if slug.len() > 52 {
        slug.truncate(52);
        slug = slug.trim_end_matches(['-', '.']).to_string();
    }
    format!("{index:04}-{slug}.patch")
}

/// The cover letter's file name: not `*.patch`, so `git am *.patch` only
/// takes the patches.
pub const COVER_FILE: &str = "cover-letter.eml";

pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Provenance to record in the message headers.
#[derive(Clone, Debug, Default)]
pub struct Provenance {
    /// `000_cc8941013480fefb.txt lines 289-474`.
    pub source: String,
}

fn id_note(src: IdSource) -> &'static str {
    match src {
        IdSource::Header => "header",
        IdSource::Replies => "replies (other messages in the source point at it)",
        IdSource::Synthesized => "synthesized (the source has none; stable across extractions)",
    }
}

struct Headers<'a> {
    from: &'a Person,
    message: &'a Message,
    message_id: &'a str,
    id_source: IdSource,
    in_reply_to: Option<&'a str>,
}

fn render(h: Headers<'_>, prov: &Provenance) -> String {
    let body = &h.message.body;
    let mut out = String::new();
    // format-patch's magic separator date; the "commit" is a hash of the body.
    out.push_str(&format!(
        "From {} Mon Sep 17 00:00:00 2001\n",
        &sha256_hex(body.as_bytes())[..40]
    ));
    let email = h.from.email.as_deref().unwrap_or("unknown@unknown.invalid");
    out.push_str(&format!(
        "From: {} <{}>\n",
        encode_word(&h.from.name),
        email
    ));
    out.push_str(&format!("Date: {}\n", h.message.date.to_rfc5322()));
    out.push_str(&format!("Subject: {}\n", encode_word(&h.message.subject)));
    out.push_str(&format!("Message-Id: <{}>\n", h.message_id));
    if let Some(parent) = h.in_reply_to {
        out.push_str(&format!("In-Reply-To: <{parent}>\n"));
        out.push_str(&format!("References: <{parent}>\n"));
    }
    out.push_str("MIME-Version: 1.0\n");
    out.push_str("Content-Type: text/plain; charset=UTF-8\n");
    out.push_str("Content-Transfer-Encoding: 8bit\n");
    out.push_str(&format!(
        "X-Gasbench-Message-Id-Source: {}\n",
        id_note(h.id_source)
    ));
    if !h.message.date.has_seconds {
        out.push_str("X-Gasbench-Date-Note: the source gives minutes only; seconds are :00\n");
    }
    if !prov.source.is_empty() {
        out.push_str(&format!("X-Gasbench-Source: {}\n", prov.source));
    }
    out.push('\n');
    out.push_str(body);
    if !body.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// One patch as a single-message mbox.
pub fn render_patch(series: &Series, patch: &SeriesPatch, prov: &Provenance) -> String {
    render(
        Headers {
            from: &series.author,
            message: &patch.message,
            message_id: &patch.message_id,
            id_source: patch.id_source,
            in_reply_to: patch.message.in_reply_to.as_deref(),
        },
        prov,
    )
}

/// The cover letter as a single-message mbox.
pub fn render_cover(series: &Series, cover: &SeriesCover, prov: &Provenance) -> String {
    render(
        Headers {
            from: &series.author,
            message: &cover.message,
            message_id: &cover.message_id,
            id_source: cover.id_source,
            in_reply_to: cover.message.in_reply_to.as_deref(),
        },
        prov,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_patch_style_names() {
        assert_eq!(
            patch_file_name(1, "uapi: add goldfish_address_space userspace ABI header"),
            "0001-uapi-add-goldfish_address_space-userspace-ABI-header.patch"
        );
        assert_eq!(
            patch_file_name(2, "selftest: add tests for mkdirat2()"),
            "0002-selftest-add-tests-for-mkdirat2.patch"
        );
        let long = patch_file_name(
            5,
            "rust: miscdevice: harden registration and safe file_operations invariants",
        );
        assert!(long.len() <= 4 + 1 + 52 + 6, "{long}");
        assert!(!long.contains("--"));
    }
}
