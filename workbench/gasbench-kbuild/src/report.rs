//! The apply report: what happened to every patch, with files and hunks.

use serde::{Deserialize, Serialize};

pub use gasbench_events::kernel::{ApplyStatus, HunkOutcome, PatchRole};

/// One patch's fate on the base.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchReport {
    /// The series directory name (`mkdirat2-v2`).
    pub series: String,
    /// Position in the whole apply sequence, from 1.
    pub position: u32,
    pub of: u32,
    /// The posted patch's index (`3` of `3/6`); `None` for fixups.
    pub posted_index: Option<u32>,
    pub subject: String,
    /// The patch file, relative to the kernel/ directory.
    pub file: String,
    pub role: PatchRole,
    pub status: ApplyStatus,
    pub files: Vec<String>,
    /// Per hunk, when the patch did not apply cleanly.
    pub hunks: Vec<HunkOutcome>,
    pub detail: String,
    /// The commit it became, when applied.
    pub commit: Option<String>,
    /// For a posted patch that does not apply: the port's replacement.
    pub replaced_by: Option<String>,
}

impl PatchReport {
    /// `mkdirat2-v2 1/2 "vfs: syscalls: ..."` / `fixup "..."`.
    pub fn label(&self) -> String {
        match self.posted_index {
            Some(i) => format!("{} patch {} {:?}", self.series, i, self.subject),
            None => format!("{} {} {:?}", self.series, self.role.name(), self.subject),
        }
    }

    pub fn rejected_hunks(&self) -> impl Iterator<Item = &HunkOutcome> {
        self.hunks.iter().filter(|h| !h.applied)
    }
}

/// The whole apply.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyReport {
    pub base: String,
    pub base_commit: String,
    pub patches: Vec<PatchReport>,
    /// The commit with everything applied.
    pub head: String,
    /// True when the cached result of an identical earlier apply was reused.
    pub cached: bool,
}

impl ApplyReport {
    /// Posted patches that did not apply as posted.
    pub fn posted_failures(&self) -> impl Iterator<Item = &PatchReport> {
        self.patches
            .iter()
            .filter(|p| p.role == PatchRole::Posted && p.status == ApplyStatus::Failed)
    }

    pub fn counts(&self) -> (usize, usize, usize) {
        let n = |s| self.patches.iter().filter(|p| p.status == s).count();
        (
            n(ApplyStatus::Applied),
            n(ApplyStatus::AppliedWithFuzz),
            n(ApplyStatus::Failed),
        )
    }
}
