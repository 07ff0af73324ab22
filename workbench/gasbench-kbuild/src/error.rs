//! Everything that can stop a kernel build, each with what to do about it.

use std::path::{Path, PathBuf};

use crate::kconfig::Mismatch;
use crate::report::PatchReport;

#[derive(Debug, thiserror::Error)]
pub enum KbuildError {
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{label}: {error}")]
    Series {
        label: String,
        /// The text the error's span points into.
        text: String,
        #[source]
        error: gasbench_series::Error,
    },
    #[error(
        "patch {index}/{total} of {series:?} is not in {origin} and {} has no reconstruction of it",
        dir.display()
    )]
    MissingPatch {
        index: u32,
        total: u32,
        series: String,
        origin: String,
        dir: PathBuf,
    },
    #[error("{} is not marked as a reconstruction (no X-Gasbench-Reconstructed header)", path.display())]
    NotReconstruction { path: PathBuf },
    #[error("kernel/ layout: {what}")]
    Layout { what: String, path: Option<PathBuf> },
    /// The base source (the packaged tarball or `--base-tree`) is not
    /// usable; `help` says what to do about this case.
    #[error("the base kernel source: {what}")]
    Base { what: String, help: String },
    #[error(
        "the cached tree {} has local changes ({}); {doing} would lose them",
        tree.display(),
        files.join(", ")
    )]
    LocalChanges {
        tree: PathBuf,
        files: Vec<String>,
        doing: String,
    },
    #[error("cannot run {what}: {source}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {detail}")]
    Command {
        command: String,
        status: String,
        detail: String,
    },
    #[error("{} does not apply to {base}", report.label())]
    PatchDoesNotApply {
        series: String,
        base: String,
        report: Box<PatchReport>,
    },
    #[error("a fuzzy apply of {patch} would create a duplicate syscall number: {detail}")]
    DuplicateSyscall { patch: String, detail: String },
    #[error("the Rust toolchain cannot build this kernel: `make rustavailable` says: {output}")]
    RustUnavailable { output: String },
    #[error(
        "the configuration lacks what was asked for: {}",
        summarize(mismatches)
    )]
    ConfigNotSet { mismatches: Vec<Mismatch> },
    #[error("the kernel build failed{}: {first_error}", log_note(log))]
    BuildFailed { first_error: String, log: PathBuf },
    #[error("the {what} build failed{}: {first_error}", log_note(log))]
    SelftestFailed {
        what: String,
        first_error: String,
        log: PathBuf,
    },
    #[error(
        "no space left for {what} in {}: {} MiB free, about {} MiB needed",
        path.display(), available_mib, needed_mib
    )]
    DiskFull {
        what: String,
        path: PathBuf,
        available_mib: u64,
        needed_mib: u64,
    },
    #[error("{what}")]
    Invalid { what: String },
    #[error("no kernel profile {name:?} (kernel/profiles/profiles.toml has: {})", known.join(", "))]
    UnknownProfile { name: String, known: Vec<String> },
    #[error("profile {profile}'s patch {} does not apply on the series: {detail}", patch.display())]
    ProfilePatch {
        profile: String,
        patch: PathBuf,
        detail: String,
    },
    /// gasbench was interrupted (a signal) and stopped the tools it ran.
    #[error("interrupted: {what} was stopped")]
    Interrupted { what: String },
    /// A cached build failed its check against its own manifest.
    #[error("the cached kernel build in {} is damaged: {what}", dir.display())]
    CacheDamaged { dir: PathBuf, what: String },
}

