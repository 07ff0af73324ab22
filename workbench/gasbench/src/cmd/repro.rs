//! `gasbench repro <MBOX|MESSAGE-ID>`: the reviewer's reproduction. Resolve
//! the posted series (gasbench-review), build the base with it patch by
//! patch (gasbench-kbuild, through the engine's kernel stage), boot and run
//! the scenarios that concern it (gasbench-engine), and write review.md
//! and review.json in the run directory. Exit 0: every patch applies and
//! builds and every expectation held; 1: findings; 2: bad input.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use gasbench_engine::explore_run::ExplorePlan;
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
    /// one or more series; `-` for an mbox on standard input; or a
    /// Message-Id (a series gasbench knows, or any other, whose thread is
    /// fetched from the list's archive and cached).
    #[arg(value_name = "MBOX|-|MESSAGE-ID")]
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
    /// architecture (e.g. `arm`, which has no syscall wrappers) [default:
    /// `arm` for a series that touches what other architectures compile
    /// differently: syscall tables and declarations, asm-generic, arch/,
    /// compat code].
    #[arg(long, value_name = "ARCH", conflicts_with = "no_per_patch")]
    cross_arch: Option<String>,
    /// No second architecture in the per-patch check, whatever the series
    /// touches.
    #[arg(long, conflicts_with = "cross_arch")]
    no_cross_arch: bool,
    /// Run the whole scenario suite, not only the scenarios that concern
    /// the series.
    #[arg(long)]
    all_scenarios: bool,
    /// Print review.json on stdout instead of review.md (an array when the
    /// file holds several series).
    #[arg(long)]
    json: bool,
    /// The kernel/ directory to use [default: gasbench's data's, see
    /// `gasbench doctor`].
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
    /// A kernel git checkout to take the base from (cloned with shared
    /// objects, never written): the series' `base-commit:` when the tree
    /// has it, else --base-rev, else the pin's upstream tag.
    #[arg(long, value_name = "PATH")]
    base_tree: Option<PathBuf>,
    /// The revision of --base-tree to build on (overrides the series'
    /// base-commit).
    #[arg(long, value_name = "REV", requires = "base_tree")]
    base_rev: Option<String>,
    /// For a series without a `base-commit:` trailer: build on the newest
    /// revision of --base-tree (HEAD, then its tags, newest first) that
    /// has every file as the series found it, as b4 guesses a base.
    #[arg(long, conflicts_with = "base_rev")]
    guess_base: bool,
    #[command(flatten)]
    explore: super::explore::ReproExploreArgs,
    #[command(flatten)]
    fetch: super::fetch::FetchArgs,
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

