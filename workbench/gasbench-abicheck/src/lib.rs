//! Series-level ABI checks a maintainer runs before reading the code:
//!
//! - [`syscalls`]: a syscall the series adds is wired in every table the
//!   kernel wires the base's newest syscall in (each architecture's
//!   table, the generic table and header), with the next free number, and
//!   `__NR_syscalls` follows; the tools/ copies are noted;
//! - [`ioctls`]: each ioctl a uapi header of the series defines has the
//!   direction (`_IOR`/`_IOW`/`_IOWR`) of what the driver copies in and
//!   out, its argument struct has no implicit padding and one layout on
//!   32- and 64-bit, and its type and number range collide with nothing
//!   in the kernel's registry (`ioctl-number.rst`), or are registered;
//! - [`checkpatch`]: the kernel's checkpatch.pl on each patch, read from
//!   what it printed (the caller runs it, from the base's scripts only).
//!
//! Input: the kernel tree with the series applied and the series' patch
//! texts (what the series added is told apart from the base by the
//! patches' `+` lines). Every result carries its evidence: the file and
//! line of what was read.
//!
//! **Architecture invariant:** reads files only; runs nothing (checkpatch's
//! output is handed in).

pub mod checkpatch;
pub mod diff;
pub mod ioctls;
pub mod syscalls;

use std::path::Path;

use serde::Serialize;

/// A patch of the series: its file name and text.
#[derive(Clone, Copy, Debug)]
pub struct Patch<'a> {
    pub file: &'a str,
    pub text: &'a str,
}

/// What a check concluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The series follows the convention.
    Pass,
    /// The series breaks a convention of the kernel's ABI.
    Defect,
    /// Worth knowing; by convention somebody else does it (the tools/
    /// copies), or it is not decidable from the tree.
    Note,
}

/// `file:line` and the line read there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Evidence {
    pub at: String,
    pub text: String,
}

impl Evidence {
    pub fn new(file: &str, line: usize, text: &str) -> Evidence {
        Evidence {
            at: format!("{file}:{line}"),
            text: text.trim_end().chars().take(200).collect(),
        }
    }
}

/// One check's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    /// `syscall.tables`, `ioctl.direction`, …
    pub check: &'static str,
    /// What it is about: `mkdirat2`, `GOLDFISH_ADDRESS_SPACE_IOCTL_PING`.
    pub subject: String,
    pub verdict: Verdict,
    /// One sentence.
    pub title: String,
    pub evidence: Vec<Evidence>,
}

/// Every check on `tree` (the series applied) for `patches`.
pub fn check_series(tree: &Path, patches: &[Patch]) -> Vec<CheckResult> {
    let added = diff::Added::of(patches);
    let mut out = syscalls::check(tree, &added);
    out.extend(ioctls::check(tree, &added));
    out
}

/// A tree-relative path for evidence.
pub(crate) fn rel(tree: &Path, p: &Path) -> String {
    p.strip_prefix(tree).unwrap_or(p).display().to_string()
}
