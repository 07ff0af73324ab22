//! Reading a scenario file for the report: where an expectation is, and
//! the comment that says why it is expected (the suite writes one next to
//! every expectation the postings fail, see scenarios/README.md).

/// The comment block nearest above `line` (1-based) within the same step:
/// walking up, other keys of the step are skipped; a table header
/// (`[[step]]`, `[scenario]`) or another expectation ends the search.
/// `#` and one space are stripped, lines are joined with spaces.
pub fn comment_above(source: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = source.lines().collect();
    if line < 2 || line > lines.len() {
        return None;
    }
    let mut block: Vec<&str> = Vec::new();
    for l in lines[..line - 1].iter().rev() {
        let t = l.trim();
        if let Some(c) = t.strip_prefix('#') {
            block.push(c.strip_prefix(' ').unwrap_or(c).trim_end());
            continue;
        }
        if !block.is_empty() || t.starts_with('[') || t.starts_with("expect") {
            break;
        }
    }
    block.reverse();
    let text = block
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    (!text.is_empty()).then_some(text)
}

/// The comment block a scenario file starts with (what the scenario is
/// about), joined like [`comment_above`].
pub fn leading_comment(source: &str) -> Option<String> {
    let text = source
        .lines()
        .map(str::trim)
        .take_while(|l| l.starts_with('#') || l.is_empty())
        .filter_map(|l| l.strip_prefix('#'))
        .map(|c| c.trim())
        .filter(|c| !c.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_comment_that_explains_an_expectation() {
        let src = "[scenario]\nname = \"x\"\n\n# about step one\n[[step]]\nname = \"one\"\nexpect.ok = true\n\n[[step]]\nname = \"two\"\n# Why two must hold:\n#   it is in the spec.\n#\nlist_dir = { path = \"/tmp\" }\nexpect.out.names = 1\nexpect.ok = true\n";
        // Line 15 is expect.out.names: the block above list_dir.
        assert_eq!(
            comment_above(src, 15).as_deref(),
            Some("Why two must hold: it is in the spec.")
        );
        // Line 16: another expectation is in between: no comment.
        assert_eq!(comment_above(src, 16), None);
        // Line 7: the comment above the table header belongs elsewhere.
        assert_eq!(comment_above(src, 7), None);
        assert_eq!(comment_above(src, 0), None);
        assert_eq!(comment_above(src, 999), None);
    }

    #[test]
    fn what_a_scenario_file_says_it_is_about() {
        let src = "# Review concerns about the header,
# as expectations.
#
# Second paragraph.

[scenario]
# not this
name = \"x\"
";
        assert_eq!(
            leading_comment(src).as_deref(),
            Some("Review concerns about the header, as expectations. Second paragraph.")
        );
        assert_eq!(leading_comment("[scenario]\n# late\n"), None);
    }
}
