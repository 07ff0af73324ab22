//! `gasbench abi-check --tree DIR [--series NAME]…`: the series-level ABI
//! checks `repro` runs (gasbench-abicheck), on a kernel tree that has the
//! series applied, without building or booting anything. Exit 0: no
//! defect; 1: defects; 2: bad input.

use std::path::PathBuf;
use std::process::ExitCode;

use gasbench_abicheck::{Patch, Verdict};
use gasbench_kbuild::layout::KernelDir;

use super::exit;

#[derive(clap::Args)]
pub struct Args {
    /// A kernel source tree with the series applied (the kernel stage's
    /// is `<cache>/kernel/trees/<base>/src`).
    #[arg(long, value_name = "DIR")]
    tree: PathBuf,
    /// The series to check (`mkdirat2-v2`); repeatable [default: every
    /// series gasbench knows].
    #[arg(long, value_name = "NAME")]
    series: Vec<String>,
    /// The kernel/ directory [default: gasbench's data directory's].
    #[arg(long, value_name = "DIR")]
    kernel_dir: Option<PathBuf>,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(g: &crate::Globals, args: Args) -> miette::Result<ExitCode> {
    let kernel_dir = match args.kernel_dir.clone() {
        Some(d) => d,
        None => g.data()?.kernel_dir(),
    };
    let kdir = match KernelDir::open(&kernel_dir) {
        Ok(k) => k,
        Err(e) => {
            super::eprint_report(&super::kernel::diagnostic(e));
            return Ok(exit::code(exit::BAD_INPUT));
        }
    };
    if !args.tree.join("Makefile").is_file() {
        eprintln!(
            "gasbench abi-check: {} is not a kernel tree (no Makefile)",
            args.tree.display()
        );
        return Ok(exit::code(exit::BAD_INPUT));
    }
    let names = if args.series.is_empty() {
        kdir.all_series().unwrap_or_default()
    } else {
        args.series.clone()
    };
    let mut all = Vec::new();
    for name in &names {
        let m = match kdir.series(name) {
            Ok(m) => m,
            Err(e) => {
                super::eprint_report(&super::kernel::diagnostic(e));
                return Ok(exit::code(exit::BAD_INPUT));
            }
        };
        let texts = kdir.patch_texts(name, &m);
        let patches: Vec<Patch> = texts
            .iter()
            .map(|(p, text)| Patch {
                file: &p.file,
                text,
            })
            .collect();
        for r in gasbench_abicheck::check_series(&args.tree, &patches) {
            all.push((name.clone(), r));
        }
    }
    if args.json {
        let v: Vec<_> = all
            .iter()
            .map(|(s, r)| serde_json::json!({"series": s, "result": r}))
            .collect();
        let text = serde_json::to_string_pretty(&v).unwrap_or_default();
        println!("{}", gasbench_termsafe::json(&text));
    } else {
        for (s, r) in &all {
            println!(
                "{s}: {:?} {} [{}]: {}",
                r.verdict,
                r.check,
                gasbench_termsafe::line(&r.subject),
                gasbench_termsafe::line(&r.title)
            );
            for e in &r.evidence {
                println!(
                    "    {} {}",
                    gasbench_termsafe::line(&e.at),
                    gasbench_termsafe::line(e.text.trim())
                );
            }
        }
    }
    let defects = all.iter().any(|(_, r)| r.verdict == Verdict::Defect);
    Ok(exit::code(if defects {
        exit::FINDINGS
    } else {
        exit::CLEAN
    }))
}
