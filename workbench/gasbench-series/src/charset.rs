//! Text in the character sets patch mail arrives in.
//!
//! Kernel mail is overwhelmingly UTF-8; the rest is ISO-8859-1 from older
//! mail clients (sometimes labelled windows-1252), and now and then
//! KOI8-R, ISO-2022-JP, GB18030, Shift_JIS, EUC-KR, Big5 or another
//! ISO-8859 part. `git am` decodes whatever iconv knows; gasbench decodes
//! every charset the WHATWG Encoding Standard names, through the
//! `encoding_rs` crate, and refuses an unknown name rather than guessing,
//! because a guessed charset silently changes the bytes of a diff.

use encoding_rs::{DecoderResult, Encoding};

/// A character set a body or header may declare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Charset {
    /// UTF-8, and US-ASCII read as UTF-8 (git send-email and many clients
    /// label UTF-8 text `us-ascii`; pure ASCII is the same in both).
    Utf8,
    /// ISO-8859-1 as iconv (and so `git am`) reads it: byte `b` is code
    /// point `b`. The Encoding Standard maps the label to windows-1252
    /// instead, which would turn 0x80–0x9F into punctuation.
    Latin1,
    /// Any other charset the Encoding Standard knows (windows-1252,
    /// KOI8-R, ISO-2022-JP, GB18030, …).
    Other(&'static Encoding),
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
            _ => match Encoding::for_label_no_replacement(n.as_bytes())? {
                e if e == encoding_rs::UTF_8 => Charset::Utf8,
                e => Charset::Other(e),
            },
        })
    }

    /// `bytes` as text; on failure, the offset of the first byte that is
    /// not valid in this charset.
    pub fn decode(self, bytes: &[u8]) -> Result<String, usize> {
        match self {
            Charset::Utf8 => {
                String::from_utf8(bytes.to_vec()).map_err(|e| e.utf8_error().valid_up_to())
            }
            Charset::Latin1 => Ok(encoding_rs::mem::decode_latin1(bytes).into_owned()),
            Charset::Other(enc) => {
                let mut decoder = enc.new_decoder_without_bom_handling();
                let mut out = String::with_capacity(
                    decoder
                        .max_utf8_buffer_length_without_replacement(bytes.len())
                        .unwrap_or(bytes.len() * 3),
                );
                let (result, read) =
                    decoder.decode_to_string_without_replacement(bytes, &mut out, true);
                match result {
                    DecoderResult::InputEmpty => Ok(out),
                    // The malformed sequence ends `consumed_after` bytes
                    // before `read`, and is `bad` bytes long.
                    DecoderResult::Malformed(bad, consumed_after) => Err(read
                        .saturating_sub(usize::from(consumed_after))
                        .saturating_sub(usize::from(bad))),
                    // The buffer was sized for the worst case.
                    DecoderResult::OutputFull => Err(read),
                }
            }
        }
    }
}

/// What to say about a charset gasbench does not read.
pub fn unknown_charset(name: &str) -> String {
    format!(
        "its charset {name:?} is not one gasbench reads (it reads UTF-8, US-ASCII and every \
         charset of the WHATWG Encoding Standard: ISO-8859-x, windows-125x, KOI8-R/U, \
         ISO-2022-JP, Shift_JIS, EUC-JP, EUC-KR, GBK, GB18030, Big5, …)"
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
        assert_eq!(Charset::from_name("x-no-such-charset"), None);
        assert_eq!(Charset::Latin1.decode(b"caf\xe9").unwrap(), "café");
        // iconv's ISO-8859-1: 0x93 is U+0093, not a curly quote.
        assert_eq!(Charset::Latin1.decode(b"\x93").unwrap(), "\u{93}");
        assert_eq!(Charset::Utf8.decode(b"caf\xc3\xa9").unwrap(), "café");
        assert_eq!(Charset::Utf8.decode(b"caf\xe9 x"), Err(3));
        let cp1252 = Charset::from_name("windows-1252").unwrap();
        assert_eq!(
            cp1252.decode(b"\x93q\x94 \x80 \xe9").unwrap(),
            "\u{201C}q\u{201D} € é"
        );
        assert_eq!(
            charset_param("text/plain; charset=\"ISO-8859-1\"; format=flowed").as_deref(),
            Some("ISO-8859-1")
        );
        assert_eq!(charset_param("text/plain"), None);
    }

    #[test]
    fn the_charsets_git_am_reads_beyond_latin1() {
        let cases: &[(&str, &[u8], &str)] = &[
            ("koi8-r", b"\xf0\xd2\xc9\xd7\xc5\xd4", "Привет"),
            ("ISO-8859-15", b"\xa4", "€"),
            ("iso-8859-2", b"\xb1", "ą"),
            ("Shift_JIS", b"\x83\x65\x83\x58\x83\x67", "テスト"),
            ("EUC-JP", b"\xa5\xc6\xa5\xb9\xa5\xc8", "テスト"),
            ("ISO-2022-JP", b"\x1b$B%F%9%H\x1b(B", "テスト"),
            ("gb2312", b"\xb2\xe2\xca\xd4", "测试"),
            ("GB18030", b"\xb2\xe2\xca\xd4", "测试"),
            ("big5", b"\xb4\xfa\xb8\xd5", "測試"),
            ("euc-kr", b"\xc5\xd7\xbd\xba\xc6\xae", "테스트"),
            ("windows-1251", b"\xcf\xf0\xe8", "При"),
        ];
        for (name, bytes, text) in cases {
            let cs = Charset::from_name(name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(cs.decode(bytes).as_deref(), Ok(*text), "{name}");
        }
        // A byte sequence that is not valid says where it is.
        let sjis = Charset::from_name("shift_jis").unwrap();
        assert_eq!(sjis.decode(b"ok\x83"), Err(2));
        let utf16 = Charset::from_name("utf-16le").unwrap();
        assert_eq!(utf16.decode(b"a\x00b\x00").unwrap(), "ab");
    }
}
