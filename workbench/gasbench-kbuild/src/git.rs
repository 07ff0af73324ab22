//! git, run in the runtime (the toolroot's git under chroot, or the
//! host's), always with a fixed identity and dates so that the same base
//! and the same patches give the same commit ids.

use gasbench_env::process::{self, OnParentDeath};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gasbench_env::Runtime;

use crate::KbuildError;

/// The identity gasbench commits with (the author of each patch is kept).
pub const COMMITTER_NAME: &str = "gasbench";
pub const COMMITTER_EMAIL: &str = "gasbench@localhost.invalid";

/// A git work tree, reached through the runtime.
#[derive(Clone, Debug)]
pub struct Git {
    rt: Runtime,
    dir: PathBuf,
    /// Paths the command needs visible in the build root (the work tree,
    /// its repository, the patch directory).
    binds: Vec<PathBuf>,
}

/// A finished git command.
#[derive(Debug)]
pub struct GitOutput {
    pub ok: bool,
    pub status: String,
    pub stdout: String,
    pub stderr: String,
}

impl GitOutput {
    fn from(o: Output) -> GitOutput {
        GitOutput {
            ok: o.status.success(),
            status: o.status.to_string(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// stdout, trimmed.
    pub fn text(&self) -> String {
        self.stdout.trim().to_string()
    }
}

impl Git {
    pub fn new(rt: &Runtime, dir: &Path, binds: &[PathBuf]) -> Git {
        let mut all = vec![dir.to_path_buf()];
        for b in binds {
            if !all.iter().any(|a| b.starts_with(a)) {
                all.push(b.clone());
            }
        }
        Git {
            rt: rt.clone(),
            dir: dir.to_path_buf(),
            binds: all,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The command, not yet run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut argv: Vec<String> = vec![
            "git".into(),
            "-c".into(),
            format!("user.name={COMMITTER_NAME}"),
            "-c".into(),
            format!("user.email={COMMITTER_EMAIL}"),
            // The tree is ours and may be owned by another uid than the
            // one running git inside the root.
            "-c".into(),
            "safe.directory=*".into(),
            "-c".into(),
            "advice.detachedHead=false".into(),
            "-c".into(),
            "core.quotePath=false".into(),
            "-c".into(),
            "gc.auto=0".into(),
        ];
        argv.extend(args.iter().map(|a| a.to_string()));
        let mut cmd = self.rt.build_command(&argv, &self.binds, &self.dir);
        cmd.env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C.UTF-8")
            .env("TZ", "UTC");
        cmd
    }

    /// Run and return the output, whatever the exit status.
    pub fn run(&self, args: &[&str]) -> Result<GitOutput, KbuildError> {
        self.run_env(args, &[])
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Result<GitOutput, KbuildError> {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        // SIGTERM if we die: git removes its lock files on the way out.
        let out = process::output(&mut cmd, OnParentDeath::Terminate).map_err(|e| {
            KbuildError::Spawn {
                what: format!("git {}", args.join(" ")),
                source: e,
            }
        })?;
        Ok(GitOutput::from(out))
    }

    /// Run and fail unless git succeeded.
    pub fn ok(&self, args: &[&str]) -> Result<GitOutput, KbuildError> {
        self.ok_env(args, &[])
    }

    pub fn ok_env(&self, args: &[&str], env: &[(&str, &str)]) -> Result<GitOutput, KbuildError> {
        let out = self.run_env(args, env)?;
        if !out.ok {
            let detail = if out.stderr.trim().is_empty() {
                out.stdout.trim().to_string()
            } else {
                out.stderr.trim().to_string()
            };
            if crate::disk::output_says_full(&detail) {
                return Err(KbuildError::DiskFull {
                    what: format!("git {}", args.first().unwrap_or(&"")),
                    path: self.dir.clone(),
                    available_mib: crate::disk::free_mib(&self.dir).unwrap_or(0),
                    needed_mib: 0,
                });
            }
            return Err(KbuildError::Command {
                command: format!("git {}", args.join(" ")),
                status: out.status,
                detail: tail(&detail, 40),
            });
        }
        Ok(out)
    }

    /// `git rev-parse <rev>`.
    pub fn rev_parse(&self, rev: &str) -> Result<Option<String>, KbuildError> {
        let out = self.run(&[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{rev}^{{commit}}"),
        ])?;
        Ok(out.ok.then(|| out.text()))
    }

    /// True when the work tree matches HEAD (tracked files only).
    pub fn is_clean(&self) -> Result<bool, KbuildError> {
        let out = self.ok(&["status", "--porcelain", "--untracked-files=no"])?;
        Ok(out.stdout.trim().is_empty())
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..].join("\n")
}
