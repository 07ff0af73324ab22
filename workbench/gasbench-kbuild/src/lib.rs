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
pub mod configure;
pub mod cross;
pub mod disk;
pub mod error;
pub mod extract;
pub mod git;
pub mod guess_base;
pub mod kconfig;
pub mod layout;
pub mod make;
pub mod manifest;
pub mod profile;
pub mod report;
pub mod selftest;
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
}

struct StageTimer<'a> {
    sink: &'a EventSink,
    stage: Stage,
    start: Instant,
}

impl<'a> StageTimer<'a> {
    fn begin(sink: &'a EventSink, stage: Stage, detail: impl Into<String>) -> Self {
        sink.emit(RunEvent::StageBegin {
            stage,
            detail: detail.into(),
        });
        Self {
            sink,
            stage,
            start: Instant::now(),
        }
    }
    fn ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
    fn end(self, outcome: Outcome, detail: impl Into<String>) -> u64 {
        let ms = self.ms();
        self.sink.emit(RunEvent::StageEnd {
            stage: self.stage,
            outcome,
            detail: detail.into(),
            elapsed_ms: ms,
        });
        ms
    }
    fn fail(self, e: &KbuildError) {
        self.end(Outcome::Failed, e.to_string());
    }
}

fn note(sink: &EventSink, stage: Stage, text: &str) {
    sink.emit(RunEvent::StageProgress {
        stage,
        done: 0,
        total: 0,
        detail: text.to_string(),
    });
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

fn build_or_reuse(
    req: &KernelRequest,
    rt: &Runtime,
    cache: &CacheDir,
    sink: &EventSink,
) -> Result<KernelArtifacts, KbuildError> {
    let t0 = Instant::now();
    let kdir = match &req.kernel_dir {
        Some(dir) => KernelDir::open(dir)?,
        None => {
            return Err(KbuildError::Layout {
                what: "no kernel/ directory was given to build from".into(),
                path: None,
            });
        }
    };
    // A build of some of the series leaves out the config symbols only
    // the other series add: they cannot be set without their patches.
    let (mut fragments, left_out) = match &req.series {
        Some(only) => kdir.fragments_for(only)?,
        None => (kdir.fragments()?, Default::default()),
    };
    // The profile's fragment goes last: it may turn off what the guest
    // config picks (SLUB_TINY for KASAN).
    let profile = profile::profile(&kdir, &req.profile)?;
    // A profile that sets nothing (default) leaves the configuration, and
    // so its cached build, exactly as without profiles.
    if !kconfig::parse_fragment(&profile.fragment.text, &profile.fragment.name).is_empty() {
        fragments.push(profile.fragment.clone());
    }
    for (symbol, by) in &left_out {
        note(
            sink,
            Stage::Configure,
            &format!(
                "CONFIG_{symbol} left out of the fragments: {by} adds it and is not in this build"
            ),
        );
    }
    let mut timings = Timings::default();

    // ---- Apply ----
    let st = StageTimer::begin(sink, Stage::Apply, format!("base {}", kdir.base.release));
    let (tree, _lock, report) = match prepare_and_apply(req, rt, cache, &kdir, sink) {
        Ok(v) => v,
        Err(e) => {
            st.fail(&e);
            return Err(e);
        }
    };
    let (a, f, x) = report.counts();
    timings.apply_ms = st.end(
        if report.cached {
            Outcome::Cached
        } else {
            Outcome::Ok
        },
        format!(
            "{a} applied, {f} with fuzz, {x} failed as posted (replaced by the port); head {}",
            short(&report.head)
        ),
    );

    let make = Make {
        rt: rt.clone(),
        src: tree.src.clone(),
        out: profile::build_dir_for(&tree.out, req.series.as_deref(), &profile.name),
        // The tree and the build outputs (headers and the selftest are
        // written straight into the staging directory under builds/).
        binds: {
            let mut b = vec![cache.kernel()];
            b.extend(tree.shared_with.iter().cloned());
            b
        },
        arch: kdir.base.arch.clone(),
        vars: kdir.base.make_vars.clone(),
        jobs: req.jobs.unwrap_or_else(default_jobs),
    };
    let src_git = Git::new(rt, &tree.src, &tree.binds());
    if let Some(seed) = profile::seed_for(&make.out, &profile.name) {
        seed_build_dir(&make, &seed, sink)?;
    }

    // ---- Per patch ----
    let mut per_patch = Vec::new();
    if req.per_patch {
        // Every patch gets checked out: edits in the cached tree would go.
        if !req.discard_local_changes {
            refuse_to_lose_local_changes(&src_git, "--per-patch (it checks out every patch)")?;
        }
        let st = StageTimer::begin(
            sink,
            Stage::Build,
            "per patch: does the tree build after each one?",
        );
        let lines = kdir.base.full_build_lines;
        let cross = req
            .cross_arch
            .as_deref()
            .map(|a| cross::CrossCheck::new(&make, a, tree.dir.join(format!("out-{a}"))));
        match run_per_patch(&make, cross, &report, &fragments, cache, sink, &tree, lines) {
            Ok(v) => per_patch = v,
            Err(e) => {
                st.fail(&e);
                return Err(e);
            }
        }
        let broken = per_patch.iter().filter(|p| !p.builds).count();
        timings.per_patch_ms = st.end(
            Outcome::Ok,
            format!("{} patches built, {broken} did not build", per_patch.len()),
        );
    }

    // The built tree at the result (with the profile's own patches).
    let head = {
        let mut binds = tree.binds();
        binds.push(kdir.root().to_path_buf());
        profile::commit_on(&Git::new(rt, &tree.apply, &binds), &report.head, &profile)?
    };
    let local = checkout(&src_git, &head, req.discard_local_changes || req.per_patch)?;
    let tree_state = format!("{head}+{local}");
    // The configuration depends on the Kconfig files only: editing a
    // driver in the cached tree must not re-run the configuration.
    let kconfig_state = kconfig_state(&src_git, &tree.base_commit, &head, !local.is_empty())?;

    // ---- Configure ----
    let st = StageTimer::begin(
        sink,
        Stage::Configure,
        format!("{} fragments", fragments.len()),
    );
    let configured = match configure::configure(&make, &fragments, &kconfig_state, sink, true) {
        Ok(c) => c,
        Err(e) => {
            st.fail(&e);
            return Err(e);
        }
    };
    timings.configure_ms = st.end(
        if configured.reused {
            Outcome::Cached
        } else {
            Outcome::Ok
        },
        format!(
            "{} requested symbols verified; .config sha256 {}",
            configured.requested.len(),
            &configured.config_sha256[..12]
        ),
    );

    let toolchain = toolchain(rt, &make)?;
    let mut h = Sha256::new();
    h.update(tree_state.as_bytes());
    h.update(configured.config_sha256.as_bytes());
    h.update(
        serde_json::to_string(&toolchain)
            .unwrap_or_default()
            .as_bytes(),
    );
    h.update(make.arch.as_bytes());
    h.update(make.vars.join(" ").as_bytes());
    let build_key = hex(&h.finalize());
    let builds = cache.kernel().join("builds");
    let final_dir = builds.join(&build_key[..16]);
    remove_abandoned_staging(&builds);

    let reused = if req.per_patch {
        None
    } else {
        match reuse(&final_dir) {
            Reuse::Hit(a) => Some(*a),
            Reuse::Missing => None,
            Reuse::Damaged(why) => {
                note(
                    sink,
                    Stage::Build,
                    &format!(
                        "the cached build {} is damaged ({why}): building it again",
                        final_dir.display()
                    ),
                );
                std::fs::remove_dir_all(&final_dir).map_err(|e| KbuildError::CacheDamaged {
                    dir: final_dir.clone(),
                    what: format!("{why}; and it cannot be removed: {e}"),
                })?;
                None
            }
        }
    };
    if let Some(mut a) = reused {
        // What a profile arms and adds to the command line is not part of
        // the build: the current definition holds.
        a.manifest.profile = profile.info.clone();
        for stage in [Stage::Build, Stage::Selftests] {
            let st = StageTimer::begin(sink, stage, "");
            st.end(
                Outcome::Cached,
                format!("unchanged: {}", final_dir.display()),
            );
        }
        emit_artifacts(sink, &a.manifest.artifacts);
        return Ok(a);
    }

    // ---- Build ----
    let staging = builds.join(format!(
        ".staging-{}-{}",
        &build_key[..16],
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|e| KbuildError::io("create", &staging, e))?;
    // A failed build leaves no half-made directory behind.
    let staging_guard = RemoveOnDrop(Some(staging.clone()));
    let log = cache
        .logs()
        .join(format!("kernel-build-{}.log", &build_key[..16]));
    let _ = std::fs::remove_file(&log);
    crate::disk::require(&make.out, 2048, "the kernel build")?;
    let total = progress_total(&tree, kdir.base.full_build_lines);
    let st = StageTimer::begin(
        sink,
        Stage::Build,
        format!("make bzImage (log: {})", log.display()),
    );
    let run = make.run_logged(&["bzImage"], &log, sink, Stage::Build, total)?;
    if run.disk_full {
        let e = KbuildError::DiskFull {
            what: "the kernel build".into(),
            path: make.out.clone(),
            available_mib: crate::disk::free_mib(&make.out).unwrap_or(0),
            needed_mib: 2048,
        };
        st.fail(&e);
        return Err(e);
    }
    if !run.ok {
        let e = KbuildError::BuildFailed {
            first_error: run
                .first_error
                .unwrap_or_else(|| format!("make exited {}", run.status)),
            log: log.clone(),
        };
        st.fail(&e);
        return Err(e);
    }
    remember_steps(&tree, run.steps);
    timings.build_ms = st.end(
        Outcome::Ok,
        format!(
            "{} kbuild steps in {:.1} s",
            run.steps,
            run.elapsed.as_secs_f64()
        ),
    );

    // ---- Selftests (headers first) ----
    let st = StageTimer::begin(
        sink,
        Stage::Selftests,
        "headers_install, mkdirat_fd_test (static)",
    );
    let t = Instant::now();
    let headers = staging.join("headers");
    if let Err(e) = selftest::install_headers(&make, &headers, &log, sink) {
        st.fail(&e);
        return Err(e);
    }
    timings.headers_ms = t.elapsed().as_millis() as u64;
    let t = Instant::now();
    let has_selftest = selftest::present(&tree.src);
    if has_selftest {
        if let Err(e) =
            selftest::build_selftest(&make, &headers, &staging.join("selftests"), &log, sink)
        {
            st.fail(&e);
            return Err(e);
        }
        timings.selftest_ms = t.elapsed().as_millis() as u64;
        st.end(
            Outcome::Ok,
            format!(
                "{} (static)",
                final_dir
                    .join("selftests")
                    .join(selftest::SELFTEST)
                    .display()
            ),
        );
    } else {
        st.end(
            Outcome::Ok,
            format!(
                "headers only: the tree has no {}/{}.c (its series is not in this build)",
                selftest::SELFTEST_DIR,
                selftest::SELFTEST
            ),
        );
    }

    // ---- Artifacts and manifest, renamed into place when complete ----
    let release = std::fs::read_to_string(make.out.join("include/config/kernel.release"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| tree.release.clone());
    for (from, to) in [
        (
            make.out.join("arch/x86/boot/bzImage"),
            staging.join("bzImage"),
        ),
        (make.out.join(".config"), staging.join("config")),
        (make.out.join("System.map"), staging.join("System.map")),
        (log.clone(), staging.join("build.log")),
    ] {
        std::fs::copy(&from, &to).map_err(|e| KbuildError::io("copy", &from, e))?;
    }
    // vmlinux decodes the guest's stack traces; a debug one is hundreds
    // of MiB, so it is linked, not copied (the linker replaces the file
    // on a rebuild; it never writes into the old one).
    let vmlinux_from = make.out.join("vmlinux");
    let vmlinux_to = staging.join("vmlinux");
    if std::fs::hard_link(&vmlinux_from, &vmlinux_to).is_err() {
        std::fs::copy(&vmlinux_from, &vmlinux_to)
            .map_err(|e| KbuildError::io("copy", &vmlinux_from, e))?;
    }
    let mkdirat2 = apply::syscall_number(&tree.src, "mkdirat2");
    timings.total_ms = t0.elapsed().as_millis() as u64;
    let artifacts = ArtifactPaths {
        bzimage: final_dir.join("bzImage"),
        config: final_dir.join("config"),
        system_map: final_dir.join("System.map"),
        headers: final_dir.join("headers/include"),
        selftest: has_selftest.then(|| final_dir.join("selftests").join(selftest::SELFTEST)),
        build_log: final_dir.join("build.log"),
        vmlinux: Some(final_dir.join("vmlinux")),
    };
    // A build that copied a broken image is not one to keep.
    let staged_image = staging.join("bzImage");
    bzimage::check(&staged_image).map_err(|e| KbuildError::Invalid {
        what: format!("the kernel build produced a broken image: {e}"),
    })?;
    let checked = manifest::record(&staging, &artifacts.checked_paths(&final_dir))
        .map_err(|e| KbuildError::io("checksum", &staging, e))?;
    let manifest = BuildManifest {
        kernel_release: release,
        base: tree.label.clone(),
        base_commit: tree.base_commit.clone(),
        head,
        local_changes_sha256: local,
        build_key: build_key.clone(),
        arch: make.arch.clone(),
        make_vars: make.vars.clone(),
        config_sha256: configured.config_sha256.clone(),
        config_mismatches: configured.mismatches.clone(),
        config_fragments: fragments.iter().map(|f| f.name.clone()).collect(),
        apply: report,
        toolchain,
        timings,
        artifacts: artifacts.clone(),
        mkdirat2_syscall: mkdirat2,
        kbuild_steps: run.steps,
        per_patch,
        profile: profile.info.clone(),
        checked,
    };
    let mpath = staging.join("manifest.json");
    // On disk the artifacts are named relative to the build directory.
    let on_disk = BuildManifest {
        artifacts: artifacts.relative_to(&final_dir),
        ..manifest.clone()
    };
    let text = serde_json::to_string_pretty(&on_disk).unwrap_or_default();
    std::fs::write(&mpath, text).map_err(|e| KbuildError::io("write", &mpath, e))?;
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir)
            .map_err(|e| KbuildError::io("remove", &final_dir, e))?;
    }
    std::fs::rename(&staging, &final_dir).map_err(|e| KbuildError::io("rename", &staging, e))?;
    staging_guard.disarm();
    prune_builds(&builds, 6);
    emit_artifacts(sink, &artifacts);
    Ok(KernelArtifacts {
        bzimage: artifacts.bzimage.clone(),
        release: manifest.kernel_release.clone(),
        config: artifacts.config.clone(),
        system_map: artifacts.system_map.clone(),
        headers: artifacts.headers.clone(),
        selftest: artifacts.selftest.clone(),
        mkdirat2_syscall: mkdirat2,
        manifest_path: final_dir.join("manifest.json"),
        manifest,
        reused: false,
    })
}

/// Start `make.out` as a copy of `seed` (times kept, so kbuild's view of
/// what is up to date carries over); made beside it and renamed into
/// place, so an interrupted copy leaves nothing that looks like a build.
fn seed_build_dir(make: &Make, seed: &Path, sink: &EventSink) -> Result<(), KbuildError> {
    note(
        sink,
        Stage::Build,
        &format!(
            "{} starts as a copy of {}: only what differs is rebuilt",
            make.out.display(),
            seed.display()
        ),
    );
    let partial = make.out.with_extension("seeding");
    let _ = std::fs::remove_dir_all(&partial);
    let argv = [
        "cp".to_string(),
        "-a".into(),
        "--reflink=auto".into(),
        seed.display().to_string(),
        partial.display().to_string(),
    ];
    let parent = make.out.parent().unwrap_or(Path::new("/")).to_path_buf();
    let out = make
        .rt
        .build_command(&argv, &make.binds, &parent)
        .output()
        .map_err(|e| KbuildError::Spawn {
            what: "cp (seeding the build directory)".into(),
            source: e,
        })?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&partial);
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        if crate::disk::output_says_full(&text) {
            return Err(KbuildError::DiskFull {
                what: "seeding the build directory".into(),
                path: partial,
                available_mib: crate::disk::free_mib(&parent).unwrap_or(0),
                needed_mib: 0,
            });
        }
        return Err(KbuildError::Command {
            command: "cp -a".into(),
            status: out.status.to_string(),
            detail: crate::git::tail(text.trim(), 10),
        });
    }
    // The copy's configuration key is the seed's: configure runs again.
    let _ = std::fs::remove_file(partial.join(".gasbench-config-key"));
    std::fs::rename(&partial, &make.out).map_err(|e| KbuildError::io("rename", &partial, e))
}

