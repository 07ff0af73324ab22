//! Running kbuild: the command (in the runtime, out of tree with O=),
//! its output streamed to a log file and to the event bus, progress
//! counted from kbuild's command lines, and the first error found.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gasbench_env::Runtime;
use gasbench_env::process::{self, OnParentDeath};
use gasbench_events::EventSink;
use gasbench_events::kernel::KernelEvent;
use gasbench_events::run::{RunEvent, Stage};

use crate::KbuildError;

/// make, for one tree.
#[derive(Clone, Debug)]
pub struct Make {
    pub rt: Runtime,
    pub src: PathBuf,
    pub out: PathBuf,
    /// Everything the command needs bind-mounted (the tree's directory,
    /// the kernel/ dir for fragments).
    pub binds: Vec<PathBuf>,
    pub arch: String,
    pub vars: Vec<String>,
    pub jobs: u32,
}

/// How a make run ended.
#[derive(Clone, Debug)]
pub struct MakeRun {
    pub ok: bool,
    pub status: String,
    /// kbuild command lines seen (`  CC      fs/namei.o`).
    pub steps: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    pub disk_full: bool,
    /// The last lines, for errors that name no file.
    pub tail: Vec<String>,
}

impl Make {
    /// The kernel's SRCARCH for `arch` (x86_64 → x86).
    pub fn srcarch(&self) -> &str {
        match self.arch.as_str() {
            "x86_64" | "i386" => "x86",
            "arm64" => "arm64",
            other => other,
        }
    }

    /// `make -C src O=out ARCH=... LLVM=1 -jN <args>`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut argv: Vec<String> = vec![
            "make".into(),
            "-C".into(),
            self.src.display().to_string(),
            format!("O={}", self.out.display()),
            format!("ARCH={}", self.arch),
            format!("-j{}", self.jobs.max(1)),
        ];
        argv.extend(self.vars.iter().cloned());
        argv.extend(args.iter().map(|a| a.to_string()));
        let mut cmd = self.rt.build_command(&argv, &self.binds, &self.src);
        // Reproducible: no host name, user or time in the image.
        cmd.env("KBUILD_BUILD_USER", "gasbench")
            .env("KBUILD_BUILD_HOST", "gasbench")
            .env("KBUILD_BUILD_TIMESTAMP", "2000-01-01")
            .env("LC_ALL", "C.UTF-8");
        cmd
    }

    /// Run quietly, returning (ok, combined output).
    pub fn capture(&self, args: &[&str]) -> Result<(bool, String), KbuildError> {
        let out =
            process::output(&mut self.command(args), OnParentDeath::Terminate).map_err(|e| {
                KbuildError::Spawn {
                    what: format!("make {}", args.join(" ")),
                    source: e,
                }
            })?;
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        if crate::disk::output_says_full(&text) {
            return Err(KbuildError::DiskFull {
                what: format!("make {}", args.join(" ")),
                path: self.out.clone(),
                available_mib: crate::disk::free_mib(&self.out).unwrap_or(0),
                needed_mib: 0,
            });
        }
        Ok((out.status.success(), text))
    }

    /// Run `args`, appending all output to `log`, sending lines and
    /// progress (`done` of an estimated `total`) to `sink` under `stage`.
    pub fn run_logged(
        &self,
        args: &[&str],
        log: &Path,
        sink: &EventSink,
        stage: Stage,
        total: u64,
    ) -> Result<MakeRun, KbuildError> {
        let cmd = self.command(args);
        let mut run = run_streaming(cmd, log, sink, stage, total)?;
        // Errors name files relative to the tree, as a reviewer reads them.
        let prefix = format!("{}/", self.src.display());
        run.first_error = run.first_error.map(|e| e.replace(&prefix, ""));
        Ok(run)
    }
}

/// Spawn `cmd` and stream its output (see [`Make::run_logged`]).
pub fn run_streaming(
    mut cmd: Command,
    log: &Path,
    sink: &EventSink,
    stage: Stage,
    total: u64,
) -> Result<MakeRun, KbuildError> {
    if let Some(parent) = log.parent() {
        std::fs::create_dir_all(parent).map_err(|e| KbuildError::io("create", parent, e))?;
    }
    let mut logf = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| KbuildError::io("open", log, e))?;
    let start = Instant::now();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SIGTERM if we die: make then stops its jobs and deletes the targets
    // it was writing, so the build directory stays consistent.
    let mut tool = process::Tool::spawn(&mut cmd, OnParentDeath::Terminate).map_err(|e| {
        KbuildError::Spawn {
            what: "make".into(),
            source: e,
        }
    })?;
    let child = tool.child_mut();
    let (tx, rx) = mpsc::channel::<String>();
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || pump(out, tx)));
    }
    if let Some(err) = child.stderr.take() {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || pump(err, tx)));
    }
    drop(tx);

    let mut steps = 0u64;
    let mut errors = ErrorScan::default();
    let mut tail: Vec<String> = Vec::new();
    let mut disk_full = false;
    for line in rx {
        let _ = writeln!(logf, "{line}");
        if crate::disk::output_says_full(&line) {
            disk_full = true;
        }
        errors.feed(&line);
        tail.push(line.clone());
        if tail.len() > 30 {
            tail.remove(0);
        }
        if let Some(target) = kbuild_step(&line) {
            steps += 1;
            sink.emit(KernelEvent::BuildProgress {
                done: steps,
                total: total.max(steps),
                current: target.to_string(),
            });
            sink.emit(RunEvent::StageProgress {
                stage,
                done: steps,
                total: total.max(steps),
                detail: target.to_string(),
            });
        }
        sink.emit(KernelEvent::BuildLine { line });
    }
    for r in readers {
        let _ = r.join();
    }
    let status = tool.wait().map_err(|e| KbuildError::Spawn {
        what: "make (wait)".into(),
        source: e,
    })?;
    if !status.success() && process::stopping() {
        return Err(KbuildError::Interrupted {
            what: "make".into(),
        });
    }
    Ok(MakeRun {
        ok: status.success(),
        status: status.to_string(),
        steps,
        first_error: errors.first(),
        elapsed: start.elapsed(),
        disk_full,
        tail,
    })
}

