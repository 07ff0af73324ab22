//! `gasbench kernel`: build the patched kernel; extract posted series from
//! mail. gasbench-kbuild does the work; this prints its events.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use gasbench_events::kernel::{ApplyStatus, KernelEvent, PatchApplied};
use gasbench_events::run::{Outcome, RunEvent};
use gasbench_events::{EventBody, EventStream};
use gasbench_kbuild::{BaseSource, KbuildError, KernelRequest};
use miette::{LabeledSpan, MietteDiagnostic, NamedSource, Report};

use crate::Globals;
use crate::cmd::signals::{Signal, Signals, Stop};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Apply the series to the base, configure, build bzImage, install
    /// headers and build the mkdirat2 kselftest (static).
    Build(BuildArgs),
    /// Extract every patch series from a digest or mbox into series
    /// directories (git-am-able patches, cover letter, series.toml).
    Extract(ExtractArgs),
}

#[derive(clap::Args)]
struct BuildArgs {
    /// Print the build manifest as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Build after every patch and name the ones that break the build.
    #[arg(long)]
    per_patch: bool,
    /// With --per-patch: also compile each patch's C files for this
    /// architecture (e.g. `arm`, which has no syscall wrappers).
    #[arg(long, value_name = "ARCH", requires = "per_patch")]
    cross_arch: Option<String>,
    /// Use this kernel git checkout as the base instead of the packaged
    /// source (it is cloned with shared objects, never modified).
    #[arg(long, value_name = "PATH")]
    base_tree: Option<PathBuf>,
    /// The revision of --base-tree to use [default: the pin's upstream tag].
    #[arg(long, value_name = "REV", requires = "base_tree")]
    base_rev: Option<String>,
    /// Apply the posted series only, without the port's replacements
    /// and fixups.
    #[arg(long)]
    posted_only: bool,
    /// Only this series (a directory under kernel/series); repeatable.
    #[arg(long, value_name = "NAME")]
    series: Vec<String>,
    /// make -j [default: the number of CPUs].
    #[arg(long, short = 'j')]
    jobs: Option<u32>,
    /// The kernel/ directory to build from [default: gasbench's data's,
    /// see `gasbench doctor`].
    #[arg(long, value_name = "DIR")]
    kernel_dir: Option<PathBuf>,
    /// Throw away local edits in the cached tree when the series change.
    #[arg(long)]
    discard_local_changes: bool,
    /// The kernel profile (kernel/profiles/profiles.toml): `default`,
    /// `debug` (KASAN, lockdep, kmemleak, UBSAN, fault injection) or
    /// `race` (KCSAN); each builds in its own cached directory.
    /// [env: GASBENCH_PROFILE] [config: profile] [default: default]
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    #[command(flatten)]
    talk: super::progress::Talk,
    /// Say what would be built (kernel directory, series and patches in
    /// order, fragments, profile) and stop before anything is built.
    #[arg(long)]
    dry_run: bool,
}

#[derive(clap::Args)]
struct ExtractArgs {
    /// A public-inbox thread digest, an mbox or a single message.
    source: PathBuf,
    /// Where the series directories go.
    #[arg(long, default_value = "kernel/series")]
    out: PathBuf,
    /// How the manifest names the source [default: the path as given].
    #[arg(long)]
    label: Option<String>,
}

