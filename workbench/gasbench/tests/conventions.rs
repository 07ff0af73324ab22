//! Command-line conventions: completions and man page from the clap
//! definitions, global options a command would ignore are refused, and
//! --help says the exit codes.

use std::process::{Command, Output};

const GASBENCH: &str = env!("CARGO_BIN_EXE_gasbench");

fn run(args: &[&str]) -> Output {
    Command::new(GASBENCH)
        .args(args)
        .env("GASBENCH_CONFIG", "/dev/null")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn completions_cover_every_subcommand() {
    for shell in ["bash", "zsh", "fish"] {
        let o = run(&["completions", shell]);
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        let s = stdout(&o);
        for sub in ["repro", "kernel", "open", "config", "scenario"] {
            assert!(s.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    let o = run(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn the_man_page_is_roff_with_the_exit_codes() {
    let o = run(&["man"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.contains(".TH gasbench 1"), "{s}");
    assert!(s.contains("Exit status"), "{s}");
    let dir = tempfile::tempdir().unwrap();
    let o = run(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    for page in [
        "gasbench.1",
        "gasbench-run.1",
        "gasbench-repro.1",
        "gasbench-kernel-build.1",
    ] {
        assert!(dir.path().join(page).is_file(), "{page}");
    }
}

#[test]
fn the_tuis_kernel_before_a_subcommand_is_refused_not_dropped() {
    let o = run(&["--kernel", "/nonexistent/bzImage", "run"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--kernel before a subcommand"),
        "{}",
        stderr(&o)
    );
    let o = run(&["--profile", "debug", "kernel", "build", "--dry-run"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn a_global_option_the_command_ignores_is_refused() {
    let o = run(&["--runtime", "host", "scenario", "check"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("does not use --runtime"),
        "{}",
        stderr(&o)
    );
    let o = run(&["--data-dir", "/tmp", "completions", "bash"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // The cache directory is taken by every command (aliases set it).
    let o = run(&["--cache-dir", "/tmp", "completions", "bash"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Where it is used it is taken, before or after the subcommand.
    let o = run(&["config", "--runtime", "host"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("flag --runtime"), "{}", stdout(&o));
}

#[test]
fn help_says_the_exit_codes() {
    for args in [&["--help"][..], &["run", "--help"], &["repro", "--help"]] {
        let o = run(args);
        let s = stdout(&o);
        assert!(s.contains("Exit status"), "{args:?}: {s}");
        assert!(s.contains("130"), "{args:?}: {s}");
    }
}

#[test]
fn a_bad_configuration_file_is_bad_input_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, "cpus = 0\n").unwrap();
    let o = Command::new(GASBENCH)
        .arg("config")
        .env("GASBENCH_CONFIG", &file)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("config.toml"), "{}", stderr(&o));
    std::fs::write(&file, "cpus = 4\nmemory_mib = 1024\n").unwrap();
    let o = Command::new(GASBENCH)
        .arg("config")
        .env("GASBENCH_CONFIG", &file)
        .env_remove("GASBENCH_CPUS")
        .env("GASBENCH_MEMORY", "2048")
        .output()
        .unwrap();
    let s = stdout(&o);
    assert!(
        s.lines()
            .any(|l| l.starts_with("cpus") && l.contains('4') && l.contains("config.toml")),
        "{s}"
    );
    assert!(
        s.lines().any(|l| l.starts_with("memory_mib")
            && l.contains("2048")
            && l.contains("env GASBENCH_MEMORY")),
        "{s}"
    );
}
