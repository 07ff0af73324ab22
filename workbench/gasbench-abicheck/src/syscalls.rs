//! A new syscall: wired where the kernel wires its newest, with the next
//! free number.
//!
//! The kernel's convention (Documentation/process/adding-syscalls.rst):
//! a new syscall goes into every architecture's table, the generic table
//! (scripts/syscall.tbl) and `include/uapi/asm-generic/unistd.h`, with
//! `__NR_syscalls` bumped. Which tables that is, is read from the tree:
//! every table that carries the base's newest syscall (the highest
//! number in scripts/syscall.tbl the series did not add). The tools/
//! copies are synced by their maintainers later; they are noted.

use std::path::{Path, PathBuf};

use crate::diff::Added;
use crate::{CheckResult, Evidence, Verdict, rel};

/// One entry of a syscall table: `472 common mkdirat2 sys_mkdirat2`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub nr: u32,
    pub abi: String,
    pub name: String,
    pub line: usize,
    pub text: String,
}

/// The entries of a `.tbl` file.
pub fn parse_table(text: &str) -> Vec<Entry> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let t = l.trim();
            if t.is_empty() || t.starts_with('#') {
                return None;
            }
            let mut w = t.split_whitespace();
            let nr = w.next()?.parse().ok()?;
            let abi = w.next()?.to_string();
            let name = w.next()?.to_string();
            Some(Entry {
                nr,
                abi,
                name,
                line: i + 1,
                text: l.to_string(),
            })
        })
        .collect()
}

/// Syscalls the series adds: names of `+` lines of syscall tables.
pub fn added_syscalls(added: &Added) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for (_, l) in added.in_files(|f| f.ends_with(".tbl")) {
        if let Some(e) = parse_table(l).into_iter().next()
            && !v.contains(&e.name)
        {
            v.push(e.name);
        }
    }
    v
}

/// Every syscall table of the tree: the kernel's own and tools/ copies.
fn tables(tree: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut kernel = Vec::new();
    let mut tools = Vec::new();
    let mut walk = vec![tree.join("arch"), tree.join("scripts"), tree.join("tools")];
    while let Some(dir) = walk.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                // Only where tables live; tools/ is large.
                let r = rel(tree, &p);
                if r.starts_with("tools/testing") || r.starts_with("tools/lib") {
                    continue;
                }
                walk.push(p);
            } else if ft.is_file()
                && p.extension().is_some_and(|x| x == "tbl")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("syscall"))
            {
                if rel(tree, &p).starts_with("tools/") {
                    tools.push(p);
                } else {
                    kernel.push(p);
                }
            }
        }
    }
    kernel.sort();
    tools.sort();
    (kernel, tools)
}

/// Numbers of a table's native range: x86_64's x32 entries (512 and up)
/// are another range.
fn native(e: &Entry) -> bool {
    e.abi != "x32"
}