fn pump(r: impl std::io::Read, tx: mpsc::Sender<String>) {
    let mut r = BufReader::new(r);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf)
                    .trim_end_matches(['\n', '\r'])
                    .to_string();
                if tx.send(line).is_err() {
                    break;
                }
            }
        }
    }
}

/// A kbuild quiet command line (`  CC      fs/namei.o`,
/// `  RUSTC L rust/kernel.o`) → its target.
pub fn kbuild_step(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("  ")?;
    let tag_end = rest.find(' ')?;
    let tag = &rest[..tag_end];
    if tag.is_empty()
        || !tag
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        return None;
    }
    let target = rest[tag_end..].trim();
    // `RUSTC L rust/kernel.o`, `RUSTC P rust/libmacros.so`: a one-letter
    // qualifier before the target.
    let target = match target.split_once(' ') {
        Some((q, t)) if q.len() <= 2 && q.chars().all(|c| c.is_ascii_uppercase()) => t.trim(),
        _ => target,
    };
    (!target.is_empty() && !target.contains(' ')).then_some(target)
}

/// Finds the first real error in build output: a compiler diagnostic
/// with its location, else a linker or make error.
#[derive(Default)]
pub struct ErrorScan {
    found: Option<String>,
    /// A rustc `error[...]: msg` waiting for its ` --> file:line:col`.
    pending_rustc: Option<String>,
    fallback: Option<String>,
}

impl ErrorScan {
    pub fn feed(&mut self, line: &str) {
        if self.found.is_some() {
            return;
        }
        let t = line.trim();
        if let Some(msg) = self.pending_rustc.take() {
            if let Some(loc) = t.strip_prefix("--> ") {
                self.found = Some(format!("{}: {msg}", loc.trim()));
                return;
            }
            self.found = Some(msg);
            return;
        }
        if (t.starts_with("error[E") || t.starts_with("error: "))
            && !t.starts_with("error: aborting due to")
            && !t.starts_with("error: could not compile")
        {
            self.pending_rustc = Some(t.to_string());
            return;
        }
        // clang/gcc: `path:line:col: error: msg`; `fatal error:` too.
        if (t.contains(": error: ") || t.contains(": fatal error: ")) && !t.starts_with("make") {
            self.found = Some(t.to_string());
            return;
        }
        if self.fallback.is_none()
            && (t.contains("ld.lld: error:")
                || t.contains("undefined symbol")
                || (t.starts_with("make") && t.contains("***")))
        {
            self.fallback = Some(t.to_string());
        }
    }

    pub fn first(&self) -> Option<String> {
        self.found
            .clone()
            .or_else(|| self.pending_rustc.clone())
            .or_else(|| self.fallback.clone())
    }
}

/// The first error in `text`.
pub fn first_error(text: &str) -> Option<String> {
    let mut s = ErrorScan::default();
    for l in text.lines() {
        s.feed(l);
    }
    s.first()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kbuild_steps_and_their_targets() {
        assert_eq!(kbuild_step("  CC      fs/namei.o"), Some("fs/namei.o"));
        assert_eq!(
            kbuild_step("  RUSTC L rust/kernel.o"),
            Some("rust/kernel.o")
        );
        assert_eq!(
            kbuild_step("  BINDGEN rust/bindings/bindings_generated.rs"),
            Some("rust/bindings/bindings_generated.rs")
        );
        assert_eq!(kbuild_step("  LD      vmlinux.o"), Some("vmlinux.o"));
        assert_eq!(kbuild_step("make[1]: Entering directory '/x'"), None);
        assert_eq!(kbuild_step("  --> drivers/x.rs:1:1"), None);
        assert_eq!(
            kbuild_step("Kernel: arch/x86/boot/bzImage is ready  (#1)"),
            None
        );
        assert_eq!(kbuild_step("   |     ^^^ not found"), None);
    }

    #[test]
    fn the_first_error_with_its_location() {
        let rust = "  RUSTC L rust/kernel.o\nwarning: unused\nerror[E0412]: cannot find type `Core` in module `device`\n  --> drivers/platform/goldfish/goldfish_address_space.rs:12:5\n   |\nerror: aborting due to 3 previous errors\nmake[4]: *** [x] Error 1\n";
        assert_eq!(
            first_error(rust).unwrap(),
            "drivers/platform/goldfish/goldfish_address_space.rs:12:5: error[E0412]: cannot find type `Core` in module `device`"
        );
        let c = "  CC      fs/namei.o\nfs/namei.c:5300:1: error: expected ';' after top level declarator\nmake[3]: *** [scripts/Makefile.build:203: fs/namei.o] Error 1\n";
        assert_eq!(
            first_error(c).unwrap(),
            "fs/namei.c:5300:1: error: expected ';' after top level declarator"
        );
        let ld = "  LD      vmlinux.o\nld.lld: error: undefined symbol: rust_build_error\nmake[2]: *** [vmlinux] Error 1\n";
        assert_eq!(
            first_error(ld).unwrap(),
            "ld.lld: error: undefined symbol: rust_build_error"
        );
        assert_eq!(first_error("  CC a.o\n  LD b\n"), None);
    }
}
