//! The patched kernel, from posted series to a bzImage and what the guest
//! needs (headers, the static kselftest), reproducibly.
//!
//! [`ensure_kernel`] is the entry point:
//! 1. **Apply** ([`tree`], [`apply`]): the base tree is unpacked and
//!    committed once per cache; the plan from `kernel/` (series as posted,
//!    the port's replacements and fixups, see [`layout`]) is applied with
//!    `git am` in a separate work tree, patch by patch, with a report.
//! 2. **Configure** ([`configure`], [`kconfig`]): tinyconfig plus the
//!    fragments, then every requested symbol is verified.
//! 3. **Build** ([`make`]): `make bzImage` out of tree, progress from
//!    kbuild's output, the full log to a file; optionally after every
//!    patch (`per_patch`), naming the patches that break the build.
//! 4. **Selftests** ([`selftest`]): headers_install, then the posted
//!    mkdirat2 kselftest as a static binary.
//! 5. The artifacts and a [`manifest::BuildManifest`] go into a directory
//!    named by the build's inputs; it is renamed into place only when
//!    complete, so nothing half-built is ever reported as built, and an
//!    unchanged request is answered from it in seconds, once every
//!    artifact's size and sha256 still match the manifest (a damaged build
//!    is rebuilt, and the note says what was damaged). Paths in the
//!    manifest are relative, so the cache can be moved or copied.
//!
//! **Architecture invariant:** every tool runs through
//! [`gasbench_env::Runtime`]; this crate never spells a tool path.

pub mod apply;
pub mod bzimage;
mod cache;
pub mod configure;
pub mod cross;
pub mod disk;
pub mod error;
pub mod extract;
pub mod git;
pub mod guess_base;
pub mod kconfig;
mod kernel_build;
pub mod layout;
pub mod make;
pub mod manifest;
pub mod profile;
pub mod report;
pub mod selftest;
mod stage;
pub mod tree;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use gasbench_env::{CacheDir, Runtime};
use gasbench_events::EventSink;
use gasbench_events::kernel::KernelEvent;
use gasbench_events::run::{Outcome, RunEvent, Stage};
use sha2::{Digest, Sha256};

pub use error::KbuildError;
pub use manifest::BuildManifest;
pub use tree::BaseSource;

use crate::git::Git;
use crate::layout::KernelDir;
use crate::make::Make;
use crate::manifest::{ArtifactPaths, PatchBuild, Timings, Toolchain};
use crate::report::ApplyReport;
use crate::tree::{BaseTree, hex};

use crate::cache::{
    RemoveOnDrop, Reuse, emit_artifacts, prune_builds, remove_abandoned_staging, reuse,
};
use crate::kernel_build::build_or_reuse;
use crate::stage::{StageTimer, note};

/// What to build.
#[derive(Clone, Debug)]
pub struct KernelRequest {
    /// The `kernel/` directory (gasbench's data's, or one the user
    /// named); `None` is an error that says so. It is never guessed from
    /// the current directory: every command finds it one way.
    pub kernel_dir: Option<PathBuf>,
    pub base: BaseSource,
    /// Only these series (directory names); `None` for all of the port.
    pub series: Option<Vec<String>>,
    /// Apply the posted series only, without the port's replacements and
    /// fixups (to see what the posting does on its own).
    pub posted_only: bool,
    /// Build after every patch and report which ones break the build.
    pub per_patch: bool,
    /// In per-patch mode, also compile each patch's C files for this
    /// architecture (`arm`: no syscall wrappers, unlike x86_64).
    pub cross_arch: Option<String>,
    /// `make -j`; `None` for the number of CPUs.
    pub jobs: Option<u32>,
    /// Throw away local edits in the cached tree instead of refusing.
    pub discard_local_changes: bool,
    /// The kernel profile (`kernel/profiles/profiles.toml`): `default`,
    /// `debug`, `race`.
    pub profile: String,
}

impl Default for KernelRequest {
    fn default() -> Self {
        Self {
            kernel_dir: None,
            base: BaseSource::Packaged,
            series: None,
            posted_only: false,
            per_patch: false,
            cross_arch: None,
            jobs: None,
            discard_local_changes: false,
            profile: profile::DEFAULT.to_string(),
        }
    }
}

/// What the rest of the pipeline needs from the kernel build.
#[derive(Clone, Debug)]
pub struct KernelArtifacts {
    pub bzimage: PathBuf,
    /// `7.2.12`.
    pub release: String,
    pub config: PathBuf,
    pub system_map: PathBuf,
    /// Installed uapi headers (`headers/include`).
    pub headers: PathBuf,
    /// The static `mkdirat_fd_test` binary; `None` when the tree has no
    /// such selftest (the mkdirat2 series is not in the build).
    pub selftest: Option<PathBuf>,
    /// mkdirat2's number in the x86_64 syscall table; `None` when the
    /// tree has no mkdirat2.
    pub mkdirat2_syscall: Option<u32>,
    pub manifest_path: PathBuf,
    pub manifest: BuildManifest,
    /// True when nothing had changed and the earlier build was reused.
    pub reused: bool,
    /// The source tree with the series applied, as the stage left it
    /// (for series-level checks that read it; the next kernel stage on
    /// the same base moves it on).
    pub src: PathBuf,
}

/// Build (or reuse) the patched kernel. Fast when nothing changed.
///
/// When gasbench is interrupted, its tools are stopped
/// (`gasbench_env::process::stop_tools`): whatever failed from then on is
/// [`KbuildError::Interrupted`], and nothing half-made is left to be used
/// (the build directory is renamed into place only when complete; make
/// deletes the targets it was writing).
pub fn ensure_kernel(
    req: &KernelRequest,
    rt: &Runtime,
    cache: &CacheDir,
    sink: &EventSink,
) -> Result<KernelArtifacts, KbuildError> {
    match build_or_reuse(req, rt, cache, sink) {
        Err(e)
            if gasbench_env::process::stopping()
                && !matches!(e, KbuildError::Interrupted { .. }) =>
        {
            Err(KbuildError::Interrupted {
                what: format!("the kernel stage ({e})"),
            })
        }
        other => other,
    }
}

type Prepared = (BaseTree, tree::TreeLock, ApplyReport);
