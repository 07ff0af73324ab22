//! `cargo install --path workbench/gasbench` into a temporary prefix, as
//! a user installs gasbench, then the installed binary from an unrelated
//! directory: it finds its scenarios and kernel/ (embedded, unpacked into
//! the cache), plans the kernel build up to where it would start, and
//! answers --help. Reuses the release build of the target directory when
//! it is current.

use std::path::Path;
use std::process::Command;

#[test]
fn cargo_install_into_a_prefix_works_from_any_directory() {
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("prefix");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["install", "--locked", "--offline", "--quiet", "--path"])
        .arg(checkout.join("workbench/gasbench"))
        .arg("--root")
        .arg(&root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo install: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = root.join("bin/gasbench");
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let cache = tmp.path().join("cache");
    let run = |args: &[&str]| {
        let out = Command::new(&bin)
            .args(args)
            .current_dir(&elsewhere)
            .env_remove("GASBENCH_DATA")
            .env_remove("GASBENCH_CONFIG")
            .env("HOME", tmp.path().join("home"))
            .env("GASBENCH_CACHE", &cache)
            .output()
            .unwrap();
        let text = format!(
            "{args:?}: {:?}\n{}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        text
    };
    assert!(run(&["config"]).contains("data: embedded in the binary"));
    assert!(run(&["scenario", "check"]).contains("scenario files are valid"));
    let plan = run(&["kernel", "build", "--dry-run"]);
    assert!(
        plan.contains(&cache.join("data").display().to_string()),
        "{plan}"
    );
    assert!(plan.contains("dry run: nothing was built"), "{plan}");
    assert!(run(&["repro", "--help"]).contains("Exit status"));
    assert!(run(&["completions", "bash"]).contains("gasbench"));
}
