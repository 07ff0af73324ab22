//! The repository's kernel/ directory is consistent: the series files are
//! what extraction from the digest gives, the reconstructed 1/6 agrees
//! with the quote it was rebuilt from, the port's replacements carry the
//! same change as the posted patches, and the plan is in order.
//! No kernel tree and no build needed.

use std::path::{Path, PathBuf};

use gasbench_kbuild::layout::{KernelDir, PatchRole};
use gasbench_series::patch::{FileDiff, PatchBody, parse_diff};
use gasbench_series::{find_series, parse_mail};

fn kdir() -> KernelDir {
    KernelDir::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../kernel")).unwrap()
}

fn digest(k: &KernelDir) -> String {
    std::fs::read_to_string(k.root().join("sources/000_cc8941013480fefb.txt")).unwrap()
}

fn diff_of(path: &Path) -> Vec<FileDiff> {
    let text = std::fs::read_to_string(path).unwrap();
    let (_, m) = parse_mail(&text).unwrap();
    let body = &m[0].body;
    let parts = PatchBody::split(body).unwrap();
    parse_diff(&body[parts.diff]).unwrap()
}

#[test]
fn the_series_files_are_what_extraction_gives() {
    let k = kdir();
    let out = tempfile::tempdir().unwrap();
    // Extraction keeps hand-made reconstructions: put 1/6 where it looks.
    let gf = "goldfish-address-space-v3";
    std::fs::create_dir_all(out.path().join(gf)).unwrap();
    for e in std::fs::read_dir(k.series_dir(gf)).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with("0001-") {
            std::fs::copy(e.path(), out.path().join(gf).join(e.file_name())).unwrap();
        }
    }
    let done = gasbench_kbuild::extract::extract(
        &digest(&k),
        "kernel/sources/000_cc8941013480fefb.txt",
        out.path(),
    )
    .unwrap();
    assert_eq!(done.len(), 2);
    for e in &done {
        let name = e.dir.file_name().unwrap();
        for f in &e.written {
            let committed: PathBuf = k
                .root()
                .join("series")
                .join(name)
                .join(f.file_name().unwrap());
            assert_eq!(
                std::fs::read_to_string(f).unwrap(),
                std::fs::read_to_string(&committed)
                    .unwrap_or_else(|_| panic!("{} is not committed", committed.display())),
                "{} differs from a fresh extraction",
                committed.display()
            );
        }
    }
}

#[test]
fn the_reconstructed_header_agrees_with_the_quote_and_the_driver() {
    let k = kdir();
    let text = digest(&k);
    let (_, msgs) = parse_mail(&text).unwrap();
    let series = find_series(&msgs).unwrap();
    let gf = series.iter().find(|s| s.version == 3).unwrap();
    let quote = &gf.missing[0].quotes[0].lines;

    let m = k.series("goldfish-address-space-v3").unwrap();
    let entry = &m.patches[0];
    assert_eq!(entry.index, 1);
    assert_eq!(
        entry.origin,
        gasbench_series::manifest::PatchOrigin::Reconstructed
    );
    let files = diff_of(&k.series_dir("goldfish-address-space-v3").join(&entry.file));
    let header = files
        .iter()
        .find(|f| f.path() == "include/uapi/linux/goldfish_address_space.h")
        .unwrap();
    let added: Vec<&str> = header.hunks.iter().flat_map(|h| h.added()).collect();

    // Every quoted added line is in the header, in the quoted order.
    let mut at = 0;
    for q in quote.iter().filter_map(|l| l.strip_prefix('+')) {
        match added[at..].iter().position(|a| *a == q) {
            Some(i) => at += i + 1,
            None => panic!("quoted line {q:?} is missing (or out of order) in the reconstruction"),
        }
    }
    // The ioctls the driver computes: _IOWR('G', 10..=14, T).
    let all = added.join("\n");
    for (name, nr, ty) in [
        (
            "ALLOCATE_BLOCK",
            10,
            "struct goldfish_address_space_allocate_block",
        ),
        ("DEALLOCATE_BLOCK", 11, "__u64"),
        ("PING", 12, "struct goldfish_address_space_ping"),
        (
            "CLAIM_SHARED",
            13,
            "struct goldfish_address_space_claim_shared",
        ),
        ("UNCLAIM_SHARED", 14, "__u64"),
    ] {
        let def = format!(
            "#define GOLDFISH_ADDRESS_SPACE_IOCTL_{name} \\\n\tGOLDFISH_ADDRESS_SPACE_IOCTL_OP({nr}, {ty})"
        );
        assert!(all.contains(&def), "missing {def:?}");
    }
    // 6/6's MAINTAINERS hunk finds its context in 1/6's entry.
    let driver = diff_of(
        &k.series_dir("goldfish-address-space-v3")
            .join(&m.patches[5].file),
    );
    let maint = driver.iter().find(|f| f.path() == "MAINTAINERS").unwrap();
    let ctx: Vec<&str> = maint.hunks[0]
        .lines
        .iter()
        .filter_map(|l| l.strip_prefix(' '))
        .collect();
    let recon_maint: Vec<&str> = files
        .iter()
        .find(|f| f.path() == "MAINTAINERS")
        .unwrap()
        .hunks[0]
        .added()
        .collect();
    for c in ctx.iter().take(4) {
        assert!(
            recon_maint.contains(c),
            "6/6 needs {c:?} from 1/6's MAINTAINERS entry"
        );
    }
}

