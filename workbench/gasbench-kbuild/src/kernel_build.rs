//! One build, start to end: the tree prepared and the series applied,
//! configured, built (or reused from the cache), the headers and the
//! selftest, the per-patch check; what `ensure_kernel` runs.

use super::*;

pub(crate) fn build_or_reuse(
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
            Reuse::Hit(a) => Some(KernelArtifacts {
                src: tree.src.clone(),
                ..*a
            }),
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
    let staging_guard = RemoveOnDrop::new(staging.clone());
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
    prune_builds(&builds, crate::cache::BUILDS_KEPT);
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
        src: tree.src.clone(),
    })
}

/// Start `make.out` as a copy of `seed` (times kept, so kbuild's view of
/// what is up to date carries over); made beside it and renamed into
/// place, so an interrupted copy leaves nothing that looks like a build.
pub(crate) fn seed_build_dir(
    make: &Make,
    seed: &Path,
    sink: &EventSink,
) -> Result<(), KbuildError> {
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

pub(crate) fn prepare_and_apply(
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
pub(crate) fn kconfig_state(
    git: &Git,
    base: &str,
    commit: &str,
    local: bool,
) -> Result<String, KbuildError> {
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
pub(crate) fn checkout(git: &Git, head: &str, discard: bool) -> Result<String, KbuildError> {
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
pub(crate) fn refuse_to_lose_local_changes(git: &Git, doing: &str) -> Result<(), KbuildError> {
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
pub(crate) fn run_per_patch(
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

/// The progress bar's total: the largest build this tree has seen, else
/// the pin's estimate.
pub(crate) fn progress_total(tree: &BaseTree, fallback: u64) -> u64 {
    std::fs::read_to_string(tree.dir.join("kbuild-steps"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(fallback)
}

/// Remember the largest build seen (a full one) as the next total.
pub(crate) fn remember_steps(tree: &BaseTree, steps: u64) {
    let path = tree.dir.join("kbuild-steps");
    let old: u64 = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    if steps > old {
        let _ = std::fs::write(path, steps.to_string());
    }
}

pub(crate) fn toolchain(rt: &Runtime, make: &Make) -> Result<Toolchain, KbuildError> {
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

pub(crate) fn default_jobs() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(2)
}

pub(crate) fn short(c: &str) -> &str {
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
}
