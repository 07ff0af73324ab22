//! A Message-Id in a URL and in a file name.

use sha2::{Digest, Sha256};

use crate::LoreError;

/// The Message-Id as one URL path segment: unreserved characters and `@`
/// as they are, everything else percent-encoded (public-inbox decodes it).
/// An id with whitespace, control characters or angle brackets inside is
/// refused: no header holds one.
pub fn url_segment(msgid: &str) -> Result<String, LoreError> {
    let bad = |reason: &str| LoreError::BadMessageId {
        msgid: msgid
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect(),
        reason: reason.into(),
    };
    if msgid.is_empty() {
        return Err(bad("it is empty"));
    }
    if msgid.len() > 998 {
        return Err(bad("it is longer than a mail header line may be"));
    }
    if msgid
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
    {
        return Err(bad(
            "it holds whitespace, control characters or angle brackets",
        ));
    }
    let mut out = String::with_capacity(msgid.len());
    for b in msgid.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@!$&'()*+,;=:".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

/// A file name for the Message-Id: readable where the id is, and never a
/// path (`/`, `..`) whatever the id holds; a hash keeps distinct ids
/// distinct.
pub fn cache_key(msgid: &str) -> String {
    let readable: String = msgid
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '@' | '+') {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let hash = Sha256::digest(msgid.as_bytes());
    let short: String = hash[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("{readable}-{short}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_one_segment_and_a_safe_name() {
        assert_eq!(
            url_segment("20260412135434.3095416-1-jkoolstra@xs4all.nl").unwrap(),
            "20260412135434.3095416-1-jkoolstra@xs4all.nl"
        );
        assert_eq!(url_segment("a/b?c#d%e@x").unwrap(), "a%2Fb%3Fc%23d%25e@x");
        for bad in ["", "a b@c", "a\n@c", "<a@b>"] {
            assert!(url_segment(bad).is_err(), "{bad:?}");
        }
        let k = cache_key("../../etc/passwd@x");
        assert!(!k.contains('/') && !k.starts_with('.'), "{k}");
        assert_ne!(cache_key("a/b@x"), cache_key("a_b@x"));
    }
}
