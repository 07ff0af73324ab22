//! `gasbench repro` end to end on the seed digest's mkdirat2 series: the
//! base + mkdirat2 kernel (built by the kernel stage; cached after the
//! first time), a boot, the scenarios that concern mkdirat2, and the review.
//! What the review must say about RFC v2 is asserted: the per-patch table,
//! the posting defect the port fixes (the missing semicolon), and the
//! kselftest that does not clean up after itself.

#[path = "support/processes.rs"]
mod processes;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use processes::{Guarded, gasbench_binary, wait_deadline};
use serde_json::Value;

fn seed() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../kernel/sources/000_cc8941013480fefb.txt")
}

/// No run directory and no `latest` link in `runs` (the `repro`
/// helper's own stdout and stderr files may be there).
fn assert_nothing_started(runs: &Path) {
    let left: Vec<_> = std::fs::read_dir(runs)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir() || e.file_name() == "latest")
        .collect();
    assert!(left.is_empty(), "nothing should have started: {left:?}");
}

/// `gasbench repro ARGS --runs RUNS`: (exit code, stdout, stderr).
fn repro(args: &[&str], runs: &Path, limit: Duration) -> (Option<i32>, String, String) {
    let out_path = runs.join("stdout");
    let err_path = runs.join("stderr");
    let mut cmd = Command::new(gasbench_binary());
    cmd.arg("repro").args(args);
    // These tests are about the review of one kernel; the debug profile
    // (repro's second by default) has its own test below.
    if !args.contains(&"--profile") {
        cmd.args(["--profile", "default"]);
    }
    // The explorer (bounded by minutes in repro) has a test of its own
    // (tests/explore.rs); the second architecture of the per-patch check
    // (a cross toolchain compiling each patch, minutes cold) is chosen by
    // a unit test and its report by the review's fixture tests. Here they
    // would only make the tier longer.
    // Flags only: a path may contain these words (a checkout in
    // `wt-explore/` did, and the explorer ran in every repro test).
    if !args
        .iter()
        .any(|a| a.starts_with("--explore") || *a == "--no-explore")
    {
        cmd.arg("--no-explore");
    }
    if !args.iter().any(|a| a.ends_with("cross-arch")) {
        cmd.arg("--no-cross-arch");
    }
    cmd.arg("--runs")
        .arg(runs)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap());
    let mut child = Guarded::spawn("gasbench repro", &mut cmd);
    let status = wait_deadline(child.child.as_mut().unwrap(), limit);
    child.child = None;
    let stdout = std::fs::read_to_string(&out_path).unwrap();
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    let status = status.unwrap_or_else(|| {
        panic!(
            "gasbench repro took over {} s; stderr:\n{stderr}",
            limit.as_secs()
        )
    });
    (status.code(), stdout, stderr)
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_mkdirat2_series_from_the_digest_is_reviewed_with_its_findings() {
    let runs = tempfile::tempdir().unwrap();
    let seed = seed();
    let started = Instant::now();
    // A cold base + mkdirat2 build is minutes (more on a loaded machine);
    // cached, the whole review takes well under a minute.
    let (code, stdout, stderr) = repro(
        &[
            seed.to_str().unwrap(),
            "--series",
            "mkdirat2",
            "--no-per-patch",
            "--json",
        ],
        runs.path(),
        Duration::from_secs(40 * 60),
    );
    eprintln!(
        "gasbench repro took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // RFC v2 has findings: exit 1.
    assert_eq!(code, Some(1), "stderr:\n{stderr}\nstdout:\n{stdout}");
    let r: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("no review JSON ({e}); stderr:\n{stderr}"));

    // The series, resolved from the digest as the known one.
    let s = &r["series"];
    assert_eq!(s["name"], "mkdirat2-v2");
    assert_eq!(s["version"], 2);
    assert_eq!(s["author"], "Jori Koolstra <jkoolstra@xs4all.nl>");
    assert_eq!(s["known"], true);
    assert_eq!(
        s["cover"]["message_id"],
        "20260412135434.3095416-1-jkoolstra@xs4all.nl"
    );
    assert_eq!(s["patches"].as_array().unwrap().len(), 2);
    assert!(strs(&s["lists"]).contains(&"linux-fsdevel".to_string()));
    assert_eq!(r["base"]["release"], "7.2.12");
    assert!(
        r["base"]["kernel_release"]
            .as_str()
            .unwrap()
            .contains("gasbench")
    );

    // The per-patch table: 1/2 applies; 2/2 does not (7.2.12's Makefile
    // moved), the port's replacement and fixup do.
    let rows: Vec<(String, Option<u64>, String)> = r["patches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["role"].as_str().unwrap().to_string(),
                p["posted_index"].as_u64(),
                p["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("posted".to_string(), Some(1), "applied".to_string()),
            ("posted".to_string(), Some(2), "failed".to_string()),
            ("replacement".to_string(), Some(2), "applied".to_string()),
            ("fixup".to_string(), None, "applied".to_string()),
        ],
        "{:#}",
        r["patches"]
    );
    let two = &r["patches"][1];
    assert!(
        strs(&two["hunks"]).iter().any(|h| h
            .starts_with("tools/testing/selftests/filesystems/Makefile hunk 1")
            && h.ends_with("rejected")),
        "{two:#}"
    );
    assert!(strs(&r["patches"][0]["files"]).contains(&"include/linux/syscalls.h".to_string()));
    // --no-per-patch: no per-patch builds, but the whole tree built.
    assert!(
        r["patches"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["build"].is_null())
    );
    assert_eq!(r["build"]["per_patch"], false);
    assert_eq!(r["build"]["tree_builds"], true, "{:#}", r["build"]);

    // The fixes the port needed, with their kind and why.
    let fixes = r["port_fixes"].as_array().unwrap();
    let defect = fixes
        .iter()
        .find(|f| f["kind"] == "posting-defect")
        .unwrap_or_else(|| panic!("no posting defect in {fixes:#?}"));
    assert!(
        defect["why"]
            .as_str()
            .unwrap()
            .contains("lacks its semicolon")
    );
    assert_eq!(defect["fixes"], serde_json::json!([1]));
    assert!(
        fixes
            .iter()
            .any(|f| f["kind"] == "base-drift" && f["role"] == "replacement")
    );

    // Only the scenarios that concern mkdirat2 ran; the kselftest's cleanup
    // is the one that fails, at its line, expected vs actual.
    let names: Vec<&str> = r["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(!names.is_empty());
    assert!(
        names.iter().all(|n| n.starts_with("mkdirat2-")),
        "{names:?}"
    );
    assert!(names.contains(&"mkdirat2-kselftest"), "{names:?}");
    let ks = r["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "mkdirat2-kselftest")
        .unwrap();
    assert_eq!(ks["passed"], false);
    let f = &ks["failures"][0];
    assert!(
        f["location"]
            .as_str()
            .unwrap()
            .starts_with("scenarios/mkdirat2_kselftest.toml:"),
        "{f:#}"
    );
    assert!(
        f["what"]
            .as_str()
            .unwrap()
            .contains("cleaned up after itself")
    );
    assert!(
        f["actual"].as_str().unwrap().contains("mkdirat2_test."),
        "{f:#}"
    );
    assert!(
        f["why"].as_str().unwrap().contains("without a semicolon"),
        "{f:#}"
    );
    let k = &r["kselftest"][0];
    assert_eq!(k["binary"], "mkdirat_fd_test");
    assert_eq!((k["ok"].as_u64(), k["not_ok"].as_u64()), (Some(7), Some(0)));
    // A kernel that crashed says how: its parsed reports (decoded stacks,
    // the step they were attributed to) are in the review's detectors.
    assert!(
        r["kernel_log"].as_array().unwrap().is_empty(),
        "{:#}\n{:#}",
        r["kernel_log"],
        r["detectors"]
    );

    // The findings, most severe first: the semicolon (building), the
    // cleanup (running), the patch that does not apply.
    let findings = r["findings"].as_array().unwrap();
    let order = ["critical", "high", "medium", "low", "info"];
    let ranks: Vec<usize> = findings
        .iter()
        .map(|f| order.iter().position(|o| f["severity"] == *o).unwrap())
        .collect();
    assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "{findings:#?}");
    let semicolon = findings
        .iter()
        .find(|f| {
            f["detail"]
                .as_str()
                .unwrap_or("")
                .contains("lacks its semicolon")
        })
        .unwrap_or_else(|| panic!("{findings:#?}"));
    assert_eq!(semicolon["severity"], "high");
    // checkpatch, run on each posted patch from the base's scripts: RFC v2
    // 1/2 opens a function's brace on its definition line (fs/namei.c).
    let checkpatch = findings
        .iter()
        .find(|f| {
            let t = f["title"].as_str().unwrap();
            t.contains("shown by scripts/checkpatch.pl") && t.starts_with("1/2 ")
        })
        .unwrap_or_else(|| panic!("no checkpatch finding for 1/2: {findings:#?}"));
    assert_eq!(checkpatch["severity"], "medium", "{checkpatch:#}");
    assert!(
        checkpatch["title"].as_str().unwrap().contains("OPEN_BRACE"),
        "{checkpatch:#}"
    );
    assert!(
        checkpatch["location"]
            .as_str()
            .is_some_and(|l| l.starts_with("fs/namei.c:")),
        "{checkpatch:#}"
    );
    let cleanup = findings
        .iter()
        .find(|f| {
            f["title"]
                .as_str()
                .unwrap()
                .contains("cleaned up after itself")
        })
        .unwrap_or_else(|| panic!("{findings:#?}"));
    assert!(
        cleanup["location"]
            .as_str()
            .unwrap()
            .starts_with("scenarios/mkdirat2_kselftest.toml:")
    );
    assert!(
        findings
            .iter()
            .any(|f| f["severity"] == "low" && f["title"].as_str().unwrap().contains("2/2"))
    );
    assert_eq!(r["exit_code"], 1);

    // review.md and review.json are in the run directory, with the same facts.
    let dir = PathBuf::from(r["run"]["run_dir"].as_str().unwrap());
    assert!(dir.starts_with(runs.path()), "{}", dir.display());
    let on_disk: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("review.json")).unwrap()).unwrap();
    assert_eq!(on_disk, r);
    let md = std::fs::read_to_string(dir.join("review.md")).unwrap();
    for needle in [
        "# Review: [RFC PATCH v2] vfs: syscalls: add mkdirat2() that returns an O_DIRECTORY fd",
        "| 1 | 1/2 ",
        "| **failed** |",
        "| 3 | port: replacement 2/2 ",
        "**posting-defect** fixup for 1/2",
        "lacks its semicolon",
        "| mkdirat2-kselftest | scenarios/mkdirat2_kselftest.toml | **FAIL** |",
        "- mkdirat_fd_test: 7 ok, 0 not ok, 0 skipped",
        "## Findings",
    ] {
        assert!(md.contains(needle), "review.md lacks {needle:?}:\n{md}");
    }
    assert!(dir.join("events.jsonl").is_file());
    assert!(dir.join("results.json").is_file());
}

