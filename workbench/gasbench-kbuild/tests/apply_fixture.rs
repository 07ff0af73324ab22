//! The apply report on a small fixture tree (git on the host, no kernel):
//! a patch that applies, one that needs fuzz, one that fails and is
//! replaced by the port, one whose fuzzy apply would duplicate a syscall
//! number, a fixup; the cached second apply; and posted-only failing with
//! the hunks named.

use std::path::{Path, PathBuf};
use std::process::Command;

use gasbench_env::{CacheDir, Runtime};
use gasbench_events::EventBody;
use gasbench_events::kernel::{ApplyStatus, KernelEvent, PatchRole};
use gasbench_kbuild::layout::KernelDir;
use gasbench_kbuild::tree::{self, BaseSource};
use gasbench_kbuild::{KbuildError, apply};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=T", "-c", "user.email=t@example.invalid"])
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_DATE", "2026-04-06T16:51:00+00:00")
        .env("GIT_COMMITTER_DATE", "2026-04-06T16:51:00+00:00")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

const TBL_OLD: &str = "470\tcommon\tlistns\t\t\tsys_listns\n471\tcommon\trseq_slice_yield\tsys_rseq_slice_yield\n\n#\n# x32\n#\n";
// 472 is taken, after a blank line: one line of context on each side
// still matches right after 471, so a fuzzy apply would add a second 472.
const TBL_NEW: &str = "470\tcommon\tlistns\t\t\tsys_listns\n471\tcommon\trseq_slice_yield\tsys_rseq_slice_yield\n\n472\tcommon\tfchroot\t\t\tsys_fchroot\n\n#\n# x32\n#\n";

fn lines(n: usize, tag: &str) -> String {
    (1..=n).map(|i| format!("{tag} line {i}\n")).collect()
}

struct Fixture {
    _dir: tempfile::TempDir,
    base_repo: PathBuf,
    kernel: PathBuf,
    cache: CacheDir,
}