type Prepared = (BaseTree, tree::TreeLock, ApplyReport);

fn prepare_and_apply(
    req: &KernelRequest,
    rt: &Runtime,
    cache: &CacheDir,
    kdir: &KernelDir,
    sink: &EventSink,
) -> Result<Prepared, KbuildError> {
    // One gasbench at a time per cache for the preparation itself.
    let trees = cache.kernel().join("trees");
    std::fs::create_dir_all(&trees).map_err(|e| KbuildError::io("create", &trees, e))?;
    let prep_lock = tree::TreeLock::acquire(&trees.join(".prepare.lock"), || {
        note(
            sink,
            Stage::Apply,
            "waiting for another gasbench preparing a tree",
        );
    })?;
    let tree = tree::prepare(rt, cache, kdir, &req.base, |s| note(sink, Stage::Apply, s))?;
    let lock = tree::TreeLock::acquire(&tree::lock_path(&tree.dir), || {
        note(
            sink,
            Stage::Apply,
            "waiting for another gasbench using this tree",
        );
    })?;
    drop(prep_lock);
    let port = if req.posted_only {
        None
    } else if req.base == BaseSource::Packaged {
        Some(kdir.port()?)
    } else {
        kdir.port_for(&tree.release)?
    };
    let plan = kdir.plan(port.as_ref(), req.series.as_deref())?;
    let report = apply::apply_plan(rt, kdir, &tree, &plan, sink)?;
    Ok((tree, lock, report))
}

