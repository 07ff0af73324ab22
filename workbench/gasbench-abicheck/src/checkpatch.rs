//! checkpatch.pl's verdict on one patch, read from what it printed. The
//! caller runs the base tree's `scripts/checkpatch.pl` on the patch file
//! (this crate runs nothing); [`touches_checkpatch`] says when it must not:
//! a series that changes checkpatch or the files it reads would have the
//! host run code from a stranger's mail.

use crate::{CheckResult, Evidence, Verdict};

/// The check's name in results and the review.
pub const CHECK: &str = "checkpatch";

/// The arguments after the interpreter (`perl`), run in the tree: no
/// colour, the message types shown (`ERROR:OPEN_BRACE:`).
pub const ARGS: &[&str] = &["scripts/checkpatch.pl", "--color=never", "--show-types"];

/// Files checkpatch runs or reads: a series that changes one of them is
/// not checked with it.
const READS: &[&str] = &[
    "scripts/checkpatch.pl",
    "scripts/spelling.txt",
    "scripts/const_structs.checkpatch",
    ".checkpatch.conf",
];

/// Whether a patch text changes a file checkpatch runs or reads.
pub fn touches_checkpatch(patch: &str) -> bool {
    patch.lines().any(|l| {
        l.strip_prefix("+++ b/")
            .or_else(|| l.strip_prefix("--- a/"))
            .is_some_and(|p| READS.contains(&p.trim()))
    })
}

/// One message: its level, type, text and where.
struct Message {
    level: &'static str,
    text: String,
    at: Option<(String, usize)>,
    /// The patch line it quotes first (`+int f(void) {`).
    quoted: Option<String>,
}

/// The verdict on the patch `subject` from checkpatch's `output`.
/// Errors make it a defect, warnings and checks alone a note; an output
/// without checkpatch's `total:` line is no verdict (a note that says so).
pub fn parse(subject: &str, output: &str) -> CheckResult {
    let mut messages: Vec<Message> = Vec::new();
    let mut total = None;
    for line in output.lines() {
        let level = ["ERROR", "WARNING", "CHECK"]
            .into_iter()
            .find(|l| line.starts_with(&format!("{l}:")));
        if let Some(level) = level {
            let rest = &line[level.len() + 1..];
            // `--show-types`: `ERROR:OPEN_BRACE: text`.
            let text = match rest.split_once(": ") {
                Some((ty, text)) if !ty.contains(' ') => format!("{ty}: {text}"),
                _ => rest.trim().to_string(),
            };
            messages.push(Message {
                level,
                text,
                at: None,
                quoted: None,
            });
        } else if let Some(m) = messages.last_mut() {
            if let Some(file) = line
                .split_once(": FILE: ")
                .map(|(_, f)| f.trim_end_matches(':'))
                && let Some((path, n)) = file.rsplit_once(':')
                && let Ok(n) = n.parse()
                && m.at.is_none()
            {
                m.at = Some((path.to_string(), n));
            } else if m.quoted.is_none() && line.starts_with('+') {
                m.quoted = Some(line.to_string());
            }
        }
        if line.starts_with("total: ") {
            total = Some(line.to_string());
        }
    }
    let count = |level| messages.iter().filter(|m| m.level == level).count();
    let (errors, warnings, checks) = (count("ERROR"), count("WARNING"), count("CHECK"));
    let evidence: Vec<Evidence> = messages
        .iter()
        .map(|m| {
            let text = format!(
                "{}: {}{}",
                m.level,
                m.text,
                m.quoted
                    .as_deref()
                    .map(|q| format!(" — {q}"))
                    .unwrap_or_default()
            );
            match &m.at {
                Some((path, n)) => Evidence::new(path, *n, &text),
                None => Evidence {
                    at: "the patch".into(),
                    text: text.chars().take(200).collect(),
                },
            }
        })
        .collect();
    let Some(total) = total else {
        let first = output.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        return CheckResult {
            check: CHECK,
            subject: subject.to_string(),
            verdict: Verdict::Note,
            title: format!(
                "checkpatch gave no verdict: {}",
                first.chars().take(160).collect::<String>()
            ),
            evidence,
        };
    };
    let verdict = if errors > 0 {
        Verdict::Defect
    } else if warnings + checks > 0 {
        Verdict::Note
    } else {
        Verdict::Pass
    };
    let title = match messages.first() {
        None => format!(
            "checkpatch: no problems ({})",
            total.trim_start_matches("total: ")
        ),
        Some(first) => {
            let mut counts = vec![plural(errors, "error"), plural(warnings, "warning")];
            if checks > 0 {
                counts.push(plural(checks, "check"));
            }
            format!("checkpatch: {}; first: {}", counts.join(", "), first.text)
        }
    };
    CheckResult {
        check: CHECK,
        subject: subject.to_string(),
        verdict,
        title,
        evidence,
    }
}

fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What checkpatch printed for the posted mkdirat2 RFC v2 1/2.
    const MKDIRAT2: &str = "\
ERROR:OPEN_BRACE: open brace '{' following function definitions go on the next line
#88: FILE: fs/namei.c:5270:
+int filename_mkdirat(int dfd, struct filename *name, umode_t mode) {

WARNING:LINE_SPACING: Missing a blank line after declarations
#117: FILE: fs/namei.c:5299:
+\t\tconst struct path new_path = { .mnt = path.mnt, .dentry = dentry };
+\t\tfilp = dentry_open(&new_path, O_DIRECTORY, current_cred());

total: 1 errors, 1 warnings, 110 lines checked

NOTE: For some of the reported defects, checkpatch may be able to
      mechanically convert to the typical style using --fix or --fix-inplace.
";

    #[test]
    fn errors_are_a_defect_with_each_message_at_its_file_and_line() {
        let r = parse("1/2 vfs: syscalls: add mkdirat2()", MKDIRAT2);
        assert_eq!(r.verdict, Verdict::Defect);
        assert_eq!(
            r.title,
            "checkpatch: 1 error, 1 warning; first: OPEN_BRACE: open brace '{' following \
             function definitions go on the next line"
        );
        assert_eq!(r.evidence.len(), 2);
        assert_eq!(r.evidence[0].at, "fs/namei.c:5270");
        assert!(
            r.evidence[0].text.ends_with(
                "— +int filename_mkdirat(int dfd, struct filename *name, umode_t mode) {"
            ),
            "{}",
            r.evidence[0].text
        );
        assert_eq!(r.evidence[1].at, "fs/namei.c:5299");
        assert!(r.evidence[1].text.starts_with("WARNING: LINE_SPACING:"));
    }

    #[test]
    fn warnings_alone_are_a_note_and_a_clean_patch_passes() {
        let w = parse(
            "2/2",
            "WARNING:FILE_PATH_CHANGES: added, moved or deleted file(s)\n\ntotal: 0 errors, 1 warnings, 9 lines checked\n",
        );
        assert_eq!(w.verdict, Verdict::Note);
        assert_eq!(w.evidence[0].at, "the patch");
        let ok = parse(
            "1/1",
            "total: 0 errors, 0 warnings, 12 lines checked\n\nx has no obvious style problems\n",
        );
        assert_eq!(ok.verdict, Verdict::Pass);
        assert_eq!(
            ok.title,
            "checkpatch: no problems (0 errors, 0 warnings, 12 lines checked)"
        );
    }

    #[test]
    fn an_output_without_its_total_is_no_verdict() {
        let r = parse("1/1", "Can't locate object method\n");
        assert_eq!(r.verdict, Verdict::Note);
        assert!(
            r.title
                .starts_with("checkpatch gave no verdict: Can't locate")
        );
    }

    #[test]
    fn a_series_that_changes_checkpatch_is_not_checked_with_it() {
        assert!(touches_checkpatch(
            "--- a/scripts/checkpatch.pl\n+++ b/scripts/checkpatch.pl\n@@ -1 +1 @@\n"
        ));
        assert!(touches_checkpatch(
            "--- /dev/null\n+++ b/.checkpatch.conf\n"
        ));
        assert!(!touches_checkpatch("--- a/fs/namei.c\n+++ b/fs/namei.c\n"));
    }
}
