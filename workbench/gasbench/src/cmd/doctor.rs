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
    accel: &'static str,
    ok: bool,
    checks: Vec<Check>,
    /// How a VM's host processes would be confined here: every protection,
    /// in force or not, and why.
    confinement: Vec<Protection>,
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
            crate::cmd::headless::DEFAULT_MEMORY_MIB,
            crate::cmd::headless::DEFAULT_CPUS,
            accel,
        )
        .protections
    };
    let report = Report {
        runtime: choice.kind.name(),
        runtime_reason: choice.reason,
        cache_dir: g.cache.root().display().to_string(),
        accel: verdict.accel(),
        ok,
        checks: list,
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
