//! `gasbench explore` end to end, bounded: the explorer's batches run on
//! the patched kernel's guest, the report says how many sequences and
//! calls ran, the tmpfs row of the mkdirat2 matrix has a verdict for every
//! fixed case, and every finding's reproducer is an ordinary scenario
//! file that `gasbench run` takes; a confirmed defect's reproducer fails
//! when run on its own.

#[path = "support/processes.rs"]
mod processes;

use std::path::Path;
use std::process::{Command, Stdio};

use processes::{Guarded, gasbench_binary};
use serde_json::Value;

fn gasbench(args: &[&str], runs: &Path) -> (Option<i32>, String, String) {
    let bin = gasbench_binary();
    let mut cmd = Command::new(&bin);
    cmd.args(args)
        .arg("--runs")
        .arg(runs)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Guarded::spawn("gasbench", &mut cmd);
    let out = child
        .child
        .take()
        .unwrap()
        .wait_with_output()
        .expect("gasbench");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bounded_exploration_reports_what_ran_and_writes_reproducers_that_run() {
    let runs = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = gasbench(
        &[
            "explore",
            "--json",
            "--seed",
            "1",
            "--calls",
            "150",
            "--fs",
            "tmpfs",
            "--fs-calls",
            "80",
        ],
        runs.path(),
    );
    assert!(
        matches!(code, Some(0 | 1)),
        "exit {code:?}; stderr:\n{stderr}"
    );
    let reports: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}); stderr:\n{stderr}"));
    let reports = reports.as_array().unwrap();
    let domains: Vec<&str> = reports
        .iter()
        .map(|r| r["domain"].as_str().unwrap())
        .collect();
    assert_eq!(domains, ["goldfish", "mkdirat2-tmpfs"], "{stderr}");
    for r in reports {
        let s = &r["stats"];
        assert!(s["sequences"].as_u64().unwrap() > 0, "{r:#}");
        assert!(s["calls"].as_u64().unwrap() > 0, "{r:#}");
        assert!(s["stopped_early"].is_null(), "{r:#}");
        assert_eq!(r["seed"], 1);
    }
    let cases = reports[1]["stats"]["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    for c in cases {
        let status = c["status"].as_str().unwrap();
        assert!(
            status != "not run" && status != "incomplete",
            "case {c}: {status}"
        );
    }
    // The run directory has the report and every reproducer.
    let run_dir = std::fs::read_dir(runs.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("explore.json").is_file())
        .expect("a run directory with explore.json");
    assert!(run_dir.join("explore.md").is_file());
    let mut confirmed_defect = None;
    for r in reports {
        for f in r["findings"].as_array().unwrap() {
            let file = run_dir
                .join("reproducers")
                .join(f["file"].as_str().unwrap());
            let text = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert_eq!(text, f["reproducer"].as_str().unwrap());
            if f["kind"] == "defect" && f["confirmed"] == true && confirmed_defect.is_none() {
                confirmed_defect = Some(file);
            }
        }
    }
    // A confirmed defect's reproducer is an ordinary scenario that fails.
    if let Some(file) = confirmed_defect {
        let again = tempfile::tempdir().unwrap();
        let (code, _, stderr) = gasbench(&["run", file.to_str().unwrap()], again.path());
        assert_eq!(code, Some(1), "{}: {stderr}", file.display());
    }
}
