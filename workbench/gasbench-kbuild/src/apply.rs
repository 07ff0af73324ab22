//! Applying the plan with `git am`, patch by patch, recording for each:
//! applied, applied with fuzz, or failed, with the files and hunks.
//!
//! The rules:
//! - A posted patch is first applied as posted (`git am`, full context).
//! - If that fails, each hunk is checked on its own to say which ones do
//!   not apply, then the patch is tried with one line of context
//!   (`git am -C1`, "fuzz"). A fuzzy result that duplicates a syscall
//!   number (the base already uses 472) is undone and counts as failed.
//! - A posted patch that still fails is replaced by the port's
//!   replacement, when the port has one; otherwise the apply stops with
//!   the report.
//! - Fixups follow; they belong to the port and must apply.
//!
//! Patches are applied in the tree's second work tree (`apply/`), from a
//! clean checkout of the base, so a failed run leaves nothing behind. An
//! identical plan on the same base is not applied again: its result is
//! kept under `refs/gasbench/applied/<key>`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gasbench_env::Runtime;
use gasbench_events::EventSink;
use gasbench_events::kernel::{ApplyStatus, HunkOutcome, KernelEvent, PatchApplied, PatchRole};
use gasbench_series::parse_mail;
use gasbench_series::patch::{FileDiff, PatchBody, parse_diff};
use sha2::{Digest, Sha256};

use crate::KbuildError;
use crate::git::Git;
use crate::layout::{KernelDir, Plan, Step};
use crate::report::{ApplyReport, PatchReport};
use crate::tree::{BASE_TAG, BaseTree, hex};

/// The key of a plan on a base: same key, same result.
pub fn plan_key(base_commit: &str, plan: &Plan) -> Result<String, KbuildError> {
    let mut h = Sha256::new();
    h.update(base_commit.as_bytes());
    for s in &plan.steps {
        hash_step(&mut h, s)?;
        if let Some(r) = &s.replacement {
            hash_step(&mut h, r)?;
        }
    }
    Ok(hex(&h.finalize()))
}

fn hash_step(h: &mut Sha256, s: &Step) -> Result<(), KbuildError> {
    let text = std::fs::read(&s.file).map_err(|e| KbuildError::io("read", &s.file, e))?;
    h.update(format!("\0{}\0{}\0{:?}\0", s.series, s.role.name(), s.posted_index).as_bytes());
    h.update(Sha256::digest(&text));
    Ok(())
}

/// Apply `plan` to the base in `tree`; returns the report (the result is
/// the commit `report.head`).
pub fn apply_plan(
    rt: &Runtime,
    kdir: &KernelDir,
    tree: &BaseTree,
    plan: &Plan,
    sink: &EventSink,
) -> Result<ApplyReport, KbuildError> {
    let key = plan_key(&tree.base_commit, plan)?;
    let reports_dir = tree.dir.join("applied");
    let report_path = reports_dir.join(format!("{key}.json"));
    let mut binds = tree.binds();
    binds.push(kdir.root().to_path_buf());
    let git = Git::new(rt, &tree.apply, &binds);
    let key_ref = format!("refs/gasbench/applied/{key}");

    if let Ok(text) = std::fs::read_to_string(&report_path)
        && let Ok(mut report) = serde_json::from_str::<ApplyReport>(&text)
        && git.rev_parse(&key_ref)?.as_deref() == Some(report.head.as_str())
    {
        report.cached = true;
        for p in &report.patches {
            sink.emit(KernelEvent::Patch(event_of(p)));
        }
        return Ok(report);
    }

    // A clean start from the base, whatever an interrupted run left.
    let _ = git.run(&["am", "--abort"]);
    git.ok(&["checkout", "--quiet", "--force", "--detach", BASE_TAG])?;
    git.ok(&["clean", "--quiet", "-fdx"])?;

    let scratch = tree.dir.join("tmp");
    std::fs::create_dir_all(&scratch).map_err(|e| KbuildError::io("create", &scratch, e))?;
    let total = plan.steps.len() as u32
        + plan
            .steps
            .iter()
            .filter(|s| s.replacement.is_some())
            .count() as u32;
    let mut report = ApplyReport {
        base: tree.label.clone(),
        base_commit: tree.base_commit.clone(),
        ..Default::default()
    };
    let mut position = 0u32;
    for step in &plan.steps {
        position += 1;
        let mut r = apply_step(&git, step, &scratch, position, total)?;
        if r.status == ApplyStatus::Failed {
            let Some(rep) = &step.replacement else {
                sink.emit(KernelEvent::Patch(event_of(&r)));
                report.patches.push(r.clone());
                return Err(KbuildError::PatchDoesNotApply {
                    series: step.series.clone(),
                    base: tree.label.clone(),
                    report: Box::new(r),
                });
            };
            r.replaced_by = Some(rep.rel.clone());
            r.detail = format!(
                "{}; replaced by the port's {} ({})",
                r.detail,
                rep.rel,
                rep.why.as_deref().unwrap_or("context refreshed")
            );
            sink.emit(KernelEvent::Patch(event_of(&r)));
            report.patches.push(r);
            position += 1;
            let rr = apply_step(&git, rep, &scratch, position, total)?;
            sink.emit(KernelEvent::Patch(event_of(&rr)));
            if rr.status == ApplyStatus::Failed {
                report.patches.push(rr.clone());
                return Err(KbuildError::PatchDoesNotApply {
                    series: step.series.clone(),
                    base: tree.label.clone(),
                    report: Box::new(rr),
                });
            }
            report.patches.push(rr);
        } else {
            sink.emit(KernelEvent::Patch(event_of(&r)));
            if r.status == ApplyStatus::Failed {
                report.patches.push(r.clone());
                return Err(KbuildError::PatchDoesNotApply {
                    series: step.series.clone(),
                    base: tree.label.clone(),
                    report: Box::new(r),
                });
            }
            report.patches.push(r);
        }
    }
    // Steps whose posted patch applied never use their replacement: the
    // sequence is shorter than `total`.
    let used = report.patches.len() as u32;
    for p in &mut report.patches {
        p.of = used;
    }
    report.head = git.rev_parse("HEAD")?.unwrap_or_default();
    git.ok(&["update-ref", &key_ref, &report.head])?;
    std::fs::create_dir_all(&reports_dir)
        .map_err(|e| KbuildError::io("create", &reports_dir, e))?;
    let text = serde_json::to_string_pretty(&report).unwrap_or_default();
    std::fs::write(&report_path, text).map_err(|e| KbuildError::io("write", &report_path, e))?;
    Ok(report)
}

