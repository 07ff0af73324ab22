//! Byte spans into the input, and lines that know where they are.

use serde::{Deserialize, Serialize};

/// A byte range of the input text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub offset: usize,
    pub len: usize,
}

impl Span {
    pub fn new(offset: usize, len: usize) -> Self {
        Self { offset, len }
    }

    pub fn end(&self) -> usize {
        self.offset + self.len
    }

    /// The 1-based line numbers of the first and last byte in `text`.
    pub fn lines_in(&self, text: &str) -> (usize, usize) {
        let start = self.offset.min(text.len());
        let end = self.end().saturating_sub(1).max(start).min(text.len());
        let first = text.as_bytes()[..start]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        let last = first
            + text.as_bytes()[start..end]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
        (first, last)
    }
}

/// One line of the input: its text without the line break, where it
/// starts, and where the next line starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line<'a> {
    pub text: &'a str,
    pub start: usize,
    pub next: usize,
}

impl Line<'_> {
    pub fn span(&self) -> Span {
        Span::new(self.start, self.text.len())
    }

    /// The text without a trailing carriage return.
    pub fn trimmed_cr(&self) -> &str {
        self.text.strip_suffix('\r').unwrap_or(self.text)
    }

    pub fn is_blank(&self) -> bool {
        self.trimmed_cr().trim().is_empty()
    }
}

/// All lines of `text`, offsets relative to `base`.
pub fn lines(text: &str, base: usize) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let (line, next) = match text[start..].find('\n') {
            Some(i) => (&text[start..start + i], start + i + 1),
            None => (&text[start..], text.len()),
        };
        out.push(Line {
            text: line,
            start: base + start,
            next: base + next,
        });
        start = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_offsets_and_the_last_unterminated_line() {
        let l = lines("ab\n\ncd", 10);
        assert_eq!(l.len(), 3);
        assert_eq!((l[0].text, l[0].start, l[0].next), ("ab", 10, 13));
        assert_eq!((l[1].text, l[1].start), ("", 13));
        assert_eq!((l[2].text, l[2].start, l[2].next), ("cd", 14, 16));
    }

    #[test]
    fn span_line_numbers() {
        let text = "a\nbb\nccc\n";
        assert_eq!(Span::new(2, 2).lines_in(text), (2, 2));
        assert_eq!(Span::new(0, 9).lines_in(text), (1, 3));
    }
}
