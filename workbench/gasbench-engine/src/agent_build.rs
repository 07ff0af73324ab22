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
        "the guest agent's sources are not at {0:?} (gasbench's data; see `gasbench doctor`); --data-dir or GASBENCH_DATA names a gasbench checkout"
    )]
    NoSource(PathBuf),
    #[error("cannot run cargo: {0}")]
    Cargo(#[source] std::io::Error),
    #[error("building the guest agent failed ({status}):\n{stderr}")]
    Failed { status: String, stderr: String },
    #[error("{0} is not a static executable; the initramfs has no dynamic loader")]
    NotStatic(PathBuf),
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

/// Where, under `target_dir`, the agent of the checkout `source` is
/// built. Cargo keys a path package's build by its path relative to the
/// workspace, and trusts file times: two checkouts sharing one cache (two
/// worktrees, say) would each take the other's agent for up to date. Each
/// checkout gets a directory of its own.
pub fn checkout_target_dir(source: &Path, target_dir: &Path) -> PathBuf {
    let source = source
        .canonicalize()
        .unwrap_or_else(|_| source.to_path_buf());
    let key: String = source
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    target_dir.join(key.trim_matches('-'))
}

/// Build (or reuse) the agent of the checkout `source` under
/// `target_dir` (see [`checkout_target_dir`]); returns the binary's path.
pub fn build_agent(source: &Path, target_dir: &Path) -> Result<PathBuf, AgentBuildError> {
    if !source
        .join("guest-tools/gasbench-agent/Cargo.toml")
        .exists()
    {
        return Err(AgentBuildError::NoSource(source.to_path_buf()));
    }
    let target_dir = &checkout_target_dir(source, target_dir);
    let out = gasbench_env::process::output(
        &mut agent_build_command(source, target_dir),
        gasbench_env::process::OnParentDeath::Kill,
    )
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
    }

    #[test]
    fn each_checkout_builds_its_agent_apart() {
        let a = checkout_target_dir(Path::new("/work/wt-a"), Path::new("/cache/agent-target"));
        let b = checkout_target_dir(Path::new("/work/wt-b"), Path::new("/cache/agent-target"));
        assert_ne!(a, b);
        assert_eq!(a, Path::new("/cache/agent-target/work-wt-a"));
    }

    #[test]
    fn a_missing_source_tree_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = build_agent(dir.path(), &dir.path().join("t")).unwrap_err();
        assert!(matches!(err, AgentBuildError::NoSource(_)));
        assert!(err.to_string().contains("GASBENCH_DATA"));
    }
}