/// A Message-Id gasbench does not know is fetched from the archive; with
/// no network that is the environment failing (exit 3), and the message
/// says how to get the mbox by other means.
#[test]
fn a_message_id_not_known_here_without_a_network_exits_3_and_says_how_to_get_the_mbox() {
    let runs = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = repro(
        &["<20990101000000.1-1-nobody@example.org>"],
        runs.path(),
        Duration::from_secs(120),
    );
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("cannot reach"), "{stderr}");
    assert!(stderr.contains("no network"), "{stderr}");
    assert!(stderr.contains("b4 am"), "{stderr}");
    assert_nothing_started(runs.path());
}

/// A kernel directory whose known series lost a patch file is bad input:
/// exit 2, the file named, no run directory made.
#[test]
fn a_kernel_directory_missing_a_patch_is_bad_input_and_leaves_nothing() {
    let runs = tempfile::tempdir().unwrap();
    let kdir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../kernel");
    let ok = Command::new("cp")
        .arg("-r")
        .arg(&src)
        .arg(kdir.path())
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let kernel = kdir.path().join("kernel");
    std::fs::remove_file(
        kernel.join("series/mkdirat2-v2/0002-selftest-add-tests-for-mkdirat2.patch"),
    )
    .unwrap();
    let seed = seed();
    let (code, _stdout, stderr) = repro(
        &[
            seed.to_str().unwrap(),
            "--series",
            "mkdirat2",
            "--kernel-dir",
            kernel.to_str().unwrap(),
        ],
        runs.path(),
        Duration::from_secs(120),
    );
    assert_eq!(code, Some(2), "{stderr}");
    // miette wraps long paths: the start of the file name is on one line.
    assert!(
        stderr.contains("mkdirat2-v2/0002-selftest-add-"),
        "{stderr}"
    );
    assert_nothing_started(runs.path());
}

