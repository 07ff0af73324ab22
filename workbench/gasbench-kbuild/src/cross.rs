//! A second architecture for the per-patch check.
//!
//! A patch can build on x86_64 and still break elsewhere: the posted
//! mkdirat2 declaration lacks its semicolon in a block of
//! `<linux/syscalls.h>` that x86_64 (which has syscall wrappers) never
//! compiles. With `cross_arch` set, each patch's C files are also compiled
//! for that architecture (clang cross-compiles with LLVM=1, no extra
//! toolchain), on tinyconfig. An error counts against the series only when
//! it is located in a file the series has touched so far; anything else is
//! reported as unrelated. Objects that failed are compiled again after
//! every later patch until they build, so a patch that only changes a
//! header (the port's semicolon fixup) shows whether it repaired them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use gasbench_events::EventSink;
use gasbench_events::run::Stage;
use serde::{Deserialize, Serialize};

use crate::KbuildError;
use crate::make::{Make, first_error};

/// The outcome for one patch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrossResult {
    pub arch: String,
    /// The objects compiled (the patch's C files, then `carried`).
    pub objects: Vec<String>,
    /// Objects compiled again because they failed after an earlier patch.
    #[serde(default)]
    pub carried: Vec<String>,
    pub ok: bool,
    pub first_error: Option<String>,
    /// The error is in a file the series touched (else it is unrelated).
    pub caused_by_series: bool,
}

pub struct CrossCheck {
    make: Make,
    /// The main build's output: only objects it builds are cross-checked.
    main_out: PathBuf,
    touched: BTreeSet<String>,
    /// Objects that did not compile at their last check.
    broken: BTreeSet<String>,
    configured: bool,
}

impl CrossCheck {
    /// `base` with another ARCH and its own output directory.
    pub fn new(base: &Make, arch: &str, out: PathBuf) -> CrossCheck {
        let mut make = base.clone();
        make.arch = arch.to_string();
        make.out = out;
        CrossCheck {
            make,
            main_out: base.out.clone(),
            touched: BTreeSet::new(),
            broken: BTreeSet::new(),
            configured: false,
        }
    }

    /// Compile the C files among `files` (the patch's, already checked
    /// out) and the objects still broken. `None` when there is nothing to
    /// compile.
    pub fn check(
        &mut self,
        files: &[String],
        log: &Path,
        sink: &EventSink,
    ) -> Result<Option<CrossResult>, KbuildError> {
        self.touched.extend(files.iter().cloned());
        // Only what the main build compiles on its own: `rust/helpers/*.c`
        // are #included into helpers.c and need CONFIG_RUST, for example.
        let own: Vec<String> = objects_for(files, self.make.srcarch(), &self.make.src)
            .into_iter()
            .filter(|o| self.main_out.join(o).is_file())
            .collect();
        let (objects, carried) = with_carried(own, &self.broken);
        if objects.is_empty() {
            return Ok(None);
        }
        if !self.configured {
            std::fs::create_dir_all(&self.make.out)
                .map_err(|e| KbuildError::io("create", &self.make.out, e))?;
            if !self.make.out.join(".config").is_file() {
                let (ok, text) = self.make.capture(&["tinyconfig"])?;
                if !ok {
                    return Err(KbuildError::Command {
                        command: format!("make ARCH={} tinyconfig", self.make.arch),
                        status: "failed".into(),
                        detail: crate::git::tail(&text, 20),
                    });
                }
            }
            self.configured = true;
        }
        let args: Vec<&str> = objects.iter().map(String::as_str).collect();
        let run = self.make.run_logged(&args, log, sink, Stage::Build, 0)?;
        let prefix = format!("{}/", self.make.src.display());
        let err = if run.ok {
            None
        } else {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            first_error(&text)
                .map(|e| e.replace(&prefix, ""))
                .or(run.first_error)
        };
        let caused_by_series = err
            .as_deref()
            .and_then(|e| error_file(e, &self.make.src))
            .is_some_and(|f| self.touched.contains(&f));
        // make stops at the first failing object, so which of them failed
        // is not known: all of them are tried again next time.
        if run.ok {
            self.broken.clear();
        } else {
            self.broken.extend(objects.iter().cloned());
        }
        Ok(Some(CrossResult {
            arch: self.make.arch.clone(),
            objects,
            carried,
            ok: run.ok,
            first_error: err,
            caused_by_series,
        }))
    }
}

