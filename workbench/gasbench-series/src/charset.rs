//! Text in the character sets patch mail actually arrives in.
//!
//! Kernel mail is overwhelmingly UTF-8; the rest is ISO-8859-1 from older
//! mail clients, sometimes labelled windows-1252. Those three (and their
//! aliases) are decoded; anything else is refused by name rather than
//! guessed at, because a guessed charset silently changes the bytes of a
//! diff.

/// A character set a body or header may declare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Charset {
    /// UTF-8, and US-ASCII read as UTF-8 (git send-email and many clients
    /// label UTF-8 text `us-ascii`; pure ASCII is the same in both).
    Utf8,
    /// ISO-8859-1: byte `b` is code point `b`.
    Latin1,
    /// windows-1252: ISO-8859-1 except 0x80–0x9F, which hold punctuation
    /// (`€`, curly quotes, dashes) instead of control codes.
    Windows1252,
}

impl Charset {
    /// The charset a (case-insensitive, possibly quoted) name denotes.
    pub fn from_name(name: &str) -> Option<Charset> {
        let n = name.trim().trim_matches('"').to_ascii_lowercase();
        Some(match n.as_str() {
            "utf-8" | "utf8" | "us-ascii" | "ascii" => Charset::Utf8,
            "iso-8859-1" | "iso8859-1" | "iso_8859-1" | "latin1" | "latin-1" | "l1" => {
                Charset::Latin1
            }
            "windows-1252" | "cp1252" => Charset::Windows1252,
            _ => return None,
        })
    }

    /// `bytes` as text; on failure, the offset of the first byte that is
    /// not valid in this charset.
    pub fn decode(self, bytes: &[u8]) -> Result<String, usize> {
        match self {
            Charset::Utf8 => {
                String::from_utf8(bytes.to_vec()).map_err(|e| e.utf8_error().valid_up_to())
            }
            Charset::Latin1 => Ok(bytes.iter().map(|&b| char::from(b)).collect()),
            Charset::Windows1252 => bytes
                .iter()
                .enumerate()
                .map(|(i, &b)| match b {
                    0x80..=0x9f => WINDOWS_1252_80_9F[usize::from(b - 0x80)].ok_or(i),
                    _ => Ok(char::from(b)),
                })
                .collect(),
        }
    }
}

/// windows-1252 0x80–0x9F; `None` where the code page leaves a byte
/// undefined.
const WINDOWS_1252_80_9F: [Option<char>; 32] = [
    Some('\u{20AC}'),
    None,
    Some('\u{201A}'),
    Some('\u{0192}'),
    Some('\u{201E}'),
    Some('\u{2026}'),
    Some('\u{2020}'),
    Some('\u{2021}'),
    Some('\u{02C6}'),
    Some('\u{2030}'),
    Some('\u{0160}'),
    Some('\u{2039}'),
    Some('\u{0152}'),
    None,
    Some('\u{017D}'),
    None,
    None,
    Some('\u{2018}'),
    Some('\u{2019}'),
    Some('\u{201C}'),
    Some('\u{201D}'),
    Some('\u{2022}'),
    Some('\u{2013}'),
    Some('\u{2014}'),
    Some('\u{02DC}'),
    Some('\u{2122}'),
    Some('\u{0161}'),
    Some('\u{203A}'),
    Some('\u{0153}'),
    None,
    Some('\u{017E}'),
    Some('\u{0178}'),
];

/// What to say about a charset gasbench does not read.
pub fn unknown_charset(name: &str) -> String {
    format!(
        "its charset {name:?} is not one gasbench reads (UTF-8, US-ASCII, ISO-8859-1, windows-1252)"
    )
}

/// The `charset` parameter of a `Content-Type` value
/// (`text/plain; charset="ISO-8859-1"; format=flowed` → `ISO-8859-1`).
pub fn charset_param(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_bytes() {
        assert_eq!(Charset::from_name("\"UTF-8\""), Some(Charset::Utf8));
        assert_eq!(Charset::from_name("ISO-8859-1"), Some(Charset::Latin1));
        assert_eq!(Charset::from_name("koi8-r"), None);
        assert_eq!(Charset::Latin1.decode(b"caf\xe9").unwrap(), "café");
        assert_eq!(Charset::Utf8.decode(b"caf\xc3\xa9").unwrap(), "café");
        assert_eq!(Charset::Utf8.decode(b"caf\xe9 x"), Err(3));
        assert_eq!(
            Charset::Windows1252.decode(b"\x93q\x94 \x80 \xe9").unwrap(),
            "\u{201C}q\u{201D} € é"
        );
        assert_eq!(Charset::Windows1252.decode(b"ab\x81"), Err(2));
        assert_eq!(
            charset_param("text/plain; charset=\"ISO-8859-1\"; format=flowed").as_deref(),
            Some("ISO-8859-1")
        );
        assert_eq!(charset_param("text/plain"), None);
    }
}