/// A file with a good series and a broken one: the broken one stops the
/// lot before anything is built (the good one is not reviewed alone).
#[test]
fn one_bad_series_in_a_file_stops_all_before_anything_is_built() {
    let runs = tempfile::tempdir().unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../kernel/series/mkdirat2-v2");
    let mut mbox = String::new();
    for f in [
        "cover-letter.eml",
        "0001-vfs-syscalls-add-mkdirat2-that-returns-an-O_DIRECTOR.patch",
        "0002-selftest-add-tests-for-mkdirat2.patch",
    ] {
        mbox.push_str(&std::fs::read_to_string(dir.join(f)).unwrap());
        mbox.push('\n');
    }
    // A series whose 2/3 is missing.
    mbox.push_str(GAP_SERIES);
    let input = runs.path().join("two.mbox");
    std::fs::write(&input, mbox).unwrap();
    let (code, stdout, stderr) = repro(
        &[input.to_str().unwrap()],
        runs.path(),
        Duration::from_secs(120),
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("review mkdirat2-v2"), "{stderr}");
    assert!(stderr.contains("nothing was started"), "{stderr}");
    assert_nothing_started(runs.path());
}

const GAP_SERIES: &str = r#"From 1111111111111111111111111111111111111111 Mon Sep 17 00:00:00 2001
From: Test Person <t@example.org>
Date: Mon, 4 May 2026 10:01:00 +0200
Subject: [PATCH 1/3] frob: add the frobnicator core
Message-Id: <frob.1.3@example.org>
In-Reply-To: <frob.0.3@example.org>

