//! `gasbench scenario check|show` as a user runs them.

use std::process::Command;

const GASBENCH: &str = env!("CARGO_BIN_EXE_gasbench");

fn scenarios() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios")
}

#[test]
fn check_accepts_the_default_suite() {
    let out = Command::new(GASBENCH)
        .args(["scenario", "check"])
        .arg(scenarios())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("goldfish_hotunplug.toml"), "{stdout}");
    assert!(
        stdout
            .lines()
            .last()
            .unwrap()
            .ends_with("scenario files are valid")
    );
}

#[test]
fn check_reports_every_problem_with_its_position_and_fails() {
    let dir = std::env::temp_dir().join(format!("gasbench-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[[step]]\nclose = { fd = \"${nope}\" }\nexpect.errno = \"EWHAT\"\n",
    )
    .unwrap();
    let good = scenarios().join("goldfish_leaks.toml");
    let out = Command::new(GASBENCH)
        .args(["scenario", "check"])
        .arg(&good)
        .arg(&bad)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("FAIL") && stdout.contains("2 problem(s)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 of 2 scenario files are valid"),
        "{stdout}"
    );
    assert!(stderr.contains("bad.toml:2:16"), "{stderr}");
    assert!(stderr.contains("bad.toml:3:16"), "{stderr}");
    assert!(stderr.contains("undefined variable `nope`"), "{stderr}");
    assert!(stderr.contains("`EWHAT` is not an errno name"), "{stderr}");
}

#[test]
fn show_prints_the_plan_and_json() {
    let file = scenarios().join("goldfish_hotunplug.toml");
    let out = Command::new(GASBENCH)
        .args(["scenario", "show"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("sync 1: agent waits; host device_del, snapshots the device"),
        "{text}"
    );
    let out = Command::new(GASBENCH)
        .args(["scenario", "show", "--json"])
        .arg(&file)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["bundle"]["version"], 1);
    assert_eq!(v["plan"]["scenario"], "goldfish-hotunplug");
    assert!(
        v["plan"]["syncs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["actions"][0]["action"] == "device_add")
    );
}