pub fn check(tree: &Path, added: &Added) -> Vec<CheckResult> {
    let names = added_syscalls(added);
    if names.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let generic = tree.join("scripts/syscall.tbl");
    let generic_entries = std::fs::read_to_string(&generic)
        .map(|t| parse_table(&t))
        .unwrap_or_default();
    // The base's newest syscall: the reference for where tables are.
    let reference = generic_entries
        .iter()
        .filter(|e| !names.contains(&e.name))
        .max_by_key(|e| e.nr)
        .cloned();
    let (kernel, tools) = tables(tree);
    for name in &names {
        let mut missing = Vec::new();
        let mut wired = Vec::new();
        let mut tools_missing = Vec::new();
        for (set, is_tools) in [(&kernel, false), (&tools, true)] {
            for t in set.iter() {
                let Ok(text) = std::fs::read_to_string(t) else {
                    continue;
                };
                let entries = parse_table(&text);
                let file = rel(tree, t);
                let has_ref = reference
                    .as_ref()
                    .and_then(|r| entries.iter().find(|e| e.name == r.name));
                match entries.iter().find(|e| &e.name == name) {
                    Some(e) => {
                        if !is_tools {
                            wired.push((file.clone(), e.clone(), entries.clone()));
                        }
                    }
                    None => {
                        if let Some(r) = has_ref {
                            let ev = Evidence::new(&file, r.line, &r.text);
                            if is_tools {
                                tools_missing.push(ev);
                            } else {
                                missing.push(ev);
                            }
                        }
                    }
                }
            }
        }
        let refname = reference
            .as_ref()
            .map_or("the base's newest syscall".to_string(), |r| r.name.clone());
        out.push(CheckResult {
            check: "syscall.tables",
            subject: name.clone(),
            verdict: if missing.is_empty() {
                Verdict::Pass
            } else {
                Verdict::Defect
            },
            title: if missing.is_empty() {
                format!(
                    "{name} is in every syscall table that has {refname} ({} table(s))",
                    wired.len()
                )
            } else {
                format!(
                    "{name} is wired in {} syscall table(s) but missing from {} that carry {refname} (the kernel adds a syscall to every architecture's table)",
                    wired.len(),
                    missing.len()
                )
            },
            evidence: if missing.is_empty() {
                wired
                    .iter()
                    .map(|(f, e, _)| Evidence::new(f, e.line, &e.text))
                    .collect()
            } else {
                missing
            },
        });
        // The number: the next free one in each table that has it.
        for (file, e, entries) in &wired {
            let max = entries
                .iter()
                .filter(|x| !names.contains(&x.name) && native(x) && native(e))
                .map(|x| x.nr)
                .max();
            let Some(max) = max else { continue };
            let last = entries
                .iter()
                .find(|x| x.nr == max && !names.contains(&x.name));
            let mut evidence = vec![Evidence::new(file, e.line, &e.text)];
            if let Some(l) = last {
                evidence.push(Evidence::new(file, l.line, &l.text));
            }
            let ok = e.nr == max + 1;
            out.push(CheckResult {
                check: "syscall.number",
                subject: format!("{name} in {file}"),
                verdict: if ok { Verdict::Pass } else { Verdict::Defect },
                title: if ok {
                    format!(
                        "{name} takes {}, the next free number after the base's {max}",
                        e.nr
                    )
                } else {
                    format!(
                        "{name} takes {} but the next free number on the base is {}",
                        e.nr,
                        max + 1
                    )
                },
                evidence,
            });
        }
        out.extend(generic_header(tree, name));
        if !tools_missing.is_empty() {
            out.push(CheckResult {
                check: "syscall.tools-copies",
                subject: name.clone(),
                verdict: Verdict::Note,
                title: format!(
                    "{name} is not in {} tools/ cop(ies) of the syscall tables (perf's maintainers sync these after a merge)",
                    tools_missing.len()
                ),
                evidence: tools_missing,
            });
        }
    }
    out
}

