//! `gasbench scenario check FILE…` and `gasbench scenario show FILE`:
//! validate scenarios without a VM, print what one compiles to.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use gasbench_scenario::{Check, Compiled, StepKind};

use crate::Globals;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Validate scenario files (or every *.toml in a directory) without a
    /// VM; report every problem with its line and column. Exit 1 if any
    /// file has a problem. With no FILE, the default suite.
    Check {
        #[arg(value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Print what a scenario compiles to: steps, sync points and host
    /// actions, expectations; `--json` prints the agent's bundle and the
    /// host's plan as JSON.
    Show {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(g: &Globals, args: Args) -> miette::Result<ExitCode> {
    match args.cmd {
        Sub::Check { files } if files.is_empty() => {
            let suite = super::run::default_suite(g)?;
            say!("scenario check: the default suite, {}", suite.display());
            check(&[suite])
        }
        Sub::Check { files } => check(&files),
        Sub::Show { file, json } => show(&file, json),
    }
}

/// Files named on the command line, directories expanded to their *.toml.
pub(crate) fn expand(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.path())
                        .filter(|f| f.extension().is_some_and(|x| x == "toml"))
                        .collect()
                })
                .unwrap_or_default();
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    out
}

fn check(paths: &[PathBuf]) -> miette::Result<ExitCode> {
    let files = expand(paths);
    if files.is_empty() {
        eprintln!("gasbench scenario check: no scenario files found");
        return Ok(ExitCode::from(2));
    }
    let mut bad = 0;
    for f in &files {
        match load_checked(f) {
            Ok(c) => {
                let p = &c.plan;
                // A run also checks each kernel-log rule and that every
                // step ran: its count is higher by those.
                let log_rules = p.kernel_log.must_match.len() + p.kernel_log.must_not_match.len();
                println!(
                    "ok    {}: {} steps, {} expectations{}, {} sync points",
                    f.display(),
                    p.steps.len(),
                    p.expectations.len(),
                    if log_rules > 0 {
                        format!(" and {log_rules} kernel-log rule(s)")
                    } else {
                        String::new()
                    },
                    p.syncs.len()
                );
            }
            Err(problems) => {
                bad += 1;
                println!("FAIL  {}: {} problem(s)", f.display(), problems.len());
                super::eprint_report(&miette::Report::new(*problems));
            }
        }
    }
    println!(
        "{} of {} scenario files are valid",
        files.len() - bad,
        files.len()
    );
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Load a scenario and check what only the engine can: the fault rules
/// and device configuration, against the device model.
pub(crate) fn load_checked(f: &Path) -> Result<Compiled, Box<gasbench_scenario::Problems>> {
    let c = gasbench_scenario::load(f)?;
    gasbench_engine::preflight::check(&c)?;
    Ok(c)
}

/// Load every scenario, printing every problem of every file; `Err` with
/// the number of bad files when any is bad.
pub(crate) fn load_all(files: &[PathBuf]) -> Result<Vec<Compiled>, usize> {
    let mut good = Vec::new();
    let mut bad = 0;
    for f in files {
        match load_checked(f) {
            Ok(c) => good.push(c),
            Err(problems) => {
                bad += 1;
                super::eprint_report(&miette::Report::new(*problems));
            }
        }
    }
    if bad == 0 { Ok(good) } else { Err(bad) }
}

fn show(file: &Path, json: bool) -> miette::Result<ExitCode> {
    let c = match gasbench_scenario::load(file) {
        Ok(c) => c,
        Err(problems) => {
            super::eprint_report(&miette::Report::new(*problems));
            return Ok(ExitCode::FAILURE);
        }
    };
    if json {
        let out = serde_json::json!({ "bundle": c.bundle, "plan": c.plan });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        print!("{}", render(&c));
    }
    Ok(ExitCode::SUCCESS)
}

/// The plan as text, one block per step.
fn render(c: &Compiled) -> String {
    use std::fmt::Write;
    let p = &c.plan;
    let mut s = String::new();
    let _ = writeln!(s, "scenario {}  ({})", p.scenario, c.origin);
    if let Some(d) = &p.description {
        let _ = writeln!(s, "  {}", d.trim());
    }
    let mut req = Vec::new();
    if p.requires.goldfish {
        req.push("goldfish device".to_string());
    }
    if p.requires.mkdirat2 {
        req.push("mkdirat2".to_string());
    }
    req.extend(p.requires.kselftests.iter().cloned());
    let _ = writeln!(
        s,
        "  timeout {:?}; requires: {}",
        p.timeout,
        if req.is_empty() {
            "nothing".into()
        } else {
            req.join(", ")
        }
    );
    if let Some(f) = &p.initial_faults {
        let _ = writeln!(s, "  device faults from the start: {}", f.to_json());
    }
    let bundle_steps = c.bundle.all_steps();
    for info in &p.steps {
        let depth = {
            let mut d = 0;
            let mut at = info.parent;
            while let Some(pid) = at {
                d += 1;
                at = p.step(pid).and_then(|x| x.parent);
            }
            d
        };
        let pad = "    ".repeat(depth + 1);
        let what = match bundle_steps.iter().find(|b| b.id == info.id) {
            Some(b) => match &info.kind {
                StepKind::Call { .. } => serde_json::to_string(&b.action).unwrap_or_default(),
                other => format!("{other:?}").to_lowercase(),
            },
            None => String::new(),
        };
        let _ = writeln!(s, "{pad}#{} line {}: {}", info.id, info.line, info.name);
        let _ = writeln!(s, "{pad}  do {what}");
        let mut extra = Vec::new();
        if let Some(b) = bundle_steps.iter().find(|b| b.id == info.id)
            && b.repeat > 1
        {
            extra.push(format!("repeat {}", b.repeat));
        }
        if let Some(n) = info.calls {
            extra.push(format!("{n} calls"));
        }
        if let Some(cap) = &info.capture {
            extra.push(format!("capture {cap}"));
        }
        if let Some(i) = &info.inject {
            extra.push(format!(
                "inject {} faults #{}..#{}",
                i.fault.name(),
                i.first,
                i.last
            ));
        }
        extra.push(format!("timeout {:?}", info.timeout));
        let _ = writeln!(s, "{pad}  {}", extra.join(", "));
        for e in p.expectations.iter().filter(|e| e.step == info.id) {
            let text = match &e.check {
                Check::Ok { ok } => {
                    format!("ok = {ok}{}", if e.implicit { " (default)" } else { "" })
                }
                Check::Errno { errno } => format!("errno = {errno}"),
                Check::Ret { matcher } => format!("ret {}", op_first(matcher)),
                Check::Out { field, matcher } => format!("out.{field} {}", op_first(matcher)),
                Check::Calls { count } => format!("calls = {count}"),
                Check::Device { check } => format!(
                    "device {}",
                    serde_json::to_string(check).unwrap_or_default()
                ),
                Check::KernelLog { rules } => format!(
                    "kernel log must match {:?}, must not match {:?}",
                    rules
                        .must_match
                        .iter()
                        .map(|p| &p.regex)
                        .collect::<Vec<_>>(),
                    rules
                        .must_not_match
                        .iter()
                        .map(|p| &p.regex)
                        .collect::<Vec<_>>()
                ),
                Check::Ktap { check } => {
                    format!("ktap {}", serde_json::to_string(check).unwrap_or_default())
                }
                Check::Host { ok } => {
                    format!("host action {}", if *ok { "succeeds" } else { "fails" })
                }
                Check::Report { kinds } => format!("report = {}", kinds.join(" or ")),
                Check::Leaks { matcher } => format!("kernel.leaks {}", op_first(matcher)),
                Check::Injected { errnos } => format!(
                    "each injected attempt: success or {}, nothing left behind (default)",
                    errnos.join(" or ")
                ),
            };
            let _ = writeln!(s, "{pad}  expect {text}");
        }
        if let Some(sid) = info.sync
            && let Some(sp) = p.sync(sid)
        {
            let actions: Vec<&str> = sp.actions.iter().map(|a| a.name()).collect();
            let _ = writeln!(
                s,
                "{pad}  ── sync {sid}: agent waits; host {}{}, then resumes",
                if actions.is_empty() {
                    "does nothing".into()
                } else {
                    actions.join(", ")
                },
                if sp.snapshot {
                    ", snapshots the device"
                } else {
                    ""
                }
            );
        }
    }
    let _ = writeln!(
        s,
        "  whole run: console must not match {:?}",
        p.kernel_log
            .must_not_match
            .iter()
            .map(|p| &p.regex)
            .collect::<Vec<_>>()
    );
    s
}

/// `== 8192`, `>= 0`: the operator spelled out, equality included.
fn op_first(m: &gasbench_scenario::Matcher) -> String {
    match m.op {
        gasbench_scenario::Op::Eq => format!("== {}", m.value),
        _ => m.to_string(),
    }
}