Change 1.

Signed-off-by: Test Person <t@example.org>
---
 drivers/frob/frob.c | 1 +
 1 file changed, 1 insertion(+)

diff --git a/drivers/frob/frob.c b/drivers/frob/frob.c
index 1111111..2222222 100644
--- a/drivers/frob/frob.c
+++ b/drivers/frob/frob.c
@@ -1,3 +1,4 @@
 first line
 second line
+added line 1
 third line
-- 
2.53.0

From 1111111111111111111111111111111111111111 Mon Sep 17 00:00:00 2001
From: Test Person <t@example.org>
Date: Mon, 4 May 2026 10:03:00 +0200
Subject: [PATCH 3/3] frob: add the frobnicator sysfs
Message-Id: <frob.3.3@example.org>
In-Reply-To: <frob.0.3@example.org>

Change 3.

Signed-off-by: Test Person <t@example.org>
---
 drivers/frob/frob.c | 1 +
 1 file changed, 1 insertion(+)

diff --git a/drivers/frob/frob.c b/drivers/frob/frob.c
index 1111111..2222222 100644
--- a/drivers/frob/frob.c
+++ b/drivers/frob/frob.c
@@ -1,3 +1,4 @@
 first line
 second line
+added line 3
 third line
-- 
2.53.0

"#;

