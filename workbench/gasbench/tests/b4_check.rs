//! `gasbench b4-check` as b4 runs it: b4's own code (`b4.review.checks.
//! _run_external_cmd`, from the b4 package in the test venv) feeds it the
//! real postings of mkdirat2 and parses what it prints. The review it
//! answers from is the recorded reproduction of mkdirat2 (the review
//! crate's fixture), registered as `repro` registers one.

#[path = "../../gasbench-trace/tests/support/venv.rs"]
mod venv;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use gasbench_kbuild::BuildManifest;
use gasbench_kbuild::layout::KernelDir;
use gasbench_review::checks::{self, ReviewIndex};
use gasbench_review::report::ScenarioSource;
use gasbench_review::resolve::known_target;
use gasbench_review::{Facts, Review};
use gasbench_trace::RunSummary;
use serde_json::Value;

const GASBENCH: &str = env!("CARGO_BIN_EXE_gasbench");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> PathBuf {
    repo()
        .join("workbench/gasbench-review/tests/fixtures/mkdirat2-per-patch")
        .join(name)
}

/// The recorded review, built as `repro` builds it.
fn recorded_review(run_dir: &Path) -> Review {
    let kdir = KernelDir::open(&repo().join("kernel")).unwrap();
    let port = kdir.port().unwrap();
    let manifest: BuildManifest =
        serde_json::from_str(&std::fs::read_to_string(fixture("manifest.json")).unwrap()).unwrap();
    let (events, _) = gasbench_trace::log::read_all(&fixture("events.jsonl")).unwrap();
    let scenarios: Vec<ScenarioSource> = ["mkdirat2_kselftest.toml", "mkdirat2_flags.toml"]
        .iter()
        .map(|f| ScenarioSource {
            name: f.trim_end_matches(".toml").replace('_', "-"),
            file: format!("scenarios/{f}"),
            text: std::fs::read_to_string(repo().join("scenarios").join(f)).unwrap(),
        })
        .collect();
    let target = known_target(&kdir, "mkdirat2-v2", "known", "seed");
    let series = kdir.series("mkdirat2-v2").unwrap();
    let ps = port
        .1
        .series
        .iter()
        .find(|s| s.series == "mkdirat2-v2")
        .unwrap();
    let summary = RunSummary::from_events(&events);
    Review::build(&Facts {
        target: &target,
        series: &series,
        base: &kdir.base,
        port: Some(("kernel/port/v7.2.12", ps)),
        manifest: Some(&manifest),
        kernel_error: None,
        events: &events,
        summary: &summary,
        scenarios: &scenarios,
        per_patch: true,
        cross_arch: Some("arm"),
        scenarios_note: None,
        run_dir: Some(run_dir.display().to_string()),
        base_choice: None,
        more: &[],
    })
}

/// A cache with the review registered, and the posting's files.
fn cache_with_review() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let run_dir = cache.join("runs/1-repro-mkdirat2-v2");
    std::fs::create_dir_all(&run_dir).unwrap();
    let review = recorded_review(&run_dir);
    let json = run_dir.join("review.json");
    std::fs::write(&json, serde_json::to_string(&review).unwrap()).unwrap();
    // Registered under the Message-Ids only: patch-ids are tested apart.
    ReviewIndex::new(&cache.join("reviews"))
        .register(&review, &json, &[])
        .unwrap();
    (dir, cache)
}

fn posting(file: &str) -> PathBuf {
    repo().join("kernel/series/mkdirat2-v2").join(file)
}

/// What b4's own runner makes of `gasbench b4-check` on `message`.
fn through_b4(cache: &Path, message: &Path) -> Vec<Value> {
    let script = r#"
import email, email.policy, json, sys
import b4.review.checks as checks
msg = email.message_from_bytes(open(sys.argv[1], 'rb').read(), policy=email.policy.default)
cmd = [sys.argv[2], '--cache-dir', sys.argv[3], 'b4-check']
print(json.dumps(checks._run_external_cmd(cmd, msg, sys.argv[4])))
"#;
    let out = Command::new(venv::python())
        .args(["-c", script])
        .arg(message)
        .arg(GASBENCH)
        .arg(cache)
        .arg(repo())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Run it directly: (exit status, the JSON it printed).
fn direct(cache: &Path, stdin: &[u8]) -> (Option<i32>, Value) {
    use std::io::Write;
    let mut child = Command::new(GASBENCH)
        .arg("--cache-dir")
        .arg(cache)
        .arg("b4-check")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), v)
}

