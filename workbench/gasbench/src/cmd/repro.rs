//! `gasbench repro <MBOX|MESSAGE-ID>`: the reviewer's reproduction. Resolve
//! the posted series (gasbench-review), build the base with it patch by
//! patch (gasbench-kbuild, through the engine's kernel stage), boot and run
//! the scenarios that concern it (gasbench-engine), and write review.md
//! and review.json in the run directory. Exit 0: every patch applies and
//! builds and every expectation held; 1: findings; 2: bad input.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use gasbench_engine::pipeline::{self, KernelProvider, RunOptions};
use gasbench_events::EventSink;
use gasbench_events::run::RunEvent;
use gasbench_kbuild::layout::KernelDir;
use gasbench_kbuild::{KbuildError, KernelRequest};
use gasbench_review::concerns::Concerns;
use gasbench_review::report::ScenarioSource;
use gasbench_review::resolve::{self, FileSeries, MailFile};
use gasbench_review::{Facts, Input, ResolveError, Review, Target};
use gasbench_scenario::Compiled;
use gasbench_trace::RunDir;
use miette::{IntoDiagnostic, MietteDiagnostic, Report};

use crate::Globals;

#[derive(clap::Args)]
pub struct Args {
    /// An mbox (as `b4 am` saves it) or a lore thread saved as text, with
    /// one or more series; or the Message-Id of a series gasbench knows.
    #[arg(value_name = "MBOX|MESSAGE-ID")]
    input: String,
    /// Review only this series of the file (`mkdirat2-v2`, `mkdirat2`, or a
    /// prefix only it has, `goldfish`);
    /// repeatable [default: every series in it].
    #[arg(long, value_name = "NAME")]
    series: Vec<String>,
    /// Skip the per-patch build check: build only the whole series.
    #[arg(long)]
    no_per_patch: bool,
    /// In the per-patch check, also compile each patch's C files for this
    /// architecture (e.g. `arm`, which has no syscall wrappers).
    #[arg(long, value_name = "ARCH", conflicts_with = "no_per_patch")]
    cross_arch: Option<String>,
    /// Run the whole scenario suite, not only the scenarios that concern
    /// the series.
    #[arg(long)]
    all_scenarios: bool,
    /// Print review.json on stdout instead of review.md (an array when the
    /// file holds several series).
    #[arg(long)]
    json: bool,
    /// The kernel/ directory of the gasbench checkout [default: found
    /// above the current directory].
    #[arg(long, value_name = "DIR")]
    kernel_dir: Option<PathBuf>,
    /// make -j [default: the number of CPUs].
    #[arg(long, short = 'j')]
    jobs: Option<u32>,
    /// Kernel profiles to run the scenarios on, in order (repeatable):
    /// `default`, `debug` (KASAN, lockdep, kmemleak, UBSAN, fault
    /// injection), `race` (KCSAN) [default: default and debug]. The
    /// per-patch check runs on the first only.
    #[arg(long = "profile", value_name = "NAME")]
    profiles: Vec<String>,
    #[command(flatten)]
    vm: super::headless::VmArgs,
}

impl Args {
    fn profiles(&self) -> Vec<String> {
        if self.profiles.is_empty() {
            vec!["default".into(), "debug".into()]
        } else {
            let mut v = Vec::new();
            for p in &self.profiles {
                if !v.contains(p) {
                    v.push(p.clone());
                }
            }
            v
        }
    }
}

/// Whether scenario `c` runs on `profile`: it is for every profile or
/// names this one.
fn for_profile(c: &Compiled, profile: &str) -> bool {
    c.plan.profiles.is_empty() || c.plan.profiles.iter().any(|p| p == profile)
}

const BAD_INPUT: u8 = 2;

/// A series to review, before its kernel directory is made.
enum Pending<'a> {
    Known {
        name: String,
        how: String,
    },
    New {
        file: &'a MailFile,
        series: &'a FileSeries,
    },
}