/// The mkdirat2 series with the missing semicolon added: not the posting
/// gasbench knows, so it is extracted into the run directory and applied
/// as posted, without the port. On 7.2.12 its 2/2 does not apply.
#[test]
fn a_series_gasbench_does_not_know_is_applied_as_posted_from_a_private_kernel_dir() {
    let runs = tempfile::tempdir().unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../kernel/series/mkdirat2-v2");
    let mbox = [
        "cover-letter.eml",
        "0001-vfs-syscalls-add-mkdirat2-that-returns-an-O_DIRECTOR.patch",
        "0002-selftest-add-tests-for-mkdirat2.patch",
    ]
    .iter()
    .map(|f| std::fs::read_to_string(dir.join(f)).unwrap())
    .collect::<Vec<_>>()
    .join("\n");
    let fixed = mbox.replacen(
        "umode_t mode,\n+\t\t\t\t     unsigned int flags)\n",
        "umode_t mode,\n+\t\t\t\t     unsigned int flags);\n",
        1,
    );
    assert_ne!(fixed, mbox);
    let input = runs.path().join("mkdirat2-fixed.mbox");
    std::fs::write(&input, &fixed).unwrap();

    let (code, stdout, stderr) = repro(
        &[input.to_str().unwrap(), "--no-per-patch", "--json"],
        runs.path(),
        Duration::from_secs(20 * 60),
    );
    assert_eq!(code, Some(1), "stderr:\n{stderr}");
    let r: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("no review JSON ({e}); stderr:\n{stderr}"));
    assert_eq!(r["series"]["known"], false);
    assert!(
        r["series"]["resolved"]
            .as_str()
            .unwrap()
            .contains("patch(es) 1 differ"),
        "{:#}",
        r["series"]
    );
    assert_eq!(r["base"]["applied"], "as posted, without a port");
    let rows: Vec<(&str, &str)> = r["patches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["role"].as_str().unwrap(), p["status"].as_str().unwrap()))
        .collect();
    assert_eq!(rows, [("posted", "applied"), ("posted", "failed")]);
    assert!(r["port_fixes"].as_array().unwrap().is_empty());
    assert!(r["build"]["tree_builds"].is_null());
    assert!(r["scenarios"].as_array().unwrap().is_empty());
    let first = &r["findings"][0];
    assert_eq!(first["severity"], "high");
    assert!(
        first["title"]
            .as_str()
            .unwrap()
            .ends_with("does not apply to 7.2.12; the series stops there"),
        "{first:#}"
    );
    // The diagnostic names the rejected hunk.
    assert!(stderr.contains("Makefile hunk 1"), "{stderr}");
    // The private kernel directory is in the run directory, with the
    // reviewer's posting in it.
    let run = PathBuf::from(r["run"]["run_dir"].as_str().unwrap());
    let series = run.join("kernel/series/mkdirat2-v2");
    let one = std::fs::read_dir(&series)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("0001-"))
        .unwrap();
    assert!(
        std::fs::read_to_string(one.path())
            .unwrap()
            .contains("unsigned int flags);\n")
    );
    assert!(run.join("kernel/base.toml").is_file());
    assert!(run.join("review.md").is_file());
}

/// The reviewer's run on the debug kernel: the detectors proven in the
/// same run, mkdirat2 under fault injection, and the review's detectors
/// section saying what they found (or, in one line, that they found
/// nothing).
// A debug kernel of its own (one series): the long tier.
#[cfg(feature = "e2e-long")]
#[test]
fn the_mkdirat2_series_on_the_debug_kernel_reports_what_the_detectors_found() {
    let runs = tempfile::tempdir().unwrap();
    let seed = seed();
    let (code, stdout, stderr) = repro(
        &[
            seed.to_str().unwrap(),
            "--series",
            "mkdirat2",
            "--no-per-patch",
            "--profile",
            "debug",
            "--json",
        ],
        runs.path(),
        Duration::from_secs(120 * 60),
    );
    assert!(matches!(code, Some(0 | 1)), "stderr:\n{stderr}");
    let r: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("no review JSON ({e}); stderr:\n{stderr}"));
    let d = &r["detectors"];
    let p = &d["profiles"][0];
    assert_eq!(p["profile"], "debug", "{d:#}");
    let proven = strs(&p["proven"]);
    for det in ["lockdep", "atomic-sleep", "ubsan", "kmemleak", "kasan"] {
        assert!(proven.contains(&det.to_string()), "{det} not proven: {d:#}");
    }
    assert!(
        d["injection"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["call"] == "mkdirat2" && x["reached_no_fault"] == true),
        "{d:#}"
    );
    // The scenario verdicts say which profile they came from.
    assert!(
        r["scenarios"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["profile"] == "debug"),
        "{r:#}"
    );
    let line = d["line"].as_str().unwrap();
    assert!(line.starts_with("debug profile:"), "{line}");
    let dir = std::fs::read_dir(runs.path())
        .unwrap()
        .flatten()
        .find(|e| e.path().join("review.md").is_file())
        .unwrap()
        .path();
    let md = std::fs::read_to_string(dir.join("review.md")).unwrap();
    assert!(
        md.contains("## Kernel detectors and fault injection"),
        "{md}"
    );
}

#[path = "../../gasbench-trace/tests/support/venv.rs"]
mod venv;

