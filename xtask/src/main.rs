//! `cargo xtask <task>`: the project's automation, in Rust so it runs
//! wherever cargo does.
//!
//! Tasks:
//! - `setup`      provision the runtime (`gasbench setup`).
//! - `test`       everything CI runs: setup, fmt, clippy, the fast tier,
//!   then the end-to-end tier. README's test command.
//! - `test-fast`  fmt, clippy and the fast tier only (no VM, no root).
//! - `test-long`  the end-to-end tier with its long tests (whole reviews on
//!   kernels of their own); not in CI, which must stay well inside 90 min.
//! - `tidy`       fmt and clippy only.
//! - `bench`      the benchmarks (device MMIO, TUI frame time, boot and
//!   suite time, the debug kernel profile's build, boot and suite time),
//!   each against a baseline measured in the same run.

mod tasks;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(task) = args.first() else {
        eprintln!("usage: cargo xtask <setup|test|test-fast|test-long|tidy|bench>");
        return ExitCode::from(2);
    };
    let root = project_root();
    if let Err(e) = std::env::set_current_dir(&root) {
        eprintln!("xtask: cannot enter {}: {e}", root.display());
        return ExitCode::FAILURE;
    }
    let result = match task.as_str() {
        "setup" => tasks::setup(),
        "test" => tasks::test(true),
        "test-fast" => tasks::test(false),
        "test-long" => tasks::test_long(),
        "tidy" => tasks::tidy(),
        "bench" => tasks::bench(),
        other => {
            eprintln!("xtask: unknown task {other:?}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {task}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn project_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}