pub fn event_of(r: &PatchReport) -> PatchApplied {
    PatchApplied {
        series: r.series.clone(),
        index: r.position,
        total: r.of,
        posted_index: r.posted_index,
        subject: r.subject.clone(),
        fixup: matches!(r.role, PatchRole::Replacement | PatchRole::Fixup),
        role: r.role,
        status: r.status,
        files: r.files.clone(),
        hunks: r.hunks.clone(),
        detail: r.detail.clone(),
    }
}

/// The files a patch touches, and its diff parsed.
fn read_patch(path: &Path) -> Result<Vec<FileDiff>, KbuildError> {
    let text = std::fs::read_to_string(path).map_err(|e| KbuildError::io("read", path, e))?;
    let label = path.display().to_string();
    let (_, msgs) = parse_mail(&text).map_err(|e| KbuildError::series(&label, &text, e))?;
    let m = msgs.into_iter().next().ok_or_else(|| KbuildError::Layout {
        what: format!("{label} holds no message"),
        path: Some(path.to_path_buf()),
    })?;
    let Some(parts) = PatchBody::split(&m.body) else {
        return Err(KbuildError::series(
            &label,
            &text,
            gasbench_series::Error::NotASeries {
                reason: "the message has no diff".into(),
                span: Some(m.span),
            },
        ));
    };
    parse_diff(&m.body[parts.diff.clone()]).map_err(|e| {
        KbuildError::series(
            &label,
            &text,
            gasbench_series::Error::CorruptPatch {
                subject: m.subject.clone(),
                what: e.what,
                span: m.body_span(parts.diff.start + e.offset, e.len),
            },
        )
    })
}

