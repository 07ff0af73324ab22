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
pub fn add(review: &mut Review, reports: &[ExploreReport], reproducers: &str) {
    if reports.is_empty() {
        return;
    }
    review.explorer = Some(gasbench_explore::report::markdown(reports, reproducers));
    for r in reports {
        for f in &r.findings {
            let (severity, what) = match (f.kind, f.confirmed) {
                (Kind::Defect, Some(true)) => (Severity::Medium, "defect"),
                (Kind::Defect, _) => (Severity::Low, "defect, not reproduced as written"),
                (Kind::Question, _) => (Severity::Info, "question"),
            };
            let finding = Finding {
                severity,
                title: format!("{} ({what}, shown by the explorer): {}", f.domain, f.title),
                detail: Some(format!(
                    "model: {}; observed: {}; shrunk from {} to {} op(s){} (seed {}, {})",
                    f.model,
                    f.observed,
                    f.original_ops,
                    f.minimal_ops,
                    if f.minimal { ", 1-minimal" } else { "" },
                    r.seed,
                    f.signature
                )),
                location: Some(format!("{reproducers}/{}", f.file)),
                tool_failure: false,
            };
            if !review.findings.contains(&finding) {
                review.findings.push(finding);
            }
        }
    }
    review.findings.sort_by_key(|f| f.severity);
    review.exit_code = crate::report::exit_code_of(&review.findings);
}
