//! The Python tools the test tier checks gasbench's outputs with: the
//! official `kcidb-io` (KCIDB's schema) and `b4` (its review check
//! protocol), in a private venv under the cache directory
//! (`$GASBENCH_CACHE/python/listflow`), made on first use with pip from
//! PyPI and reused after. Versions are pinned so a new release cannot
//! change what the tests check without a commit saying so.

use std::path::PathBuf;
use std::process::Command;

pub const KCIDB_IO: &str = "kcidb-io==141";
pub const B4: &str = "b4==0.16.0";

/// The venv's python, made (once, under a lock) if missing. Panics with
/// what failed and how to make it by hand: a test that cannot check its
/// output must not pass.
pub fn python() -> PathBuf {
    let cache = std::env::var_os("GASBENCH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/gasbench"));
    let dir = cache.join("python");
    let venv = dir.join("listflow");
    let py = venv.join("bin/python");
    let stamp = venv.join(".gasbench-ready");
    let want = format!("{KCIDB_IO} {B4}\n");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == want) {
        return py;
    }
    std::fs::create_dir_all(&dir).unwrap();
    // One maker at a time (tests run in parallel); mkdir is atomic.
    let lock = dir.join("listflow.lock");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    while std::fs::create_dir(&lock).is_err() {
        if std::fs::read_to_string(&stamp).is_ok_and(|s| s == want) {
            return py;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} is held; remove it if no test is running",
            lock.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let result = (|| {
        if std::fs::read_to_string(&stamp).is_ok_and(|s| s == want) {
            return Ok(());
        }
        let _ = std::fs::remove_dir_all(&venv);
        let python3 = std::env::var("PYTHON3").unwrap_or_else(|_| "python3".into());
        run(Command::new(&python3).args(["-m", "venv"]).arg(&venv))?;
        run(Command::new(&py).args(["-m", "pip", "install", "--quiet", KCIDB_IO, B4]))?;
        std::fs::write(&stamp, &want).map_err(|e| e.to_string())
    })();
    let _ = std::fs::remove_dir(&lock);
    if let Err(e) = result {
        panic!(
            "cannot make the test venv {} ({e}); make it by hand: python3 -m venv {0} && \
             {0}/bin/pip install {KCIDB_IO} {B4}",
            venv.display()
        );
    }
    py
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
