//! The build manifest: what was built from what, with which tools, how
//! long it took and where everything is. Written last, so a directory
//! with a manifest is a complete build.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::kconfig::Mismatch;
use crate::report::ApplyReport;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Toolchain {
    /// Tool → its version line (`rustc 1.96.1 (...)`).
    pub versions: BTreeMap<String, String>,
    /// `host` or `toolroot`.
    pub runtime: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    pub apply_ms: u64,
    pub configure_ms: u64,
    pub build_ms: u64,
    pub headers_ms: u64,
    pub selftest_ms: u64,
    pub per_patch_ms: u64,
    pub total_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactPaths {
    pub bzimage: PathBuf,
    pub config: PathBuf,
    pub system_map: PathBuf,
    /// `headers/include` is what `-isystem` wants.
    pub headers: PathBuf,
    /// `None` when the tree has no mkdirat2 selftest to build.
    #[serde(default)]
    pub selftest: Option<PathBuf>,
    pub build_log: PathBuf,
    /// The kernel image with its symbols (and, in the debug profiles,
    /// line tables) that decodes the guest's stack traces.
    #[serde(default)]
    pub vmlinux: Option<PathBuf>,
}

/// After patch k: does the tree build?
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchBuild {
    pub position: u32,
    pub series: String,
    pub label: String,
    pub commit: String,
    pub builds: bool,
    pub first_error: Option<String>,
    /// Requested config symbols that were not set at this point.
    pub config_missing: Vec<String>,
    /// The same patch's C files compiled for a second architecture.
    #[serde(default)]
    pub cross: Option<crate::cross::CrossResult>,
    pub elapsed_ms: u64,
    pub log: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildManifest {
    /// `7.2.12` (from the build's include/config/kernel.release).
    pub kernel_release: String,
    pub base: String,
    pub base_commit: String,
    /// The commit that was built.
    pub head: String,
    /// Non-empty when the tree had local changes on top of `head`.
    pub local_changes_sha256: String,
    pub build_key: String,
    pub arch: String,
    pub make_vars: Vec<String>,
    pub config_sha256: String,
    /// Requested symbols that did not stick (empty in a strict build).
    pub config_mismatches: Vec<Mismatch>,
    pub config_fragments: Vec<String>,
    pub apply: ApplyReport,
    pub toolchain: Toolchain,
    pub timings: Timings,
    pub artifacts: ArtifactPaths,
    /// The number mkdirat2 got in the x86_64 syscall table.
    pub mkdirat2_syscall: Option<u32>,
    /// kbuild command lines in the build (progress total for the next).
    pub kbuild_steps: u64,
    #[serde(default)]
    pub per_patch: Vec<PatchBuild>,
    /// The kernel profile it was built with.
    #[serde(default = "crate::profile::ProfileInfo::default_profile")]
    pub profile: crate::profile::ProfileInfo,
}