fn summarize(m: &[Mismatch]) -> String {
    m.iter()
        .map(|m| m.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

fn log_note(log: &Path) -> String {
    format!(" (full log: {})", log.display())
}

/// Whose fault a kernel stage error is, for the exit status every
/// command shares (2 bad input, 1 a finding about the series, 3 the tool
/// or its environment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blame {
    /// What the user gave cannot be used: mail that does not parse, a
    /// broken kernel/ directory, a tree with local edits in the way.
    Input,
    /// The series itself: a patch that does not apply, a duplicate
    /// syscall number.
    Series,
    /// The tool or the machine: a tool that will not run, a full disk, a
    /// build that fails for reasons the series does not explain.
    Environment,
}

impl KbuildError {
    /// Whose fault it is (see [`Blame`]).
    pub fn blame(&self) -> Blame {
        match self {
            KbuildError::Series { .. }
            | KbuildError::MissingPatch { .. }
            | KbuildError::NotReconstruction { .. }
            | KbuildError::Layout { .. }
            | KbuildError::LocalChanges { .. }
            | KbuildError::Invalid { .. }
            | KbuildError::UnknownProfile { .. } => Blame::Input,
            KbuildError::PatchDoesNotApply { .. } | KbuildError::DuplicateSyscall { .. } => {
                Blame::Series
            }
            KbuildError::Io { .. }
            | KbuildError::Base { .. }
            | KbuildError::Spawn { .. }
            | KbuildError::Command { .. }
            | KbuildError::RustUnavailable { .. }
            | KbuildError::ConfigNotSet { .. }
            | KbuildError::BuildFailed { .. }
            | KbuildError::SelftestFailed { .. }
            | KbuildError::DiskFull { .. }
            | KbuildError::CacheDamaged { .. }
            // gasbench's own patch for the profile no longer fits the
            // series: the tool's to refresh, not the posting's defect.
            | KbuildError::ProfilePatch { .. } => Blame::Environment,
            // A signal's own exit status is used before blame is asked;
            // should it be asked, nobody's input is at fault.
            KbuildError::Interrupted { .. } => Blame::Environment,
        }
    }

    pub fn io(op: &'static str, path: &Path, source: std::io::Error) -> KbuildError {
        if source.raw_os_error() == Some(libc::ENOSPC) {
            return KbuildError::DiskFull {
                what: op.to_string(),
                path: path.to_path_buf(),
                available_mib: crate::disk::free_mib(path).unwrap_or(0),
                needed_mib: 0,
            };
        }
        KbuildError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn series(label: &str, text: &str, error: gasbench_series::Error) -> KbuildError {
        KbuildError::Series {
            label: label.to_string(),
            text: text.to_string(),
            error,
        }
    }

    /// What the user should do next.
    pub fn help(&self) -> String {
        match self {
            KbuildError::Io { .. } => "check the path and its permissions".into(),
            KbuildError::Series { error, .. } => error.help().into(),
            KbuildError::MissingPatch { index, dir, .. } => format!(
                "write the patch by hand as {}/{index:04}-<title>.patch with an \
                 `X-Gasbench-Reconstructed: <what it was rebuilt from>` header",
                dir.display()
            ),
            KbuildError::NotReconstruction { .. } => {
                "add `X-Gasbench-Reconstructed: <sources>` to its headers, or remove it".into()
            }
            KbuildError::Layout { .. } => {
                "run from the gasbench checkout, or pass --kernel-dir pointing at its kernel/ directory".into()
            }
            KbuildError::Base { help, .. } => help.clone(),
            KbuildError::LocalChanges { .. } => {
                "commit or save them (git -C <tree> diff > fix.patch), pass --discard-local-changes, or build without --per-patch (repro: --no-per-patch)".into()
            }
            KbuildError::Spawn { .. } => "run `gasbench doctor` to see which tool is missing".into(),
            KbuildError::Command { .. } => "see the output above; `gasbench doctor` checks the tools".into(),
            KbuildError::PatchDoesNotApply { .. } => {
                "the base moved: port the patch (add a replacement or fixup in kernel/port/<base>/port.toml), or pick the base the series was written for".into()
            }
            KbuildError::DuplicateSyscall { .. } => {
                "the base already uses that number: renumber the syscall in a fixup after the posted patch".into()
            }
            KbuildError::RustUnavailable { .. } => {
                "install the versions `make rustavailable` asks for (gasbench setup provisions them in the toolroot), or build with --runtime toolroot".into()
            }
            KbuildError::ConfigNotSet { .. } => {
                "enable (or turn off) the named dependency in the fragment that asks for the symbol (kernel/config/, or kernel/profiles/ for a profile's), or drop the symbol from it".into()
            }
            KbuildError::BuildFailed { .. } => {
                "fix the error (run with --per-patch to find the patch that broke the build)".into()
            }
            KbuildError::SelftestFailed { .. } => "see the log; the selftest is built against the installed headers".into(),
            KbuildError::DiskFull { .. } => {
                "free space there, or point GASBENCH_CACHE (--cache-dir) at a larger disk".into()
            }
            KbuildError::Invalid { .. } => "see the message".into(),
            KbuildError::UnknownProfile { .. } => "pick one of the profiles named, or add it to kernel/profiles/profiles.toml".into(),
            KbuildError::ProfilePatch { .. } => {
                "the series now touches what the profile's patch changes: refresh the patch in kernel/profiles/".into()
            }
            KbuildError::Interrupted { .. } => {
                "run it again: the cache keeps what was finished, and nothing half-made is used".into()
            }
            KbuildError::CacheDamaged { dir, .. } => format!(
                "remove {} (gasbench rebuilds it), and check the disk it is on",
                dir.display()
            ),
        }
    }
}