/// The posting was made against `old`; the base is `new`, where:
/// b.c's context moved by one line (fuzz), c.c's lines the patch removes
/// changed (fails), and syscall 472 is taken (fuzz would duplicate it).
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let makefile = "# SPDX\nVERSION = 7\nPATCHLEVEL = 2\nSUBLEVEL = 12\nEXTRAVERSION =\n";

    // The author's tree and the four posted patches.
    let old = root.join("old");
    std::fs::create_dir_all(&old).unwrap();
    git(&old, &["init", "-q", "-b", "main"]);
    write(&old.join("Makefile"), makefile);
    write(&old.join("a.c"), &lines(10, "a"));
    write(&old.join("b.c"), &lines(10, "b"));
    write(&old.join("c.c"), &lines(10, "c"));
    write(&old.join("arch/x86/entry/syscalls/syscall_64.tbl"), TBL_OLD);
    git(&old, &["add", "-A"]);
    git(&old, &["commit", "-q", "-m", "old base"]);
    let edit = |file: &str, from: &str, to: &str, msg: &str| {
        let p = old.join(file);
        let t = std::fs::read_to_string(&p).unwrap().replace(from, to);
        std::fs::write(&p, t).unwrap();
        git(&old, &["commit", "-q", "-am", msg]);
    };
    edit(
        "a.c",
        "a line 5\n",
        "a line 5 changed\n",
        "a: change line 5",
    );
    edit(
        "b.c",
        "b line 5\n",
        "b line 5 changed\n",
        "b: change line 5",
    );
    edit(
        "c.c",
        "c line 5\n",
        "c line 5 changed\n",
        "c: change line 5",
    );
    edit(
        "arch/x86/entry/syscalls/syscall_64.tbl",
        "sys_rseq_slice_yield\n",
        "sys_rseq_slice_yield\n472\tcommon\tmkdirat2\t\tsys_mkdirat2\n",
        "x86: wire up mkdirat2",
    );
    let kernel = root.join("kernel");
    let sdir = kernel.join("series/demo-v1");
    std::fs::create_dir_all(&sdir).unwrap();
    git(
        &old,
        &[
            "format-patch",
            "-q",
            "--zero-commit",
            "-o",
            sdir.to_str().unwrap(),
            "HEAD~4",
        ],
    );

    // The base the port targets.
    let base = root.join("linux");
    std::fs::create_dir_all(&base).unwrap();
    git(&base, &["init", "-q", "-b", "main"]);
    write(&base.join("Makefile"), makefile);
    write(&base.join("a.c"), &lines(10, "a"));
    // b.c: line 3 differs (inside the hunk's context) → needs fuzz.
    write(
        &base.join("b.c"),
        &lines(10, "b").replace("b line 3\n", "b line three\n"),
    );
    // c.c: the line the patch changes differs → rejected.
    write(
        &base.join("c.c"),
        &lines(10, "c").replace("c line 5\n", "c line five\n"),
    );
    write(
        &base.join("arch/x86/entry/syscalls/syscall_64.tbl"),
        TBL_NEW,
    );
    git(&base, &["add", "-A"]);
    git(&base, &["commit", "-q", "-m", "new base"]);
    git(&base, &["tag", "v7.2.12"]);

    // The port: replacements for c.c and the syscall, and a fixup, made
    // on the base with the replacements' content.
    let work = root.join("work");
    git(
        root,
        &[
            "clone",
            "-q",
            base.to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    );
    let wedit = |file: &str, from: &str, to: &str, msg: &str| {
        let p = work.join(file);
        let t = std::fs::read_to_string(&p).unwrap().replace(from, to);
        std::fs::write(&p, t).unwrap();
        git(&work, &["commit", "-q", "-am", msg]);
    };
    wedit("a.c", "a line 5\n", "a line 5 changed\n", "a");
    wedit("b.c", "b line 5\n", "b line 5 changed\n", "b");
    wedit(
        "c.c",
        "c line five\n",
        "c line 5 changed\n",
        "c: change line 5 (replacement)",
    );
    wedit(
        "arch/x86/entry/syscalls/syscall_64.tbl",
        "sys_fchroot\n",
        "sys_fchroot\n473\tcommon\tmkdirat2\t\tsys_mkdirat2\n",
        "x86: wire up mkdirat2 as 473 (replacement)",
    );
    wedit("a.c", "a line 9\n", "a line 9 fixed\n", "fixup: a line 9");
    let pdir = kernel.join("port/v7.2.12/demo-v1");
    std::fs::create_dir_all(&pdir).unwrap();
    git(
        &work,
        &[
            "format-patch",
            "-q",
            "--zero-commit",
            "-o",
            pdir.to_str().unwrap(),
            "HEAD~3",
        ],
    );

    let names: Vec<String> = {
        let mut v: Vec<String> = std::fs::read_dir(&sdir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let mut manifest = String::from(
        "name = \"demo-v1\"\ntitle = \"demo\"\nversion = 1\ntags = [\"PATCH\"]\ntotal = 4\n\
         lists = []\n[author]\nname = \"T\"\nemail = \"t@example.invalid\"\nemail_source = \"header\"\n\
         [source]\nfile = \"x\"\nsha256 = \"0\"\nformat = \"mbox\"\n",
    );
    for (i, n) in names.iter().enumerate() {
        manifest.push_str(&format!(
            "[[patch]]\nindex = {}\nsubject = \"{n}\"\nfile = \"{n}\"\norigin = \"posted\"\n\
             message_id = \"m{i}@x\"\nmessage_id_source = \"header\"\nfiles = []\n",
            i + 1
        ));
    }
    write(&sdir.join("series.toml"), &manifest);
    let port_files: Vec<String> = {
        let mut v: Vec<String> = std::fs::read_dir(&pdir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    write(
        &kernel.join("port/v7.2.12/port.toml"),
        &format!(
            "base = \"7.2.12\"\n[[series]]\nseries = \"demo-v1\"\n\
             [[series.replace]]\nindex = 3\nfile = \"demo-v1/{}\"\nwhy = \"c.c changed\"\n\
             [[series.replace]]\nindex = 4\nfile = \"demo-v1/{}\"\nwhy = \"472 is taken\"\n\
             [[series.fixup]]\nfile = \"demo-v1/{}\"\nkind = \"base-drift\"\nfixes = [1]\nwhy = \"line 9\"\n",
            port_files[0], port_files[1], port_files[2]
        ),
    );
    write(
        &kernel.join("base.toml"),
        "release = \"7.2.12\"\npackage = \"linux-source-7.2\"\npackage_version = \"7.2.12-1\"\n\
         tarball = \"/nonexistent.tar.xz\"\ntarball_sha256 = \"00\"\ntop_dir = \"linux\"\n\
         upstream_tag = \"v7.2.12\"\nport = \"port/v7.2.12\"\narch = \"x86_64\"\n\
         make_vars = [\"LLVM=1\"]\nfull_build_lines = 10\n",
    );
    write(&kernel.join("config/10-x.config"), "CONFIG_X=y\n");
    let cache = CacheDir::resolve(Some(&root.join("cache")), None);
    Fixture {
        _dir: dir,
        base_repo: base,
        kernel,
        cache,
    }
}

#[test]
fn the_apply_report_names_every_outcome() {
    let f = fixture();
    let rt = Runtime::Host;
    let k = KernelDir::open(&f.kernel).unwrap();
    let source = BaseSource::GitTree {
        path: f.base_repo.clone(),
        rev: None,
    };
    let t = tree::prepare(&rt, &f.cache, &k, &source, |_| {}).unwrap();
    assert!(!t.reused);
    assert_eq!(t.release, "7.2.12");
    // The --shared clone borrows the checkout's objects: commands on the
    // tree must see it.
    assert_eq!(t.shared_with, vec![f.base_repo.canonicalize().unwrap()]);
    assert!(t.binds().contains(&f.base_repo.canonicalize().unwrap()));
    let port = k.port_for(&t.release).unwrap().expect("port/v7.2.12");
    let plan = k.plan(Some(&port), None).unwrap();
    let (sink, mut events) = gasbench_events::bus();
    let report = apply::apply_plan(&rt, &k, &t, &plan, &sink).unwrap();

    let got: Vec<(Option<u32>, PatchRole, ApplyStatus)> = report
        .patches
        .iter()
        .map(|p| (p.posted_index, p.role, p.status))
        .collect();
    use ApplyStatus::*;
    use PatchRole::*;
    assert_eq!(
        got,
        vec![
            (Some(1), Posted, Applied),
            (Some(2), Posted, AppliedWithFuzz),
            (Some(3), Posted, Failed),
            (Some(3), Replacement, Applied),
            (Some(4), Posted, Failed),
            (Some(4), Replacement, Applied),
            (None, Fixup, Applied),
        ]
    );
    let p = &report.patches;
    // Fuzz: the hunk is named, and applies with one line of context.
    assert_eq!(p[1].hunks.len(), 1);
    assert!(
        !p[1].hunks[0].applied && p[1].hunks[0].fuzz,
        "{:?}",
        p[1].hunks
    );
    assert_eq!(p[1].files, vec!["b.c"]);
    // Failed: the rejected hunk, and the replacement used.
    assert!(!p[2].hunks[0].applied && !p[2].hunks[0].fuzz);
    assert!(p[2].replaced_by.as_deref().unwrap().ends_with(".patch"));
    assert!(
        p[2].detail.contains("rejected: c.c hunk 1"),
        "{}",
        p[2].detail
    );
    // The syscall patch would apply with fuzz, as a second 472.
    assert!(p[4].hunks[0].fuzz, "{:?}", p[4].hunks);
    assert!(
        p[4].detail.contains("472 is both mkdirat2 and fchroot"),
        "{}",
        p[4].detail
    );
    // The result: every change, mkdirat2 at 473, once.
    let head_tbl = Command::new("git")
        .args([
            "show",
            &format!("{}:arch/x86/entry/syscalls/syscall_64.tbl", report.head),
        ])
        .current_dir(&t.src)
        .output()
        .unwrap();
    let tbl = String::from_utf8_lossy(&head_tbl.stdout);
    assert!(tbl.contains("473\tcommon\tmkdirat2"), "{tbl}");
    assert!(apply::duplicates_in_table(&tbl).is_empty());
    assert_eq!(
        report.patches.iter().filter(|p| p.commit.is_some()).count(),
        5
    );
    assert!(report.patches.iter().all(|p| p.of == 7));
    // One event per patch, in order.
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let EventBody::Kernel(KernelEvent::Patch(p)) = e.body {
            seen.push((p.index, p.status));
        }
    }
    assert_eq!(seen.len(), 7);
    assert_eq!(seen[2], (3, Failed));

    // The same plan again: the kept result, not a new apply.
    let again = apply::apply_plan(&rt, &k, &t, &plan, &sink).unwrap();
    assert!(again.cached);
    assert_eq!(again.head, report.head);
    // A reused tree is not made again.
    let t2 = tree::prepare(&rt, &f.cache, &k, &source, |_| {}).unwrap();
    assert!(t2.reused);
    assert_eq!(t2.base_commit, t.base_commit);

    // The posted series alone stops at 3/4, naming the rejected hunk.
    let posted = k.plan(None, None).unwrap();
    match apply::apply_plan(&rt, &k, &t, &posted, &sink) {
        Err(KbuildError::PatchDoesNotApply { report, .. }) => {
            assert_eq!(report.posted_index, Some(3));
            assert_eq!(report.rejected_hunks().count(), 1);
            assert_eq!(report.rejected_hunks().next().unwrap().file, "c.c");
        }
        other => panic!("expected PatchDoesNotApply, got {other:?}"),
    }
}

#[test]
fn the_same_inputs_give_the_same_commits() {
    // Two caches, same base and plan: identical heads (fixed committer,
    // dates from the patches).
    let f = fixture();
    let rt = Runtime::Host;
    let k = KernelDir::open(&f.kernel).unwrap();
    let source = BaseSource::GitTree {
        path: f.base_repo.clone(),
        rev: Some("v7.2.12".into()),
    };
    let mut heads = Vec::new();
    for sub in ["c1", "c2"] {
        let cache = CacheDir::resolve(Some(&f.cache.root().join(sub)), None);
        let t = tree::prepare(&rt, &cache, &k, &source, |_| {}).unwrap();
        let port = k.port_for(&t.release).unwrap().unwrap();
        let plan = k.plan(Some(&port), None).unwrap();
        let (sink, _rx) = gasbench_events::bus();
        heads.push(apply::apply_plan(&rt, &k, &t, &plan, &sink).unwrap().head);
    }
    assert_eq!(heads[0], heads[1]);
}
