//! The run's own results as KTAP (version 1), so kselftest-style harnesses
//! (kernelci, LAVA, `kunit.py parse`) can consume gasbench: one subtest
//! per scenario with one result per expectation, and one per kselftest
//! binary with its results as the binary reported them.
//!
//! ```text
//! KTAP version 1
//! 1..2
//!     KTAP version 1
//!     # Subtest: goldfish-errors
//!     1..59
//!     ok 1 step 0: open /dev/goldfish_address_space
//!     not ok 18 step 18: ALLOCATE_BLOCK with a read-only result: blocks == 1
//!     # expected: blocks == 1
//!     # actual: 2 blocks
//! not ok 1 goldfish-errors
//! ```
//!
//! Names and diagnostics are one line each, without `#` (which would
//! start a directive) or control characters: they come from the guest.

use std::fmt::Write;

use gasbench_abi::protocol::KtapStatus;

use crate::summary::RunSummary;

/// A name or diagnostic made safe for one KTAP line.
fn clean(s: &str) -> String {
    let one: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    one.replace('#', "%23").trim().chars().take(500).collect()
}

fn result_line(
    out: &mut String,
    indent: &str,
    ok: bool,
    n: usize,
    name: &str,
    directive: Option<&str>,
) {
    let _ = write!(
        out,
        "{indent}{} {n} {}",
        if ok { "ok" } else { "not ok" },
        clean(name)
    );
    if let Some(d) = directive {
        let _ = write!(out, " # {}", clean(d));
    }
    out.push('\n');
}

pub fn to_ktap(s: &RunSummary) -> String {
    let mut binaries: Vec<&str> = Vec::new();
    for k in &s.ktap {
        if !binaries.contains(&k.binary.as_str()) {
            binaries.push(&k.binary);
        }
    }
    let mut out = String::from("KTAP version 1\n");
    let _ = writeln!(out, "1..{}", s.scenarios.len() + binaries.len());
    let mut n = 0;
    for sc in &s.scenarios {
        n += 1;
        let _ = writeln!(
            out,
            "    KTAP version 1\n    # Subtest: {}",
            clean(&sc.name)
        );
        let _ = writeln!(out, "    1..{}", sc.expectations.len());
        for (i, e) in sc.expectations.iter().enumerate() {
            result_line(&mut out, "    ", e.held, i + 1, &e.title(), None);
            if !e.held {
                let _ = writeln!(out, "    # expected: {}", clean(&e.expected));
                let _ = writeln!(out, "    # actual: {}", clean(&e.actual));
            }
        }
        match sc.passed {
            Some(p) => result_line(&mut out, "", p, n, &sc.name, None),
            None => {
                let why = match &sc.last_step {
                    Some(step) => format!("did not finish: the run stopped in step {step}"),
                    None => "did not finish: the run stopped".to_string(),
                };
                let _ = writeln!(out, "# {}: {}", clean(&sc.name), clean(&why));
                result_line(&mut out, "", false, n, &sc.name, None);
            }
        }
    }
    for b in binaries {
        n += 1;
        let results: Vec<_> = s.ktap.iter().filter(|k| k.binary == b).collect();
        let _ = writeln!(
            out,
            "    KTAP version 1\n    # Subtest: kselftest {}",
            clean(b)
        );
        let _ = writeln!(out, "    1..{}", results.len());
        for (i, k) in results.iter().enumerate() {
            let directive = match k.status {
                KtapStatus::Skip => Some(k.directive.clone().unwrap_or_else(|| "SKIP".into())),
                KtapStatus::Xfail => Some("XFAIL".to_string()),
                _ => None,
            };
            // Keep SKIP/XFAIL as the directive's first word.
            let directive = directive.map(|d| match k.status {
                KtapStatus::Skip if !d.to_ascii_uppercase().starts_with("SKIP") => {
                    format!("SKIP {d}")
                }
                _ => d,
            });
            result_line(
                &mut out,
                "    ",
                k.status != KtapStatus::NotOk,
                i + 1,
                &k.name,
                directive.as_deref(),
            );
        }
        let passed = results.iter().all(|k| k.status != KtapStatus::NotOk);
        result_line(&mut out, "", passed, n, &format!("kselftest {b}"), None);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::{Expectation, KtapLine, ScenarioResult};
    use gasbench_abi::ktap::{KtapSummary, TestResult};

    fn exp(what: &str, held: bool) -> Expectation {
        Expectation {
            step: 1,
            what: what.into(),
            expected: "EINVAL".into(),
            actual: "ENXIO\n# not ok 99 injected".into(),
            held,
            ..Default::default()
        }
    }

    #[test]
    fn the_ktap_parser_reads_back_every_verdict_at_its_depth() {
        let s = RunSummary {
            scenarios: vec![
                ScenarioResult {
                    name: "mkdirat2-flags".into(),
                    passed: Some(false),
                    expectations: vec![exp("step 0: open", true), exp("line 40: errno # x", false)],
                    ..Default::default()
                },
                ScenarioResult {
                    name: "idle".into(),
                    passed: None,
                    last_step: Some("1 \"nap\"".into()),
                    expectations: vec![exp("step 0: open", true)],
                    ..Default::default()
                },
            ],
            ktap: vec![
                KtapLine {
                    binary: "mkdirat_fd_test".into(),
                    number: 1,
                    name: "mkdirat2.returns_fd".into(),
                    status: KtapStatus::Ok,
                    directive: None,
                },
                KtapLine {
                    binary: "mkdirat_fd_test".into(),
                    number: 2,
                    name: "mkdirat2.no_such".into(),
                    status: KtapStatus::Skip,
                    directive: Some("SKIP not here".into()),
                },
            ],
            ..Default::default()
        };
        let text = to_ktap(&s);
        let mut parsed = KtapSummary::default();
        for line in text.lines() {
            parsed.feed(line);
        }
        assert_eq!(parsed.version, Some(1));
        assert_eq!(parsed.planned, Some(3));
        let top: Vec<(&str, KtapStatus)> = parsed
            .top_level()
            .map(|r| (r.name.as_str(), r.status))
            .collect();
        assert_eq!(
            top,
            [
                ("mkdirat2-flags", KtapStatus::NotOk),
                ("idle", KtapStatus::NotOk),
                ("kselftest mkdirat_fd_test", KtapStatus::Ok),
            ]
        );
        let nested: Vec<&TestResult> = parsed.results.iter().filter(|r| r.depth == 1).collect();
        assert_eq!(nested.len(), 5, "{text}");
        assert_eq!(nested[1].status, KtapStatus::NotOk);
        // A `#` in a name cannot turn into a directive.
        assert_eq!(nested[1].name, "line 40: errno %23 x");
        assert_eq!(nested[1].directive, None);
        assert_eq!(nested[4].status, KtapStatus::Skip);
        // The guest's newline cannot forge a result line.
        assert!(!text.contains("\nnot ok 99"), "{text}");
        assert!(parsed.results.iter().all(|r| r.number != 99));
        assert!(!parsed.all_passed());
    }
}