use super::exit::{BAD_INPUT, TOOL_FAILED};

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
    args.vm.talk.apply();
    let kdir = match &args.kernel_dir {
        Some(dir) => KernelDir::open(dir).map_err(super::kernel::diagnostic),
        None => g.kernel_dir(),
    };
    let kdir = match kdir {
        Ok(k) => k,
        Err(e) => return bad_input(e),
    };
    let known = match resolve::known_series(&kdir) {
        Ok(k) => k,
        Err(e) => return bad_input(super::kernel::diagnostic(e)),
    };

    // What to review: a file, standard input, a known Message-Id, or the
    // thread of any other Message-Id, fetched.
    let mail_bytes = match Input::parse(&args.input) {
        Input::File(path) => match resolve::read_mail_file(&path, &known) {
            Ok(m) => Ok(m),
            Err(e) => return bad_input(resolve_diagnostic(e)),
        },
        Input::Stdin => {
            let read = resolve::read_bounded_stream(std::io::stdin().lock(), "standard input")
                .and_then(|b| {
                    resolve::read_mail_bytes(&b, "standard input", Path::new("-"), &known)
                });
            match read {
                Ok(m) => Ok(m),
                Err(e) => return bad_input(resolve_diagnostic(e)),
            }
        }
        Input::MessageId(id) => match resolve::find_message_id(&id, &known) {
            Ok(m) if args.series.iter().any(|w| !m.name.starts_with(w.as_str())) => {
                return bad_input(resolve_diagnostic(ResolveError::NoSuchSeries {
                    label: format!("<{id}>"),
                    wanted: args.series.join(", "),
                    have: vec![m.name],
                }));
            }
            Ok(m) => Err(m),
            Err(_) => {
                let lists = known
                    .iter()
                    .flat_map(|k| k.manifest.lists.iter().cloned())
                    .collect::<Vec<_>>();
                let thread = match super::fetch::thread(g, &args.fetch, &id, &lists) {
                    Ok(t) => t,
                    Err(status) => return Ok(status),
                };
                let label = format!("the thread of <{id}>");
                match resolve::read_mail_bytes(&thread.mbox, &label, &thread.kept, &known) {
                    Ok(m) => Ok(m),
                    Err(e) => return bad_input(resolve_diagnostic(e)),
                }
            }
        },
    };
    let mail;
    let pending: Vec<Pending> = match mail_bytes {
        Ok(m) => {
            mail = m;
            let selected = match mail.select(&args.series) {
                Ok(s) => s,
                Err(e) => return bad_input(resolve_diagnostic(e)),
            };
            say!(
                "gasbench repro: {} ({}): {} series",
                mail.label,
                mail.format.describe(),
                mail.series.len()
            );
            for s in &mail.series {
                say!(
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
            // Which revision of a series the thread held twice was chosen.
            let notes = if args.series.is_empty() {
                mail.revision_notes()
            } else {
                Vec::new()
            };
            for n in &notes {
                eprintln!("gasbench repro: {n}");
            }
            let with_notes = |how: &str| {
                std::iter::once(how.to_string())
                    .chain(notes.iter().cloned())
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            selected
                .into_iter()
                .map(|s| match &s.known {
                    Some(name) => Pending::Known {
                        name: name.clone(),
                        how: with_notes(&s.how),
                    },
                    None => Pending::New {
                        file: &mail,
                        series: s,
                    },
                })
                .collect()
        }
        Err(m) => {
            say!("gasbench repro: {}", m.how);
            vec![Pending::Known {
                name: m.name,
                how: m.how,
            }]
        }
    };

    // Every scenario is checked before anything starts.
    let files = super::scenario::expand(&[super::run::default_suite(g)?]);
    let suite = match super::scenario::load_all(&files) {
        Ok(s) => s,
        Err(bad) => {
            say!(
                "gasbench repro: {bad} scenario file(s) of the suite have problems; nothing was started"
            );
            return Ok(ExitCode::from(BAD_INPUT));
        }
    };
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
        say!("gasbench repro: {bad} series could not be prepared; nothing was started");
        return Ok(ExitCode::from(BAD_INPUT));
    }
    // Only input that is good needs the runtime.
    let runtime = match super::setup::ready_runtime(g) {
        Ok(r) => r,
        Err(e) => {
            for s in &ready {
                if let Some(dir) = &s.staged {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
            return Err(e);
        }
    };
    for s in ready {
        let (code, review) = review_one(g, &args, s, &suite, &runtime)?;
        worst = super::exit::worst(worst, code);
        reviews.extend(review);
        if code > 128 {
            // A signal stopped it: the series after it are not started.
            break;
        }
    }
    if args.json {
        let text = match (several, reviews.first()) {
            (false, Some(one)) => Some(serde_json::to_string_pretty(one)),
            (false, None) => None,
            (true, _) => Some(serde_json::to_string_pretty(&reviews)),
        };
        if let Some(text) = text {
            println!("{}", gasbench_termsafe::json(&text.into_diagnostic()?));
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
                    super::eprint_report(&resolve_diagnostic(e));
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
        super::eprint_report(&super::kernel::diagnostic(e));
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
    let cross_arch = cross_arch_for(args, &tkdir, &series, &target.name);

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
    let scenarios = args.vm.shard_of(scenarios);
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
    say!(
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
                cross_arch
                    .as_deref()
                    .map(|a| format!(" with {a}"))
                    .unwrap_or_default()
            )
        },
        scenarios.len(),
        profiles.join(", "),
        run_dir.path().display()
    );

    // The base: the series' base-commit when it is to be had.
    let (base, base_choice) = choose_base(args, runtime, &series, &tkdir);
    say!("gasbench repro: {base_choice}");

    // The kernel: base + this series, patch by patch (first profile).
    let request = KernelRequest {
        base,
        kernel_dir: Some(target.kernel_dir.clone()),
        series: Some(vec![target.name.clone()]),
        posted_only: target.posted_only,
        per_patch: !args.no_per_patch,
        cross_arch: cross_arch.clone(),
        jobs: args.jobs,
        profile: profiles[0].clone(),
        ..KernelRequest::default()
    };
    let data_root = g.data()?.root().to_path_buf();
    let mut sources: Vec<ScenarioSource> = suite
        .iter()
        .filter(|c| concerned(c))
        .map(|c| scenario_source(c, &data_root))
        .collect();
    sources.dedup_by(|a, b| a.name == b.name);
    let checkout = super::checkout::of_series(&tkdir, std::slice::from_ref(&target.name));
    // The explorer, bounded, on the first profile's boot after the
    // scenarios.
    let explore = args.explore.plan(concerns.goldfish, concerns.mkdirat2);
    let first = run_profile(
        g,
        args,
        &run_dir,
        &label,
        request.clone(),
        (scenarios, explore),
        runtime,
        (&checkout, args.vm.kcidb.as_deref()),
    )?;
    let (recorded, mut unwritten, slot) = (first.recorded, first.unwritten, first.slot);
    let explored = first.explored;
    unwritten.extend(super::explore::write_outputs(run_dir.path(), &explored));
    let summary = &recorded.summary;
    let mut signal = recorded.signal;

    // The other profiles: whole series only, each in its own run
    // directory beside the first. A run a signal stopped starts nothing
    // more.
    let mut more_runs = Vec::new();
    for profile in &profiles[1..] {
        if signal.is_some() {
            break;
        }
        let dir = RunDir::create(&runs, &format!("{label}-{profile}")).into_diagnostic()?;
        let scenarios: Vec<Compiled> = suite
            .iter()
            .filter(|c| concerned(c) && for_profile(c, profile))
            .cloned()
            .collect();
        say!(
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
        // Its KCIDB submission stays in its run directory; --kcidb names
        // the first profile's.
        let other = run_profile(
            g,
            args,
            &dir,
            &format!("{label}-{profile}"),
            req,
            (scenarios, None),
            runtime,
            (&checkout, None),
        )?;
        if let Some(e) = other.slot.error {
            super::eprint_report(&super::kernel::diagnostic(e));
        }
        unwritten.extend(other.unwritten);
        signal = other.recorded.signal;
        more_runs.push((other.recorded.summary, dir.path().display().to_string()));
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
    let mut review = Review::build(&Facts {
        target: &target,
        series: &series,
        base: &tkdir.base,
        port: port_dir.as_deref().zip(port_series),
        manifest: slot.artifacts.as_ref().map(|a| &a.manifest),
        kernel_error: kernel_error.as_deref(),
        events: &events,
        summary,
        scenarios: &sources,
        per_patch: !args.no_per_patch,
        cross_arch: cross_arch.as_deref(),
        scenarios_note,
        run_dir: Some(run_dir.path().display().to_string()),
        more: &more,
        base_choice: Some(base_choice),
    });
    gasbench_review::explorer::add(
        &mut review,
        &explored,
        &run_dir
            .path()
            .join(super::explore::REPRODUCERS)
            .display()
            .to_string(),
    );
    // Series-level ABI checks, read from the tree the kernel stage left.
    let texts = tkdir.patch_texts(&target.name, &series);
    if let Some(a) = slot.artifacts.as_ref().filter(|a| a.src.is_dir()) {
        let patches: Vec<gasbench_abicheck::Patch> = texts
            .iter()
            .map(|(p, text)| gasbench_abicheck::Patch {
                file: &p.file,
                text,
            })
            .collect();
        let mut results = gasbench_abicheck::check_series(&a.src, &patches);
        let dir = tkdir.series_dir(&target.name);
        results.extend(checkpatch_each(runtime, &a.src, &dir, &series, &texts));
        gasbench_review::series_checks::add(&mut review, &results, &a.src.display().to_string());
    }
    let md = gasbench_review::markdown::render(&review);
    let json = serde_json::to_string_pretty(&review).into_diagnostic()?;
    for (name, text) in [("review.md", &md), ("review.json", &json)] {
        if let Err(e) = gasbench_trace::atomic::write(&run_dir.path().join(name), text.as_bytes()) {
            unwritten.push(e.to_string());
        }
    }
    // The reply to the series, for git send-email or b4 send.
    let diffs = gasbench_review::reply::patch_diffs(&tkdir.series_dir(&target.name), &series);
    let from = reviewer();
    let date = gasbench_review::reply::rfc2822_utc(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    let eml = gasbench_review::reply::render(
        &review,
        &diffs,
        &gasbench_review::reply::ReplyFrom {
            from: &from,
            date: &date,
        },
    );
    if let Err(e) =
        gasbench_trace::atomic::write(&run_dir.path().join("review.eml"), eml.as_bytes())
    {
        unwritten.push(e.to_string());
    }
    // `b4-check` answers from it, by Message-Id and by patch-id.
    let patch_ids: Vec<(u32, String)> = texts
        .iter()
        .filter_map(|(p, text)| {
            let parts = gasbench_series::patch::PatchBody::split(text)?;
            Some((
                p.index,
                gasbench_review::checks::patch_id(&text[parts.diff]),
            ))
        })
        .collect();
    if let Err(e) =
        super::b4check::index(g).register(&review, &run_dir.path().join("review.json"), &patch_ids)
    {
        eprintln!("gasbench repro: b4-check will not find this review: {e}");
    }
    if let Some(e) = slot.error {
        // What stopped the kernel stage, with its help (and rejected hunks).
        super::eprint_report(&super::kernel::diagnostic(e));
    }
    if !args.json {
        print!("{md}");
        println!("\nreview: {}", run_dir.path().join("review.md").display());
        println!(
            "reply:  {} (git send-email or b4 send it; gasbench sends nothing)",
            run_dir.path().join("review.eml").display()
        );
    }
    for e in &unwritten {
        say!("gasbench repro: {e}");
    }
    say!("gasbench repro: {}: {}", target.name, review.verdict_line());
    // Interrupted: the shell's code for the signal (the review holds what
    // was found so far); a file that could not be written: the tool's
    // environment failed.
    let code = match signal {
        Some(s) => s.exit_code(),
        None if !unwritten.is_empty() => super::exit::worst(review.exit_code, TOOL_FAILED),
        None => match super::exit::for_run(summary) {
            super::exit::INTERRUPTED => super::exit::INTERRUPTED,
            _ => review.exit_code,
        },
    };
    Ok((code, Some(review)))
}

/// checkpatch.pl on each patch of the series, run in `tree` through the
/// runtime. Not at all when a patch changes checkpatch or what it reads:
/// the host would run code from the mail (one note says so).
fn checkpatch_each(
    runtime: &gasbench_env::Runtime,
    tree: &Path,
    dir: &Path,
    series: &gasbench_series::manifest::SeriesManifest,
    texts: &[(&gasbench_series::manifest::PatchEntry, String)],
) -> Vec<gasbench_abicheck::CheckResult> {
    use gasbench_abicheck::{CheckResult, Verdict, checkpatch};
    if texts.iter().any(|(_, t)| checkpatch::touches_checkpatch(t)) {
        return vec![CheckResult {
            check: checkpatch::CHECK,
            subject: series.name.clone(),
            verdict: Verdict::Note,
            title: "not run: the series changes checkpatch or a file it reads, and the host \
                    does not run code from a mail"
                .into(),
            evidence: vec![],
        }];
    }
    let total = series.patches.len();
    texts
        .iter()
        .map(|(p, _)| {
            let title = gasbench_series::subject::PatchSubject::parse(&p.subject)
                .map_or_else(|| p.subject.clone(), |s| s.title);
            let subject = format!("{}/{total} {title}", p.index);
            let patch = dir.join(&p.file);
            let mut argv = vec!["perl".to_string()];
            argv.extend(checkpatch::ARGS.iter().map(|a| a.to_string()));
            argv.push(patch.display().to_string());
            let out = runtime
                .build_command(&argv, &[tree.to_path_buf(), dir.to_path_buf()], tree)
                .stdin(std::process::Stdio::null())
                .output();
            match out {
                Ok(o) => checkpatch::parse(&subject, &String::from_utf8_lossy(&o.stdout)),
                Err(e) => checkpatch::parse(&subject, &format!("perl could not run: {e}")),
            }
        })
        .collect()
}

/// The second architecture of the per-patch check: `--cross-arch`, else
/// `arm` when a patch touches code other architectures compile
/// differently (a syscall table, the syscall declarations, asm-generic,
/// arch/, compat code), else none.
fn cross_arch_for(
    args: &Args,
    kdir: &KernelDir,
    series: &gasbench_series::manifest::SeriesManifest,
    name: &str,
) -> Option<String> {
    if args.no_per_patch || args.no_cross_arch {
        return None;
    }
    if args.cross_arch.is_some() {
        return args.cross_arch.clone();
    }
    let touches = kdir.patch_texts(name, series).iter().any(|(_, t)| {
        t.lines()
            .filter_map(|l| l.strip_prefix("+++ b/"))
            .any(arch_sensitive)
    });
    touches.then(|| "arm".to_string())
}

/// A file other architectures compile differently.
fn arch_sensitive(path: &str) -> bool {
    let path = path.trim();
    path.ends_with(".tbl")
        || path == "include/linux/syscalls.h"
        || path.starts_with("include/uapi/asm-generic/")
        || path.starts_with("include/asm-generic/")
        || (path.starts_with("arch/") && !path.starts_with("arch/x86/"))
        || path.contains("compat")
}

/// The base to build on and a sentence saying which and why: the series'
/// `base-commit:` when `--base-tree` has it (and no `--base-rev` says
/// otherwise); else `--base-rev` or the pin's tag of `--base-tree`; else
/// the pinned base, which has no git history to find a commit in.
fn choose_base(
    args: &Args,
    rt: &gasbench_env::Runtime,
    series: &gasbench_series::manifest::SeriesManifest,
    kdir: &KernelDir,
) -> (gasbench_kbuild::BaseSource, String) {
    use gasbench_kbuild::BaseSource;
    let wanted = series.base_commit.as_deref();
    let pinned = format!(
        "the pinned base {} ({} {})",
        kdir.base.release, kdir.base.package, kdir.base.package_version
    );
    let Some(tree) = &args.base_tree else {
        let choice = match wanted {
            None if args.guess_base => format!(
                "--guess-base: the only base gasbench has without --base-tree is {pinned}, a \
                 source tarball with no git history to compare the series' blobs with; built on it"
            ),
            Some(c) => format!(
                "the series says base-commit {c}; the pinned base is a source tarball without \
                 git history, so it was built on {pinned} instead (--base-tree PATH, a kernel \
                 checkout that has {c}, builds on the series' own base)"
            ),
            None => format!("the series has no base-commit: trailer; built on {pinned}"),
        };
        return (BaseSource::Packaged, choice);
    };
    let shown = tree.display();
    if args.guess_base && wanted.is_none() {
        let texts = kdir.patch_texts(&series.name, series);
        let pre = gasbench_kbuild::guess_base::preimages(texts.iter().map(|(_, t)| t.as_str()));
        match gasbench_kbuild::guess_base::guess(rt, tree, &pre, 40) {
            Ok(Some(g)) => {
                return (
                    BaseSource::GitTree {
                        path: tree.clone(),
                        rev: Some(g.commit.clone()),
                    },
                    format!(
                        "--guess-base: {} of {shown} ({}) is the newest revision that has all {} \
                         file(s) the series changes as the series found them ({} newer tried)",
                        g.rev,
                        g.commit,
                        pre.len(),
                        g.tried
                    ),
                );
            }
            Ok(None) => {
                return (
                    BaseSource::GitTree {
                        path: tree.clone(),
                        rev: None,
                    },
                    format!(
                        "--guess-base: no revision of {shown} (HEAD and its 40 newest tags) has \
                         the {} file(s) the series changes as the series found them; built on \
                         {} instead",
                        pre.len(),
                        kdir.base.upstream_tag
                    ),
                );
            }
            Err(e) => eprintln!("gasbench repro: --guess-base could not look: {e}"),
        }
    }
    if let Some(rev) = &args.base_rev {
        let also = wanted
            .map(|c| format!(" (the series says base-commit {c})"))
            .unwrap_or_default();
        return (
            BaseSource::GitTree {
                path: tree.clone(),
                rev: Some(rev.clone()),
            },
            format!("built on {rev} of {shown}, as --base-rev asks{also}"),
        );
    }
    match wanted {
        Some(c) => match gasbench_kbuild::tree::commit_in(rt, tree, c) {
            Some(full) => (
                BaseSource::GitTree {
                    path: tree.clone(),
                    rev: Some(full.clone()),
                },
                format!("built on the series' base-commit {c}, found in {shown} ({full})"),
            ),
            None => (
                BaseSource::GitTree {
                    path: tree.clone(),
                    rev: None,
                },
                format!(
                    "the series says base-commit {c}, which {shown} does not have; built on {} of \
                     {shown} instead",
                    kdir.base.upstream_tag
                ),
            ),
        },
        None => (
            BaseSource::GitTree {
                path: tree.clone(),
                rev: None,
            },
            format!(
                "the series has no base-commit: trailer; built on {} of {shown}",
                kdir.base.upstream_tag
            ),
        ),
    }
}

/// Who the reply is from: GASBENCH_FROM, else git's user.name and
/// user.email, else the login name on this host.
fn reviewer() -> String {
    if let Ok(from) = std::env::var("GASBENCH_FROM")
        && !from.trim().is_empty()
    {
        return from;
    }
    let git = |key: &str| {
        std::process::Command::new("git")
            .args(["config", "--get", key])
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
    };
    match (git("user.name"), git("user.email")) {
        (Some(n), Some(e)) => format!("{n} <{e}>"),
        (None, Some(e)) => e,
        _ => format!(
            "{} <{}@localhost>",
            std::env::var("USER").unwrap_or_else(|_| "reviewer".into()),
            std::env::var("USER").unwrap_or_else(|_| "reviewer".into())
        ),
    }
}

/// What one profile's run left: its record, the files it could not
/// write, and what the kernel stage produced.
struct ProfileOutcome {
    recorded: super::headless::Recorded,
    unwritten: Vec<String>,
    slot: KernelSlot,
    /// What the explorer found (empty when it did not run).
    explored: Vec<gasbench_explore::ExploreReport>,
}

/// Build the kernel `request` names, run `scenarios` and then the
/// explorer's plan on it (or only build when there is neither) and write
/// the run's results (`export`: what was checked out, and where else the
/// KCIDB submission goes).
#[allow(clippy::too_many_arguments)]
fn run_profile(
    g: &Globals,
    args: &Args,
    run_dir: &RunDir,
    label: &str,
    request: KernelRequest,
    (scenarios, explore): (Vec<Compiled>, Option<ExplorePlan>),
    runtime: &gasbench_env::Runtime,
    export: (&gasbench_trace::kcidb::Checkout, Option<&std::path::Path>),
) -> miette::Result<ProfileOutcome> {
    let slot = Arc::new(Mutex::new(KernelSlot::default()));
    let provider = kernel_provider(request, runtime, &g.cache, slot.clone());
    let boot = !scenarios.is_empty() || explore.is_some();
    let opts = RunOptions {
        scenarios,
        kernel: provider.clone(),
        settings: args.vm.settings(g, runtime.clone(), run_dir),
        explore,
    };
    let explored = Arc::new(Mutex::new(Vec::new()));
    let explored_slot = explored.clone();
    let recorded = super::headless::record(
        run_dir,
        label,
        true,
        args.vm.guest_log_cap,
        |sink, interrupt| async move {
            if boot {
                let out = pipeline::run_until(opts, sink, interrupt).await;
                let passed = out.passed() || (out.reports.is_empty() && out.error.is_none());
                *explored_slot.lock().unwrap_or_else(|p| p.into_inner()) = out.explored;
                passed
            } else {
                kernel_only(&provider, &sink, interrupt).await
            }
        },
    )?;
    let (_, mut unwritten) =
        super::headless::write_results(run_dir, &recorded.summary, export.0, export.1);
    unwritten.extend(recorded.log_error.clone());
    super::headless::record_proofs(g, run_dir, &recorded.summary);
    let slot = std::mem::take(&mut *slot.lock().unwrap_or_else(|p| p.into_inner()));
    let explored = std::mem::take(&mut *explored.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(ProfileOutcome {
        recorded,
        unwritten,
        slot,
        explored,
    })
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
async fn kernel_only(
    provider: &KernelProvider,
    sink: &EventSink,
    interrupt: gasbench_engine::interrupt::Interrupt,
) -> bool {
    match pipeline::build_kernel_until(provider, sink, interrupt).await {
        Ok(_) => true,
        Err(e) => {
            sink.emit(RunEvent::Error { text: e });
            false
        }
    }
}

fn scenario_source(c: &Compiled, root: &Path) -> ScenarioSource {
    let file = Path::new(&c.origin)
        .strip_prefix(root)
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
    super::eprint_report(&report);
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
    fn an_unknown_message_id_says_how_it_is_fetched_and_how_to_get_an_mbox_offline() {
        let e = gasbench_review::resolve::find_message_id("x.1@example.org", &[]).unwrap_err();
        let out = render(&resolve_diagnostic(e));
        assert!(
            out.contains("no series gasbench knows has the Message-Id <x.1@example.org>"),
            "{out}"
        );
        assert!(out.contains("offline"), "{out}");
        assert!(out.contains("t.mbox.gz"), "{out}");
    }

    fn args(extra: &[&str]) -> Args {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct P {
            #[command(flatten)]
            a: Args,
        }
        let mut argv = vec!["x", "in.mbox"];
        argv.extend_from_slice(extra);
        P::parse_from(argv).a
    }

    /// mkdirat2 touches syscall tables and declarations: its per-patch
    /// check compiles for arm too unless told otherwise; the goldfish
    /// driver touches nothing other architectures compile differently.
    #[test]
    fn the_cross_arch_check_is_on_by_default_for_a_series_that_touches_syscalls() {
        let kdir =
            KernelDir::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../kernel")).unwrap();
        let of = |extra: &[&str], name: &str| {
            let series = kdir.series(name).unwrap();
            cross_arch_for(&args(extra), &kdir, &series, name)
        };
        assert_eq!(of(&[], "mkdirat2-v2").as_deref(), Some("arm"));
        assert_eq!(of(&[], "goldfish-address-space-v3"), None);
        assert_eq!(of(&["--no-cross-arch"], "mkdirat2-v2"), None);
        assert_eq!(of(&["--no-per-patch"], "mkdirat2-v2"), None);
        assert_eq!(
            of(&["--cross-arch", "riscv"], "goldfish-address-space-v3").as_deref(),
            Some("riscv")
        );
    }

    #[test]
    fn the_base_is_the_series_base_commit_when_a_tree_has_it_and_said_otherwise() {
        let kdir =
            KernelDir::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../kernel")).unwrap();
        let mut series = kdir.series("mkdirat2-v2").unwrap();
        let rt = gasbench_env::Runtime::Host;
        let (base, why) = choose_base(&args(&[]), &rt, &series, &kdir);
        assert_eq!(base, gasbench_kbuild::BaseSource::Packaged);
        assert!(why.contains("no base-commit: trailer"), "{why}");
        assert!(why.contains("7.2.12"), "{why}");

        series.base_commit = Some("0123456789abcdef0123456789abcdef01234567".into());
        let (base, why) = choose_base(&args(&[]), &rt, &series, &kdir);
        assert_eq!(base, gasbench_kbuild::BaseSource::Packaged);
        assert!(why.contains("says base-commit 0123456789abcdef"), "{why}");
        assert!(why.contains("instead"), "{why}");
        assert!(why.contains("--base-tree PATH"), "{why}");

        // A tree without that commit: its pinned tag, and the reason.
        let repo = tempfile::tempdir().unwrap();
        let git = |a: &[&str]| {
            std::process::Command::new("git")
                .args(a)
                .current_dir(repo.path())
                .env("GIT_AUTHOR_NAME", "t")
                .env("GIT_AUTHOR_EMAIL", "t@t")
                .env("GIT_COMMITTER_NAME", "t")
                .env("GIT_COMMITTER_EMAIL", "t@t")
                .output()
                .unwrap()
        };
        git(&["init", "-q"]);
        git(&["commit", "-q", "--allow-empty", "-m", "base"]);
        let head = String::from_utf8(git(&["rev-parse", "HEAD"]).stdout).unwrap();
        let tree = repo.path().to_str().unwrap();
        let (base, why) = choose_base(&args(&["--base-tree", tree]), &rt, &series, &kdir);
        assert!(matches!(
            base,
            gasbench_kbuild::BaseSource::GitTree { rev: None, .. }
        ));
        assert!(why.contains("does not have; built on v7.2.12"), "{why}");
        // The tree has it: honoured.
        series.base_commit = Some(head.trim()[..12].to_string());
        let (base, why) = choose_base(&args(&["--base-tree", tree]), &rt, &series, &kdir);
        assert_eq!(
            base,
            gasbench_kbuild::BaseSource::GitTree {
                path: repo.path().to_path_buf(),
                rev: Some(head.trim().to_string())
            }
        );
        assert!(why.contains("built on the series' base-commit"), "{why}");
        // --base-rev wins, and says what the series wanted.
        let (_, why) = choose_base(
            &args(&["--base-tree", tree, "--base-rev", "HEAD"]),
            &rt,
            &series,
            &kdir,
        );
        assert!(
            why.contains("as --base-rev asks (the series says base-commit"),
            "{why}"
        );

        // No trailer, --guess-base: the newest revision with the blobs
        // the posting was made against. A later commit changes the file;
        // the series' preimage is the tagged one's blob.
        std::fs::create_dir_all(repo.path().join("fs")).unwrap();
        std::fs::write(repo.path().join("fs/namei.c"), "old\n").unwrap();
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", "with namei"]);
        git(&["tag", "v1"]);
        let blob = String::from_utf8(git(&["rev-parse", "HEAD:fs/namei.c"]).stdout).unwrap();
        std::fs::write(repo.path().join("fs/namei.c"), "newer\n").unwrap();
        git(&["commit", "-q", "-am", "moved on"]);
        let v1 = String::from_utf8(git(&["rev-parse", "v1"]).stdout).unwrap();
        // A kernel directory whose series `s` is that one patch.
        let kd = tempfile::tempdir().unwrap();
        std::fs::copy(kdir.root().join("base.toml"), kd.path().join("base.toml")).unwrap();
        std::fs::create_dir_all(kd.path().join("series/s")).unwrap();
        let patch = format!(
            "From x\nSubject: [PATCH] y\n\n---\ndiff --git a/fs/namei.c b/fs/namei.c\nindex {}..1234567 100644\n--- a/fs/namei.c\n+++ b/fs/namei.c\n@@ -1 +1 @@\n-old\n+new\n",
            &blob.trim()[..7]
        );
        std::fs::write(kd.path().join("series/s/0001-y.patch"), patch).unwrap();
        let kd = KernelDir::open(kd.path()).unwrap();
        series.base_commit = None;
        series.name = "s".into();
        series.patches.truncate(1);
        series.patches[0].file = "0001-y.patch".into();
        let (base, why) = choose_base(
            &args(&["--base-tree", tree, "--guess-base"]),
            &rt,
            &series,
            &kd,
        );
        assert_eq!(
            base,
            gasbench_kbuild::BaseSource::GitTree {
                path: repo.path().to_path_buf(),
                rev: Some(v1.trim().to_string())
            },
            "{why}"
        );
        assert!(why.contains("--guess-base: v1 of"), "{why}");
        assert!(why.contains("(1 newer tried)"), "{why}");
        let (_, why) = choose_base(&args(&["--guess-base"]), &rt, &series, &kd);
        assert!(why.contains("no git history"), "{why}");
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