fn apply_step(
    git: &Git,
    step: &Step,
    scratch: &Path,
    position: u32,
    total: u32,
) -> Result<PatchReport, KbuildError> {
    let files = read_patch(&step.file)?;
    let file_s = step.file.display().to_string();
    let mut r = PatchReport {
        series: step.series.clone(),
        position,
        of: total,
        posted_index: step.posted_index,
        subject: step.subject.clone(),
        file: step.rel.clone(),
        role: step.role,
        status: ApplyStatus::Applied,
        files: files.iter().map(|f| f.path().to_string()).collect(),
        hunks: Vec::new(),
        detail: String::new(),
        commit: None,
        replaced_by: None,
    };
    let am = |extra: &[&str]| -> Result<bool, KbuildError> {
        // Committer dates from the patches: reproducible commit ids.
        let mut args = vec!["am", "--quiet", "--committer-date-is-author-date"];
        args.extend_from_slice(extra);
        args.push(&file_s);
        let out = git.run(&args)?;
        if !out.ok {
            if crate::disk::output_says_full(&out.stderr) {
                return Err(KbuildError::DiskFull {
                    what: "applying patches".into(),
                    path: git.dir().to_path_buf(),
                    available_mib: crate::disk::free_mib(git.dir()).unwrap_or(0),
                    needed_mib: 0,
                });
            }
            let _ = git.run(&["am", "--abort"]);
        }
        Ok(out.ok)
    };
    if am(&[])? {
        r.commit = git.rev_parse("HEAD")?;
        if step.role != PatchRole::Posted && step.role != PatchRole::Reconstructed {
            r.detail = step.why.clone().unwrap_or_default();
        }
        return Ok(r);
    }
    // Which hunks do not apply as posted?
    r.hunks = check_hunks(git, &files, scratch)?;
    let rejected = rejected_hunks(&r.hunks, |f| git.dir().join(f).exists());
    if am(&["-C1"])? {
        let dups = duplicate_numbers(git.dir(), &r.files);
        if dups.is_empty() {
            r.status = ApplyStatus::AppliedWithFuzz;
            r.commit = git.rev_parse("HEAD")?;
            r.detail = format!(
                "needed fuzz (one line of context) for: {}",
                rejected.join(", ")
            );
            return Ok(r);
        }
        git.ok(&["reset", "--quiet", "--hard", "HEAD~1"])?;
        r.status = ApplyStatus::Failed;
        r.detail = format!(
            "with fuzz it would apply, but duplicate syscall numbers: {}",
            dups.join("; ")
        );
        return Ok(r);
    }
    r.status = ApplyStatus::Failed;
    r.detail = if rejected.is_empty() {
        "git am failed although every hunk applies on its own (the hunks conflict with each other)"
            .into()
    } else {
        format!("rejected: {}", rejected.join(", "))
    };
    Ok(r)
}

/// The hunks that did not apply, for a reader. A file the base does not
/// have is said once, as such: "the base moved" would send the reviewer
/// looking for context that never was.
fn rejected_hunks(hunks: &[HunkOutcome], in_base: impl Fn(&str) -> bool) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for h in hunks.iter().filter(|h| !h.applied) {
        let text = if in_base(&h.file) {
            format!("{} hunk {} ({})", h.file, h.hunk, h.header)
        } else {
            format!("{}: not in the base", h.file)
        };
        if !out.contains(&text) {
            out.push(text);
        }
    }
    out
}

/// Check each hunk on its own against the current tree: applies as is,
/// applies with one line of context (fuzz), or not at all.
fn check_hunks(
    git: &Git,
    files: &[FileDiff],
    scratch: &Path,
) -> Result<Vec<HunkOutcome>, KbuildError> {
    let mut out = Vec::new();
    let tmp: PathBuf = scratch.join("hunk.patch");
    let tmp_s = tmp.display().to_string();
    for f in files {
        for (i, h) in f.hunks.iter().enumerate() {
            let old = f
                .old_path
                .as_deref()
                .map_or("/dev/null".to_string(), |p| format!("a/{p}"));
            let new = f
                .new_path
                .as_deref()
                .map_or("/dev/null".to_string(), |p| format!("b/{p}"));
            let mut text = format!("diff --git a/{p} b/{p}\n", p = f.path());
            if f.new_file {
                text.push_str("new file mode 100644\n");
            }
            if f.deleted {
                text.push_str("deleted file mode 100644\n");
            }
            text.push_str(&format!("--- {old}\n+++ {new}\n{}\n", h.header()));
            for l in &h.lines {
                text.push_str(l);
                text.push('\n');
            }
            std::fs::write(&tmp, &text).map_err(|e| KbuildError::io("write", &tmp, e))?;
            let clean = git.run(&["apply", "--check", &tmp_s])?.ok;
            let fuzz = !clean && git.run(&["apply", "--check", "-C1", &tmp_s])?.ok;
            out.push(HunkOutcome {
                file: f.path().to_string(),
                hunk: i as u32 + 1,
                header: h.header(),
                applied: clean,
                fuzz,
            });
        }
    }
    let _ = std::fs::remove_file(&tmp);
    Ok(out)
}

/// Syscall numbers used twice in the syscall tables (and asm-generic's
/// unistd.h) among `files`, read from the work tree in `dir`.
pub fn duplicate_numbers(dir: &Path, files: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(dir.join(f)) else {
            continue;
        };
        if f.ends_with(".tbl") {
            out.extend(
                duplicates_in_table(&text)
                    .into_iter()
                    .map(|d| format!("{f}: {d}")),
            );
        } else if f.ends_with("asm-generic/unistd.h") {
            out.extend(
                duplicates_in_unistd(&text)
                    .into_iter()
                    .map(|d| format!("{f}: {d}")),
            );
        }
    }
    out
}