/// What the configuration depends on: the base and every change to a
/// Kconfig file between it and `commit` (and, with `local`, in the work
/// tree). Patches that touch no Kconfig file keep the configuration.
fn kconfig_state(git: &Git, base: &str, commit: &str, local: bool) -> Result<String, KbuildError> {
    let pathspec = [":(glob)**/Kconfig*", "Kconfig"];
    let mut args = vec!["diff", base, commit, "--"];
    args.extend(pathspec);
    let mut h = Sha256::new();
    h.update(base.as_bytes());
    h.update(git.ok(&args)?.stdout.as_bytes());
    if local {
        let mut args = vec!["diff", "HEAD", "--"];
        args.extend(pathspec);
        h.update(git.ok(&args)?.stdout.as_bytes());
    }
    Ok(hex(&h.finalize()))
}

/// Check out `head` in the built tree. Returns the sha256 of local
/// changes kept on top ("" when none).
fn checkout(git: &Git, head: &str, discard: bool) -> Result<String, KbuildError> {
    let current = git.rev_parse("HEAD")?.unwrap_or_default();
    let clean = git.is_clean()?;
    if current == head && clean {
        return Ok(String::new());
    }
    if current == head && !discard {
        // Someone is editing the cached tree (a reviewer trying a fix):
        // build what is there, and name it by its diff.
        let diff = git.ok(&["diff", "HEAD"])?.stdout;
        return Ok(hex(&Sha256::digest(diff.as_bytes())));
    }
    if !clean && !discard {
        refuse_to_lose_local_changes(git, "checking out the changed series")?;
    }
    // Only files whose content differs are rewritten: the build stays
    // incremental.
    git.ok(&["checkout", "--quiet", "--force", "--detach", head])?;
    Ok(String::new())
}