/// `include/uapi/asm-generic/unistd.h`: `__NR_<name>` and `__NR_syscalls`
/// one past the highest number.
fn generic_header(tree: &Path, name: &str) -> Vec<CheckResult> {
    let file = "include/uapi/asm-generic/unistd.h";
    let Ok(text) = std::fs::read_to_string(tree.join(file)) else {
        return Vec::new();
    };
    let def = |sym: &str| {
        text.lines().enumerate().find_map(|(i, l)| {
            let mut w = l.split_whitespace();
            (w.next() == Some("#define") && w.next() == Some(sym))
                .then(|| w.next().and_then(|n| n.parse::<u32>().ok()))
                .flatten()
                .map(|n| (i + 1, n, l.to_string()))
        })
    };
    let nr = def(&format!("__NR_{name}"));
    let total = def("__NR_syscalls");
    let mut v = Vec::new();
    match (nr, total.clone()) {
        (None, _) => v.push(CheckResult {
            check: "syscall.generic-header",
            subject: name.to_string(),
            verdict: Verdict::Defect,
            title: format!("{file} does not define __NR_{name} (architectures on the generic table do not get it)"),
            evidence: total
                .map(|(l, _, t)| vec![Evidence::new(file, l, &t)])
                .unwrap_or_default(),
        }),
        (Some((l, n, t)), Some((tl, total, tt))) => v.push(CheckResult {
            check: "syscall.generic-header",
            subject: name.to_string(),
            verdict: if total > n {
                Verdict::Pass
            } else {
                Verdict::Defect
            },
            title: if total > n {
                format!("{file} defines __NR_{name} {n} and __NR_syscalls {total}")
            } else {
                format!("{file} defines __NR_{name} {n} but __NR_syscalls is still {total}")
            },
            evidence: vec![Evidence::new(file, l, &t), Evidence::new(file, tl, &tt)],
        }),
        (Some((l, n, t)), None) => v.push(CheckResult {
            check: "syscall.generic-header",
            subject: name.to_string(),
            verdict: Verdict::Note,
            title: format!("{file} defines __NR_{name} {n}; no __NR_syscalls found"),
            evidence: vec![Evidence::new(file, l, &t)],
        }),
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Patch;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// A tree where the base's newest syscall (`newest`, 471) is in the
    /// generic table, x86_64's and alpha's; the series adds `fresh` to
    /// the generic table and x86_64 only, at 473 on x86_64.
    #[test]
    fn a_syscall_missing_from_a_table_and_a_skipped_number_are_defects() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        write(
            t,
            "scripts/syscall.tbl",
            "# generic\n470\tcommon\tolder\tsys_older\n471\tcommon\tnewest\tsys_newest\n472\tcommon\tfresh\tsys_fresh\n",
        );
        write(
            t,
            "arch/x86/entry/syscalls/syscall_64.tbl",
            "470\tcommon\tolder\tsys_older\n471\tcommon\tnewest\tsys_newest\n473\tcommon\tfresh\tsys_fresh\n512\tx32\trt_sigaction\tcompat_sys_rt_sigaction\n",
        );
        write(
            t,
            "arch/alpha/kernel/syscalls/syscall.tbl",
            "580\tcommon\tolder\tsys_older\n581\tcommon\tnewest\tsys_newest\n",
        );
        write(
            t,
            "arch/ancient/kernel/syscalls/syscall.tbl",
            "1\tcommon\tolder\tsys_older\n",
        );
        write(
            t,
            "tools/perf/arch/x86/entry/syscalls/syscall_64.tbl",
            "471\tcommon\tnewest\tsys_newest\n",
        );
        write(
            t,
            "include/uapi/asm-generic/unistd.h",
            "#define __NR_fresh 472\n__SYSCALL(__NR_fresh, sys_fresh)\n#undef __NR_syscalls\n#define __NR_syscalls 473\n",
        );
        let patch = "\
diff --git a/scripts/syscall.tbl b/scripts/syscall.tbl
--- a/scripts/syscall.tbl
+++ b/scripts/syscall.tbl
@@ -3,0 +4 @@
+472\tcommon\tfresh\tsys_fresh
diff --git a/arch/x86/entry/syscalls/syscall_64.tbl b/arch/x86/entry/syscalls/syscall_64.tbl
--- a/arch/x86/entry/syscalls/syscall_64.tbl
+++ b/arch/x86/entry/syscalls/syscall_64.tbl
@@ -2,0 +3 @@
+473\tcommon\tfresh\tsys_fresh
";
        let r = crate::check_series(
            t,
            &[Patch {
                file: "p",
                text: patch,
            }],
        );
        let tables = r.iter().find(|c| c.check == "syscall.tables").unwrap();
        assert_eq!(tables.verdict, Verdict::Defect, "{tables:#?}");
        assert_eq!(
            tables.evidence,
            vec![Evidence::new(
                "arch/alpha/kernel/syscalls/syscall.tbl",
                2,
                "581\tcommon\tnewest\tsys_newest"
            )]
        );
        let numbers: Vec<_> = r.iter().filter(|c| c.check == "syscall.number").collect();
        assert_eq!(numbers.len(), 2);
        let x86 = numbers.iter().find(|c| c.subject.contains("x86")).unwrap();
        assert_eq!(x86.verdict, Verdict::Defect);
        assert!(
            x86.title.contains("next free number on the base is 472"),
            "{}",
            x86.title
        );
        let generic = numbers
            .iter()
            .find(|c| c.subject.contains("scripts"))
            .unwrap();
        assert_eq!(generic.verdict, Verdict::Pass);
        let header = r
            .iter()
            .find(|c| c.check == "syscall.generic-header")
            .unwrap();
        assert_eq!(header.verdict, Verdict::Pass);
        let tools = r
            .iter()
            .find(|c| c.check == "syscall.tools-copies")
            .unwrap();
        assert_eq!(tools.verdict, Verdict::Note);
        assert_eq!(tools.evidence.len(), 1);
    }
}
