//! The series-level ABI checks' part of a review (gasbench-abicheck):
//! one finding per defect (Medium: the series breaks a convention of the
//! kernel's ABI) or note (Info), each with the file:line it was read at,
//! and a section listing every check, passed ones included, with its
//! evidence.

use gasbench_abicheck::{CheckResult, Verdict};

use crate::report::{Finding, Review, Severity};

/// Add the checks' section and findings to `review`; `tree` says which
/// tree the file:line evidence is in.
pub fn add(review: &mut Review, results: &[CheckResult], tree: &str) {
    if results.is_empty() {
        return;
    }
    let mut md = format!(
        "Read from the kernel tree with the series applied ({tree}); each line is a check, its verdict and where it looked.\n\n| check | subject | verdict | finding | evidence |\n|---|---|---|---|---|\n"
    );
    for r in results {
        let verdict = match r.verdict {
            Verdict::Pass => "pass",
            Verdict::Defect => "defect",
            Verdict::Note => "note",
        };
        let ev: Vec<String> = r
            .evidence
            .iter()
            .take(4)
            .map(|e| format!("`{}` {}", e.at, e.text.trim()))
            .collect();
        let more = r.evidence.len().saturating_sub(4);
        md.push_str(&format!(
            "| {} | {} | {verdict} | {} | {}{} |\n",
            r.check,
            cell(&r.subject),
            cell(&r.title),
            cell(&ev.join("; ")),
            if more > 0 {
                format!(" (and {more} more)")
            } else {
                String::new()
            }
        ));
        let severity = match r.verdict {
            Verdict::Pass => continue,
            Verdict::Defect => Severity::Medium,
            Verdict::Note => Severity::Info,
        };
        let finding = Finding {
            severity,
            title: if r.check == gasbench_abicheck::checkpatch::CHECK {
                format!(
                    "{}: {} (shown by scripts/checkpatch.pl)",
                    r.subject, r.title
                )
            } else {
                format!("{} (shown by reading the tree, {})", r.title, r.check)
            },
            detail: Some(
                r.evidence
                    .iter()
                    .map(|e| format!("{}: {}", e.at, e.text.trim()))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            location: r.evidence.first().map(|e| e.at.clone()),
            tool_failure: false,
        };
        if !review.findings.contains(&finding) {
            review.findings.push(finding);
        }
    }
    review.series_checks = Some(md);
    review.findings.sort_by_key(|f| f.severity);
    review.exit_code = crate::report::exit_code_of(&review.findings);
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}
