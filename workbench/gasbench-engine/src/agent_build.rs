//! Building the guest agent: a static binary for the initramfs.
//!
//! The agent is built from this workspace by the host's cargo with
//! `+crt-static` for `x86_64-unknown-linux-gnu` (static glibc: no musl
//! target is needed). `--target` keeps those flags off build scripts, and
//! a target directory of its own keeps them from invalidating the host
//! build. A no-change build is cargo's no-op: well under a second.

use std::path::{Path, PathBuf};
use std::process::Command;

use gasbench_env::checks::is_static_elf;

pub const AGENT_TARGET: &str = "x86_64-unknown-linux-gnu";

#[derive(Debug, thiserror::Error)]
pub enum AgentBuildError {
    #[error(
        "the gasbench sources are not at {0} (the agent is built from them); set GASBENCH_SOURCE to a checkout"
    )]
    NoSource(PathBuf),
    #[error("cannot run cargo: {0}")]
    Cargo(#[source] std::io::Error),
    #[error("building the guest agent failed ({status}):\n{stderr}")]
    Failed { status: String, stderr: String },
    #[error("{0} is not a static executable; the initramfs has no dynamic loader")]
    NotStatic(PathBuf),
}

/// Where the workspace is: `GASBENCH_SOURCE`, else where this crate was
/// compiled from.
pub fn source_root() -> PathBuf {
    if let Some(s) = std::env::var_os("GASBENCH_SOURCE") {
        return PathBuf::from(s);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The agent's target directory under the cache, one per checkout: cargo
/// names a path package's build by its path relative to the workspace,
/// so two checkouts sharing one target directory take each other's
/// fresh builds for their own (a run then boots the other checkout's
/// agent).
pub fn agent_target_dir(cache_root: &Path, source: &Path) -> PathBuf {
    let canon = source
        .canonicalize()
        .unwrap_or_else(|_| source.to_path_buf());
    // FNV-1a: stable across runs and Rust versions, unlike DefaultHasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in canon.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    cache_root.join("agent-target").join(format!("{h:016x}"))
}

/// The cargo invocation, separate so it can be checked without running it.
pub fn agent_build_command(source: &Path, target_dir: &Path) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(source)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "gasbench-agent",
            "--target",
            AGENT_TARGET,
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static");
    cmd
}

/// Build (or reuse) the agent; returns the binary's path.
pub fn build_agent(source: &Path, target_dir: &Path) -> Result<PathBuf, AgentBuildError> {
    if !source
        .join("guest-tools/gasbench-agent/Cargo.toml")
        .exists()
    {
        return Err(AgentBuildError::NoSource(source.to_path_buf()));
    }
    let out = agent_build_command(source, target_dir)
        .output()
        .map_err(AgentBuildError::Cargo)?;
    if !out.status.success() {
        return Err(AgentBuildError::Failed {
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    let bin = target_dir
        .join(AGENT_TARGET)
        .join("release")
        .join("gasbench-agent");
    if !is_static_elf(&bin) {
        return Err(AgentBuildError::NotStatic(bin));
    }
    Ok(bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_is_built_static_for_its_own_target() {
        let cmd = agent_build_command(Path::new("/src"), Path::new("/cache/agent"));
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args.windows(2).any(|w| w == ["--target", AGENT_TARGET]));
        assert!(args.windows(2).any(|w| w == ["-p", "gasbench-agent"]));
        assert!(
            args.windows(2)
                .any(|w| w == ["--target-dir", "/cache/agent"])
        );
        let rustflags = cmd
            .get_envs()
            .find(|(k, _)| *k == "RUSTFLAGS")
            .and_then(|(_, v)| v)
            .unwrap();
        assert_eq!(rustflags, "-C target-feature=+crt-static");
        assert!(source_root().join("guest-tools/gasbench-agent").exists());
    }

    #[test]
    fn each_checkout_builds_its_agent_in_a_target_directory_of_its_own() {
        let cache = Path::new("/cache");
        let a = agent_target_dir(cache, Path::new("/work/wt-a"));
        let b = agent_target_dir(cache, Path::new("/work/wt-b"));
        assert_ne!(a, b);
        assert_eq!(a, agent_target_dir(cache, Path::new("/work/wt-a")));
        assert!(a.starts_with("/cache/agent-target"));
    }

    #[test]
    fn a_missing_source_tree_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = build_agent(dir.path(), &dir.path().join("t")).unwrap_err();
        assert!(matches!(err, AgentBuildError::NoSource(_)));
        assert!(err.to_string().contains("GASBENCH_SOURCE"));
    }
}
