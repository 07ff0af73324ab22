//! What untrusted text looks like on a terminal.
//!
//! Text that came from the guest (console lines, agent messages, kselftest
//! output, file names) or from mail (subjects, names, paths in a diff) may
//! hold escape sequences that clear the screen (`ESC [2J`), write the
//! clipboard (OSC 52), retitle the window, move the cursor back over
//! earlier output, or bidi overrides that make text read otherwise than
//! it is. Everything from there goes through this crate before it is
//! printed, at the printing edge: the events and the run directory keep
//! the raw text (JSON-escaped).
//!
//! Nothing is dropped, everything is made visible and inert: C0 controls
//! become their Unicode control pictures (ESC is `␛`, BEL `␇`, backspace
//! `␈`), DEL is `␡`, and C1 controls, bidi controls and the line and
//! paragraph separators become `<U+009B>`-style text. An escape sequence
//! so shows as `␛[2J`: the reviewer sees it was there, the terminal does
//! nothing with it.
//!
//! With the `miette` feature, [`report::safe`] does the same for a whole
//! miette report: message, help, labels, the cause chain and the source
//! it quotes (cut to a window around each label, so a 70,000-character
//! line is neither printed whole nor able to trip the renderer).

use std::borrow::Cow;

#[cfg(feature = "miette")]
pub mod report;

/// Characters that are not C0/C1 controls but still change how a
/// terminal lays out text: bidi embeddings, overrides and isolates, the
/// implicit direction marks, and the Unicode line and paragraph
/// separators.
fn is_layout_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

/// Whether `c` must not reach a terminal as it is.
fn is_unsafe(c: char) -> bool {
    c.is_control() || is_layout_control(c)
}

fn push_visible(out: &mut String, c: char) {
    match c {
        '\u{0}'..='\u{1F}' => {
            // U+2400 CONTROL PICTURES, in the order of the C0 codes.
            out.push(char::from_u32(0x2400 + c as u32).unwrap_or('?'));
        }
        '\u{7F}' => out.push('␡'),
        _ => {
            out.push_str(&format!("<U+{:04X}>", c as u32));
        }
    }
}

