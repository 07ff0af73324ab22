//! `gasbench merge` joins the shards of one run into what the unsharded
//! run says. The run is a real recorded one (the TUI's fixture: five
//! scenarios of the default suite on the real kernel); its events are
//! split into the three shards `--shard K/3` gives the default suite
//! (cell i of the suite in file order goes to shard i % 3 + 1), each
//! folded into its own run directory as a shard's machine would, and the
//! merge is compared with the fold of the whole.

use std::path::Path;
use std::process::Command;

use gasbench_events::run::RunEvent;
use gasbench_events::{Event, EventBody};
use gasbench_trace::RunSummary;

const GASBENCH: &str = env!("CARGO_BIN_EXE_gasbench");

fn repo() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The default suite's scenario names in file order.
fn suite() -> Vec<String> {
    let mut files: Vec<_> = std::fs::read_dir(repo().join("scenarios"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| {
            // `name = "…"` under `[scenario]` (a TOML value type cannot
            // hold every number the scenarios use, so no full parse).
            let text = std::fs::read_to_string(f).unwrap();
            let after = text.split("[scenario]").nth(1).unwrap();
            let line = after.lines().find(|l| l.starts_with("name")).unwrap();
            line.split('"').nth(1).unwrap().to_string()
        })
        .collect()
}

#[test]
fn three_shards_merged_say_what_the_whole_run_says() {
    let (events, _) = gasbench_trace::log::read_all(
        &repo().join("workbench/gasbench-tui/tests/fixtures/recorded-run/events.jsonl"),
    )
    .unwrap();
    let whole = RunSummary::from_events(&events);
    assert!(whole.scenarios.len() >= 5);
    let suite = suite();
    let shard_of = |name: &str| suite.iter().position(|s| s == name).unwrap() % 3;

    // Each shard sees the run's frame (stages, accel, the agent's Ready)
    // and its own scenarios' events.
    let mut parts: Vec<Vec<Event>> = vec![Vec::new(); 3];
    let mut current: Option<usize> = None;
    for e in &events {
        match &e.body {
            EventBody::Run(RunEvent::ScenarioBegin { scenario, .. }) => {
                current = Some(shard_of(scenario));
            }
            EventBody::Run(RunEvent::Finished { .. }) => continue,
            _ => {}
        }
        match current {
            Some(k) => parts[k].push(e.clone()),
            None => parts.iter_mut().for_each(|p| p.push(e.clone())),
        }
        if let EventBody::Run(RunEvent::ScenarioEnd { .. }) = &e.body {
            current = None;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let mut dirs = Vec::new();
    for (k, mut evs) in parts.into_iter().enumerate() {
        let mut s = RunSummary::from_events(&evs);
        let passed = s.scenarios.iter().all(|x| x.passed == Some(true));
        evs.push(Event {
            seq: u64::MAX,
            t_us: whole.elapsed_ms * 1000,
            body: RunEvent::Finished {
                passed,
                elapsed_ms: whole.elapsed_ms,
            }
            .into(),
        });
        s = RunSummary::from_events(&evs);
        let d = dir.path().join(format!("shard-{}", k + 1));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("results.json"), serde_json::to_string(&s).unwrap()).unwrap();
        dirs.push(d);
    }

    let out = Command::new(GASBENCH)
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .arg("merge")
        .args(&dirs)
        .arg("--runs")
        .arg(dir.path().join("runs"))
        .arg("--json")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let merged: RunSummary =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    // The same verdicts, scenario by scenario, and the same expectations.
    let verdicts = |s: &RunSummary| {
        let mut v: Vec<(String, Option<bool>, usize, usize)> = s
            .scenarios
            .iter()
            .map(|x| {
                (
                    x.name.clone(),
                    x.passed,
                    x.expectations.len(),
                    x.failed_expectations().count(),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(verdicts(&merged), verdicts(&whole));
    assert_eq!(merged.ktap, whole.ktap);
    assert_eq!(merged.verdict(), whole.verdict());
    // The exit status is the unsharded run's.
    assert_eq!(
        out.status.code(),
        Some(i32::from(whole.verdict().exit_status())),
        "{stderr}"
    );
    // And the joined directory has every export.
    let joined = std::fs::read_dir(dir.path().join("runs"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with("-merge"))
        .unwrap()
        .path();
    for f in ["results.json", "junit.xml", "results.ktap", "kcidb.json"] {
        assert!(joined.join(f).is_file(), "{f}");
    }
}

#[test]
fn a_directory_that_is_not_a_finished_run_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(GASBENCH)
        .arg("--cache-dir")
        .arg(dir.path())
        .arg("merge")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a finished run directory"));
}
