//! A KCIDB v5.3 submission (KernelCI's common report database) for a run:
//! one checkout (the base and the series applied on it), one build per
//! profile and one per patch of a per-patch check, one test per scenario,
//! per expectation (`gasbench.<scenario>.step<N>`) and per kselftest
//! result.
//!
//! The statuses keep "the series is broken" apart from "the tool broke":
//! FAIL is a verdict on the kernel (an expectation that did not hold, a
//! build the series broke); ERROR is a test the tool could not finish
//! (the run stopped in it); MISS a build the run never reached; PASS and
//! SKIP are what they say. Identifiers are derived from what was tested,
//! never from time, so shards of one matrix merge into one submission.
//!
//! The test tier validates the output with the official `kcidb-io`
//! package (`Version 5.3`).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use gasbench_abi::protocol::KtapStatus;
use gasbench_events::run::{Outcome, Stage};

use crate::summary::{RunSummary, ScenarioResult};

/// Who submits.
pub const ORIGIN: &str = "gasbench";

/// What was checked out: the base and the patches on it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkout {
    /// `7.2.12 (linux-source-7.2 7.2.12-1~bpo13+1)`, `git <path> <rev>`.
    pub tree_name: String,
    /// The base commit, when it is a real git commit (40 hex digits).
    pub git_commit_hash: Option<String>,
    /// `v7.2.12`.
    pub git_commit_name: Option<String>,
    /// The patches as applied, in order.
    pub patches: Vec<PatchFile>,
    /// The Message-Id of the cover letter (or the first patch).
    pub message_id: Option<String>,
    /// The series' subject.
    pub comment: Option<String>,
}

/// One patch of the patchset.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchFile {
    /// `0001-vfs-add-mkdirat2.patch`: a file name, no directories.
    pub name: String,
    /// Where it can be downloaded: the archive's raw message, or a
    /// `file://` path on this machine.
    pub url: String,
    /// sha256 of the patch file, hex.
    pub sha256: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Checkout {
    /// KCIDB's patchset hash: the sha256 of the patches' sha256s, each
    /// followed by a newline (`sha256sum *.patch | cut -c-64 | sha256sum`).
    pub fn patchset_hash(&self) -> String {
        if self.patches.is_empty() {
            return String::new();
        }
        let mut h = Sha256::new();
        for p in &self.patches {
            h.update(p.sha256.as_bytes());
            h.update(b"\n");
        }
        hex(&h.finalize())
    }

    /// `gasbench:<hash of what was checked out>`.
    pub fn id(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.tree_name.as_bytes());
        h.update(self.git_commit_hash.as_deref().unwrap_or("").as_bytes());
        h.update(self.patchset_hash().as_bytes());
        format!("{ORIGIN}:{}", &hex(&h.finalize())[..24])
    }
}

/// A path component KCIDB accepts (`[a-zA-Z0-9_-]+`).
fn component(s: &str) -> String {
    let c: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    if c.is_empty() { "_".into() } else { c }
}

/// An id suffix: the same characters, so ids stay readable.
fn id_part(s: &str) -> String {
    component(s)
}

/// Text KCIDB stores: no NUL, bounded.
fn text(s: &str, max: usize) -> String {
    s.chars().filter(|&c| c != '\0').take(max).collect()
}

fn scenario_status(sc: &ScenarioResult) -> &'static str {
    match sc.passed {
        Some(true) => "PASS",
        Some(false) if sc.failed_expectations().next().is_some() => "FAIL",
        // Ended without a failed expectation of its own: the run stopped
        // it (a dead guest or device server): the tool's, no verdict.
        Some(false) => "ERROR",
        None => "ERROR",
    }
}