pub fn run(g: &Globals, args: Args) -> miette::Result<ExitCode> {
    let kdir = match KernelDir::locate(args.kernel_dir.as_deref()) {
        Ok(k) => k,
        Err(e) => return bad_input(super::kernel::diagnostic(e)),
    };
    let known = match resolve::known_series(&kdir) {
        Ok(k) => k,
        Err(e) => return bad_input(super::kernel::diagnostic(e)),
    };

    // What to review.
    let mail;
    let pending: Vec<Pending> = match Input::parse(&args.input) {
        Input::File(path) => {
            mail = match resolve::read_mail_file(&path, &known) {
                Ok(m) => m,
                Err(e) => return bad_input(resolve_diagnostic(e)),
            };
            let selected = match mail.select(&args.series) {
                Ok(s) => s,
                Err(e) => return bad_input(resolve_diagnostic(e)),
            };
            eprintln!(
                "gasbench repro: {} ({}): {} series",
                mail.label,
                mail.format.describe(),
                mail.series.len()
            );
            for s in &mail.series {
                eprintln!(
                    "  {} {}: {}",
                    if selected.iter().any(|x| x.name == s.name) {
                        "review"
                    } else {
                        "skip  "
                    },
                    s.name,
                    s.how
                );
            }
            selected
                .into_iter()
                .map(|s| match &s.known {
                    Some(name) => Pending::Known {
                        name: name.clone(),
                        how: s.how.clone(),
                    },
                    None => Pending::New {
                        file: &mail,
                        series: s,
                    },
                })
                .collect()
        }
        Input::MessageId(id) => match resolve::find_message_id(&id, &known) {
            Ok(m) if args.series.iter().any(|w| !m.name.starts_with(w.as_str())) => {
                return bad_input(resolve_diagnostic(ResolveError::NoSuchSeries {
                    label: format!("<{id}>"),
                    wanted: args.series.join(", "),
                    have: vec![m.name],
                }));
            }
            Ok(m) => {
                eprintln!("gasbench repro: {}", m.how);
                vec![Pending::Known {
                    name: m.name,
                    how: m.how,
                }]
            }
            Err(e) => return bad_input(resolve_diagnostic(e)),
        },
    };

    // Every scenario is checked before anything starts.
    let files = super::scenario::expand(&[super::run::default_suite()]);
    let suite = match super::scenario::load_all(&files) {
        Ok(s) => s,
        Err(bad) => {
            eprintln!(
                "gasbench repro: {bad} scenario file(s) of the suite have problems; nothing was started"
            );
            return Ok(ExitCode::from(BAD_INPUT));
        }
    };
    let runtime = super::setup::ready_runtime(g)?;

    let mut worst = 0u8;
    let mut reviews = Vec::new();
    // The JSON's shape follows what was asked, not what came out: one
    // series gives an object, several an array (even if one of them could
    // not be reviewed).
    let several = pending.len() > 1;
    // Every series is made ready (extracted, its kernel directory checked)
    // before any is built: a bad one stops the lot before anything runs.
    let runs = args.vm.runs_dir(g);
    let mut ready = Vec::new();
    let mut bad = 0;
    for p in pending {
        match stage(&args, &kdir, p, &runs) {
            Some(s) => ready.push(s),
            None => bad += 1,
        }
    }
    if bad > 0 {
        for s in &ready {
            if let Some(dir) = &s.staged {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        eprintln!("gasbench repro: {bad} series could not be prepared; nothing was started");
        return Ok(ExitCode::from(BAD_INPUT));
    }
    for s in ready {
        let (code, review) = review_one(g, &args, s, &suite, &runtime)?;
        worst = worst.max(code);
        reviews.extend(review);
    }
    if args.json {
        let text = match (several, reviews.first()) {
            (false, Some(one)) => Some(serde_json::to_string_pretty(one)),
            (false, None) => None,
            (true, _) => Some(serde_json::to_string_pretty(&reviews)),
        };
        if let Some(text) = text {
            println!("{}", text.into_diagnostic()?);
        }
    }
    Ok(ExitCode::from(worst))
}

/// A series ready to review: its target, and the staging directory its
/// private kernel directory is in (a series gasbench does not know).
struct Staged {
    label: String,
    target: Target,
    staged: Option<PathBuf>,
}

/// Extract a series and check its kernel directory, making no run
/// directory; None (with the error printed) when the input is bad.
fn stage(args: &Args, kdir: &KernelDir, pending: Pending, runs: &Path) -> Option<Staged> {
    let name = match &pending {
        Pending::Known { name, .. } => name.clone(),
        Pending::New { series, .. } => series.name.clone(),
    };
    let label = format!("repro-{name}");
    let mut staged = None;
    let target = match pending {
        Pending::Known { name, how } => resolve::known_target(kdir, &name, &how, &args.input),
        Pending::New { file, series } => {
            // Made beside the run directories first, so a series that
            // cannot be extracted leaves no run directory behind.
            let staging = runs.join(format!(".repro-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&staging);
            match resolve::private_target(kdir, file, series, &staging) {
                Ok(t) => {
                    staged = Some(staging);
                    t
                }
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&staging);
                    eprintln!("{:?}", resolve_diagnostic(e));
                    return None;
                }
            }
        }
    };
    // The kernel directory must hold the series whole before a run
    // directory is made: a broken one is bad input, and leaves nothing.
    let usable = KernelDir::open(&target.kernel_dir).and_then(|k| {
        k.series(&target.name)?;
        Concerns::of_series(&k, &target.name)
    });
    if let Err(e) = usable {
        if let Some(dir) = &staged {
            let _ = std::fs::remove_dir_all(dir);
        }
        eprintln!("{:?}", super::kernel::diagnostic(e));
        return None;
    }
    Some(Staged {
        label,
        target,
        staged,
    })
}

/// Review one prepared series; returns the exit code and the review.
fn review_one(
    g: &Globals,
    args: &Args,
    staged: Staged,
    suite: &[Compiled],
    runtime: &gasbench_env::Runtime,
) -> miette::Result<(u8, Option<Review>)> {
    let Staged { label, target, .. } = staged;
    let runs = args.vm.runs_dir(g);
    let run_dir = RunDir::create(&runs, &label).into_diagnostic()?;
    let target = if target.known {
        target
    } else {
        let dir = run_dir.path().join("kernel");
        std::fs::rename(&target.kernel_dir, &dir).into_diagnostic()?;
        Target {
            kernel_dir: dir,
            ..target
        }
    };
    let tkdir = KernelDir::open(&target.kernel_dir).map_err(super::kernel::diagnostic)?;
    let series = tkdir
        .series(&target.name)
        .map_err(super::kernel::diagnostic)?;
    let concerns = Concerns::of_series(&tkdir, &target.name).map_err(super::kernel::diagnostic)?;

    // The scenarios that concern the series (or all of them). A scenario
    // made for a profile (the detectors' proofs, fault injection) that
    // needs nothing the series lacks runs on that profile.
    let concerned = |c: &Compiled| {
        args.all_scenarios
            || concerns.selects(c.plan.requires.goldfish, c.plan.requires.mkdirat2)
            || (!c.plan.profiles.is_empty()
                && !c.plan.requires.goldfish
                && !c.plan.requires.mkdirat2)
    };
    let profiles = args.profiles();
    let scenarios: Vec<Compiled> = suite
        .iter()
        .filter(|c| concerned(c) && for_profile(c, &profiles[0]))
        .cloned()
        .collect();
    let scenarios_note = Some(if args.all_scenarios {
        format!(
            "The whole suite ({} scenarios, --all-scenarios); the series adds {}.",
            scenarios.len(),
            concerns.describe()
        )
    } else if scenarios.is_empty() {
        format!(
            "No scenario concerns this series (it adds {}): not booted. --all-scenarios runs the whole suite.",
            concerns.describe()
        )
    } else {
        format!(
            "The {} of {} scenarios that concern the series (it adds {}; a scenario's `requires`), on the {} profile{}.",
            scenarios.len(),
            suite.len(),
            concerns.describe(),
            profiles.join(" and "),
            if profiles.len() > 1 { "s" } else { "" }
        )
    });
    eprintln!(
        "gasbench repro: {} ({}) on {} {}, {}; {} scenario(s); profiles {}; run directory {}",
        target.name,
        if target.known {
            "known, with the port"
        } else {
            "new, as posted"
        },
        tkdir.base.package,
        tkdir.base.release,
        if args.no_per_patch {
            "no per-patch check".to_string()
        } else {
            format!(
                "per-patch check{}",
                args.cross_arch
                    .as_deref()
                    .map(|a| format!(" with {a}"))
                    .unwrap_or_default()
            )
        },
        scenarios.len(),
        profiles.join(", "),
        run_dir.path().display()
    );

    // The kernel: base + this series, patch by patch (first profile).
    let request = KernelRequest {
        kernel_dir: Some(target.kernel_dir.clone()),
        series: Some(vec![target.name.clone()]),
        posted_only: target.posted_only,
        per_patch: !args.no_per_patch,
        cross_arch: args.cross_arch.clone(),
        jobs: args.jobs,
        profile: profiles[0].clone(),
        ..KernelRequest::default()
    };
    let mut sources: Vec<ScenarioSource> = suite
        .iter()
        .filter(|c| concerned(c))
        .map(scenario_source)
        .collect();
    sources.dedup_by(|a, b| a.name == b.name);
    let (summary, slot) = run_profile(
        g,
        args,
        &run_dir,
        &label,
        request.clone(),
        scenarios,
        runtime,
    )?;

    // The other profiles: whole series only, each in its own run
    // directory beside the first.
    let mut more_runs = Vec::new();
    for profile in &profiles[1..] {
        let dir = RunDir::create(&runs, &format!("{label}-{profile}")).into_diagnostic()?;
        let scenarios: Vec<Compiled> = suite
            .iter()
            .filter(|c| concerned(c) && for_profile(c, profile))
            .cloned()
            .collect();
        eprintln!(
            "gasbench repro: {}: the {profile} profile, {} scenario(s); run directory {}",
            target.name,
            scenarios.len(),
            dir.path().display()
        );
        let req = KernelRequest {
            per_patch: false,
            cross_arch: None,
            profile: profile.clone(),
            ..request.clone()
        };
        let (s, other_slot) = run_profile(
            g,
            args,
            &dir,
            &format!("{label}-{profile}"),
            req,
            scenarios,
            runtime,
        )?;
        if let Some(e) = other_slot.error {
            eprintln!("{:?}", super::kernel::diagnostic(e));
        }
        more_runs.push((s, dir.path().display().to_string()));
    }
    let more: Vec<gasbench_review::detectors::ProfileRun> = more_runs
        .iter()
        .map(|(s, d)| gasbench_review::detectors::ProfileRun {
            summary: s,
            run_dir: Some(d.clone()),
        })
        .collect();

    // The review, from what was recorded.
    let (events, _) =
        gasbench_trace::log::read_all(&run_dir.events()).map_err(|e| miette::miette!("{e}"))?;
    let port = if target.posted_only {
        None
    } else {
        tkdir.port().ok()
    };
    let port_dir = port
        .as_ref()
        .map(|(dir, _)| display_kernel_path(&tkdir, dir, &target));
    let port_series = port
        .as_ref()
        .and_then(|(_, m)| m.series.iter().find(|s| s.series == target.name));
    let kernel_error = slot.error_text.clone();
    let review = Review::build(&Facts {
        target: &target,
        series: &series,
        base: &tkdir.base,
        port: port_dir.as_deref().zip(port_series),
        manifest: slot.artifacts.as_ref().map(|a| &a.manifest),
        kernel_error: kernel_error.as_deref(),
        events: &events,
        summary: &summary,
        scenarios: &sources,
        per_patch: !args.no_per_patch,
        cross_arch: args.cross_arch.as_deref(),
        scenarios_note,
        run_dir: Some(run_dir.path().display().to_string()),
        more: &more,
    });
    let md = gasbench_review::markdown::render(&review);
    let json = serde_json::to_string_pretty(&review).into_diagnostic()?;
    std::fs::write(run_dir.path().join("review.md"), &md).into_diagnostic()?;
    std::fs::write(run_dir.path().join("review.json"), &json).into_diagnostic()?;
    if let Some(e) = slot.error {
        // What stopped the kernel stage, with its help (and rejected hunks).
        eprintln!("{:?}", super::kernel::diagnostic(e));
    }
    if !args.json {
        print!("{md}");
        println!("\nreview: {}", run_dir.path().join("review.md").display());
    }
    eprintln!("gasbench repro: {}: {}", target.name, review.verdict_line());
    Ok((review.exit_code, Some(review)))
}

/// Build the kernel `request` asks for and run `scenarios` on it,
/// recorded in `run_dir`; the summary and what the kernel stage left.
fn run_profile(
    g: &Globals,
    args: &Args,
    run_dir: &RunDir,
    label: &str,
    request: KernelRequest,
    scenarios: Vec<Compiled>,
    runtime: &gasbench_env::Runtime,
) -> miette::Result<(gasbench_trace::RunSummary, KernelSlot)> {
    let slot = Arc::new(Mutex::new(KernelSlot::default()));
    let provider = kernel_provider(request, runtime, &g.cache, slot.clone());
    let boot = !scenarios.is_empty();
    let opts = RunOptions {
        scenarios,
        kernel: provider.clone(),
        settings: args.vm.settings(g, runtime.clone(), run_dir),
    };
    let summary = super::headless::record(run_dir, label, true, |sink, interrupt| async move {
        if boot {
            pipeline::run_until(opts, sink, interrupt).await.passed()
        } else {
            kernel_only(&provider, &sink).await
        }
    })?;
    super::headless::write_results(run_dir, &summary)?;
    super::headless::record_proofs(g, run_dir, &summary);
    let slot = std::mem::take(&mut *slot.lock().unwrap_or_else(|p| p.into_inner()));
    Ok((summary, slot))
}

/// What the kernel stage produced, kept for the review.
#[derive(Default)]
struct KernelSlot {
    artifacts: Option<gasbench_kbuild::KernelArtifacts>,
    error: Option<KbuildError>,
    /// The text the engine reported for `error`.
    error_text: Option<String>,
}

fn kernel_provider(
    req: KernelRequest,
    rt: &gasbench_env::Runtime,
    cache: &gasbench_env::CacheDir,
    slot: Arc<Mutex<KernelSlot>>,
) -> KernelProvider {
    let rt = rt.clone();
    let cache = cache.clone();
    Arc::new(Mutex::new(move |sink: &EventSink| {
        let result = gasbench_kbuild::ensure_kernel(&req, &rt, &cache, sink);
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(a) => {
                let k = super::kernel_choice::from_build(
                    &a,
                    format!(
                        "{} ({} + {}, {} profile, {})",
                        a.manifest.kernel_release,
                        a.manifest.base,
                        req.series.as_deref().unwrap_or_default().join(" + "),
                        a.manifest.profile.name,
                        if a.reused { "unchanged" } else { "built" }
                    ),
                );
                slot.artifacts = Some(a);
                Ok(k)
            }
            Err(e) => {
                let text = format!("the kernel stage failed: {e}");
                slot.error_text = Some(text.clone());
                slot.error = Some(e);
                Err(text)
            }
        }
    }))
}

/// No scenario concerns the series: apply and build only.
async fn kernel_only(provider: &KernelProvider, sink: &EventSink) -> bool {
    match pipeline::build_kernel(provider, sink).await {
        Ok(_) => true,
        Err(e) => {
            sink.emit(RunEvent::Error { text: e });
            false
        }
    }
}

fn scenario_source(c: &Compiled) -> ScenarioSource {
    let root = gasbench_engine::agent_build::source_root();
    let file = Path::new(&c.origin)
        .strip_prefix(&root)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| c.origin.clone());
    ScenarioSource {
        name: c.plan.scenario.clone(),
        file,
        text: c.source.to_string(),
    }
}

