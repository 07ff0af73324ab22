//! Which detectors were last shown to fire on this machine, per kernel
//! profile, kept in the cache's state directory so that `gasbench doctor`
//! and every report can say which ones are proven here and which are not.
//!
//! A run updates its profile's record only when it ran a proof (a
//! scenario with `expect.report` steps, such as scenarios/detectors_*.toml):
//! a debug run of other scenarios proves nothing either way.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::summary::RunSummary;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofRecord {
    pub profile: String,
    /// What the profile arms.
    pub detectors: Vec<String>,
    /// Shown to fire, report parsed and attributed to its step.
    pub proven: Vec<String>,
    /// Armed, provoked or not, but not shown to fire.
    pub not_proven: Vec<String>,
    pub run_dir: Option<String>,
    /// Seconds since the epoch.
    pub when: u64,
}

fn path_for(state: &Path, profile: &str) -> PathBuf {
    state.join(format!("detectors-{profile}.json"))
}

/// The record a run makes, if it ran a proof.
pub fn from_run(s: &RunSummary, run_dir: Option<&Path>, when: u64) -> Option<ProofRecord> {
    let p = s.profile.as_ref()?;
    let ran_proof = s
        .scenarios
        .iter()
        .flat_map(|x| &x.expectations)
        .any(|e| e.title().ends_with(": report"));
    if !ran_proof || p.detectors.is_empty() {
        return None;
    }
    let proven: Vec<String> = p
        .detectors
        .iter()
        .filter(|d| s.proven.iter().any(|x| &x.detector == *d))
        .cloned()
        .collect();
    let not_proven = p
        .detectors
        .iter()
        .filter(|d| *d != "fault-injection" && !proven.contains(d))
        .cloned()
        .collect();
    Some(ProofRecord {
        profile: p.name.clone(),
        detectors: p.detectors.clone(),
        proven,
        not_proven,
        run_dir: run_dir.map(|d| d.display().to_string()),
        when,
    })
}

/// Keep `r` as its profile's latest record.
pub fn save(state: &Path, r: &ProofRecord) -> std::io::Result<()> {
    std::fs::create_dir_all(state)?;
    let path = path_for(state, &r.profile);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(r).unwrap_or_default())?;
    std::fs::rename(tmp, path)
}

/// Every profile's latest record, by profile name.
pub fn load_all(state: &Path) -> Vec<ProofRecord> {
    let Ok(dir) = std::fs::read_dir(state) else {
        return Vec::new();
    };
    let mut out: Vec<ProofRecord> = dir
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("detectors-") && n.ends_with(".json")
        })
        .filter_map(|e| {
            let text = std::fs::read(e.path()).ok()?;
            serde_json::from_slice(&text).ok()
        })
        .collect();
    out.sort_by(|a, b| a.profile.cmp(&b.profile));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::{Expectation, Proven, ScenarioResult};
    use gasbench_events::run::ProfileChoice;

    fn summary(with_proof: bool) -> RunSummary {
        RunSummary {
            profile: Some(ProfileChoice {
                name: "debug".into(),
                detectors: vec!["kasan".into(), "lockdep".into(), "fault-injection".into()],
                about: String::new(),
            }),
            scenarios: vec![ScenarioResult {
                name: "detectors-debug".into(),
                expectations: vec![Expectation {
                    step: 0,
                    what: if with_proof {
                        "line 14: KASAN: report".into()
                    } else {
                        "line 14: open: ok".into()
                    },
                    held: true,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            proven: vec![Proven {
                detector: "kasan".into(),
                scenario: "detectors-debug".into(),
                step: 0,
                report: 1,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_proof_run_is_recorded_and_read_back() {
        assert_eq!(from_run(&summary(false), None, 1), None);
        let r = from_run(&summary(true), Some(Path::new("/runs/1")), 7).unwrap();
        assert_eq!(r.proven, ["kasan"]);
        assert_eq!(r.not_proven, ["lockdep"]);
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &r).unwrap();
        std::fs::write(dir.path().join("detectors-bad.json"), "{").unwrap();
        assert_eq!(load_all(dir.path()), vec![r]);
        assert!(load_all(&dir.path().join("missing")).is_empty());
    }
}