/// The submission for `summary` on `checkout`, built for `profile`
/// (today every run has the one profile, `default`).
pub fn to_kcidb(summary: &RunSummary, checkout: &Checkout, profile: &str) -> Value {
    let checkout_id = checkout.id();
    let build_id = format!("{checkout_id}-{}", id_part(profile));
    let stage = |s: Stage| summary.stages.iter().find(|x| x.stage == s);

    // The checkout.
    let mut co = json!({
        "id": checkout_id,
        "origin": ORIGIN,
        "tree_name": text(&checkout.tree_name, 200),
        "patchset_hash": checkout.patchset_hash(),
        "patchset_files": checkout.patches.iter().map(|p| json!({
            "name": component_file(&p.name),
            "url": p.url,
        })).collect::<Vec<_>>(),
    });
    if let Some(h) = checkout
        .git_commit_hash
        .as_deref()
        .filter(|h| h.len() == 40 && h.chars().all(|c| c.is_ascii_hexdigit()))
    {
        co["git_commit_hash"] = json!(h.to_ascii_lowercase());
    }
    if let Some(n) = &checkout.git_commit_name {
        co["git_commit_name"] = json!(text(n, 200));
    }
    if let Some(m) = &checkout.message_id {
        co["message_id"] = json!(text(m, 400));
    }
    if let Some(c) = &checkout.comment {
        co["comment"] = json!(text(c, 400));
    }
    // The apply stage says whether the checkout (base + patches) worked.
    if let Some(a) = stage(Stage::Apply).and_then(|a| a.outcome) {
        co["valid"] = json!(a != Outcome::Failed);
    }

    // The builds: the profile's, then one per patch.
    let build = stage(Stage::Build);
    let build_status = match build.and_then(|b| b.outcome) {
        Some(Outcome::Ok | Outcome::Cached) => "PASS",
        Some(Outcome::Skipped) => "SKIP",
        Some(Outcome::Failed) => "FAIL",
        None if build.is_some() => "ERROR",
        None => "MISS",
    };
    let mut b = json!({
        "id": build_id,
        "origin": ORIGIN,
        "checkout_id": checkout_id,
        "architecture": "x86_64",
        "config_name": text(profile, 100),
        "status": build_status,
    });
    if let Some(st) = build {
        b["duration"] = json!(st.elapsed_ms as f64 / 1000.0);
        if build_status == "FAIL" {
            b["log_excerpt"] = json!(text(&st.detail, 16_000));
        }
    }
    let mut builds = vec![b];
    for p in &summary.patch_builds {
        let mut pb = json!({
            "id": format!("{build_id}-{}-patch{}", id_part(&p.series), p.index),
            "origin": ORIGIN,
            "checkout_id": checkout_id,
            "architecture": "x86_64",
            "config_name": text(profile, 100),
            "comment": text(&format!("after patch {}: {}", p.index, p.subject), 400),
            "status": if p.builds { "PASS" } else { "FAIL" },
        });
        if let Some(e) = &p.first_error {
            pb["log_excerpt"] = json!(text(e, 16_000));
        }
        builds.push(pb);
    }

    // The tests, on the profile's build.
    let mut tests = Vec::new();
    for sc in &summary.scenarios {
        let name = component(&sc.name);
        let sid = format!("{build_id}-{name}");
        let mut t = json!({
            "id": sid,
            "origin": ORIGIN,
            "build_id": build_id,
            "path": format!("gasbench.{name}"),
            "status": scenario_status(sc),
            "duration": sc.elapsed_ms as f64 / 1000.0,
        });
        if sc.passed.is_none() {
            t["comment"] = json!(text(
                &format!(
                    "did not finish{}",
                    sc.last_step
                        .as_deref()
                        .map(|s| format!(": the run stopped in step {s}"))
                        .unwrap_or_default()
                ),
                400
            ));
        }
        tests.push(t);
        // One per expectation; a step with several gets .2, .3 … after
        // the first.
        let mut seen: std::collections::BTreeMap<u32, u32> = Default::default();
        for (i, e) in sc.expectations.iter().enumerate() {
            let n = seen.entry(e.step).or_default();
            *n += 1;
            let path = if *n == 1 {
                format!("gasbench.{name}.step{}", e.step)
            } else {
                format!("gasbench.{name}.step{}.{n}", e.step)
            };
            let mut t = json!({
                "id": format!("{sid}-{}", i + 1),
                "origin": ORIGIN,
                "build_id": build_id,
                "path": path,
                "status": if e.held { "PASS" } else { "FAIL" },
                "comment": text(&e.title(), 400),
            });
            if !e.held {
                t["log_excerpt"] = json!(text(
                    &format!("expected {}\nactual {}", e.expected, e.actual),
                    16_000
                ));
            }
            tests.push(t);
        }
    }
    for (i, k) in summary.ktap.iter().enumerate() {
        tests.push(json!({
            "id": format!("{build_id}-kselftest-{}-{}", id_part(&k.binary), i + 1),
            "origin": ORIGIN,
            "build_id": build_id,
            "path": format!("gasbench.kselftest.{}.{}", component(&k.binary), component(&k.name)),
            "status": match k.status {
                KtapStatus::Ok | KtapStatus::Xfail => "PASS",
                KtapStatus::NotOk => "FAIL",
                KtapStatus::Skip => "SKIP",
            },
        }));
    }
    json!({
        "version": { "major": 5, "minor": 3 },
        "checkouts": [co],
        "builds": builds,
        "tests": tests,
    })
}

