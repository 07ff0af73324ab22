//! An installed gasbench: the binary copied into a prefix of its own (as
//! `cargo install` leaves it, or a release binary copied elsewhere) and
//! run from an unrelated directory finds its data the one way every
//! command does: the copy embedded in it, unpacked into the cache. (The
//! e2e tier runs `cargo install` itself: `install_prefix`.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BUILT: &str = env!("CARGO_BIN_EXE_gasbench");

struct Installed {
    _tmp: tempfile::TempDir,
    bin: PathBuf,
    elsewhere: PathBuf,
    home: PathBuf,
    cache: PathBuf,
}

fn install() -> Installed {
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("prefix/bin");
    std::fs::create_dir_all(&prefix).unwrap();
    let bin = prefix.join("gasbench");
    std::fs::copy(BUILT, &bin).unwrap();
    let elsewhere = tmp.path().join("some/kernel/tree");
    std::fs::create_dir_all(&elsewhere).unwrap();
    Installed {
        bin,
        home: tmp.path().join("home"),
        cache: tmp.path().join("cache"),
        elsewhere,
        _tmp: tmp,
    }
}

impl Installed {
    fn run(&self, args: &[&str]) -> Output {
        output(self.command(args))
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .current_dir(&self.elsewhere)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("GASBENCH_CACHE", &self.cache);
        c
    }
}

/// Run `c` to its end. The binary was copied moments ago: while another
/// test thread forks, its child holds every descriptor open until it
/// execs, the copy's write descriptor too, and exec of the copy then
/// fails with ETXTBSY. That window is short; try again.
fn output(mut c: Command) -> Output {
    let mut tries = 0;
    loop {
        match c.output() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 50 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => return r.unwrap(),
        }
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn unpacked_under(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    let entries: Vec<_> = std::fs::read_dir(&data)
        .unwrap_or_else(|e| panic!("{}: {e}", data.display()))
        .flatten()
        .collect();
    assert_eq!(entries.len(), 1, "one unpacked copy, no staging left");
    entries[0].path()
}

#[test]
fn an_installed_binary_checks_the_default_suite_from_any_directory() {
    let i = install();
    let out = i.run(&["scenario", "check"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("goldfish_hotunplug.toml"), "{}", text(&out));
    let copy = unpacked_under(&i.cache);
    assert!(copy.join("kernel/base.toml").is_file());
}

#[test]
fn an_installed_binary_plans_the_kernel_build_from_its_own_data() {
    let i = install();
    let out = i.run(&["kernel", "build", "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let copy = unpacked_under(&i.cache);
    assert!(
        stdout.contains(&format!(
            "kernel directory: {}",
            copy.join("kernel").display()
        )),
        "{}",
        text(&out)
    );
    assert!(stdout.contains("mkdirat2"), "{}", text(&out));
    assert!(
        stdout.contains("dry run: nothing was built"),
        "{}",
        text(&out)
    );
    // A profile that does not exist is refused before anything starts.
    let out = i.run(&["kernel", "build", "--dry-run", "--profile", "nosuch"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn an_installed_binary_says_where_its_data_came_from() {
    let i = install();
    let out = i.run(&["config"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("data: embedded in the binary"),
        "{}",
        text(&out)
    );
    // The same binary inside a checkout still uses its own copy: data is
    // never guessed from the current directory.
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut c = i.command(&["config"]);
    c.current_dir(&checkout);
    let out = output(c);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("data: embedded in the binary"),
        "{}",
        text(&out)
    );
    // A checkout named with --data-dir is used, and said to be.
    let out = i.run(&["--data-dir", checkout.to_str().unwrap(), "config"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("(from flag --data-dir)"), "{}", text(&out));
}

#[test]
fn a_cache_that_cannot_be_written_unpacks_into_the_users_cache() {
    let i = install();
    let blocked = i.elsewhere.join("not-a-dir");
    std::fs::write(&blocked, "").unwrap();
    let mut c = i.command(&["scenario", "check"]);
    c.env("GASBENCH_CACHE", &blocked);
    let out = output(c);
    assert!(out.status.success(), "{}", text(&out));
    unpacked_under(&i.home.join(".cache/gasbench"));
}

#[test]
fn help_for_the_long_commands_works_installed_and_names_the_exit_codes() {
    let i = install();
    for cmd in ["repro", "run", "kernel"] {
        let out = i.run(&[cmd, "--help"]);
        assert!(out.status.success(), "{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("Exit status"), "{cmd}: {}", text(&out));
    }
}