/// `io::PhysAddr,` / `ffi::{c_ulong, c_void},` / `},`: a line of an
/// import list (hunks often start inside a `use` block).
fn path_list(t: &str) -> bool {
    let t = t.trim_end_matches("//").trim();
    if let Some(head) = t.strip_suffix("::{") {
        return !head.is_empty()
            && head
                .chars()
                .all(|c| c.is_alphanumeric() || "_:".contains(c));
    }
    let body = match t.strip_suffix(',') {
        Some(b) => b,
        None => return t == "};" || t == "}",
    };
    !body.is_empty()
        && body.split(", ").all(|w| {
            !w.is_empty()
                && w.chars()
                    .all(|c| c.is_alphanumeric() || "_:{}*".contains(c))
        })
}

/// Added lines that carry the change: not imports (`use` blocks,
/// `#include`), which replacements re-spell in the base's style.
fn significant_added(files: &[FileDiff]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for f in files {
        for h in &f.hunks {
            let mut in_use = false;
            for l in &h.lines {
                let (marker, text) = l.split_at(l.len().min(1));
                let t = text.trim();
                let starts_use = t.starts_with("use ") || t.starts_with("pub use ");
                let import = in_use || starts_use || t.starts_with("#include") || path_list(t);
                if starts_use && !t.ends_with(';') {
                    in_use = true;
                } else if in_use && t.ends_with(';') {
                    in_use = false;
                }
                if marker == "+" && !import && !t.is_empty() {
                    out.push((f.path().to_string(), text.to_string()));
                }
            }
        }
    }
    out
}

#[test]
fn replacements_carry_the_posted_change() {
    let k = kdir();
    let (pdir, port) = k.port().unwrap();
    assert_eq!(port.base, k.base.release);
    let mut n = 0;
    for ps in &port.series {
        let m = k.series(&ps.series).unwrap();
        for r in &ps.replacements {
            let posted = m.patches.iter().find(|p| p.index == r.index).unwrap();
            let a = significant_added(&diff_of(&k.series_dir(&ps.series).join(&posted.file)));
            let b = significant_added(&diff_of(&pdir.join(&r.file)));
            if let Some(i) = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i)) {
                panic!(
                    "{} {}: the replacement changes more than context and imports; first \
                     difference at added line {i}: posted {:?}, replacement {:?}",
                    ps.series,
                    r.index,
                    a.get(i),
                    b.get(i)
                );
            }
            let text = std::fs::read_to_string(pdir.join(&r.file)).unwrap();
            assert!(
                text.contains("[gasbench: replacement for v"),
                "{} says nothing about what differs",
                r.file
            );
            n += 1;
        }
        for f in &ps.fixups {
            assert!(pdir.join(&f.file).is_file(), "{}", f.file);
            assert!(!f.fixes.is_empty() && !f.why.is_empty());
            assert!(f.fixes.iter().all(|i| *i >= 1 && *i <= m.total));
        }
    }
    assert_eq!(n, 5);
}

#[test]
fn the_plan_applies_each_series_then_its_fixups() {
    let k = kdir();
    let port = k.port().unwrap();
    let plan = k.plan(Some(&port), None).unwrap();
    let order: Vec<String> = plan
        .steps
        .iter()
        .map(|s| match s.posted_index {
            Some(i) => format!("{}:{}", s.series, i),
            None => format!("{}:fixup", s.series),
        })
        .collect();
    assert_eq!(
        order,
        vec![
            "mkdirat2-v2:1",
            "mkdirat2-v2:2",
            "mkdirat2-v2:fixup",
            "goldfish-address-space-v3:1",
            "goldfish-address-space-v3:2",
            "goldfish-address-space-v3:3",
            "goldfish-address-space-v3:4",
            "goldfish-address-space-v3:5",
            "goldfish-address-space-v3:6",
            "goldfish-address-space-v3:fixup",
            "goldfish-address-space-v3:fixup",
            "goldfish-address-space-v3:fixup",
        ]
    );
    assert_eq!(plan.steps[3].role, PatchRole::Reconstructed);
    let with_repl: Vec<String> = plan
        .steps
        .iter()
        .filter(|s| s.replacement.is_some())
        .map(|s| format!("{}:{}", s.series, s.posted_index.unwrap()))
        .collect();
    assert_eq!(
        with_repl,
        vec![
            "mkdirat2-v2:2",
            "goldfish-address-space-v3:2",
            "goldfish-address-space-v3:3",
            "goldfish-address-space-v3:4",
            "goldfish-address-space-v3:5",
        ]
    );
    // Posted only: no replacements, no fixups.
    let posted = k.plan(None, None).unwrap();
    assert_eq!(posted.steps.len(), 8);
    assert!(
        posted
            .steps
            .iter()
            .all(|s| s.replacement.is_none() && s.role != PatchRole::Fixup)
    );
    // One series.
    let only = k
        .plan(Some(&port), Some(&["mkdirat2-v2".to_string()]))
        .unwrap();
    assert_eq!(only.steps.len(), 3);
    assert!(k.plan(Some(&port), Some(&["nope".to_string()])).is_err());
}

