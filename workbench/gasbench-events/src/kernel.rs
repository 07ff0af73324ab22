//! Kernel preparation events: the series applied patch by patch, the build.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplyStatus {
    Applied,
    AppliedWithFuzz,
    Failed,
}

/// What happened to one patch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PatchApplied {
    pub series: String,
    /// 1-based position in the series.
    pub index: u32,
    pub total: u32,
    pub subject: String,
    /// True for gasbench's own fixup patches (ports), false for posted ones.
    pub fixup: bool,
    pub status: ApplyStatus,
    pub files: Vec<String>,
    /// Human-readable detail: rejected hunks, fuzz offsets.
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum KernelEvent {
    Patch(PatchApplied),
    /// One line of kbuild output (or of git, make, a selftest build).
    BuildLine {
        line: String,
    },
    /// Build progress derived from kbuild's output.
    BuildProgress {
        done: u64,
        total: u64,
        current: String,
    },
    /// After patch `index` (per-patch mode): does the tree build?
    PatchBuild {
        series: String,
        index: u32,
        subject: String,
        builds: bool,
        first_error: Option<String>,
    },
    /// An artifact is ready.
    Artifact {
        kind: String,
        path: String,
    },
}
