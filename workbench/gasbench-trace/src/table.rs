//! The summary as text: what `gasbench run` prints at the end.

use std::fmt::Write;

use gasbench_termsafe::{line, line_capped, text_capped};

use crate::summary::RunSummary;

/// The longest value (expected, actual, a console line) shown whole.
const MAX_VALUE: usize = 2_000;

/// A table of scenarios with their verdicts, the failing expectations
/// with expected vs actual, kselftest counts and the run's errors. What
/// the guest said (actual values, console lines, kselftest names, the
/// release it reports) is shown with its control characters made visible
/// (gasbench-termsafe), so a hostile guest cannot write to the terminal.
pub fn summary_table(s: &RunSummary) -> String {
    let mut t = String::new();
    let (passed, failed, unfinished) = s.counts();
    let _ = writeln!(
        t,
        "kernel {} · {}{} · {} scenario(s): {passed} passed, {failed} failed{}",
        line_capped(s.kernel_release.as_deref().unwrap_or("?"), 200),
        s.accel
            .as_deref()
            .map(str::to_uppercase)
            .unwrap_or_else(|| "?".into()),
        s.profile
            .as_ref()
            .map(|p| format!(" · {} profile", p.name))
            .unwrap_or_default(),
        s.scenarios.len(),
        if unfinished > 0 {
            format!(", {unfinished} unfinished")
        } else {
            String::new()
        }
    );
    let w = s
        .scenarios
        .iter()
        .map(|x| line(&x.name).chars().count())
        .max()
        .unwrap_or(8)
        .max(8);
    for sc in &s.scenarios {
        let held = sc.expectations.iter().filter(|e| e.held).count();
        let mark = match sc.passed {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "----",
        };
        let _ = writeln!(
            t,
            "  {mark}  {:w$}  {held:>3}/{:<3} expectations  {:>6.1} s",
            line(&sc.name),
            sc.expectations.len(),
            sc.elapsed_ms as f64 / 1000.0
        );
        // Unfinished, or ended by an error before any verdict.
        if (sc.passed.is_none() || (sc.passed == Some(false) && sc.expectations.is_empty()))
            && let Some(step) = &sc.last_step
        {
            let _ = writeln!(
                t,
                "          did not finish: the run stopped during step {}",
                line_capped(step, MAX_VALUE)
            );
        }
        for e in sc.failed_expectations() {
            let _ = writeln!(t, "          ✗ {}", line_capped(&e.title(), MAX_VALUE));
            let _ = writeln!(
                t,
                "              expected: {}",
                line_capped(&e.expected, MAX_VALUE)
            );
            let _ = writeln!(
                t,
                "              actual:   {}",
                line_capped(&e.actual, MAX_VALUE)
            );
        }
    }
    for (bin, (ok, bad, skip)) in s.ktap_counts() {
        let _ = writeln!(
            t,
            "  kselftest {}: {ok} ok, {bad} not ok, {skip} skipped",
            line_capped(&bin, 200)
        );
    }
    if !s.kernel_warnings.is_empty() {
        let _ = writeln!(t, "  kernel warnings: {}", s.kernel_warnings.len());
        for l in s.kernel_warnings.iter().take(5) {
            let _ = writeln!(t, "    {}", line_capped(l, 500));
        }
    }
    for x in &s.skipped {
        let _ = writeln!(t, "  skipped {}: {}", x.scenario, x.why);
    }
    if let Some(p) = &s.profile
        && !p.detectors.is_empty()
    {
        let proven: Vec<&str> = s.proven.iter().map(|x| x.detector.as_str()).collect();
        let not: Vec<&str> = p
            .detectors
            .iter()
            .map(String::as_str)
            .filter(|d| *d != "fault-injection" && !proven.contains(d))
            .collect();
        let _ = writeln!(
            t,
            "  detectors: {}; proven in this run: {}{}",
            p.detectors.join(", "),
            if proven.is_empty() {
                "none".to_string()
            } else {
                proven.join(", ")
            },
            if not.is_empty() {
                String::new()
            } else {
                format!("; not proven: {}", not.join(", "))
            }
        );
    }
    for r in &s.reports {
        let a = &r.report.attribution;
        let proof = s.proven.iter().any(|p| p.report == r.report.id);
        let _ = writeln!(
            t,
            "  {} report #{} {}{}: {} ({}{}{})",
            if proof { "✓" } else { "✗" },
            r.report.id,
            r.report.kind.name(),
            if r.count > 1 {
                format!(" ×{}", r.count)
            } else {
                String::new()
            },
            r.report.one_line(),
            a.scenario.as_deref().unwrap_or("no scenario"),
            a.step.map(|s| format!(" step {s}")).unwrap_or_default(),
            a.call.map(|c| format!(" call #{c}")).unwrap_or_default(),
        );
    }
    if !s.injection.is_empty() {
        let injected: u32 = s.injection.iter().map(|x| x.injected).sum();
        let reached = s.injection.iter().filter(|x| x.reached_no_fault).count();
        let _ = writeln!(
            t,
            "  fault injection: {injected} fault(s) injected into {} call(s); {reached} reached their no-fault attempt",
            s.injection.len()
        );
        for x in &s.injection {
            let _ = writeln!(
                t,
                "    {} step {} {} ({}): {} attempt(s), {} injected, {} survived{}{}",
                x.scenario,
                x.step,
                x.call,
                x.fault,
                x.attempts,
                x.injected,
                x.survived,
                if x.errnos.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", {}",
                        x.errnos
                            .iter()
                            .map(|(e, n)| format!("{e} ×{n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
                if x.reached_no_fault {
                    ""
                } else {
                    ", no-fault attempt NOT reached"
                }
            );
        }
    }
    for e in &s.errors {
        // Errors may quote the console's last lines: one line each.
        let e = text_capped(e, MAX_VALUE * 4);
        let mut lines = e.lines();
        let _ = writeln!(t, "  error: {}", line(lines.next().unwrap_or("")));
        for l in lines {
            let _ = writeln!(t, "         {}", line(l));
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::{Expectation, ScenarioResult};

    #[test]
    fn failures_show_expected_next_to_actual() {
        let s = RunSummary {
            kernel_release: Some("7.2.12-gasbench".into()),
            accel: Some("tcg".into()),
            scenarios: vec![ScenarioResult {
                name: "goldfish-errors".into(),
                passed: Some(false),
                elapsed_ms: 1500,
                expectations: vec![
                    Expectation {
                        step: 1,
                        line: 9,
                        step_name: "open".into(),
                        what: "ok".into(),
                        expected: "success".into(),
                        actual: "ok (ret 3)".into(),
                        held: true,
                    },
                    Expectation {
                        step: 2,
                        line: 14,
                        step_name: "size 0".into(),
                        what: "errno".into(),
                        expected: "errno EINVAL".into(),
                        actual: "errno ENXIO".into(),
                        held: false,
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        let t = summary_table(&s);
        assert!(
            t.starts_with("kernel 7.2.12-gasbench · TCG · 1 scenario(s): 0 passed, 1 failed\n"),
            "{t}"
        );
        assert!(
            t.contains("FAIL  goldfish-errors    1/2   expectations"),
            "{t}"
        );
        assert!(t.contains("✗ line 14: size 0: errno\n              expected: errno EINVAL\n              actual:   errno ENXIO"), "{t}");
    }

    #[test]
    fn what_the_guest_said_cannot_drive_the_terminal() {
        let s = RunSummary {
            kernel_release: Some("7.2\x1b]0;pwned\x07".into()),
            scenarios: vec![ScenarioResult {
                name: "s".into(),
                passed: Some(false),
                expectations: vec![Expectation {
                    step: 1,
                    line: 3,
                    step_name: "read".into(),
                    what: "out.text".into(),
                    expected: "contains \"ok\"".into(),
                    actual: "\x1b[2J\x1b[Hall passed\u{202e}\nPASS  forged".into(),
                    held: false,
                }],
                last_step: None,
                ..Default::default()
            }],
            kernel_warnings: vec![format!("WARNING: \u{9b}31m{}", "x".repeat(5000))],
            errors: vec!["QEMU exited; the console's last lines:\n\x1b[2Jboom".into()],
            ..Default::default()
        };
        let t = summary_table(&s);
        assert!(
            !t.chars()
                .any(|c| c == '\x1b' || c == '\u{9b}' || c == '\u{202e}' || c == '\x07'),
            "{t:?}"
        );
        assert!(
            t.contains("actual:   ␛[2J␛[Hall passed<U+202E>␊PASS  forged"),
            "{t}"
        );
        assert!(t.contains("kernel 7.2␛]0;pwned␇"), "{t}");
        assert!(t.contains("more bytes)"), "{t}");
        assert!(
            t.contains("  error: QEMU exited; the console's last lines:\n         ␛[2Jboom"),
            "{t}"
        );
        // The forged line did not become a line of the table.
        assert!(!t.lines().any(|l| l.starts_with("PASS")), "{t}");
    }
}