#[test]
fn the_fragments_ask_for_what_the_guest_needs() {
    let k = kdir();
    let reqs: Vec<_> = k
        .fragments()
        .unwrap()
        .iter()
        .flat_map(|f| gasbench_kbuild::kconfig::parse_fragment(&f.text, &f.name))
        .collect();
    for sym in [
        "RUST",
        "GOLDFISH_ADDRESS_SPACE",
        "VIRTIO_CONSOLE",
        "VIRTIO_PCI",
        "FUSE_FS",
        "VIRTIO_FS",
        "DEVTMPFS_MOUNT",
        "TMPFS",
        "BLK_DEV_INITRD",
        "SERIAL_8250_CONSOLE",
        "BINFMT_SCRIPT",
        "PCIEPORTBUS",
        "HOTPLUG_PCI_PCIE",
        "PCI_MSI",
        "KALLSYMS",
        "FHANDLE",
        "FILE_LOCKING",
    ] {
        assert!(
            reqs.iter().any(|r| r.symbol == sym && r.value == "y"),
            "no fragment sets CONFIG_{sym}=y"
        );
    }
    assert!(reqs.iter().any(|r| r.symbol == "MODULES" && r.value == "n"));
}

#[test]
fn a_build_of_one_series_leaves_out_the_symbols_only_the_other_adds() {
    let k = kdir();
    assert_eq!(
        k.symbols_added_by("goldfish-address-space-v3")
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>(),
        ["GOLDFISH_ADDRESS_SPACE"]
    );
    assert!(k.symbols_added_by("mkdirat2-v2").unwrap().is_empty());

    let requested = |fragments: &[gasbench_kbuild::layout::Fragment]| -> Vec<String> {
        fragments
            .iter()
            .flat_map(|f| gasbench_kbuild::kconfig::parse_fragment(&f.text, &f.name))
            .map(|r| r.symbol)
            .collect()
    };
    let (fragments, left_out) = k.fragments_for(&["mkdirat2-v2".to_string()]).unwrap();
    assert_eq!(
        left_out.into_iter().collect::<Vec<_>>(),
        [(
            "GOLDFISH_ADDRESS_SPACE".to_string(),
            "goldfish-address-space-v3".to_string()
        )]
    );
    let syms = requested(&fragments);
    assert!(!syms.contains(&"GOLDFISH_ADDRESS_SPACE".to_string()));
    // The base's own symbols stay: GOLDFISH exists on 7.2.12, RUST too.
    assert!(syms.contains(&"GOLDFISH".to_string()));
    assert!(syms.contains(&"RUST".to_string()));
    // Lines keep their numbers, so a mismatch still points at the right one.
    let full = k.fragments().unwrap();
    for (a, b) in full.iter().zip(&fragments) {
        assert_eq!(a.text.lines().count(), b.text.lines().count(), "{}", a.name);
    }

    let (fragments, left_out) = k
        .fragments_for(&["goldfish-address-space-v3".to_string()])
        .unwrap();
    assert!(left_out.is_empty());
    assert_eq!(requested(&fragments), requested(&full));
}

#[test]
fn kconfig_symbols_are_read_from_added_lines_of_kconfig_files_only() {
    let patch = "diff --git a/drivers/x/Kconfig b/drivers/x/Kconfig\n--- a/drivers/x/Kconfig\n+++ b/drivers/x/Kconfig\n@@ -1,2 +1,5 @@\n config OLD\n+config NEW_ONE\n+\tbool \"new\"\n+menuconfig NEW_MENU\n-config GONE\n\
diff --git a/drivers/x/x.c b/drivers/x/x.c\n--- a/drivers/x/x.c\n+++ b/drivers/x/x.c\n@@ -1 +1,2 @@\n+config NOT_KCONFIG\n";
    let got: Vec<String> = gasbench_kbuild::layout::kconfig_symbols_added(patch)
        .into_iter()
        .collect();
    assert_eq!(got, ["NEW_MENU", "NEW_ONE"]);
}