/// A resource name: a file name, no `/` or NUL.
fn component_file(s: &str) -> String {
    let c: String = s.chars().filter(|&c| c != '/' && c != '\0').collect();
    if c.is_empty() { "patch".into() } else { c }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::{Expectation, PatchBuildResult, StageResult};

    pub(crate) fn sample() -> (RunSummary, Checkout) {
        let exp = |step, held| Expectation {
            step,
            what: format!("line {step}: x"),
            expected: "EINVAL".into(),
            actual: "ENXIO".into(),
            held,
            ..Default::default()
        };
        let s = RunSummary {
            stages: vec![
                StageResult {
                    stage: Stage::Apply,
                    outcome: Some(Outcome::Ok),
                    detail: String::new(),
                    elapsed_ms: 1,
                },
                StageResult {
                    stage: Stage::Build,
                    outcome: Some(Outcome::Cached),
                    detail: String::new(),
                    elapsed_ms: 300,
                },
            ],
            scenarios: vec![
                ScenarioResult {
                    name: "goldfish-errors".into(),
                    passed: Some(false),
                    expectations: vec![exp(1, true), exp(1, false), exp(2, true)],
                    ..Default::default()
                },
                ScenarioResult {
                    name: "idle scenario".into(),
                    passed: None,
                    ..Default::default()
                },
            ],
            patch_builds: vec![PatchBuildResult {
                series: "mkdirat2-v2".into(),
                index: 1,
                subject: "vfs: x".into(),
                builds: false,
                first_error: Some("fs/namei.c:1: error".into()),
            }],
            ..Default::default()
        };
        let c = Checkout {
            tree_name: "7.2.12".into(),
            git_commit_hash: None,
            git_commit_name: Some("v7.2.12".into()),
            patches: vec![PatchFile {
                name: "0001-vfs.patch".into(),
                url: "https://lore.kernel.org/all/a@b/raw".into(),
                sha256: "0".repeat(64),
            }],
            message_id: Some("a@b".into()),
            comment: Some("[PATCH] vfs: x".into()),
        };
        (s, c)
    }

    #[test]
    fn statuses_paths_and_ids() {
        let (s, c) = sample();
        let v = to_kcidb(&s, &c, "default");
        let tests = v["tests"].as_array().unwrap();
        let paths: Vec<&str> = tests.iter().map(|t| t["path"].as_str().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "gasbench.goldfish-errors",
                "gasbench.goldfish-errors.step1",
                "gasbench.goldfish-errors.step1.2",
                "gasbench.goldfish-errors.step2",
                "gasbench.idle_scenario",
            ]
        );
        let statuses: Vec<&str> = tests
            .iter()
            .map(|t| t["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["FAIL", "PASS", "FAIL", "PASS", "ERROR"]);
        assert_eq!(v["builds"][0]["status"], "PASS");
        assert_eq!(v["builds"][1]["status"], "FAIL");
        // Deterministic: the same run gives the same ids.
        assert_eq!(v, to_kcidb(&s, &c, "default"));
        let ids: std::collections::BTreeSet<&str> =
            tests.iter().map(|t| t["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), tests.len());
        // sha256("000…0\n")'s hash of hashes.
        assert_eq!(c.patchset_hash().len(), 64);
    }
}