fn clean(s: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(|c| is_unsafe(c) && !keep(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if is_unsafe(c) && !keep(c) {
            push_visible(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// One line of untrusted text: every control character made visible,
/// newlines and tabs included (a `\n` inside a field must not forge a
/// line of our own output).
pub fn line(s: &str) -> Cow<'_, str> {
    clean(s, |_| false)
}

/// Untrusted text of several lines: as [`line`], but newlines and tabs
/// stay.
pub fn text(s: &str) -> Cow<'_, str> {
    clean(s, |c| c == '\n' || c == '\t')
}

/// [`line`], cut after `max` characters with a note of how much was cut.
pub fn line_capped(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => line(s),
        Some((cut, _)) => Cow::Owned(format!(
            "{}… ({} more bytes)",
            line(&s[..cut]),
            s.len() - cut
        )),
    }
}

/// [`text`], cut after `max` characters with a note of how much was cut.
pub fn text_capped(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => text(s),
        Some((cut, _)) => Cow::Owned(format!(
            "{}… ({} more bytes)",
            text(&s[..cut]),
            s.len() - cut
        )),
    }
}

/// JSON text (serde_json's output) safe to print: the characters serde
/// leaves raw inside strings (DEL, C1 controls, bidi controls, line
/// separators) written as `\uXXXX` escapes. The JSON means the same;
/// only structural newlines stay raw.
pub fn json(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| is_unsafe(c) && c != '\n') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if is_unsafe(c) && c != '\n' {
            // Every character of the unsafe set is in the BMP.
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Whether `s` can be printed as it is (one line).
pub fn is_clean_line(s: &str) -> bool {
    !s.chars().any(is_unsafe)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No byte a terminal would act on is left: no C0 but the kept
    /// newline/tab, no DEL, no C1, no bidi or separator.
    fn inert(s: &str, keep_newlines: bool) -> bool {
        s.chars().all(|c| {
            !(c.is_control() || is_layout_control(c)) || (keep_newlines && (c == '\n' || c == '\t'))
        })
    }

    #[test]
    fn escape_sequences_show_as_inert_text() {
        // Clear screen, cursor home, colour: CSI sequences.
        assert_eq!(line("\x1b[2J\x1b[Hboo"), "␛[2J␛[Hboo");
        assert_eq!(line("\x1b[31mred\x1b[0m"), "␛[31mred␛[0m");
        // OSC 52 (write the clipboard), ended by BEL and by ST.
        assert_eq!(line("\x1b]52;c;cm0gLXJmIH4=\x07"), "␛]52;c;cm0gLXJmIH4=␇");
        assert_eq!(line("\x1b]0;title\x1b\\"), "␛]0;title␛\\");
        // 8-bit CSI and other C1 controls.
        assert_eq!(line("\u{9b}2J"), "<U+009B>2J");
        assert_eq!(
            line("a\u{85}b\u{90}c\u{9d}d"),
            "a<U+0085>b<U+0090>c<U+009D>d"
        );
        // BEL, backspace (overwrite what was printed), CR (return to the
        // start of the line), DEL.
        assert_eq!(line("ok\x08\x08no\x07"), "ok␈␈no␇");
        assert_eq!(line("PASS\rFAIL"), "PASS␍FAIL");
        assert_eq!(line("x\x7fy"), "x␡y");
        // NUL and the rest of C0.
        assert_eq!(line("\0\x01\x1f"), "␀␁␟");
    }

    #[test]
    fn bidi_controls_are_shown_not_obeyed() {
        // "Trojan source": an override that reverses what follows.
        let s = "access\u{202E} \u{2066}// admin\u{2069}\u{2066}";
        let l = line(s);
        assert_eq!(l, "access<U+202E> <U+2066>// admin<U+2069><U+2066>");
        assert_eq!(
            line("a\u{200F}b\u{061C}c\u{2028}d"),
            "a<U+200F>b<U+061C>c<U+2028>d"
        );
    }

    #[test]
    fn newlines_and_tabs_are_kept_only_in_text() {
        assert_eq!(line("a\nb\tc"), "a␊b␉c");
        assert_eq!(text("a\nb\tc\x1b[2J"), "a\nb\tc␛[2J");
    }

    #[test]
    fn clean_text_is_borrowed_untouched() {
        for s in ["plain", "café ✓ — ✗", "日本語", ""] {
            assert!(matches!(line(s), Cow::Borrowed(_)), "{s}");
            assert!(is_clean_line(s));
        }
        assert!(!is_clean_line("\x1b"));
        assert!(matches!(text("a\nb"), Cow::Borrowed(_)));
    }

    #[test]
    fn json_keeps_its_meaning_and_loses_its_teeth() {
        let raw = "{\n  \"line\": \"a\u{9b}2J\u{7f}\u{202e}b\\u001b\"\n}";
        let safe = json(raw);
        assert_eq!(
            safe,
            "{\n  \"line\": \"a\\u009b2J\\u007f\\u202eb\\u001b\"\n}"
        );
        assert!(matches!(json("{\"a\": 1}\n"), Cow::Borrowed(_)));
    }

    #[test]
    fn caps_cut_at_a_character_and_say_how_much() {
        assert_eq!(line_capped("abcdef", 3), "abc… (3 more bytes)");
        assert_eq!(line_capped("ab", 3), "ab");
        assert_eq!(line_capped("éééé", 2), "éé… (4 more bytes)");
        assert_eq!(line_capped("\x1b\x1b\x1b", 1), "␛… (2 more bytes)");
        assert_eq!(text_capped("a\nbcd", 3), "a\nb… (2 more bytes)");
    }

    #[test]
    fn nothing_unsafe_survives_any_input() {
        // Every character a guest could send, one by one and together.
        let mut all = String::new();
        for cp in 0u32..0x3000 {
            if let Some(c) = char::from_u32(cp) {
                all.push(c);
                assert!(inert(&line(&c.to_string()), false), "U+{cp:04X}");
            }
        }
        assert!(inert(&line(&all), false));
        assert!(inert(&text(&all), true));
    }
}
