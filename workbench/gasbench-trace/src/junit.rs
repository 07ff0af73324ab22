//! JUnit XML: one testcase per scenario and per KTAP result, failures
//! carrying expected vs actual. For CI systems that render it.

use std::fmt::Write;

use gasbench_abi::protocol::KtapStatus;

use crate::summary::RunSummary;

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 cannot carry most control characters at all.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

pub fn to_junit(s: &RunSummary) -> String {
    let scenario_failures = s
        .scenarios
        .iter()
        .filter(|x| x.passed != Some(true))
        .count();
    let ktap_failures = s
        .ktap
        .iter()
        .filter(|k| k.status == KtapStatus::NotOk)
        .count();
    let tests = s.scenarios.len() + s.ktap.len();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"gasbench\" tests=\"{tests}\" failures=\"{}\" time=\"{:.3}\">",
        scenario_failures + ktap_failures,
        s.elapsed_ms as f64 / 1000.0
    );
    let _ = writeln!(
        x,
        "  <testsuite name=\"scenarios\" tests=\"{}\" failures=\"{scenario_failures}\">",
        s.scenarios.len()
    );
    for sc in &s.scenarios {
        let _ = write!(
            x,
            "    <testcase classname=\"scenarios\" name=\"{}\" time=\"{:.3}\"",
            esc(&sc.name),
            sc.elapsed_ms as f64 / 1000.0
        );
        match sc.passed {
            Some(true) => x.push_str("/>\n"),
            _ => {
                x.push_str(">\n");
                let mut body = String::new();
                for e in sc.failed_expectations() {
                    let _ = writeln!(
                        body,
                        "step {}: {}: expected {}, got {}",
                        e.step, e.what, e.expected, e.actual
                    );
                }
                if sc.passed.is_none() {
                    body.push_str("the scenario did not finish\n");
                }
                let first = body.lines().next().unwrap_or("failed").to_owned();
                let _ = writeln!(
                    x,
                    "      <failure message=\"{}\">{}</failure>\n    </testcase>",
                    esc(&first),
                    esc(&body)
                );
            }
        }
    }
    x.push_str("  </testsuite>\n");
    let _ = writeln!(
        x,
        "  <testsuite name=\"kselftest\" tests=\"{}\" failures=\"{ktap_failures}\">",
        s.ktap.len()
    );
    for k in &s.ktap {
        let _ = write!(
            x,
            "    <testcase classname=\"{}\" name=\"{}\"",
            esc(&k.binary),
            esc(&k.name)
        );
        match k.status {
            KtapStatus::Ok | KtapStatus::Xfail => x.push_str("/>\n"),
            KtapStatus::Skip => {
                let _ = writeln!(
                    x,
                    "><skipped message=\"{}\"/></testcase>",
                    esc(k.directive.as_deref().unwrap_or("skipped"))
                );
            }
            KtapStatus::NotOk => {
                let _ = writeln!(x, "><failure message=\"not ok {}\"/></testcase>", k.number);
            }
        }
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::{Expectation, KtapLine, ScenarioResult};

    #[test]
    fn failures_carry_expected_and_actual_escaped() {
        let s = RunSummary {
            scenarios: vec![
                ScenarioResult {
                    name: "ok-one".into(),
                    passed: Some(true),
                    elapsed_ms: 10,
                    expectations: vec![],
                    ..Default::default()
                },
                ScenarioResult {
                    name: "bad<one>".into(),
                    passed: Some(false),
                    elapsed_ms: 20,
                    expectations: vec![Expectation {
                        step: 3,
                        what: "errno".into(),
                        expected: "EINVAL".into(),
                        actual: "\"ENXIO\" & \u{1}".into(),
                        held: false,
                    }],
                    ..Default::default()
                },
            ],
            ktap: vec![KtapLine {
                binary: "mkdirat_fd_test".into(),
                number: 2,
                name: "mkdirat_fd.o_cloexec".into(),
                status: KtapStatus::NotOk,
                directive: None,
            }],
            ..Default::default()
        };
        let x = to_junit(&s);
        assert!(x.contains("tests=\"3\" failures=\"2\""), "{x}");
        assert!(x.contains("name=\"bad&lt;one&gt;\""));
        assert!(x.contains("step 3: errno: expected EINVAL, got &quot;ENXIO&quot; &amp; \\x01"));
        assert!(x.contains("<testcase classname=\"scenarios\" name=\"ok-one\" time=\"0.010\"/>"));
        assert!(x.contains("<failure message=\"not ok 2\"/>"));
    }
}
