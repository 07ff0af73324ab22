//! The KCIDB submission validated by the official `kcidb-io` package
//! (schema v5.3), for a synthetic run with every status and for a real
//! recorded reproduction (the review crate's fixture).

#[path = "support/venv.rs"]
mod venv;

use std::path::Path;
use std::process::Command;

use gasbench_trace::RunSummary;
use gasbench_trace::kcidb::{Checkout, PatchFile, to_kcidb};

/// kcidb-io's verdict on `doc`: Ok, or its error.
fn validate(doc: &serde_json::Value) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kcidb.json");
    std::fs::write(&file, serde_json::to_string_pretty(doc).unwrap()).unwrap();
    let out = Command::new(venv::python())
        .args([
            "-c",
            "import json, sys, kcidb_io\n\
             kcidb_io.schema.V5_3.validate_exactly(json.load(open(sys.argv[1])))\n\
             print('valid', kcidb_io.schema.V5_3.major, kcidb_io.schema.V5_3.minor)",
        ])
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && stdout.contains("valid 5 3") {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn recorded() -> RunSummary {
    let events = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../gasbench-review/tests/fixtures/mkdirat2-per-patch/events.jsonl");
    let (events, _) = gasbench_trace::log::read_all(&events).unwrap();
    RunSummary::from_events(&events)
}

fn checkout() -> Checkout {
    Checkout {
        tree_name: "7.2.12 (linux-source-7.2 7.2.12-1~bpo13+1)".into(),
        git_commit_hash: Some("0123456789abcdef0123456789abcdef01234567".into()),
        git_commit_name: Some("v7.2.12".into()),
        patches: vec![PatchFile {
            name: "0001-vfs-syscalls-add-mkdirat2.patch".into(),
            url: "https://lore.kernel.org/all/20260412135434.3095416-2-jkoolstra@xs4all.nl/raw"
                .into(),
            sha256: "a".repeat(64),
        }],
        message_id: Some("20260412135434.3095416-1-jkoolstra@xs4all.nl".into()),
        comment: Some("[RFC PATCH v2 0/2] vfs: syscalls: add mkdirat2()".into()),
    }
}

#[test]
fn a_recorded_reproduction_is_a_valid_kcidb_5_3_submission() {
    let s = recorded();
    assert!(
        !s.patch_builds.is_empty(),
        "the fixture has per-patch builds"
    );
    let doc = to_kcidb(&s, &checkout(), "default");
    validate(&doc).unwrap_or_else(|e| panic!("{e}\n{doc:#}"));
    // Everything the run found is in it.
    let tests = doc["tests"].as_array().unwrap();
    let expectations: usize = s.scenarios.iter().map(|x| x.expectations.len()).sum();
    assert_eq!(tests.len(), s.scenarios.len() + expectations + s.ktap.len());
    assert_eq!(
        doc["builds"].as_array().unwrap().len(),
        1 + s.patch_builds.len()
    );
    assert!(tests.iter().any(|t| t["status"] == "FAIL"));
}

#[test]
fn the_validator_is_real_it_refuses_what_the_schema_forbids() {
    let mut doc = to_kcidb(&recorded(), &checkout(), "default");
    doc["tests"][0]["path"] = serde_json::json!("gasbench.has space");
    assert!(validate(&doc).is_err(), "a path with a space");
    let mut doc = to_kcidb(&recorded(), &checkout(), "default");
    doc["tests"][0]["status"] = serde_json::json!("BROKEN");
    assert!(validate(&doc).is_err(), "an unknown status");
}

#[test]
fn odd_names_and_a_run_that_built_nothing_still_validate() {
    let mut s = recorded();
    s.scenarios[0].name = "weird name/with#chars é".into();
    s.stages
        .retain(|st| st.stage != gasbench_events::run::Stage::Build);
    let mut c = checkout();
    c.git_commit_hash = None;
    c.patches.clear();
    let doc = to_kcidb(&s, &c, "default");
    assert_eq!(doc["builds"][0]["status"], "MISS");
    validate(&doc).unwrap_or_else(|e| panic!("{e}\n{doc:#}"));
}
