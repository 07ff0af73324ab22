//! The explorer's part of a report: what ran, what it found, the
//! filesystem matrix.

use crate::explorer::ExploreReport;
use crate::model::Kind;

/// Markdown for `explore.md` and the review's explorer section.
/// `reproducers` is where the reproducer files are (a directory shown to
/// the reader).
pub fn markdown(reports: &[ExploreReport], reproducers: &str) -> String {
    let mut s = String::new();
    if reports.is_empty() {
        s.push_str("The explorer did not run.\n");
        return s;
    }
    s.push_str(
        "| domain | seed | batches | sequences | calls | shrink runs | defects | questions |\n",
    );
    s.push_str("|---|---|---|---|---|---|---|---|\n");
    for r in reports {
        let defects = r.findings.iter().filter(|f| f.kind == Kind::Defect).count();
        let questions = r.findings.len() - defects;
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.domain,
            r.seed,
            r.stats.batches,
            r.stats.sequences,
            r.stats.calls,
            r.stats.shrink_batches + r.stats.confirm_runs,
            defects,
            questions
        ));
    }
    for r in reports {
        if let Some(why) = &r.stats.stopped_early {
            s.push_str(&format!(
                "\n{}: stopped early: {}\n",
                r.domain,
                one_line(why)
            ));
        }
        if r.stats.incomplete_count > 0 {
            s.push_str(&format!(
                "\n{}: {} sequence(s) did not run to their end (checked as far as they ran); first: {}\n",
                r.domain,
                r.stats.incomplete_count,
                r.stats.incomplete.first().map(|x| one_line(x)).unwrap_or_default()
            ));
        }
    }
    let matrix: Vec<&ExploreReport> = reports
        .iter()
        .filter(|r| !r.stats.cases.is_empty())
        .collect();
    if !matrix.is_empty() {
        let mut names: Vec<String> = Vec::new();
        for r in &matrix {
            for c in &r.stats.cases {
                if !names.contains(&c.name) {
                    names.push(c.name.clone());
                }
            }
        }
        s.push_str("\nThe fixed cases per filesystem (✓ the kernel did what mkdirat + openat(O_DIRECTORY) do; otherwise the divergence; – not applicable there):\n\n");
        s.push_str("| case |");
        for r in &matrix {
            s.push_str(&format!(" {} |", r.domain.trim_start_matches("mkdirat2-")));
        }
        s.push_str("\n|---|");
        for _ in &matrix {
            s.push_str("---|");
        }
        s.push('\n');
        for n in &names {
            s.push_str(&format!("| {n} |"));
            for r in &matrix {
                let cell = match r.stats.cases.iter().find(|c| &c.name == n) {
                    None => "–".to_string(),
                    Some(c) if c.status == "same" => "✓".to_string(),
                    Some(c) => format!("✗ {}", c.status),
                };
                s.push_str(&format!(" {cell} |"));
            }
            s.push('\n');
        }
    }
    let findings: Vec<_> = reports.iter().flat_map(|r| r.findings.iter()).collect();
    if findings.is_empty() {
        s.push_str("\nNo divergence from the models.\n");
        return s;
    }
    s.push('\n');
    for f in findings {
        s.push_str(&format!(
            "- **{}** ({}, {}): {}.\n  - model: {}\n  - observed: {}\n  - reproducer: `{}/{}` ({} op(s), shrunk from {}{}); {}\n",
            f.kind.as_str(),
            f.domain,
            f.signature,
            f.title,
            f.model,
            f.observed,
            reproducers,
            f.file,
            f.minimal_ops,
            f.original_ops,
            if f.minimal { ", 1-minimal" } else { "" },
            match (f.confirmed, &f.note) {
                (Some(true), _) => "run again as written: reproduced".to_string(),
                (Some(false), Some(n)) => format!("run again as written: {n}"),
                (Some(false), None) => "run again as written: not reproduced".to_string(),
                (_, Some(n)) => n.clone(),
                (None, None) => "not run again".to_string(),
            }
        ));
    }
    s
}

fn one_line(s: &str) -> String {
    s.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect()
}