/// The patch's own objects, then the broken ones it does not compile
/// already (those are also returned on their own).
fn with_carried(own: Vec<String>, broken: &BTreeSet<String>) -> (Vec<String>, Vec<String>) {
    let carried: Vec<String> = broken
        .iter()
        .filter(|o| !own.contains(o))
        .cloned()
        .collect();
    let mut objects = own;
    objects.extend(carried.iter().cloned());
    (objects, carried)
}

/// `fs/namei.c` → `fs/namei.o`, for C files kbuild can compile for
/// `srcarch` (not tools, samples, scripts, or another arch's code).
pub fn objects_for(files: &[String], srcarch: &str, src: &Path) -> Vec<String> {
    files
        .iter()
        .filter(|f| f.ends_with(".c"))
        .filter(|f| {
            let top = f.split('/').next().unwrap_or("");
            !matches!(
                top,
                "tools" | "samples" | "scripts" | "Documentation" | "usr"
            )
        })
        .filter(|f| match f.strip_prefix("arch/") {
            Some(rest) => rest.starts_with(&format!("{srcarch}/")),
            None => true,
        })
        .filter(|f| src.join(f).is_file())
        .map(|f| format!("{}.o", &f[..f.len() - 2]))
        .collect()
}

/// The file an error line points at, relative to `src`.
pub fn error_file(line: &str, src: &Path) -> Option<String> {
    let mut parts = line.split(':');
    let path = parts.next()?.trim();
    // `path:line:col: error: ...`
    parts.next()?.trim().parse::<u32>().ok()?;
    let src_s = format!("{}/", src.display());
    let rel = path.strip_prefix(&src_s).unwrap_or(path);
    let rel = rel.strip_prefix("./").unwrap_or(rel);
    (!rel.is_empty() && !rel.contains(' ')).then(|| rel.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_of_a_patch_for_another_arch() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "fs/namei.c",
            "arch/x86/kernel/a.c",
            "arch/arm/kernel/b.c",
            "tools/t.c",
        ] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "").unwrap();
        }
        let files: Vec<String> = [
            "fs/namei.c",
            "include/linux/syscalls.h",
            "arch/x86/kernel/a.c",
            "arch/arm/kernel/b.c",
            "tools/t.c",
            "fs/deleted.c",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            objects_for(&files, "arm", dir.path()),
            vec!["fs/namei.o", "arch/arm/kernel/b.o"]
        );
    }

    #[test]
    fn objects_that_failed_are_compiled_again_after_later_patches() {
        let broken: BTreeSet<String> = ["fs/namei.o".to_string(), "fs/open.o".to_string()]
            .into_iter()
            .collect();
        // A header-only patch: only the broken objects.
        assert_eq!(
            with_carried(Vec::new(), &broken),
            (
                vec!["fs/namei.o".to_string(), "fs/open.o".to_string()],
                vec!["fs/namei.o".to_string(), "fs/open.o".to_string()]
            )
        );
        // A patch's own objects first, a broken one it compiles anyway is
        // not carried twice.
        assert_eq!(
            with_carried(vec!["fs/open.o".into(), "mm/mmap.o".into()], &broken),
            (
                vec![
                    "fs/open.o".to_string(),
                    "mm/mmap.o".to_string(),
                    "fs/namei.o".to_string()
                ],
                vec!["fs/namei.o".to_string()]
            )
        );
        assert_eq!(with_carried(Vec::new(), &BTreeSet::new()), (vec![], vec![]));
    }

    #[test]
    fn errors_are_placed_in_files() {
        let src = Path::new("/cache/trees/t/src");
        assert_eq!(
            error_file(
                "/cache/trees/t/src/include/linux/syscalls.h:1008:29: error: expected ';'",
                src
            )
            .as_deref(),
            Some("include/linux/syscalls.h")
        );
        assert_eq!(
            error_file("fs/namei.c:1:1: error: x", src).as_deref(),
            Some("fs/namei.c")
        );
        assert_eq!(error_file("make[2]: *** [x] Error 1", src), None);
    }
}