/// An error naming the changed files when the tree has local changes
/// (tracked files only: untracked ones survive a checkout).
fn refuse_to_lose_local_changes(git: &Git, doing: &str) -> Result<(), KbuildError> {
    let status = git
        .ok(&["status", "--porcelain", "--untracked-files=no"])?
        .stdout;
    let mut files: Vec<String> = status
        .lines()
        .filter_map(|l| l.get(3..))
        .map(str::to_string)
        .collect();
    if files.is_empty() {
        return Ok(());
    }
    let more = files.len().saturating_sub(5);
    files.truncate(5);
    if more > 0 {
        files.push(format!("and {more} more"));
    }
    Err(KbuildError::LocalChanges {
        tree: git.dir().to_path_buf(),
        files,
        doing: doing.to_string(),
    })
}

#[allow(clippy::too_many_arguments)]
fn run_per_patch(
    make: &Make,
    mut cross: Option<cross::CrossCheck>,
    report: &ApplyReport,
    fragments: &[layout::Fragment],
    cache: &CacheDir,
    sink: &EventSink,
    tree: &BaseTree,
    full_build_lines: u64,
) -> Result<Vec<PatchBuild>, KbuildError> {
    let git = &Git::new(&make.rt, &tree.src, &tree.binds());
    let mut out = Vec::new();
    let applied: Vec<_> = report
        .patches
        .iter()
        .filter(|p| p.commit.is_some())
        .collect();
    let total = progress_total(tree, full_build_lines);
    for (i, p) in applied.iter().enumerate() {
        let commit = p.commit.clone().unwrap_or_default();
        let label = match p.posted_index {
            Some(n) => format!("{} {} {}: {}", p.series, p.role.name(), n, p.subject),
            None => format!("{} {}: {}", p.series, p.role.name(), p.subject),
        };
        note(
            sink,
            Stage::Build,
            &format!("[{}/{}] {label}", i + 1, applied.len()),
        );
        checkout(git, &commit, true)?;
        let state = kconfig_state(git, &tree.base_commit, &commit, false)?;
        let configured = configure::configure(make, fragments, &state, sink, false)?;
        let log = cache.logs().join("kernel-per-patch").join(format!(
            "{:02}-{}.log",
            p.position,
            &commit[..12.min(commit.len())]
        ));
        let _ = std::fs::remove_file(&log);
        let run = make.run_logged(&["bzImage"], &log, sink, Stage::Build, total)?;
        if run.disk_full {
            return Err(KbuildError::DiskFull {
                what: "the per-patch build".into(),
                path: make.out.clone(),
                available_mib: crate::disk::free_mib(&make.out).unwrap_or(0),
                needed_mib: 2048,
            });
        }
        let first_error = (!run.ok).then(|| {
            run.first_error
                .clone()
                .unwrap_or_else(|| format!("make exited {}", run.status))
        });
        let cross_result = match cross.as_mut() {
            Some(c) => {
                let clog = log.with_extension("cross.log");
                let _ = std::fs::remove_file(&clog);
                c.check(&p.files, &clog, sink)?
            }
            None => None,
        };
        sink.emit(KernelEvent::PatchBuild {
            series: p.series.clone(),
            index: p.position,
            subject: label.clone(),
            builds: run.ok,
            first_error: first_error.clone(),
            cross_arch: cross_result.as_ref().map(|c| c.arch.clone()),
            cross_error: cross_result
                .as_ref()
                .filter(|c| c.caused_by_series)
                .and_then(|c| c.first_error.clone()),
        });
        out.push(PatchBuild {
            position: p.position,
            series: p.series.clone(),
            label,
            commit,
            builds: run.ok,
            first_error,
            config_missing: configured
                .mismatches
                .iter()
                .map(|m| m.symbol.clone())
                .collect(),
            cross: cross_result,
            elapsed_ms: run.elapsed.as_millis() as u64,
            log,
        });
    }
    Ok(out)
}

