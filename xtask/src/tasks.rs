//! The tasks. Each is a sequence of commands that stops at the first
//! failure and says which step failed.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

/// Run one step, timing it.
fn step(name: &str, mut cmd: Command) -> anyhow::Result<()> {
    eprintln!("xtask: ── {name}");
    let start = Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {:?}", cmd.get_program()))?;
    let secs = start.elapsed().as_secs_f64();
    if !status.success() {
        bail!("step `{name}` failed ({status}) after {secs:.1} s");
    }
    eprintln!("xtask: ── {name}: ok ({secs:.1} s)");
    Ok(())
}

fn cargo(args: &[&str]) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(args);
    cmd
}

pub fn setup() -> anyhow::Result<()> {
    step(
        "gasbench setup",
        cargo(&[
            "run",
            "--quiet",
            "--release",
            "-p",
            "gasbench",
            "--",
            "setup",
        ]),
    )
}

pub fn tidy() -> anyhow::Result<()> {
    step("cargo fmt --check", cargo(&["fmt", "--all", "--check"]))?;
    step(
        "cargo clippy -D warnings",
        cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            // The end-to-end tests are compiled (and linted) only with
            // their feature on.
            "--all-features",
            "--",
            "-D",
            "warnings",
        ]),
    )
}

/// The fast tier: unit tests, the device model, the scenario parser, TUI
/// snapshots. No VM, no root, no network.
fn fast_tier() -> anyhow::Result<()> {
    step("fast tier: cargo test", cargo(&["test", "--workspace"]))
}

/// The end-to-end tier: real QEMU, real virtiofsd, the real kernel build.
/// One test binary at a time: they each boot VMs on a 2-core machine.
fn end_to_end_tier() -> anyhow::Result<()> {
    step(
        "end-to-end tier: cargo test -p gasbench-e2e --features e2e",
        cargo(&[
            "test",
            "-p",
            "gasbench-e2e",
            "--features",
            "e2e",
            // Every test binary runs, so one red run names every failure.
            "--no-fail-fast",
            "--",
            "--test-threads=1",
        ]),
    )
}

/// The end-to-end tier with the long tests (feature `e2e-long`): what a
/// release is checked with, outside CI's time budget.
pub fn test_long() -> anyhow::Result<()> {
    setup()?;
    test_prerequisites()?;
    step(
        "long end-to-end tier: cargo test -p gasbench-e2e --features e2e-long",
        cargo(&[
            "test",
            "-p",
            "gasbench-e2e",
            "--features",
            "e2e-long",
            "--no-fail-fast",
            "--",
            "--test-threads=1",
        ]),
    )
}

/// Host packages only the tests need (the TUI test drives tmux).
const TEST_PACKAGES: &[(&str, &str)] = &[("tmux", "tmux")];

fn test_prerequisites() -> anyhow::Result<()> {
    let missing: Vec<&str> = TEST_PACKAGES
        .iter()
        .filter(|(bin, _)| {
            !std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).exists()))
                .unwrap_or(false)
        })
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut cmd = Command::new("apt-get");
    cmd.args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive");
    step(
        &format!("installing test prerequisites: {}", missing.join(" ")),
        cmd,
    )
}

pub fn test(end_to_end: bool) -> anyhow::Result<()> {
    if end_to_end {
        setup()?;
        test_prerequisites()?;
    }
    tidy()?;
    fast_tier()?;
    if end_to_end {
        step(
            "gasbench doctor",
            cargo(&[
                "run",
                "--quiet",
                "--release",
                "-p",
                "gasbench",
                "--",
                "doctor",
            ]),
        )?;
        end_to_end_tier()?;
    }
    Ok(())
}

/// Benchmarks: each prints its figures and a ratio against a baseline
/// measured in the same run. Nothing here asserts a time.
pub fn bench() -> anyhow::Result<()> {
    step(
        "bench: one MMIO through the device server vs a bare socket (gasbench-vfu)",
        cargo(&["bench", "-p", "gasbench-vfu", "--bench", "mmio"]),
    )?;
    step(
        "bench: TUI frame time with a million calls vs a thousand (gasbench-tui)",
        cargo(&["bench", "-p", "gasbench-tui"]),
    )?;
    step(
        "bench: boot to ready vs a bare boot, and the default suite (gasbench-e2e)",
        cargo(&[
            "bench",
            "-p",
            "gasbench-e2e",
            "--features",
            "e2e",
            "--bench",
            "boot",
        ]),
    )?;
    step(
        "bench: the debug profile against the default one: kernel build, boot to ready, suite (gasbench-e2e)",
        cargo(&[
            "bench",
            "-p",
            "gasbench-e2e",
            "--features",
            "e2e",
            "--bench",
            "profiles",
        ]),
    )
}
