//! JUnit XML through `quick-junit`: a suite for the pipeline's stages,
//! one testcase per scenario and per kselftest result. A stage that
//! failed (the build, the boot) and an error that stopped the run are
//! *errors*, so a CI system never shows a run that built nothing as an
//! empty suite that passed; a failed expectation is a *failure* carrying
//! expected vs actual.

use std::time::Duration;

use gasbench_abi::protocol::KtapStatus;
use gasbench_events::run::Outcome;
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::summary::RunSummary;

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

pub fn to_junit(s: &RunSummary) -> String {
    let mut report = Report::new("gasbench");
    report.set_time(ms(s.elapsed_ms));

    // The pipeline: every stage that ran, and what stopped the run.
    let mut stages = TestSuite::new("pipeline");
    for st in &s.stages {
        let status = match st.outcome {
            Some(Outcome::Ok | Outcome::Cached) => TestCaseStatus::success(),
            Some(Outcome::Skipped) => {
                let mut t = TestCaseStatus::skipped();
                t.set_message(st.detail.as_str());
                t
            }
            Some(Outcome::Failed) | None => {
                let mut t = TestCaseStatus::non_success(NonSuccessKind::Error);
                t.set_message(if st.outcome.is_none() {
                    format!("the {} stage did not finish", st.stage.name())
                } else {
                    format!("the {} stage failed", st.stage.name())
                });
                t.set_description(st.detail.as_str());
                t
            }
        };
        let mut case = TestCase::new(st.stage.name(), status);
        case.set_classname("pipeline").set_time(ms(st.elapsed_ms));
        stages.add_test_case(case);
    }
    for (i, e) in s.errors.iter().enumerate() {
        let mut t = TestCaseStatus::non_success(NonSuccessKind::Error);
        t.set_message(e.as_str());
        let mut case = TestCase::new(format!("run stopped {}", i + 1), t);
        case.set_classname("pipeline");
        stages.add_test_case(case);
    }
    report.add_test_suite(stages);

    let mut scenarios = TestSuite::new("scenarios");
    for sc in &s.scenarios {
        let status = match sc.passed {
            Some(true) => TestCaseStatus::success(),
            Some(false) => {
                let mut body = String::new();
                for e in sc.failed_expectations() {
                    body.push_str(&format!(
                        "step {}: {}: expected {}, got {}\n",
                        e.step,
                        e.title(),
                        e.expected,
                        e.actual
                    ));
                }
                let mut t = TestCaseStatus::non_success(NonSuccessKind::Failure);
                t.set_message(body.lines().next().unwrap_or("failed").to_string());
                t.set_description(body);
                t
            }
            // It did not finish: the tool stopped it, there is no verdict.
            None => {
                let mut t = TestCaseStatus::non_success(NonSuccessKind::Error);
                t.set_message(match &sc.last_step {
                    Some(step) => format!("the scenario did not finish (in step {step})"),
                    None => "the scenario did not finish".to_string(),
                });
                t
            }
        };
        let mut case = TestCase::new(sc.name.as_str(), status);
        case.set_classname("scenarios")
            .set_time(ms(sc.elapsed_ms))
            .set_assertions(sc.expectations.len());
        scenarios.add_test_case(case);
    }
    report.add_test_suite(scenarios);

    let mut ktap = TestSuite::new("kselftest");
    for k in &s.ktap {
        let status = match k.status {
            KtapStatus::Ok | KtapStatus::Xfail => TestCaseStatus::success(),
            KtapStatus::Skip => {
                let mut t = TestCaseStatus::skipped();
                t.set_message(k.directive.as_deref().unwrap_or("skipped"));
                t
            }
            KtapStatus::NotOk => {
                let mut t = TestCaseStatus::non_success(NonSuccessKind::Failure);
                t.set_message(format!("not ok {}", k.number));
                t
            }
        };
        let mut case = TestCase::new(k.name.as_str(), status);
        case.set_classname(k.binary.as_str());
        ktap.add_test_case(case);
    }
    report.add_test_suite(ktap);

    // Serialising an in-memory report only fails on a writer error.
    report.to_string().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::{Expectation, KtapLine, ScenarioResult, StageResult};
    use gasbench_events::run::Stage;

    fn parsed(x: &str) -> Report {
        Report::deserialize_from_str(x).unwrap_or_else(|e| panic!("{e}\n{x}"))
    }

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
                        ..Default::default()
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
        assert!(x.contains("name=\"bad&lt;one&gt;\""), "{x}");
        assert!(
            x.contains("step 3: errno: expected EINVAL, got &quot;ENXIO&quot; &amp; "),
            "{x}"
        );
        assert!(!x.contains('\u{1}'), "control characters are dropped: {x}");
        let r = parsed(&x);
        assert_eq!(r.tests, 3);
        assert_eq!(r.failures, 2);
        assert_eq!(r.errors, 0);
    }

    #[test]
    fn a_failed_build_is_an_error_not_an_empty_passing_suite() {
        let s = RunSummary {
            stages: vec![
                StageResult {
                    stage: Stage::Apply,
                    outcome: Some(Outcome::Cached),
                    detail: "12 applied".into(),
                    elapsed_ms: 40,
                },
                StageResult {
                    stage: Stage::Build,
                    outcome: Some(Outcome::Failed),
                    detail: "drivers/x.c:1: error: y".into(),
                    elapsed_ms: 90_000,
                },
            ],
            errors: vec!["the kernel stage failed: drivers/x.c:1: error: y".into()],
            passed: Some(false),
            ..Default::default()
        };
        let x = to_junit(&s);
        let r = parsed(&x);
        assert_eq!(r.errors, 2, "the stage and the stop: {x}");
        assert_eq!(r.failures, 0);
        let pipeline = &r.test_suites[0];
        assert_eq!(pipeline.name.as_str(), "pipeline");
        assert_eq!(pipeline.test_cases.len(), 3);
        assert!(x.contains("drivers/x.c:1: error: y"), "{x}");
        // No scenario ran: the suite is there, empty, beside the errors.
        assert_eq!(r.test_suites[1].test_cases.len(), 0);
    }
}