/// `NR ABI NAME [ENTRY]` lines: numbers given twice within one ABI class
/// (`common` counts for every class).
pub fn duplicates_in_table(text: &str) -> Vec<String> {
    let mut seen: BTreeMap<u32, Vec<(String, String)>> = BTreeMap::new();
    for l in text.lines() {
        let l = l.split('#').next().unwrap_or("");
        let mut w = l.split_whitespace();
        let (Some(nr), Some(abi), Some(name)) = (w.next(), w.next(), w.next()) else {
            continue;
        };
        let Ok(nr) = nr.parse::<u32>() else { continue };
        seen.entry(nr)
            .or_default()
            .push((abi.to_string(), name.to_string()));
    }
    let mut out = Vec::new();
    for (nr, entries) in seen {
        for (i, (abi_a, name_a)) in entries.iter().enumerate() {
            for (abi_b, name_b) in &entries[i + 1..] {
                let clash = abi_a == abi_b || abi_a == "common" || abi_b == "common";
                if clash {
                    out.push(format!("{nr} is both {name_a} and {name_b}"));
                }
            }
        }
    }
    out
}

/// `#define __NR_x N` twice with the same N.
pub fn duplicates_in_unistd(text: &str) -> Vec<String> {
    let mut seen: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for l in text.lines() {
        let mut w = l.split_whitespace();
        if w.next() != Some("#define") {
            continue;
        }
        let (Some(name), Some(nr)) = (w.next(), w.next()) else {
            continue;
        };
        if !name.starts_with("__NR_") || name == "__NR_syscalls" || name.starts_with("__NR3264") {
            continue;
        }
        if let Ok(nr) = nr.parse::<u32>() {
            seen.entry(nr).or_default().push(name.to_string());
        }
    }
    seen.into_iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(nr, v)| format!("{nr} is {}", v.join(" and ")))
        .collect()
}

/// The number `name` has in the x86_64 syscall table of the tree in `src`.
pub fn syscall_number(src: &Path, name: &str) -> Option<u32> {
    let text = std::fs::read_to_string(src.join("arch/x86/entry/syscalls/syscall_64.tbl")).ok()?;
    text.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        let nr = w.next()?.parse().ok()?;
        let _abi = w.next()?;
        (w.next()? == name).then_some(nr)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_named_once_not_as_rejected_hunks() {
        let h = |file: &str, hunk, applied| HunkOutcome {
            file: file.into(),
            hunk,
            header: format!("@@ -{hunk},3 +{hunk},4 @@"),
            applied,
            fuzz: false,
        };
        let hunks = [
            h("fs/namei.c", 1, true),
            h("fs/namei.c", 2, false),
            h("drivers/frob/frob.c", 1, false),
            h("drivers/frob/frob.c", 2, false),
        ];
        assert_eq!(
            rejected_hunks(&hunks, |f| f != "drivers/frob/frob.c"),
            [
                "fs/namei.c hunk 2 (@@ -2,3 +2,4 @@)",
                "drivers/frob/frob.c: not in the base"
            ]
        );
    }

    #[test]
    fn duplicate_syscall_numbers_are_found_per_abi() {
        let table = "# comment\n471\tcommon\trseq_slice_yield\tsys_rseq_slice_yield\n\
472\tcommon\tfchroot\tsys_fchroot\n472\tcommon\tmkdirat2\tsys_mkdirat2\n\
512\tx32\trt_sigaction\tcompat_sys_rt_sigaction\n13\t64\trt_sigaction\tsys_rt_sigaction\n";
        assert_eq!(
            duplicates_in_table(table),
            vec!["472 is both fchroot and mkdirat2"]
        );
        let ok = "472\tcommon\tfchroot\tsys_fchroot\n473\tcommon\tmkdirat2\tsys_mkdirat2\n";
        assert!(duplicates_in_table(ok).is_empty());
        let abis = "10\t64\ta\tsys_a\n10\tx32\tb\tsys_b\n";
        assert!(
            duplicates_in_table(abis).is_empty(),
            "different ABIs may share"
        );
    }

    #[test]
    fn duplicate_unistd_numbers() {
        let h = "#define __NR_fchroot 472\n__SYSCALL(__NR_fchroot, sys_fchroot)\n\
#define __NR_mkdirat2 472\n#undef __NR_syscalls\n#define __NR_syscalls 473\n";
        assert_eq!(
            duplicates_in_unistd(h),
            vec!["472 is __NR_fchroot and __NR_mkdirat2"]
        );
    }

    #[test]
    fn syscall_numbers_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("arch/x86/entry/syscalls");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(
            p.join("syscall_64.tbl"),
            "471\tcommon\trseq_slice_yield\tsys_rseq_slice_yield\n472\tcommon\tmkdirat2\tsys_mkdirat2\n",
        )
        .unwrap();
        assert_eq!(syscall_number(dir.path(), "mkdirat2"), Some(472));
        assert_eq!(syscall_number(dir.path(), "fchroot"), None);
    }
}