/// Sizes and hashes recorded for a build whose manifest predates them.
const LEGACY_CHECKED: &str = "checked.json";

/// What the build directory for a request holds.
enum Reuse {
    Hit(Box<KernelArtifacts>),
    /// No complete build (no manifest): build.
    Missing,
    /// A build whose artifacts no longer match their manifest: why.
    Damaged(String),
}

/// The build in `dir`, checked against its manifest. A manifest from
/// before sizes and hashes were kept is checked as far as it can be (the
/// files are there, the image is a whole bzImage), and what it has now is
/// recorded beside it (`checked.json`: the manifest itself is left as it
/// is, for the gasbench that wrote it).
fn reuse(dir: &Path) -> Reuse {
    let mpath = dir.join("manifest.json");
    let Ok(text) = std::fs::read_to_string(&mpath) else {
        return if dir.exists() {
            Reuse::Damaged("it has no manifest".into())
        } else {
            Reuse::Missing
        };
    };
    let mut manifest: BuildManifest = match serde_json::from_str(&text) {
        Ok(m) => m,
        Err(e) => return Reuse::Damaged(format!("manifest.json does not parse: {e}")),
    };
    let on_disk = manifest.artifacts.clone();
    manifest.artifacts = on_disk.resolved_in(dir);
    let a = &manifest.artifacts;
    let sidecar = dir.join(LEGACY_CHECKED);
    if manifest.checked.is_empty() {
        manifest.checked = std::fs::read_to_string(&sidecar)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
    }
    if manifest.checked.is_empty() {
        let all = [&a.bzimage, &a.config, &a.system_map, &a.headers];
        if let Some(p) = all
            .into_iter()
            .chain(a.selftest.as_ref())
            .find(|p| !p.exists())
        {
            return Reuse::Damaged(format!("{} is missing", p.display()));
        }
        if let Err(e) = bzimage::check(&a.bzimage) {
            return Reuse::Damaged(e.to_string());
        }
        match manifest::record(dir, &a.checked_paths(dir)) {
            Ok(c) => manifest.checked = c,
            Err(e) => return Reuse::Damaged(e.to_string()),
        }
        // Best effort: the next reuse checks against it.
        if let Ok(text) = serde_json::to_string_pretty(&manifest.checked) {
            let tmp = dir.join(format!(".{LEGACY_CHECKED}.tmp-{}", std::process::id()));
            if std::fs::write(&tmp, text).is_ok() {
                let _ = std::fs::rename(&tmp, &sidecar);
            }
        }
    } else if let Err(why) = manifest::verify(dir, &manifest.checked) {
        return Reuse::Damaged(why);
    }
    // The image itself, whatever the manifest says.
    if let Err(e) = bzimage::check(&a.bzimage) {
        return Reuse::Damaged(e.to_string());
    }
    // vmlinux is too big to hash on every reuse (a debug one is hundreds
    // of MiB); that it is there is what decoding needs.
    if let Some(v) = &manifest.artifacts.vmlinux
        && !v.exists()
    {
        return Reuse::Damaged(format!("{} is missing", v.display()));
    }
    let a = &manifest.artifacts;
    Reuse::Hit(Box::new(KernelArtifacts {
        bzimage: a.bzimage.clone(),
        release: manifest.kernel_release.clone(),
        config: a.config.clone(),
        system_map: a.system_map.clone(),
        headers: a.headers.clone(),
        selftest: a.selftest.clone(),
        mkdirat2_syscall: manifest.mkdirat2_syscall,
        manifest_path: dir.join("manifest.json"),
        manifest: manifest.clone(),
        reused: true,
    }))
}