/// `kernel build --dry-run`: the plan the build would follow, read from
/// the kernel directory, with nothing built and no runtime needed.
fn dry_run(
    kernel_dir: &std::path::Path,
    series: &[String],
    posted_only: bool,
    profile: &str,
) -> miette::Result<ExitCode> {
    let bad = |e: KbuildError| {
        super::eprint_report(&diagnostic(e));
        Ok(super::exit::code(super::exit::BAD_INPUT))
    };
    let kdir = match gasbench_kbuild::layout::KernelDir::open(kernel_dir) {
        Ok(k) => k,
        Err(e) => return bad(e),
    };
    let port = if posted_only {
        None
    } else {
        match kdir.port() {
            Ok(p) => Some(p),
            Err(e) => return bad(e),
        }
    };
    let only = (!series.is_empty()).then_some(series);
    let plan = match kdir.plan(port.as_ref(), only) {
        Ok(p) => p,
        Err(e) => return bad(e),
    };
    let fragments = match only {
        Some(o) => kdir.fragments_for(o).map(|(f, _)| f),
        None => kdir.fragments(),
    };
    let fragments = match fragments {
        Ok(f) => f,
        Err(e) => return bad(e),
    };
    if let Err(e) = gasbench_kbuild::profile::profile(&kdir, profile) {
        return bad(e);
    }
    tell!("kernel directory: {}", kdir.root().display());
    tell!("base: {} ({})", kdir.base.release, kdir.base.upstream_tag);
    tell!("profile: {profile}");
    tell!(
        "fragments: {}",
        fragments
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    tell!("patches, in order ({}):", plan.steps.len());
    for s in &plan.steps {
        tell!(
            "  {:<10} {:<12} {}",
            s.series,
            format!("{:?}", s.role),
            s.subject
        );
    }
    tell!("dry run: nothing was built");
    Ok(super::exit::code(super::exit::CLEAN))
}

pub fn run(g: &Globals, args: Args) -> miette::Result<ExitCode> {
    match args.command {
        Command::Build(a) => build(g, a),
        Command::Extract(a) => extract(a),
    }
}

fn build(g: &Globals, a: BuildArgs) -> miette::Result<ExitCode> {
    a.talk.apply();
    let kernel_dir = match a.kernel_dir {
        Some(dir) => dir,
        None => g.data()?.kernel_dir(),
    };
    let profile = a.profile.unwrap_or_else(|| g.config.profile.value.clone());
    if a.dry_run {
        return dry_run(&kernel_dir, &a.series, a.posted_only, &profile);
    }
    let (rt, choice) = gasbench_env::resolve_runtime(&g.cache, g.runtime);
    super::progress::reporter().line(&format!(
        "kernel: runtime {} ({})",
        choice.kind.name(),
        choice.reason
    ));
    let req = KernelRequest {
        kernel_dir: Some(kernel_dir),
        base: match a.base_tree {
            Some(path) => BaseSource::GitTree {
                path,
                rev: a.base_rev,
            },
            None => BaseSource::Packaged,
        },
        series: (!a.series.is_empty()).then_some(a.series),
        posted_only: a.posted_only,
        per_patch: a.per_patch,
        cross_arch: a.cross_arch,
        jobs: a.jobs,
        discard_local_changes: a.discard_local_changes,
        profile,
    };
    let (sink, stream) = gasbench_events::bus();
    let cache = g.cache.clone();
    let interrupted = stop_tools_on_signals()?;
    let worker = std::thread::spawn(move || {
        let r = gasbench_kbuild::ensure_kernel(&req, &rt, &cache, &sink);
        drop(sink);
        r
    });
    print_events(stream);
    let result = worker
        .join()
        .map_err(|_| miette::miette!("the kernel build thread panicked"))?;
    let signal = *interrupted.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = signal {
        if let Err(e) = result {
            eprintln!("{:?}", diagnostic(e));
        }
        return Ok(ExitCode::from(s.exit_code()));
    }
    let art = match result {
        Ok(a) => a,
        Err(e) => {
            let status = super::exit::for_blame(e.blame());
            super::eprint_report(&diagnostic(e));
            return Ok(super::exit::code(status));
        }
    };
    let m = &art.manifest;
    if a.json {
        println!(
            "{}",
            gasbench_termsafe::json(
                &serde_json::to_string_pretty(m).map_err(|e| miette::miette!("{e}"))?
            )
        );
    }
    if !m.per_patch.is_empty() {
        say!("kernel: per patch (does the tree build after it?):");
        for p in &m.per_patch {
            say!(
                "  {:>2} {} {}",
                p.position,
                if p.builds { "builds" } else { "BREAKS" },
                p.label
            );
            if let Some(e) = &p.first_error {
                say!("       first error: {e}");
            }
            match p.cross.as_ref() {
                Some(c) if !c.ok => say!(
                    "       {} ({}): {}",
                    c.arch,
                    if c.caused_by_series {
                        "the series"
                    } else {
                        "unrelated"
                    },
                    c.first_error.as_deref().unwrap_or("failed")
                ),
                // A patch that made an earlier break compile again.
                Some(c) if !c.carried.is_empty() => say!(
                    "       {}: {} compile(s) again",
                    c.arch,
                    c.carried.join(", ")
                ),
                _ => {}
            }
        }
    }
    say!(
        "kernel: {} {} ({} profile) — {} — {}",
        if art.reused { "unchanged" } else { "built" },
        m.kernel_release,
        m.profile.name,
        match art.mkdirat2_syscall {
            Some(nr) => format!("mkdirat2 is syscall {nr}"),
            None => "no mkdirat2".to_string(),
        },
        art.bzimage.display()
    );
    if let Some(s) = &art.selftest {
        say!("kernel: selftest {}", s.display());
    }
    say!("kernel: manifest {}", art.manifest_path.display());
    // A patch that breaks the build is a finding about the series, even
    // when the tree builds again after a later patch.
    let broken = m.per_patch.iter().filter(|p| !p.builds).count();
    if broken > 0 {
        eprintln!("kernel: {broken} patch(es) leave the tree unbuildable");
        return Ok(super::exit::code(super::exit::FINDINGS));
    }
    Ok(ExitCode::SUCCESS)
}

/// SIGINT, SIGTERM and SIGHUP during a build: the first stops make and
/// the other tools (SIGTERM: make deletes the targets it was writing, and
/// the build directory is renamed into place only when complete, so the
/// cache stays consistent); a second kills them at once. Returns the
/// first signal once there is one.
fn stop_tools_on_signals() -> miette::Result<Arc<Mutex<Option<Signal>>>> {
    let mut signals = Signals::install().map_err(|e| miette::miette!("{e}"))?;
    let first = Arc::new(Mutex::new(None));
    let seen = first.clone();
    // Detached: it lives as long as the command, and so do its handlers.
    std::thread::spawn(move || {
        while let Some(stop) = signals.stops.blocking_recv() {
            let Stop::Signal(s) = stop else { continue };
            let mut first = seen.lock().unwrap_or_else(|p| p.into_inner());
            if first.is_none() {
                *first = Some(s);
                eprintln!(
                    "\nkernel: {}: stopping make (again to kill it at once)",
                    s.cause()
                );
                gasbench_env::process::stop_tools();
            } else {
                eprintln!("kernel: killing the build at once");
                gasbench_env::process::kill_tools();
            }
        }
    });
    Ok(first)
}

/// Stage lines, the patch table, and the build's progress (a bar with an
/// ETA on a terminal), through the one reporter.
fn print_events(mut stream: EventStream) {
    let r = super::progress::reporter();
    while let Some(ev) = stream.blocking_recv() {
        match ev.body {
            EventBody::Run(RunEvent::StageBegin { stage, detail }) => {
                r.line(&format!("kernel: {} — {detail}", stage.name()));
            }
            EventBody::Run(RunEvent::StageProgress {
                stage,
                total: 0,
                detail,
                ..
            }) => {
                r.line(&format!("kernel: {}: {detail}", stage.name()));
            }
            EventBody::Run(RunEvent::StageEnd {
                stage,
                outcome,
                detail,
                elapsed_ms,
            }) => {
                r.end_build();
                let o = outcome.word();
                let text = format!(
                    "kernel: {} {o} in {:.1} s — {detail}",
                    stage.name(),
                    elapsed_ms as f64 / 1000.0
                );
                if outcome == Outcome::Failed {
                    r.warn(&text);
                } else {
                    r.line(&text);
                }
            }
            EventBody::Kernel(KernelEvent::Patch(p)) => print_patch(&p),
            EventBody::Kernel(KernelEvent::PatchBuild {
                subject,
                builds,
                first_error,
                cross_arch,
                cross_error,
                ..
            }) => {
                let text = format!(
                    "  after {subject}: {}",
                    if builds { "builds" } else { "DOES NOT BUILD" }
                );
                if builds {
                    r.line(&text);
                } else {
                    r.warn(&text);
                }
                if let Some(e) = first_error {
                    r.warn(&format!("    {e}"));
                }
                if let (Some(arch), Some(e)) = (cross_arch, cross_error) {
                    r.warn(&format!("    DOES NOT BUILD for {arch}: {e}"));
                }
            }
            EventBody::Kernel(KernelEvent::ConfigChecked {
                symbol,
                wanted,
                got,
                ok,
            }) => {
                let text = format!("  CONFIG_{symbol}: wanted {wanted}, got {got}");
                if ok {
                    r.detail(&text);
                } else {
                    r.warn(&text);
                }
            }
            EventBody::Kernel(KernelEvent::BuildProgress {
                done,
                total,
                current,
            }) => r.build(done, total, &current),
            EventBody::Kernel(KernelEvent::BuildLine { line }) => {
                let t = line.trim_start();
                if t.starts_with("error")
                    || t.contains(": error:")
                    || t.starts_with("ld.lld: error")
                {
                    r.warn(&format!("  {line}"));
                } else if t.contains(": warning:") {
                    r.detail(&format!("  {line}"));
                }
            }
            _ => {}
        }
    }
    r.end_build();
}

fn print_patch(p: &PatchApplied) {
    let status = match p.status {
        ApplyStatus::Applied => "applied",
        ApplyStatus::AppliedWithFuzz => "FUZZ",
        ApplyStatus::Failed => "FAILED",
    };
    let which = match p.posted_index {
        Some(i) => format!("{} {i}", p.role.name()),
        None => p.role.name().to_string(),
    };
    let r = super::progress::reporter();
    let text = format!(
        "  {:>2}/{:<2} {:<8} {} {:<13} {}",
        p.index, p.total, status, p.series, which, p.subject
    );
    if p.status == ApplyStatus::Applied {
        r.line(&text);
    } else {
        r.warn(&text);
    }
    for h in p.hunks.iter().filter(|h| !h.applied) {
        r.warn(&format!(
            "          hunk {} of {} {} ({})",
            h.hunk,
            h.file,
            if h.fuzz { "needs fuzz" } else { "rejected" },
            h.header
        ));
    }
    if p.status != ApplyStatus::Applied && !p.detail.is_empty() {
        for l in p.detail.lines() {
            r.warn(&format!("          {l}"));
        }
    }
}

fn extract(a: ExtractArgs) -> miette::Result<ExitCode> {
    // Mail that cannot be read is bad input, like for repro.
    let bad_input = |report: Report| {
        super::eprint_report(&report);
        Ok(super::exit::code(super::exit::BAD_INPUT))
    };
    // Like repro: a regular file only, at most MAX_MAIL_BYTES of it.
    let bytes = match gasbench_review::resolve::read_bounded(
        &a.source,
        gasbench_review::resolve::MAX_MAIL_BYTES,
    ) {
        Ok(b) => b,
        Err(e) => {
            return bad_input(Report::new(
                MietteDiagnostic::new(e.to_string()).with_help(e.help()),
            ));
        }
    };
    let label = a.label.unwrap_or_else(|| a.source.display().to_string());
    // Mail as it comes: CRLF line ends, Latin-1 and friends (see
    // gasbench_series::mail_text), like repro reads it.
    let text = match gasbench_series::mail_text(&bytes) {
        Ok(t) => t,
        Err(e) => {
            return bad_input(diagnostic(KbuildError::series(
                &label,
                &String::from_utf8_lossy(&bytes),
                e,
            )));
        }
    };
    let done = gasbench_kbuild::extract::extract(&text, &label, &a.out).map_err(diagnostic)?;
    for e in &done {
        let m = &e.manifest;
        tell!(
            "{}: {} v{} by {} <{}>, {} patch(es){}",
            e.dir.display(),
            m.title,
            m.version,
            m.author.name,
            m.author.email,
            m.patches.len(),
            if m.cover.is_some() {
                " + cover letter"
            } else {
                ""
            }
        );
        for p in &m.patches {
            tell!("  {:>2}/{} {:?} {}", p.index, m.total, p.origin, p.file);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A library error as a miette report, with the source span when the
/// error points into a file.
pub fn diagnostic(e: KbuildError) -> Report {
    let help = e.help();
    let mut d = MietteDiagnostic::new(e.to_string()).with_help(help);
    if let KbuildError::Series { label, text, error } = &e {
        if let Some(span) = error.span() {
            let end = span.end().min(text.len());
            let start = span.offset.min(end);
            d = d.with_label(LabeledSpan::at(start..end, "here"));
        }
        return Report::new(d).with_source_code(NamedSource::new(label.clone(), text.clone()));
    }
    if let KbuildError::PatchDoesNotApply { report, .. } = &e {
        let mut lines = vec![format!("{} ({})", report.detail, report.file)];
        for h in report.rejected_hunks() {
            lines.push(format!(
                "  rejected: {} hunk {} {}",
                h.file, h.hunk, h.header
            ));
        }
        d = d.with_help(format!("{}\n{}", lines.join("\n"), e.help()));
    }
    if let KbuildError::ConfigNotSet { mismatches } = &e {
        let lines: Vec<String> = mismatches.iter().map(|m| format!("  {m}")).collect();
        d = MietteDiagnostic::new(format!(
            "{} requested config symbol(s) did not stick:\n{}",
            mismatches.len(),
            lines.join("\n")
        ))
        .with_help(e.help());
    }
    Report::new(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(r: &Report) -> String {
        let mut out = String::new();
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .with_width(100)
            .render_report(&mut out, r.as_ref())
            .unwrap();
        out
    }

    #[test]
    fn a_damaged_patch_points_at_the_line() {
        let text = "From 1 Mon Sep 17 00:00:00 2001\nFrom: a@b\nDate: Mon, 6 Apr 2026 18:51:20 +0200\n\
Subject: [PATCH 1/1] foo\n\nmsg\n---\ndiff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\nwrapped line\n-b\n+c\n";
        let dir = tempfile::tempdir().unwrap();
        let err = gasbench_kbuild::extract::extract(text, "bad.mbox", dir.path()).unwrap_err();
        let out = render(&diagnostic(err));
        assert!(out.contains("bad.mbox"), "{out}");
        assert!(out.contains("13 │ wrapped line"), "{out}");
        assert!(out.contains("damaged in transit"), "{out}");
    }

    #[test]
    fn a_patch_that_does_not_apply_lists_its_rejected_hunks() {
        use gasbench_events::kernel::{HunkOutcome, PatchRole};
        let report = gasbench_kbuild::report::PatchReport {
            series: "mkdirat2-v2".into(),
            position: 2,
            of: 2,
            posted_index: Some(2),
            subject: "selftest: add tests for mkdirat2()".into(),
            file: "series/mkdirat2-v2/0002-x.patch".into(),
            role: PatchRole::Posted,
            status: ApplyStatus::Failed,
            files: vec!["tools/testing/selftests/filesystems/Makefile".into()],
            hunks: vec![HunkOutcome {
                file: "tools/testing/selftests/filesystems/Makefile".into(),
                hunk: 1,
                header: "@@ -1,7 +1,7 @@".into(),
                applied: false,
                fuzz: false,
            }],
            detail: "rejected: Makefile hunk 1".into(),
            commit: None,
            replaced_by: None,
        };
        let err = KbuildError::PatchDoesNotApply {
            series: "mkdirat2-v2".into(),
            base: "linux-source-7.2 7.2.12".into(),
            report: Box::new(report),
        };
        let out = render(&diagnostic(err));
        assert!(out.contains("mkdirat2-v2 patch 2"), "{out}");
        assert!(
            out.contains("rejected: tools/testing/selftests/filesystems/Makefile hunk 1"),
            "{out}"
        );
        assert!(out.contains("port the patch"), "{out}");
    }

    #[test]
    fn an_unset_config_symbol_names_the_dependency() {
        let err = KbuildError::ConfigNotSet {
            mismatches: vec![gasbench_kbuild::kconfig::Mismatch {
                symbol: "GOLDFISH_ADDRESS_SPACE".into(),
                wanted: "y".into(),
                got: "n".into(),
                fragment: "30-rust-goldfish.config".into(),
                line: 4,
                reason: Some("it depends on `PCI && RUST && MMU`, and RUST is not set".into()),
            }],
        };
        let out = render(&diagnostic(err));
        assert!(
            out.contains(
                "CONFIG_GOLDFISH_ADDRESS_SPACE=y (30-rust-goldfish.config:4) ended up not set"
            ),
            "{out}"
        );
        assert!(out.contains("RUST is not set"), "{out}");
    }
}
