//! The explorer's part of a review: what it ran (the table and the
//! filesystem matrix, as explore.md has them) and one finding per kind of
//! divergence it found, each with its reproducer file.
//!
//! A defect is the posting's (Medium: behaviour differs from what the
//! uapi, the cover letter or the review promise); a defect the reproducer
//! did not show again when run as written is Low (the explorer saw it
//! once). A question is Info: the sources do not say, the driver's
//! behaviour is put to its author.

use gasbench_explore::{ExploreReport, Kind};

use crate::report::{Finding, Review, Severity};

/// Scenarios the explorer ran (its batches, shrink rounds and reproducers)
/// are named so; the review reports them here, not as suite scenarios.
pub const SCENARIO_PREFIX: &str = "explore-";

/// Whether a scenario of the run was the explorer's.
pub fn is_explorer_scenario(name: &str) -> bool {
    name.starts_with(SCENARIO_PREFIX)
}

/// Add the explorer's section and findings to `review`. `reproducers` is
/// where the reproducer files were written, as the reader should see it.
///
/// One divergence is one finding however many filesystems (domains) show
/// it: the same check failing on tmpfs, ramfs and overlayfs is one defect
/// of the syscall, listed with every domain and reproducer.
pub fn add(review: &mut Review, reports: &[ExploreReport], reproducers: &str) {
    if reports.is_empty() {
        return;
    }
    review.explorer = Some(gasbench_explore::report::markdown(reports, reproducers));
    // Grouped by (kind, signature), in the order first seen.
    let mut groups: Vec<Vec<(&ExploreReport, &gasbench_explore::Finding)>> = Vec::new();
    for r in reports {
        for f in &r.findings {
            match groups
                .iter_mut()
                .find(|g| g[0].1.signature == f.signature && g[0].1.kind == f.kind)
            {
                Some(g) => g.push((r, f)),
                None => groups.push(vec![(r, f)]),
            }
        }
    }
    for group in &groups {
        let (r, first) = group[0];
        let confirmed = group.iter().any(|(_, f)| f.confirmed == Some(true));
        let (severity, what) = match (first.kind, confirmed) {
            (Kind::Defect, true) => (Severity::Medium, "defect"),
            (Kind::Defect, false) => (Severity::Low, "defect, not reproduced as written"),
            (Kind::Question, _) => (Severity::Info, "question"),
        };
        // The reproducer to read first: one that showed it again.
        let shown = group
            .iter()
            .find(|(_, f)| f.confirmed == Some(true))
            .unwrap_or(&group[0])
            .1;
        let domains: Vec<&str> = group.iter().map(|(_, f)| f.domain.as_str()).collect();
        let title = if group.len() == 1 {
            first.title.clone()
        } else {
            without_domain(&first.title, &first.domain).to_string()
        };
        let others: Vec<String> = group
            .iter()
            .filter(|(_, f)| f.file != shown.file)
            .map(|(_, f)| format!("{reproducers}/{}", f.file))
            .collect();
        let finding = Finding {
            severity,
            title: format!(
                "{} ({what}, shown by the explorer): {title}",
                domains.join(", ")
            ),
            detail: Some(format!(
                "model: {}; observed: {}; shrunk from {} to {} op(s){} (seed {}, {}){}",
                shown.model,
                shown.observed,
                shown.original_ops,
                shown.minimal_ops,
                if shown.minimal { ", 1-minimal" } else { "" },
                r.seed,
                first.signature,
                if others.is_empty() {
                    String::new()
                } else {
                    format!("; also: {}", others.join(", "))
                }
            )),
            location: Some(format!("{reproducers}/{}", shown.file)),
            tool_failure: false,
        };
        if !review.findings.contains(&finding) {
            review.findings.push(finding);
        }
    }
    review.findings.sort_by_key(|f| f.severity);
    review.exit_code = crate::report::exit_code_of(&review.findings);
}

/// A finding's title without the ` (tmpfs)` its domain's filesystem adds
/// at the end (`mkdirat2-tmpfs` → `tmpfs`), for the title of a group.
fn without_domain<'a>(title: &'a str, domain: &str) -> &'a str {
    let fs = domain.split_once('-').map_or(domain, |(_, fs)| fs);
    title.strip_suffix(&format!(" ({fs})")).unwrap_or(title)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_domain_suffix_comes_off_a_group_title_and_nothing_else_does() {
        assert_eq!(
            without_domain("flags differ (tmpfs-cross)", "mkdirat2-tmpfs-cross"),
            "flags differ"
        );
        assert_eq!(
            without_domain("flags differ (ramfs)", "mkdirat2-tmpfs"),
            "flags differ (ramfs)"
        );
        assert_eq!(without_domain("a claim", "goldfish"), "a claim");
    }
}