/// The list's workflow both ways, on the real kernel: a Message-Id
/// gasbench does not know is fetched from a public-inbox stand-in on
/// loopback (the mkdirat2 posting, its Message-Ids rewritten), recognised
/// as the known series, built, booted and reviewed; the run directory
/// holds the reply mail and a KCIDB submission kcidb-io accepts; and
/// `b4-check` answers for a fetched patch (found by its patch-id, since
/// its Message-Id is the stand-in's).
#[test]
fn a_message_id_from_the_list_to_a_reply_a_kcidb_submission_and_a_b4_check() {
    use gasbench_lore::stand_in::{Answer, PublicInbox, gzip};
    use std::collections::HashMap;

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../kernel/series/mkdirat2-v2");
    let stand_in = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .unwrap()
            .replace("3095416-", "3095416-standin-")
            .replace("@digest.invalid>", "@standin.invalid>")
    };
    let cover = stand_in("cover-letter.eml");
    let patch1 = stand_in("0001-vfs-syscalls-add-mkdirat2-that-returns-an-O_DIRECTOR.patch");
    let patch2 = stand_in("0002-selftest-add-tests-for-mkdirat2.patch");
    let id = "20260412135434.3095416-standin-1-jkoolstra@xs4all.nl";
    assert!(cover.contains(id), "the cover's id is rewritten");
    let thread = [cover.as_str(), &patch1, &patch2].join("\n");
    let server = PublicInbox::start(HashMap::from([(
        format!("/all/{id}/t.mbox.gz"),
        Answer::Body(gzip(thread.as_bytes())),
    )]))
    .unwrap();

    let runs = tempfile::tempdir().unwrap();
    let kcidb = runs.path().join("submission.json");
    let (code, stdout, stderr) = repro(
        &[
            &format!("<{id}>"),
            "--lore",
            &server.url(),
            "--refetch",
            "--no-per-patch",
            "--kcidb",
            kcidb.to_str().unwrap(),
        ],
        runs.path(),
        Duration::from_secs(40 * 60),
    );
    assert_eq!(
        code,
        Some(1),
        "findings; stderr:\n{stderr}\nstdout:\n{stdout}"
    );
    assert!(
        stderr.contains("fetched from http://127.0.0.1:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("known as kernel/series/mkdirat2-v2"),
        "{stderr}"
    );
    let run_dir = std::fs::read_link(runs.path().join("latest"))
        .map(|l| runs.path().join(l))
        .unwrap();

    // The reply: threaded under the posting's cover letter, 72 columns.
    let eml = std::fs::read_to_string(run_dir.join("review.eml")).unwrap();
    assert!(
        eml.contains("In-Reply-To: <20260412135434.3095416-1-jkoolstra@xs4all.nl>"),
        "{eml}"
    );
    let body = eml.split_once("\n\n").unwrap().1;
    assert!(
        body.lines()
            .filter(|l| !l.starts_with('>'))
            .all(|l| l.chars().count() <= 72)
    );
    assert!(!body.contains("Tested-by:"));

    // KCIDB: in the run directory and where --kcidb said, valid 5.3.
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&kcidb).unwrap()).unwrap();
    assert_eq!(
        doc,
        serde_json::from_str::<Value>(
            &std::fs::read_to_string(run_dir.join("kcidb.json")).unwrap()
        )
        .unwrap()
    );
    assert_eq!(
        doc["checkouts"][0]["message_id"],
        "20260412135434.3095416-1-jkoolstra@xs4all.nl"
    );
    assert!(doc["tests"].as_array().unwrap().len() > 4);
    let check = Command::new(venv::python())
        .args([
            "-c",
            "import json, sys, kcidb_io\nkcidb_io.schema.V5_3.validate_exactly(json.load(open(sys.argv[1])))",
        ])
        .arg(&kcidb)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    // b4-check on the fetched patch 1: its id is the stand-in's, its
    // patch-id the posting's.
    let mut child = Command::new(gasbench_binary())
        .arg("b4-check")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(patch1.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("b4-check: {answer:#}");
    assert_eq!(answer[0]["tool"], "gasbench");
    assert!(
        answer[0]["summary"]
            .as_str()
            .unwrap()
            .starts_with("patch 1/2: "),
        "{answer}"
    );
    // The answer is about patch 1 (its own findings, then the series'):
    // the exit status follows its status, as b4 reads it.
    let summary = answer[0]["summary"].as_str().unwrap();
    assert!(summary.contains("the series: "), "{answer}");
    let failed = answer
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["status"] != "pass");
    assert_eq!(out.status.code(), Some(i32::from(failed)), "{answer}");
}
