//! `gasbench setup`: provision the runtime, idempotently.
//!
//! On a host whose own tools meet every requirement there is nothing to do.
//! Otherwise a Debian 13 toolroot is made (or repaired) under the cache
//! directory. Every step first inspects, then acts only on what is missing:
//! a second run with everything in place runs no command at all.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::apt::mirror_from_sources;
use crate::cache::CacheDir;
use crate::checks::check_debootstrap;
use crate::runtime::{RuntimeKind, RuntimePref};
use crate::toolroot::{BACKPORTS, PACKAGES, RootState, SUITE, Toolroot};

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("making a toolroot needs root privileges (chroot, mounts, apt); run setup as root")]
    NotRoot,
    #[error(
        "no Debian mirror found in the host's apt sources; set GASBENCH_MIRROR to the mirror's URL"
    )]
    NoMirror,
    #[error("{what} failed ({status}); the full log is {}", log.display())]
    Command {
        what: String,
        status: String,
        log: PathBuf,
    },
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("after provisioning, the toolroot is still not ready: {state}")]
    StillNotReady { state: String },
    #[error("rust-src {src} does not match rustc {rustc} in the toolroot")]
    RustMismatch { rustc: String, src: String },
    #[error("creating the VM user: {0}")]
    VmUser(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

type Result<T, E = SetupError> = std::result::Result<T, E>;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SetupError {
    let what = what.into();
    move |source| SetupError::Io { what, source }
}

/// How setup reports progress to whoever runs it.
pub trait Progress {
    /// A step begins.
    fn step(&mut self, text: &str);
    /// A short status inside the current step (current package, …).
    fn status(&mut self, text: &str);
}

/// What setup found and did.
#[derive(Debug)]
pub struct SetupReport {
    pub runtime: RuntimeKind,
    pub reason: String,
    /// Commands setup had to run; empty when everything was in place.
    pub actions: Vec<String>,
    pub log: PathBuf,
    pub elapsed_ms: u128,
}

pub struct SetupOptions {
    pub cache: CacheDir,
    pub runtime: RuntimePref,
    /// Overrides the mirror taken from the host's apt sources.
    pub mirror: Option<String>,
}

struct Session<'a> {
    log: File,
    log_path: PathBuf,
    actions: Vec<String>,
    progress: &'a mut dyn Progress,
}

impl Session<'_> {
    fn note(&mut self, text: &str) {
        let _ = writeln!(self.log, "# {text}");
    }

    /// Run a command with its output going to the log; progress shows the
    /// lines `interesting` picks out.
    fn run(
        &mut self,
        what: &str,
        mut cmd: Command,
        interesting: fn(&str) -> Option<String>,
    ) -> Result<()> {
        self.actions.push(what.to_owned());
        self.progress.step(what);
        let _ = writeln!(self.log, "$ {cmd:?}");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SIGTERM if we die: apt and dpkg finish what they can say about;
        // setup resumes from dpkg's own status file.
        let mut tool =
            crate::process::Tool::spawn(&mut cmd, crate::process::OnParentDeath::Terminate)
                .map_err(|source| SetupError::Spawn {
                    what: what.into(),
                    source,
                })?;
        let child = tool.child_mut();
        // stderr goes to the log through its own thread; stdout drives progress.
        let stderr = child.stderr.take().expect("piped");
        let mut log2 = self.log.try_clone().map_err(io("log file"))?;
        let errs = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                let _ = writeln!(log2, "{line}");
            }
        });
        let stdout = child.stdout.take().expect("piped");
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            let _ = writeln!(self.log, "{line}");
            if let Some(s) = interesting(&line) {
                self.progress.status(&s);
            }
        }
        let _ = errs.join();
        let status = tool.wait().map_err(io(what))?;
        let _ = writeln!(self.log, "# exit: {status}");
        if status.success() {
            Ok(())
        } else {
            Err(SetupError::Command {
                what: what.into(),
                status: status.to_string(),
                log: self.log_path.clone(),
            })
        }
    }
}

fn apt_progress(line: &str) -> Option<String> {
    ["Get:", "Unpacking ", "Setting up "]
        .iter()
        .find(|p| line.starts_with(**p))
        .map(|_| line.chars().take(100).collect())
}

fn debootstrap_progress(line: &str) -> Option<String> {
    line.starts_with("I: ")
        .then(|| line[3..].chars().take(100).collect())
}

fn is_root_user() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The host's mirror: every apt sources file, main archive first found.
pub fn host_mirror() -> Option<String> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "sources" || e == "list"))
            .collect();
        more.sort();
        files.extend(more);
    }
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .find_map(|t| mirror_from_sources(&t))
}

