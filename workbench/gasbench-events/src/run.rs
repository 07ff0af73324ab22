//! Run-level events: the frame every other event sits in.

use serde::{Deserialize, Serialize};

/// The pipeline's stages, in order. The TUI draws one row per stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Setup,
    Apply,
    Configure,
    Build,
    Selftests,
    Initramfs,
    Boot,
    Run,
    Teardown,
}

impl Stage {
    pub const ALL: [Stage; 9] = [
        Stage::Setup,
        Stage::Apply,
        Stage::Configure,
        Stage::Build,
        Stage::Selftests,
        Stage::Initramfs,
        Stage::Boot,
        Stage::Run,
        Stage::Teardown,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Setup => "setup",
            Stage::Apply => "apply",
            Stage::Configure => "configure",
            Stage::Build => "build",
            Stage::Selftests => "selftests",
            Stage::Initramfs => "initramfs",
            Stage::Boot => "boot",
            Stage::Run => "run",
            Stage::Teardown => "teardown",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    /// Nothing to do: the cached result was reused.
    Cached,
    Skipped,
    Failed,
}

impl Outcome {
    /// How every printer names it (`run`, `repro` and `kernel` alike).
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Cached => "cached",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "FAILED",
        }
    }
}

/// Which accelerator a VM used, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccelChoice {
    /// `kvm` or `tcg`.
    pub accel: String,
    /// Why this one: "KVM works" or the reason KVM was unusable.
    pub reason: String,
}

/// The kernel profile a run's kernel was built with, and the detectors it
/// arms (`kernel/profiles/profiles.toml`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileChoice {
    /// `default`, `debug`, `race`; `given` for a kernel image the user
    /// passed (its detectors are unknown).
    pub name: String,
    pub detectors: Vec<String>,
    #[serde(default)]
    pub about: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// How an expectation is named wherever a person reads it (the summary
/// table, junit, KTAP, KCIDB, the TUI): `line 40: the selftest cleaned up
/// after itself: out.names`. Made here, once, from the parts the compiler
/// knew; nothing parses it back. A log recorded before the parts were
/// carried has no step name, and its `what` is already this text.
pub fn expectation_title(line: u32, step_name: &str, what: &str) -> String {
    if step_name.is_empty() {
        what.to_string()
    } else {
        format!("line {line}: {step_name}: {what}")
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunEvent {
    Started {
        run_dir: String,
        command: String,
    },
    StageBegin {
        stage: Stage,
        detail: String,
    },
    /// Progress within a stage; `total` is 0 when unknown.
    StageProgress {
        stage: Stage,
        done: u64,
        total: u64,
        detail: String,
    },
    StageEnd {
        stage: Stage,
        outcome: Outcome,
        detail: String,
        elapsed_ms: u64,
    },
    Accel(AccelChoice),
    /// The kernel's profile, once the kernel is known.
    Profile(ProfileChoice),
    /// A scenario that was not run, and why (it is for another profile).
    ScenarioSkipped {
        scenario: String,
        why: String,
    },
    /// A step that provoked a detector on purpose got its report: the
    /// detector is armed and its reports reach the verdicts.
    DetectorProven {
        detector: String,
        scenario: String,
        step: u32,
        report: u32,
    },
    ScenarioBegin {
        scenario: String,
        steps: u32,
    },
    /// One expectation checked: at `line` of the scenario file, in the
    /// step called `step_name` (`(whole run)` for a rule of the whole
    /// scenario), `what` it checked (`errno`, `out.names`).
    Expectation {
        scenario: String,
        step: u32,
        /// 0 for a rule of the whole scenario (and in logs recorded before
        /// lines were carried here, whose `what` holds the location).
        #[serde(default, skip_serializing_if = "is_zero")]
        line: u32,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        step_name: String,
        what: String,
        expected: String,
        actual: String,
        held: bool,
    },
    ScenarioEnd {
        scenario: String,
        passed: bool,
        elapsed_ms: u64,
    },
    /// Free-form text worth keeping in the log.
    Note {
        text: String,
    },
    /// Something went wrong that ends the run.
    Error {
        text: String,
    },
    Finished {
        passed: bool,
        elapsed_ms: u64,
    },
}