/// `kernel/port/v7.2.12` for the checkout's kernel dir; the private copy's
/// path otherwise.
fn display_kernel_path(kdir: &KernelDir, path: &Path, target: &Target) -> String {
    let rel = kdir.relative(path);
    if target.known {
        format!("kernel/{rel}")
    } else {
        path.display().to_string()
    }
}

fn resolve_diagnostic(e: ResolveError) -> Report {
    match e {
        ResolveError::Kbuild(k) => super::kernel::diagnostic(k),
        other => Report::new(MietteDiagnostic::new(other.to_string()).with_help(other.help())),
    }
}

fn bad_input(report: Report) -> miette::Result<ExitCode> {
    eprintln!("{report:?}");
    Ok(ExitCode::from(BAD_INPUT))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(r: &Report) -> String {
        let mut out = String::new();
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .with_width(200)
            .render_report(&mut out, r.as_ref())
            .unwrap();
        out
    }

    #[test]
    fn an_unknown_message_id_says_there_is_no_network_and_how_to_get_an_mbox() {
        let e = gasbench_review::resolve::find_message_id("x.1@example.org", &[]).unwrap_err();
        let out = render(&resolve_diagnostic(e));
        assert!(
            out.contains("no series gasbench knows has the Message-Id <x.1@example.org>"),
            "{out}"
        );
        assert!(out.contains("no network"), "{out}");
        assert!(out.contains("t.mbox.gz"), "{out}");
    }

    #[test]
    fn a_patch_mail_without_a_diff_points_at_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hello.eml");
        std::fs::write(
            &p,
            "From: a@b\nSubject: [PATCH] x\nDate: Mon, 4 May 2026 10:00:00 +0200\n\nno diff here\n",
        )
        .unwrap();
        let e = gasbench_review::resolve::read_mail_file(&p, &[]).unwrap_err();
        let out = render(&resolve_diagnostic(e));
        assert!(
            out.contains("the mail has a patch subject but no `diff --git` in its body"),
            "{out}"
        );
        assert!(out.contains("hello.eml:1:1]"), "{out}");
    }

    #[test]
    fn a_series_the_file_does_not_have_lists_the_ones_it_has() {
        let kdir =
            KernelDir::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../kernel")).unwrap();
        let known = resolve::known_series(&kdir).unwrap();
        let mail = resolve::read_mail_file(
            &kdir.root().join("sources/000_cc8941013480fefb.txt"),
            &known,
        )
        .unwrap();
        let e = mail.select(&["mkdirat3".to_string()]).unwrap_err();
        let out = render(&resolve_diagnostic(e));
        assert!(
            out.contains(
                "has no series \"mkdirat3\" (it has: goldfish-address-space-v3, mkdirat2-v2)"
            ),
            "{out}"
        );
        assert!(out.contains("--series"), "{out}");
    }
}
