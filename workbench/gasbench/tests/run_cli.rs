//! `gasbench run` refuses bad scenarios before it starts anything.

use std::process::Command;

const GASBENCH: &str = env!("CARGO_BIN_EXE_gasbench");

#[test]
fn a_malformed_scenario_is_rejected_before_any_boot() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scenarios/mkdirat2_flags.toml");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[scenario]\nname = \"bad\"\n\n[[step]]\nname = \"x\"\nopen = { path = \"/dev/null\", flags = [\"O_RDWR\"] }\nexpect.errno = \"EWHATEVER\"\n",
    )
    .unwrap();
    // A fault rule the device refuses is caught too, by the engine's
    // preflight, with its position.
    let faulty = dir.path().join("faulty.toml");
    std::fs::write(
        &faulty,
        "[scenario]\nname = \"faulty\"\nrequires = [\"goldfish\"]\n\n[device]\nfaults = [ { on = \"gen_handle\", nth = 1, action = \"explode\" } ]\n\n[[step]]\nname = \"open\"\nopen = { path = \"/dev/goldfish_address_space\", flags = [\"O_RDWR\"] }\n",
    )
    .unwrap();
    let cache = dir.path().join("cache");
    let out = Command::new(GASBENCH)
        .arg("--cache-dir")
        .arg(&cache)
        .arg("run")
        .arg(&good)
        .arg(&bad)
        .arg(&faulty)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Bad input: exit status 2, the same for every command.
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("EWHATEVER"), "{stderr}");
    assert!(
        stderr.contains("bad.toml:7:"),
        "the position of the bad errno: {stderr}"
    );
    assert!(
        stderr.contains("faulty.toml:6:"),
        "the position of the bad rule: {stderr}"
    );
    assert!(
        stderr.contains("2 scenario file(s) have problems; nothing was started"),
        "{stderr}"
    );
    // Nothing was started: no run directory, no toolroot consulted.
    assert!(!cache.join("runs").exists());
}
