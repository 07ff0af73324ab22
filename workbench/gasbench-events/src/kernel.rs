//! Kernel preparation events: the series applied patch by patch, the build.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplyStatus {
    Applied,
    /// Applied only with reduced context (`git apply -C1`): the base's
    /// surroundings differ from the posting's.
    AppliedWithFuzz,
    Failed,
}

impl ApplyStatus {
    pub fn name(self) -> &'static str {
        match self {
            ApplyStatus::Applied => "applied",
            ApplyStatus::AppliedWithFuzz => "applied with fuzz",
            ApplyStatus::Failed => "failed",
        }
    }
}

/// What a patch is to the series.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PatchRole {
    /// As posted (extracted byte-exact from the mail).
    #[default]
    Posted,
    /// Missing from the mail and written from quotes; stands for a posted
    /// patch.
    Reconstructed,
    /// The port's version of a posted patch that does not apply to the
    /// base: same additions, context refreshed.
    Replacement,
    /// The port's own patch after the posted ones (a build fix, API drift).
    Fixup,
}

impl PatchRole {
    pub fn name(self) -> &'static str {
        match self {
            PatchRole::Posted => "posted",
            PatchRole::Reconstructed => "reconstructed",
            PatchRole::Replacement => "replacement",
            PatchRole::Fixup => "fixup",
        }
    }
}

/// One hunk's fate, for patches that did not apply cleanly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HunkOutcome {
    pub file: String,
    /// 1-based within the file.
    pub hunk: u32,
    /// The `@@ -a,b +c,d @@ ...` line as posted.
    pub header: String,
    /// Applies as posted (line offsets allowed).
    pub applied: bool,
    /// Does not apply as posted but does with one line of context.
    #[serde(default)]
    pub fuzz: bool,
}

/// What happened to one patch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PatchApplied {
    pub series: String,
    /// 1-based position in the apply sequence.
    pub index: u32,
    pub total: u32,
    /// The posted index (`3` of `3/6`), `None` for fixups.
    #[serde(default)]
    pub posted_index: Option<u32>,
    pub subject: String,
    /// True for gasbench's own patches (the port's replacements and
    /// fixups), false for posted (or reconstructed) ones.
    pub fixup: bool,
    /// Logs written before roles existed read as `posted`; `fixup` still
    /// tells gasbench's own patches apart there.
    #[serde(default)]
    pub role: PatchRole,
    pub status: ApplyStatus,
    pub files: Vec<String>,
    #[serde(default)]
    pub hunks: Vec<HunkOutcome>,
    /// Human-readable detail: rejected hunks, the replacement used.
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
    /// Build progress derived from kbuild's output. `total` is an estimate
    /// (the line count of the last full build); 0 when unknown.
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
        /// The second architecture its C files were compiled for, if any.
        #[serde(default)]
        cross_arch: Option<String>,
        /// The first error there, when it is in a file the series touched.
        #[serde(default)]
        cross_error: Option<String>,
    },
    /// A requested config symbol and whether it ended up set as asked.
    ConfigChecked {
        symbol: String,
        wanted: String,
        got: String,
        ok: bool,
    },
    /// An artifact is ready.
    Artifact {
        kind: String,
        path: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_events_round_trip_and_old_lines_without_hunks_still_read() {
        let ev = KernelEvent::Patch(PatchApplied {
            series: "mkdirat2-v2".into(),
            index: 1,
            total: 9,
            posted_index: Some(1),
            subject: "vfs: x".into(),
            fixup: false,
            role: PatchRole::Posted,
            status: ApplyStatus::AppliedWithFuzz,
            files: vec!["fs/namei.c".into()],
            hunks: vec![HunkOutcome {
                file: "fs/namei.c".into(),
                hunk: 2,
                header: "@@ -1,2 +1,3 @@".into(),
                applied: false,
                fuzz: true,
            }],
            detail: String::new(),
        });
        let line = serde_json::to_string(&ev).unwrap();
        assert!(line.contains(r#""status":"applied_with_fuzz""#), "{line}");
        assert_eq!(serde_json::from_str::<KernelEvent>(&line).unwrap(), ev);
        let old = r#"{"type":"patch","series":"s","index":1,"total":1,"subject":"x","fixup":true,"status":"applied","files":[],"detail":""}"#;
        assert!(matches!(
            serde_json::from_str::<KernelEvent>(old).unwrap(),
            KernelEvent::Patch(PatchApplied { hunks, posted_index: None, fixup: true, role: PatchRole::Posted, .. }) if hunks.is_empty()
        ));
    }
}
