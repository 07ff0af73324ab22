//! One console line: the kernel's prefixes taken off, control characters
//! replaced, the length capped.

/// The longest line kept; the rest is cut (a hostile guest can print
/// megabytes without a newline).
pub const MAX_LINE: usize = 512;

/// A console line split into the kernel's prefixes and the message.
#[derive(Clone, Debug, PartialEq)]
pub struct ConsoleLine {
    /// Seconds since boot, from `[   12.345678]`.
    pub time: Option<f64>,
    /// `T97` (a task) or `C1` (a CPU, outside task context), from
    /// PRINTK_CALLER's `[   T97]`.
    pub caller: Option<Caller>,
    /// The message, sanitised.
    pub text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Caller {
    Task(u32),
    Cpu(u32),
}

impl ConsoleLine {
    pub fn parse(raw: &str) -> ConsoleLine {
        let mut rest = raw;
        let mut time = None;
        if let Some((inside, after)) = bracket(rest)
            && let Ok(t) = inside.trim().parse::<f64>()
        {
            time = Some(t);
            rest = after;
        }
        let mut caller = None;
        if let Some((inside, after)) = bracket(rest) {
            let inside = inside.trim();
            let parsed = if let Some(n) = inside.strip_prefix('T') {
                n.parse().ok().map(Caller::Task)
            } else if let Some(n) = inside.strip_prefix('C') {
                n.parse().ok().map(Caller::Cpu)
            } else {
                None
            };
            if parsed.is_some() {
                caller = parsed;
                rest = after;
            }
        }
        ConsoleLine {
            time,
            caller,
            text: sanitize(rest),
        }
    }
}

/// `[ … ] rest` → (`…`, `rest` without the one space after `]`).
fn bracket(s: &str) -> Option<(&str, &str)> {
    let s = s.strip_prefix('[')?;
    let end = s.find(']')?;
    if end > 24 {
        return None;
    }
    let after = &s[end + 1..];
    Some((&s[..end], after.strip_prefix(' ').unwrap_or(after)))
}

/// Control characters (escape sequences included) become `�`, tabs a
/// space; at most [`MAX_LINE`] bytes are kept, on a character boundary.
pub fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_LINE));
    for c in s.chars() {
        let c = match c {
            '\t' => ' ',
            c if c.is_control() => '\u{fffd}',
            // Bidirectional overrides can make text read other than it is.
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => '\u{fffd}',
            c => c,
        };
        if out.len() + c.len_utf8() > MAX_LINE {
            break;
        }
        out.push(c);
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_taken_off() {
        // As printk writes it: no space between timestamp and caller.
        let l = ConsoleLine::parse("[   12.345678][   T97] BUG: KASAN: x");
        assert_eq!(l.time, Some(12.345678));
        assert_eq!(l.caller, Some(Caller::Task(97)));
        assert_eq!(l.text, "BUG: KASAN: x");
        let l = ConsoleLine::parse("[    0.100000] [    C1] watchdog: BUG: soft lockup");
        assert_eq!(l.caller, Some(Caller::Cpu(1)));
        let l = ConsoleLine::parse("[    3.100000] WARNING: at f+0x1/0x2");
        assert_eq!((l.time, l.caller), (Some(3.1), None));
        assert_eq!(l.text, "WARNING: at f+0x1/0x2");
        // Indentation of the message is kept (stack frames).
        let l = ConsoleLine::parse("[    3.1]  dump_stack_lvl+0x5d/0x80");
        assert_eq!(l.text, " dump_stack_lvl+0x5d/0x80");
        // No prefix at all (a kmemleak scan), or brackets that are not one.
        assert_eq!(
            ConsoleLine::parse("  [<ffffffff81000000>] f+0x1/0x2").text,
            "  [<ffffffff81000000>] f+0x1/0x2"
        );
        assert_eq!(
            ConsoleLine::parse("[<ffffffff81000000>] f+0x1/0x2").time,
            None
        );
    }

    #[test]
    fn hostile_lines_are_defused() {
        let l = ConsoleLine::parse("[ 1.0] BUG: \x1b[2J\x1b]0;pwned\x07 \u{202e}txt");
        assert!(!l.text.chars().any(|c| c.is_control()), "{:?}", l.text);
        assert!(!l.text.contains('\u{202e}'));
        let long = format!("[ 1.0] {}", "é".repeat(10_000));
        let l = ConsoleLine::parse(&long);
        assert!(l.text.len() <= MAX_LINE);
        assert!(l.text.chars().all(|c| c == 'é'));
    }
}