#[test]
fn b4_reads_the_answers_for_the_cover_letter_and_each_patch() {
    let (_dir, cache) = cache_with_review();
    let cover = through_b4(&cache, &posting("cover-letter.eml"));
    let p1 = through_b4(
        &cache,
        &posting("0001-vfs-syscalls-add-mkdirat2-that-returns-an-O_DIRECTOR.patch"),
    );
    let p2 = through_b4(
        &cache,
        &posting("0002-selftest-add-tests-for-mkdirat2.patch"),
    );
    if std::env::var_os("GASBENCH_PRINT").is_some() {
        println!(
            "{}",
            serde_json::to_string_pretty(&[&cover, &p1, &p2]).unwrap()
        );
    }
    for answer in [&cover, &p1, &p2] {
        assert_eq!(answer.len(), 1, "{answer:?}");
        assert_eq!(answer[0]["tool"], "gasbench");
    }
    // The series has a high finding: fail. Patch 1 carries the posting
    // defect (arm build): fail. Patch 2 only needed the port's context
    // refresh: warn.
    assert_eq!(cover[0]["status"], "fail", "{cover:?}");
    assert!(cover[0]["summary"].as_str().unwrap().contains("finding(s)"));
    assert!(cover[0]["url"].as_str().unwrap().ends_with("/review.md"));
    assert_eq!(p1[0]["status"], "fail", "{p1:?}");
    assert!(
        p1[0]["details"]
            .as_str()
            .unwrap()
            .contains("posting defect in 1/2")
    );
    assert_eq!(p2[0]["status"], "warn", "{p2:?}");
    assert!(
        p2[0]["summary"]
            .as_str()
            .unwrap()
            .starts_with("patch 2/2: ")
    );
}

#[test]
fn the_json_has_exactly_b4s_fields_and_the_exit_status_says_findings() {
    let (_dir, cache) = cache_with_review();
    let (code, v) = direct(&cache, &std::fs::read(posting("cover-letter.eml")).unwrap());
    assert_eq!(code, Some(1));
    let entry = v.as_array().unwrap()[0].as_object().unwrap();
    let mut keys: Vec<&str> = entry.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["details", "status", "summary", "tool", "url"]);
    assert!(entry.values().all(Value::is_string));
}

#[test]
fn a_resent_patch_is_found_by_its_patch_id_and_an_unknown_one_is_not_reviewed() {
    let (_dir, cache) = cache_with_review();
    let file = posting("0002-selftest-add-tests-for-mkdirat2.patch");
    let text = std::fs::read_to_string(&file).unwrap();
    // The same diff under a new Message-Id: not found until patch-ids
    // are registered.
    let resent = text.replace("Message-Id: <", "Message-Id: <resent.");
    assert_ne!(resent, text);
    let (code, v) = direct(&cache, resent.as_bytes());
    assert_eq!(code, Some(0));
    assert_eq!(v[0]["status"], "warn");
    assert!(v[0]["summary"].as_str().unwrap().contains("not reviewed"));
    let review_json = cache.join("runs/1-repro-mkdirat2-v2/review.json");
    let review: Review =
        serde_json::from_str(&std::fs::read_to_string(&review_json).unwrap()).unwrap();
    let parts = gasbench_series::patch::PatchBody::split(&text).unwrap();
    ReviewIndex::new(&cache.join("reviews"))
        .register(
            &review,
            &review_json,
            &[(2, checks::patch_id(&text[parts.diff]))],
        )
        .unwrap();
    let (_, v) = direct(&cache, resent.as_bytes());
    assert!(
        v[0]["summary"].as_str().unwrap().starts_with("patch 2/2: "),
        "{v}"
    );
}

#[test]
fn what_is_not_a_message_is_bad_input_still_answered_in_json() {
    let dir = tempfile::tempdir().unwrap();
    let (code, v) = direct(dir.path(), b"\x00\x01 not mail");
    assert_eq!(code, Some(2));
    assert_eq!(v[0]["status"], "fail");
}
