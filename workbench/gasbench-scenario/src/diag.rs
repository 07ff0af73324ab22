//! Diagnostics: every problem in a scenario file, each pointing at the
//! line and column it is about, rendered by miette at the CLI.

use std::sync::Arc;

use miette::{Diagnostic, NamedSource, SourceSpan};

use crate::plan::Span;

/// At most this many problems are reported per file; the rest are counted.
pub const MAX_PROBLEMS: usize = 100;

/// One problem in a scenario file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Diagnostic)]
#[error("{message}")]
#[diagnostic(code(gasbench::scenario))]
pub struct Problem {
    pub message: String,
    #[label("{label}")]
    pub span: SourceSpan,
    pub label: String,
    #[help]
    pub help: Option<String>,
}

impl Problem {
    pub fn new(span: Span, message: impl Into<String>, label: impl Into<String>) -> Problem {
        Problem {
            message: message.into(),
            span: span.into(),
            label: label.into(),
            help: None,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Problem {
        self.help = Some(help.into());
        self
    }

    pub fn offset(&self) -> usize {
        self.span.offset()
    }
}

/// All problems of one file. Its `Display` is a one-line summary; render
/// it with miette to see each problem against the source.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{origin}: {}", summary(.problems.len(), *.more))]
#[diagnostic(code(gasbench::scenario::invalid))]
pub struct Problems {
    pub origin: String,
    #[source_code]
    pub src: NamedSource<Arc<str>>,
    #[related]
    pub problems: Vec<Problem>,
    /// Problems beyond [`MAX_PROBLEMS`], not listed.
    pub more: usize,
    text: Arc<str>,
}

fn summary(n: usize, more: usize) -> String {
    let total = n + more;
    let s = if total == 1 { "" } else { "s" };
    if more > 0 {
        format!("{total} problem{s} (the first {n} are shown)")
    } else {
        format!("{total} problem{s}")
    }
}

impl Problems {
    pub fn new(origin: &str, text: Arc<str>, mut problems: Vec<Problem>) -> Problems {
        problems.sort_by_key(|p| p.offset());
        problems.dedup();
        let more = problems.len().saturating_sub(MAX_PROBLEMS);
        problems.truncate(MAX_PROBLEMS);
        Problems {
            origin: origin.to_string(),
            src: NamedSource::new(origin, text.clone()),
            problems,
            more,
            text,
        }
    }

    /// `(line, column, message)` of each problem, 1-based: what tests and
    /// plain-text output use.
    pub fn positions(&self) -> Vec<(usize, usize, String)> {
        self.problems
            .iter()
            .map(|p| {
                let (l, c) = line_col(&self.text, p.offset());
                (l, c, p.message.clone())
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.problems.len() + self.more
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub use crate::plan::line_col;

/// The closest of `candidates` to `word`, if it is close enough to be a
/// likely typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word_l = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word_l, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal string alignment distance: edits plus adjacent transpositions,
/// the commonest typo (`dve` for `dev`).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column() {
        let t = "ab\ncdé\nf";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 3), (2, 1));
        assert_eq!(line_col(t, 5), (2, 3));
        // Inside the two bytes of 'é': clamped to its start.
        assert_eq!(line_col(t, 6), (2, 3));
        assert_eq!(line_col(t, 7), (2, 4));
        assert_eq!(line_col(t, 8), (3, 1));
        assert_eq!(line_col(t, 999), (3, 2));
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("erno", ["errno", "ok", "ret"]), Some("errno"));
        assert_eq!(suggest("ENOTYY", ["ENOTTY", "ENXIO"]), Some("ENOTTY"));
        assert_eq!(suggest("zzzzzz", ["ok", "ret"]), None);
        assert_eq!(suggest("dve", ["dev", "d"]), Some("dev"));
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn problems_are_sorted_capped_and_counted() {
        let text: Arc<str> = Arc::from("x\n".repeat(300));
        let ps: Vec<Problem> = (0..150)
            .rev()
            .map(|i| Problem::new(Span::new(i * 2..i * 2 + 1), format!("p{i}"), "here"))
            .collect();
        let all = Problems::new("f.toml", text, ps);
        assert_eq!(all.problems.len(), MAX_PROBLEMS);
        assert_eq!(all.more, 50);
        assert_eq!(all.len(), 150);
        assert_eq!(all.positions()[0], (1, 1, "p0".into()));
        assert_eq!(all.positions()[1], (2, 1, "p1".into()));
        assert_eq!(
            all.to_string(),
            "f.toml: 150 problems (the first 100 are shown)"
        );
    }
}