fn emit_artifacts(sink: &EventSink, a: &ArtifactPaths) {
    for (kind, path) in [
        ("bzImage", Some(&a.bzimage)),
        ("config", Some(&a.config)),
        ("system_map", Some(&a.system_map)),
        ("headers", Some(&a.headers)),
        ("selftest", a.selftest.as_ref()),
        ("build_log", Some(&a.build_log)),
        ("vmlinux", a.vmlinux.as_ref()),
    ] {
        let Some(path) = path else { continue };
        sink.emit(KernelEvent::Artifact {
            kind: kind.into(),
            path: path.display().to_string(),
        });
    }
}

/// Removes a directory when dropped, unless disarmed.
struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// Remove staging directories (`.staging-<key>-<pid>`) whose gasbench is
/// gone: one that was killed outright had no chance to.
fn remove_abandoned_staging(builds: &Path) {
    let Ok(entries) = std::fs::read_dir(builds) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(".staging-")
            .and_then(|rest| rest.rsplit_once('-'))
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Keep the `keep` newest build directories.
fn prune_builds(dir: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut builds: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    builds.sort();
    let n = builds.len().saturating_sub(keep);
    for (_, p) in builds.into_iter().take(n) {
        let _ = std::fs::remove_dir_all(p);
    }
}

/// The progress bar's total: the largest build this tree has seen, else
/// the pin's estimate.
fn progress_total(tree: &BaseTree, fallback: u64) -> u64 {
    std::fs::read_to_string(tree.dir.join("kbuild-steps"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(fallback)
}

/// Remember the largest build seen (a full one) as the next total.
fn remember_steps(tree: &BaseTree, steps: u64) {
    let path = tree.dir.join("kbuild-steps");
    let old: u64 = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    if steps > old {
        let _ = std::fs::write(path, steps.to_string());
    }
}

fn toolchain(rt: &Runtime, make: &Make) -> Result<Toolchain, KbuildError> {
    const TOOLS: [&str; 6] = ["rustc", "bindgen", "clang", "ld.lld", "make", "gcc"];
    let script = TOOLS
        .iter()
        .map(|t| format!("echo \"{t}=$({t} --version 2>/dev/null | head -n1)\""))
        .collect::<Vec<_>>()
        .join("; ");
    let mut cmd = rt.build_command(&["sh", "-c", &script], &make.binds, &make.src);
    let out = gasbench_env::process::output(&mut cmd, gasbench_env::process::OnParentDeath::Kill)
        .map_err(|e| KbuildError::Spawn {
        what: "tool versions".into(),
        source: e,
    })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let versions: BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect();
    Ok(Toolchain {
        versions,
        runtime: rt.kind().name().to_string(),
    })
}

fn default_jobs() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(2)
}

fn short(c: &str) -> &str {
    &c[..12.min(c.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_edits_in_the_cached_tree_stop_a_per_patch_check() {
        let dir = tempfile::tempdir().unwrap();
        let sh = |args: &[&str]| {
            let ok = std::process::Command::new("git")
                .arg("-C")
                .arg(dir.path())
                .args(["-c", "user.name=t", "-c", "user.email=t@t"])
                .args(args)
                .status()
                .unwrap()
                .success();
            assert!(ok, "git {args:?}");
        };
        sh(&["init", "-q"]);
        std::fs::create_dir_all(dir.path().join("drivers/frob")).unwrap();
        std::fs::write(dir.path().join("drivers/frob/frob.c"), "int a;\n").unwrap();
        sh(&["add", "."]);
        sh(&["commit", "-q", "-m", "base"]);
        let git = Git::new(&Runtime::Host, dir.path(), &[]);
        // Clean, and with an untracked file (a checkout keeps those).
        refuse_to_lose_local_changes(&git, "--per-patch").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        refuse_to_lose_local_changes(&git, "--per-patch").unwrap();
        // A reviewer's edit to a tracked file.
        std::fs::write(dir.path().join("drivers/frob/frob.c"), "int b;\n").unwrap();
        let e = refuse_to_lose_local_changes(&git, "--per-patch").unwrap_err();
        match &e {
            KbuildError::LocalChanges { files, .. } => {
                assert_eq!(files, &["drivers/frob/frob.c".to_string()])
            }
            other => panic!("{other:?}"),
        }
        assert!(e.to_string().contains("--per-patch would lose them"), "{e}");
        assert!(e.help().contains("--discard-local-changes"));
    }

    /// A complete build directory as the kernel stage leaves it, with a
    /// manifest whose paths are absolute (as before they were relative)
    /// and no checksums.
    fn legacy_build(dir: &Path) {
        std::fs::create_dir_all(dir.join("headers/include/linux")).unwrap();
        std::fs::create_dir_all(dir.join("selftests")).unwrap();
        let mut img = vec![0u8; 32 * 512];
        img[0x1f1] = 31;
        img[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        std::fs::write(dir.join("bzImage"), &img).unwrap();
        std::fs::write(dir.join("config"), "CONFIG_RUST=y\n").unwrap();
        std::fs::write(dir.join("System.map"), "0 T _text\n").unwrap();
        std::fs::write(dir.join("headers/include/linux/a.h"), "int a;\n").unwrap();
        std::fs::write(dir.join("selftests/mkdirat_fd_test"), "ELF").unwrap();
        std::fs::write(dir.join("build.log"), "ok\n").unwrap();
        let old = Path::new("/elsewhere/kernel/builds").join(dir.file_name().unwrap());
        let m = BuildManifest {
            kernel_release: "7.2.12-gasbench".into(),
            base: "b".into(),
            base_commit: "c".into(),
            head: "h".into(),
            local_changes_sha256: String::new(),
            build_key: "k".into(),
            arch: "x86_64".into(),
            make_vars: vec![],
            config_sha256: "s".into(),
            config_mismatches: vec![],
            config_fragments: vec![],
            apply: ApplyReport::default(),
            toolchain: Toolchain {
                versions: Default::default(),
                runtime: "toolroot".into(),
            },
            timings: Timings::default(),
            artifacts: ArtifactPaths {
                bzimage: old.join("bzImage"),
                config: old.join("config"),
                system_map: old.join("System.map"),
                headers: old.join("headers/include"),
                selftest: Some(old.join("selftests/mkdirat_fd_test")),
                build_log: old.join("build.log"),
                vmlinux: None,
            },
            mkdirat2_syscall: Some(472),
            kbuild_steps: 1,
            per_patch: vec![],
            profile: crate::profile::ProfileInfo::default_profile(),
            checked: vec![],
        };
        std::fs::write(
            dir.join("manifest.json"),
            serde_json::to_string_pretty(&m).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn a_moved_build_is_reused_checked_and_a_damaged_one_is_named() {
        let cache = tempfile::tempdir().unwrap();
        let dir = cache.path().join("0123456789abcdef");
        legacy_build(&dir);
        // Moved from /elsewhere, checksums recorded on first use.
        let Reuse::Hit(a) = reuse(&dir) else {
            panic!("a whole legacy build is reused")
        };
        assert_eq!(a.bzimage, dir.join("bzImage"));
        assert_eq!(a.headers, dir.join("headers/include"));
        // The manifest is left as its gasbench wrote it; what was found is
        // recorded beside it.
        let text = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
        assert!(text.contains("/elsewhere"), "{text}");
        let checked: Vec<manifest::Checked> =
            serde_json::from_str(&std::fs::read_to_string(dir.join("checked.json")).unwrap())
                .unwrap();
        assert_eq!(checked.len(), 5);
        let Reuse::Hit(again) = reuse(&dir) else {
            panic!("reused again")
        };
        assert_eq!(again.manifest.checked, checked);

        // A bit flipped in the selftest, then the image cut short.
        std::fs::write(dir.join("selftests/mkdirat_fd_test"), "ELG").unwrap();
        match reuse(&dir) {
            Reuse::Damaged(why) => assert!(
                why.starts_with("selftests/mkdirat_fd_test has sha256"),
                "{why}"
            ),
            _ => panic!("damage goes unnoticed"),
        }
        std::fs::write(dir.join("selftests/mkdirat_fd_test"), "ELF").unwrap();
        assert!(matches!(reuse(&dir), Reuse::Hit(_)));
        let img = std::fs::read(dir.join("bzImage")).unwrap();
        std::fs::write(dir.join("bzImage"), &img[..1000]).unwrap();
        match reuse(&dir) {
            Reuse::Damaged(why) => assert_eq!(
                why,
                format!("bzImage has 1000 bytes, the manifest says {}", img.len())
            ),
            _ => panic!("a truncated image goes unnoticed"),
        }
        // A legacy build with a truncated image is not trusted either.
        let other = cache.path().join("fedcba9876543210");
        legacy_build(&other);
        std::fs::write(other.join("bzImage"), &img[..1000]).unwrap();
        match reuse(&other) {
            Reuse::Damaged(why) => assert!(why.contains("truncated"), "{why}"),
            _ => panic!("a truncated legacy image is reused"),
        }
        assert!(matches!(reuse(&cache.path().join("none")), Reuse::Missing));
    }
}
