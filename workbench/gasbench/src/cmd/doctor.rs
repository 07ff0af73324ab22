//! `gasbench doctor`: one line per requirement.

use std::process::ExitCode;

use gasbench_env::checks::{self, Check, Status};
use gasbench_env::kvm::probe_kvm_cached;
use gasbench_env::{Runtime, resolve_runtime};
use gasbench_events::vm::Protection;
use gasbench_qemu::Accel;
use miette::IntoDiagnostic;
use serde::Serialize;

use crate::Globals;

#[derive(clap::Args)]
pub struct Args {
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Report {
    runtime: &'static str,
    runtime_reason: String,
    cache_dir: String,
    /// Where gasbench's data (scenarios, kernel/, the agent's sources)
    /// comes from, or why it cannot be found.
    data: String,
    /// The configuration files looked at.
    config_files: Vec<String>,
    accel: &'static str,
    ok: bool,
    checks: Vec<Check>,
    /// Per kernel profile with detectors: which were last shown to fire
    /// on this machine (None: never tried here).
    detectors: Vec<DetectorLine>,
    /// How a VM's host processes would be confined here: every protection,
    /// in force or not, and why.
    confinement: Vec<Protection>,
}

#[derive(Serialize)]
struct DetectorLine {
    profile: String,
    detectors: Vec<String>,
    record: Option<gasbench_trace::proofs::ProofRecord>,
}

/// The profiles with detectors (from kernel/, when found) and what the
/// last proof on this machine showed.
fn detector_lines(g: &Globals) -> Vec<DetectorLine> {
    let records = gasbench_trace::proofs::load_all(&g.cache.state());
    let mut out = Vec::new();
    if let Ok(kdir) = g.kernel_dir()
        && let Ok(names) = gasbench_kbuild::profile::names(&kdir)
    {
        for name in names {
            let Ok(p) = gasbench_kbuild::profile::profile(&kdir, &name) else {
                continue;
            };
            if p.info.detectors.is_empty() {
                continue;
            }
            out.push(DetectorLine {
                record: records.iter().find(|r| r.profile == name).cloned(),
                profile: name,
                detectors: p.info.detectors,
            });
        }
    }
    for r in records {
        if !out.iter().any(|l| l.profile == r.profile) {
            out.push(DetectorLine {
                profile: r.profile.clone(),
                detectors: r.detectors.clone(),
                record: Some(r),
            });
        }
    }
    out
}

pub fn run(g: &Globals, args: Args) -> miette::Result<ExitCode> {
    let (runtime, choice) = resolve_runtime(&g.cache, g.runtime);
    let mut list = checks::check_runtime(&runtime);
    if let Runtime::Toolroot(root) = &runtime
        && !root.state().is_ready()
    {
        list.insert(0, checks::check_debootstrap());
    }
    let qemu_version = checks::qemu_version(&runtime).unwrap_or_default();
    let kernel = gasbench_env::probe_kernel(&runtime, None);
    let (verdict, cached) = if qemu_version.is_empty() {
        (
            gasbench_env::kvm::KvmVerdict {
                usable: false,
                reason: "no usable QEMU to probe with".into(),
            },
            false,
        )
    } else {
        probe_kvm_cached(
            &runtime,
            kernel.as_deref(),
            &qemu_version,
            &g.cache.state(),
            checks::KVM_PROBE_TIMEOUT,
        )
    };
    list.push(checks::kvm_check(&verdict, cached));
    let ok = !list.iter().any(Check::failed_required);
    let accel = if verdict.usable {
        Accel::Kvm
    } else {
        Accel::Tcg
    };
    let confinement = if qemu_version.is_empty() {
        Vec::new()
    } else {
        gasbench_qemu::confine::plan_for(
            &runtime,
            g.config.memory_mib.value,
            g.config.cpus.value,
            accel,
        )
        .protections
    };
    let report = Report {
        runtime: choice.kind.name(),
        runtime_reason: choice.reason,
        cache_dir: g.cache.root().display().to_string(),
        data: match g.data() {
            Ok(d) => d.to_string(),
            Err(e) => format!("not found: {e}"),
        },
        config_files: g
            .config
            .files
            .iter()
            .map(|f| {
                format!(
                    "{} ({})",
                    f.path.display(),
                    if f.found { "read" } else { "none" }
                )
            })
            .collect(),
        accel: verdict.accel(),
        ok,
        checks: list,
        detectors: detector_lines(g),
        confinement,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).into_diagnostic()?
        );
    } else {
        print_table(&report);
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_table(r: &Report) {
    println!("runtime: {} ({})", r.runtime, r.runtime_reason);
    println!("cache:   {}", r.cache_dir);
    println!("data:    {}", r.data);
    println!("config:  {}", r.config_files.join(", "));
    let name_w = r.checks.iter().map(|c| c.name.len()).max().unwrap_or(4);
    let found_w = r
        .checks
        .iter()
        .map(|c| c.found.as_deref().unwrap_or("-").len().min(40))
        .max()
        .unwrap_or(5);
    for c in &r.checks {
        let found = c.found.as_deref().unwrap_or("-");
        let mut line = format!(
            "{:4}  {:name_w$}  {:found_w$}  {:8}  {}",
            c.status.label(),
            c.name,
            found,
            c.from,
            c.needs
        );
        if !c.detail.is_empty() {
            line.push_str(&format!(" — {}", c.detail));
        }
        if c.status != Status::Pass
            && let Some(fix) = &c.fix
        {
            line.push_str(&format!("\n        fix: {fix}"));
        }
        println!("{line}");
    }
    for d in &r.detectors {
        match &d.record {
            None => println!(
                "detectors ({} profile: {}): not yet proven on this machine — \
                 `gasbench run --profile {} scenarios/detectors_{}.toml` provokes each once",
                d.profile,
                d.detectors.join(", "),
                d.profile,
                d.profile
            ),
            Some(rec) => {
                println!(
                    "detectors ({} profile): proven here: {}{}{}",
                    rec.profile,
                    if rec.proven.is_empty() {
                        "none".to_string()
                    } else {
                        rec.proven.join(", ")
                    },
                    if rec.not_proven.is_empty() {
                        String::new()
                    } else {
                        format!("; NOT proven here: {}", rec.not_proven.join(", "))
                    },
                    rec.run_dir
                        .as_deref()
                        .map(|d| format!(" (last proof: {d})"))
                        .unwrap_or_default()
                );
            }
        }
    }
    if !r.confinement.is_empty() {
        println!("confinement of a VM's host processes:");
        for p in &r.confinement {
            println!(
                "{:4}  {} — {}",
                if p.active { "on" } else { "OFF" },
                p.name,
                p.detail
            );
        }
    }
    if r.ok {
        println!(
            "all required checks pass; VMs will use {}",
            r.accel.to_uppercase()
        );
    } else {
        println!("some required checks fail: see the fix lines above");
    }
}