/// The toolroot's apt sources: trixie, its updates and its backports.
fn toolroot_sources(mirror: &str) -> String {
    format!(
        "# Written by gasbench setup; the mirror is the host's own.\n\
         Types: deb\n\
         URIs: {mirror}\n\
         Suites: {SUITE} {SUITE}-updates {BACKPORTS}\n\
         Components: main\n\
         Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
}

/// Provision the runtime `opts` asks for.
pub fn setup(opts: &SetupOptions, progress: &mut dyn Progress) -> Result<SetupReport> {
    let start = Instant::now();
    let logs = opts.cache.logs();
    std::fs::create_dir_all(&logs).map_err(io(format!("creating {}", logs.display())))?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let log_path = logs.join(format!("setup-{stamp}.log"));
    let log = File::create(&log_path).map_err(io(format!("creating {}", log_path.display())))?;
    let mut s = Session {
        log,
        log_path: log_path.clone(),
        actions: Vec::new(),
        progress,
    };

    if opts.runtime == RuntimePref::Auto {
        s.progress.step("checking the host's own tools");
    }
    let choice = crate::choose(opts.runtime);
    s.note(&format!(
        "runtime: {} ({})",
        choice.kind.name(),
        choice.reason
    ));

    if choice.kind == RuntimeKind::Toolroot {
        provision_toolroot(&mut s, opts)?;
    }
    ensure_vm_user(&mut s)?;

    Ok(SetupReport {
        runtime: choice.kind,
        reason: choice.reason,
        actions: s.actions,
        log: log_path,
        elapsed_ms: start.elapsed().as_millis(),
    })
}

/// The unprivileged user QEMU and the device server process run as
/// (gasbench-confine). Only root switches users, so only root needs it.
fn ensure_vm_user(s: &mut Session) -> Result<()> {
    use gasbench_confine::identity::{EnsureUser, VM_USER, ensure_vm_user};
    if !is_root_user() {
        s.note(&format!(
            "not root: VM processes run as this user, {VM_USER} is not needed"
        ));
        return Ok(());
    }
    match ensure_vm_user().map_err(SetupError::VmUser)? {
        EnsureUser::Existed(id) => s.note(&format!(
            "VM user {} ({}:{}) exists",
            id.name, id.uid, id.gid
        )),
        EnsureUser::Created(id) => {
            s.progress.step(&format!(
                "created the system user {} for VM processes",
                id.name
            ));
            s.actions.push(format!("useradd --system {}", id.name));
            s.note(&format!(
                "created VM user {} ({}:{})",
                id.name, id.uid, id.gid
            ));
        }
    }
    Ok(())
}

fn provision_toolroot(s: &mut Session, opts: &SetupOptions) -> Result<()> {
    let root = Toolroot::new(opts.cache.toolroot());
    s.progress.step(&format!(
        "inspecting the toolroot at {}",
        root.path().display()
    ));
    let mut state = root.state();
    s.note(&format!("toolroot state: {}", state.describe()));
    if state.is_ready() && sources_current(&root, opts) {
        return verify(&root);
    }
    if !is_root_user() {
        return Err(SetupError::NotRoot);
    }
    let mirror = opts
        .mirror
        .clone()
        .or_else(|| {
            std::env::var("GASBENCH_MIRROR")
                .ok()
                .filter(|m| !m.is_empty())
        })
        .or_else(host_mirror)
        .ok_or(SetupError::NoMirror)?;

    if let RootState::HalfBootstrapped(why) = &state {
        s.note(&format!("removing a half-made root: {why}"));
        s.actions.push(format!("remove half-made toolroot ({why})"));
        s.progress
            .step(&format!("removing a half-made toolroot ({why})"));
        for p in [root.staging_path(), root.path().to_path_buf()] {
            if p.exists() {
                std::fs::remove_dir_all(&p).map_err(io(format!("removing {}", p.display())))?;
            }
        }
        state = RootState::Absent;
    }

    if state == RootState::Absent {
        if check_debootstrap().failed_required() {
            let mut cmd = Command::new("apt-get");
            cmd.args([
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                "debootstrap",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive");
            s.run("installing debootstrap on the host", cmd, apt_progress)?;
        }
        let staging = root.staging_path();
        let mut cmd = Command::new("debootstrap");
        cmd.args(["--variant=minbase", SUITE])
            .arg(&staging)
            .arg(&mirror);
        s.run(
            &format!("debootstrap {SUITE} (from {mirror})"),
            cmd,
            debootstrap_progress,
        )?;
        // Only a finished debootstrap becomes the toolroot.
        std::fs::rename(&staging, root.path())
            .map_err(io(format!("moving {} into place", staging.display())))?;
    }

    if write_if_changed(
        &root.host_path("/etc/apt/sources.list.d/debian.sources"),
        &toolroot_sources(&mirror),
    )? {
        s.actions
            .push(format!("pointed the toolroot's apt sources at {mirror}"));
    }
    // debootstrap's one-line sources.list would list trixie twice.
    let one_line = root.host_path("/etc/apt/sources.list");
    if one_line.exists() {
        std::fs::remove_file(&one_line).map_err(io("removing the toolroot's sources.list"))?;
    }
    if let Ok(resolv) = std::fs::read_to_string("/etc/resolv.conf") {
        write_if_changed(&root.host_path("/etc/resolv.conf"), &resolv)?;
    }

    let cwd = Path::new("/");
    if let RootState::Broken(pkgs) = root.state() {
        s.note(&format!(
            "repairing an interrupted install: {}",
            pkgs.join(", ")
        ));
        s.run(
            "dpkg --configure -a (repairing an interrupted install)",
            root.chroot_command(&["dpkg", "--configure", "-a"], &[], cwd),
            apt_progress,
        )?;
        s.run(
            "apt-get -f install (repairing dependencies)",
            root.chroot_command(&["apt-get", "-f", "install", "-y", "-q"], &[], cwd),
            apt_progress,
        )?;
    }

    if let RootState::Incomplete(missing) = root.state() {
        s.run(
            "apt-get update",
            root.chroot_command(&["apt-get", "update", "-q"], &[], cwd),
            apt_progress,
        )?;
        let mut argv: Vec<&str> = vec![
            "apt-get",
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "-t",
            BACKPORTS,
        ];
        argv.extend(missing.iter().map(String::as_str));
        s.run(
            &format!("installing {} packages", missing.len()),
            root.chroot_command(&argv, &[], cwd),
            apt_progress,
        )?;
        s.run(
            "apt-get clean",
            root.chroot_command(&["apt-get", "clean"], &[], cwd),
            apt_progress,
        )?;
    }
    verify(&root)
}

fn sources_current(root: &Toolroot, opts: &SetupOptions) -> bool {
    let current = std::fs::read_to_string(root.host_path("/etc/apt/sources.list.d/debian.sources"));
    let mirror = opts.mirror.clone().or_else(host_mirror);
    match (current, mirror) {
        (Ok(cur), Some(m)) => cur == toolroot_sources(&m),
        // No host mirror to compare with: what is there is what we have.
        (Ok(_), None) => true,
        (Err(_), _) => false,
    }
}

fn verify(root: &Toolroot) -> Result<()> {
    let state = root.state();
    if !state.is_ready() {
        return Err(SetupError::StillNotReady {
            state: state.describe(),
        });
    }
    let rustc = root.package_version("rustc");
    let src = root.package_version("rust-src");
    if rustc != src {
        return Err(SetupError::RustMismatch {
            rustc: rustc.map_or("?".into(), |v| v.to_string()),
            src: src.map_or("?".into(), |v| v.to_string()),
        });
    }
    Ok(())
}

/// Returns whether the file was written.
fn write_if_changed(path: &Path, text: &str) -> Result<bool> {
    if std::fs::read_to_string(path).is_ok_and(|cur| cur == text) {
        return Ok(false);
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    }
    std::fs::write(path, text).map_err(io(format!("writing {}", path.display())))?;
    Ok(true)
}

/// Packages the toolroot must hold, for display.
pub fn toolroot_packages() -> &'static [&'static str] {
    PACKAGES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toolroot_sources_name_trixie_updates_and_backports_on_the_given_mirror() {
        let text = toolroot_sources("http://mirror.example/debian");
        assert!(text.contains("URIs: http://mirror.example/debian\n"));
        assert!(text.contains("Suites: trixie trixie-updates trixie-backports\n"));
        // And it parses back to the same mirror.
        assert_eq!(
            mirror_from_sources(&text).as_deref(),
            Some("http://mirror.example/debian")
        );
    }

    #[test]
    fn progress_picks_apt_and_debootstrap_lines() {
        assert!(apt_progress("Unpacking clang-19 (1:19.1.7-3) ...").is_some());
        assert!(apt_progress("Reading package lists...").is_none());
        assert_eq!(
            debootstrap_progress("I: Retrieving libc6").as_deref(),
            Some("Retrieving libc6")
        );
    }

    #[test]
    fn write_if_changed_leaves_identical_files_alone() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a/b.txt");
        assert!(write_if_changed(&f, "x").unwrap());
        let m1 = std::fs::metadata(&f).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!write_if_changed(&f, "x").unwrap());
        assert_eq!(std::fs::metadata(&f).unwrap().modified().unwrap(), m1);
        write_if_changed(&f, "y").unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "y");
    }
}
