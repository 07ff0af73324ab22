//! The report parser over samples of each kind, written from the kernel's
//! printing code (7.2) and Documentation/dev-tools/*.rst.

use gasbench_events::report::ReportKind;
use gasbench_kreport::line::Caller;
use gasbench_kreport::parse::{self, Parsed, ReportParser};

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn parse_all(text: &str) -> Vec<Parsed> {
    let mut p = ReportParser::new();
    let mut out = Vec::new();
    for l in text.lines() {
        out.extend(p.push(l));
    }
    out.extend(p.finish());
    out
}

fn only(name: &str) -> Parsed {
    let mut all = parse_all(&fixture(name));
    assert_eq!(all.len(), 1, "{name}: {:#?}", all);
    all.remove(0)
}

fn functions(p: &Parsed, stack: usize) -> Vec<String> {
    p.report.stacks[stack]
        .frames
        .iter()
        .map(|f| f.function.clone())
        .collect()
}

#[test]
fn kasan_use_after_free_is_one_report_with_its_three_stacks() {
    let p = only("kasan_slab_uaf.log");
    let r = &p.report;
    assert_eq!(r.kind, ReportKind::Kasan);
    assert_eq!(
        r.title,
        "BUG: KASAN: slab-use-after-free in lkdtm_READ_AFTER_FREE+0x1a6/0x280"
    );
    assert!(!p.truncated);
    assert_eq!(p.caller, Some(Caller::Task(97)));
    let task = r.task.as_ref().unwrap();
    assert_eq!((task.pid, task.comm.as_str()), (97, "gasbench-agent"));
    let labels: Vec<&str> = r.stacks.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(
        labels,
        ["Call Trace", "Allocated by task 97", "Freed by task 97"]
    );
    // Unreliable `? ` frames are kept but marked; the culprit skips them
    // and KASAN's own functions.
    assert!(r.stacks[0].frames.iter().any(|f| !f.reliable));
    assert_eq!(r.culprit().unwrap().function, "lkdtm_READ_AFTER_FREE");
    assert_eq!(r.culprit().unwrap().offset, 0x1a6);
    // The markers around it and lkdtm's own lines are not part of it.
    assert!(r.text.first().unwrap().starts_with("=========="));
    assert!(r.text.last().unwrap().starts_with("=========="));
    assert!(!r.text.iter().any(|l| l.contains("gasbench: call")));
    assert!(r.signature.starts_with("kasan|"));
}

#[test]
fn lockdep_inversion_ends_with_its_own_backtrace() {
    let p = only("lockdep_circular.log");
    let r = &p.report;
    assert_eq!(r.kind, ReportKind::Lockdep);
    assert_eq!(
        r.title,
        "WARNING: possible circular locking dependency detected"
    );
    // The backtrace after `stack backtrace:` leads; the chain's stacks follow.
    assert_eq!(r.stacks[0].label, "Call Trace");
    assert_eq!(r.culprit().unwrap().function, "provoke_lock_inversion");
    assert!(r.stacks.iter().any(|s| s.label.starts_with("-> #1")));
    assert_eq!(r.task.as_ref().unwrap().pid, 102);
    assert!(r.text.last().unwrap().trim() == "</TASK>");
}

#[test]
fn sleeping_in_atomic_context() {
    let p = only("atomic_sleep.log");
    let r = &p.report;
    assert_eq!(r.kind, ReportKind::AtomicSleep);
    assert!(r.title.ends_with("at drivers/misc/gasbench_provoke.c:56"));
    assert_eq!(r.stacks[0].label, "Call Trace");
    assert_eq!(r.culprit().unwrap().function, "provoke_sleep_in_atomic");
    assert!(r.stacks.iter().any(|s| s.label == "Preemption disabled at"));
    assert_eq!(r.task.as_ref().unwrap().comm, "gasbench-agent");
}

#[test]
fn ubsan_out_of_bounds_index() {
    let p = only("ubsan_array_bounds.log");
    let r = &p.report;
    assert_eq!(r.kind, ReportKind::Ubsan);
    assert_eq!(
        r.title,
        "UBSAN: array-index-out-of-bounds in drivers/misc/lkdtm/bugs.c:417:16"
    );
    assert_eq!(r.culprit().unwrap().function, "lkdtm_ARRAY_BOUNDS");
    assert!(r.text.iter().any(|l| l.contains("index 8 is out of range")));
}

#[test]
fn kcsan_race_keeps_both_sides_in_order() {
    let p = only("kcsan_data_race.log");
    let r = &p.report;
    assert_eq!(r.kind, ReportKind::Kcsan);
    assert_eq!(
        r.title,
        "BUG: KCSAN: data-race in provoke_racer / provoke_racer"
    );
    assert_eq!(r.stacks.len(), 2);
    assert!(r.stacks[0].label.starts_with("write to 0x"));
    assert!(r.stacks[1].label.starts_with("read to 0x"));
    assert_eq!(functions(&p, 0)[0], "provoke_racer");
    assert_eq!(r.task.as_ref().unwrap().comm, "gasbench-race/1");
}

#[test]
fn a_warning_points_at_its_rip_and_demangles_rust() {
    let p = only("warning.log");
    let r = &p.report;
    assert_eq!(r.kind, ReportKind::Warning);
    assert!(r.title.starts_with("WARNING: drivers/platform/goldfish/"));
    assert_eq!(r.stacks[0].label, "RIP");
    assert_eq!(r.culprit().unwrap().function, "goldfish_release");
    assert_eq!(r.task.as_ref().unwrap().pid, 97);
}

#[test]
fn an_oops_then_the_panic_it_causes() {
    let all = parse_all(&fixture("null_deref_oops.log"));
    assert_eq!(all.len(), 2, "{all:#?}");
    let oops = &all[0].report;
    assert_eq!(oops.kind, ReportKind::Oops);
    assert_eq!(
        oops.title,
        "BUG: kernel NULL pointer dereference, address: 0000000000000008"
    );
    assert_eq!(oops.culprit().unwrap().function, "goldfish_ioctl");
    // Without PRINTK_CALLER there is no caller, but the task is known.
    assert_eq!(all[0].caller, None);
    assert_eq!(oops.task.as_ref().unwrap().pid, 97);
    assert_eq!(all[1].report.kind, ReportKind::Panic);
    assert_eq!(
        all[1].report.title,
        "Kernel panic - not syncing: Fatal exception"
    );
}

#[test]
fn a_rust_panic_takes_its_message_and_the_bug_that_follows() {
    let p = only("rust_panic.log");
    let r = &p.report;
    assert_eq!(r.kind, ReportKind::RustPanic);
    assert_eq!(
        r.title,
        "rust_kernel: panicked at drivers/platform/goldfish/goldfish_address_space.rs:233:21: attempt to add with overflow"
    );
    assert!(
        r.text
            .iter()
            .any(|l| l.contains("kernel BUG at rust/helpers/bug.c:7!"))
    );
    // The panic machinery is skipped: the culprit is the driver's code.
    let trace = r
        .stacks
        .iter()
        .find(|s| s.label == "Call Trace")
        .unwrap_or_else(|| panic!("{:#?}", r.stacks));
    assert_eq!(trace.frames[0].function, "__rustc::rust_begin_unwind");
    assert_eq!(
        trace.frames[2].function,
        "core::panicking::panic_const::panic_const_add_overflow"
    );
    assert_eq!(r.culprit().unwrap().function, "goldfish_allocate_block");
}

#[test]
fn kmemleak_scan_gives_one_report_per_object_and_duplicates_share_a_signature() {
    let (all, total) = parse::kmemleak(&fixture("kmemleak_scan.txt"), 100);
    assert_eq!((all.len(), total), (3, 3));
    let r = &all[0].report;
    assert_eq!(r.kind, ReportKind::Kmemleak);
    assert_eq!(
        r.title,
        "unreferenced object 0xffff888004b2c000 (size 256):"
    );
    assert_eq!(r.stacks[0].label, "backtrace (crc 8d7c5e2a)");
    assert_eq!(r.culprit().unwrap().function, "provoke_leak");
    assert_eq!(r.task.as_ref().unwrap().comm, "gasbench-agent");
    assert_eq!(all[0].report.signature, all[1].report.signature);
    assert_ne!(all[0].report.signature, all[2].report.signature);
    // Bounded: the rest is counted.
    let (some, total) = parse::kmemleak(&fixture("kmemleak_scan.txt"), 1);
    assert_eq!((some.len(), total), (1, 3));
}

#[test]
fn reports_printed_at_once_by_two_tasks_are_kept_apart() {
    let a = fixture("lockdep_circular.log");
    let b = fixture("warning.log");
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let mut mixed: Vec<&str> = Vec::new();
    for i in 0..a.len().max(b.len()) {
        mixed.extend(a.get(i));
        mixed.extend(b.get(i));
    }
    let all = parse_all(&mixed.join("\n"));
    let kinds: Vec<ReportKind> = all.iter().map(|p| p.report.kind).collect();
    assert_eq!(kinds, [ReportKind::Warning, ReportKind::Lockdep]);
    assert!(all.iter().all(|p| !p.truncated));
    assert_eq!(
        all[1].report.culprit().unwrap().function,
        "provoke_lock_inversion"
    );
}

#[test]
fn the_same_report_twice_has_the_same_signature() {
    let text = fixture("ubsan_array_bounds.log");
    let twice = format!("{text}\n{}", text.replace("40.3", "41.9"));
    let all = parse_all(&twice);
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].report.signature, all[1].report.signature);
}

#[test]
fn a_report_cut_off_is_returned_at_the_end_marked_truncated() {
    let text = fixture("kasan_slab_uaf.log");
    let cut: Vec<&str> = text.lines().take(20).collect();
    let all = parse_all(&cut.join("\n"));
    assert_eq!(all.len(), 1);
    assert!(all[0].truncated);
    assert_eq!(all[0].report.kind, ReportKind::Kasan);
}

#[test]
fn an_endless_report_is_capped() {
    let mut p = ReportParser::new();
    let mut out = Vec::new();
    out.extend(p.push("[ 1.0] BUG: sleeping function called from invalid context at x.c:1"));
    for _ in 0..10_000 {
        out.extend(p.push("[ 1.0]  f+0x1/0x2"));
    }
    assert_eq!(out.len(), 1);
    assert!(out[0].truncated);
    assert_eq!(
        out[0].report.text.len(),
        gasbench_events::report::KernelReport::MAX_LINES
    );
}

#[test]
fn plain_boot_lines_and_lone_delimiters_are_no_report() {
    let text = "[    0.000000] Linux version 7.2.12-gasbench\n\
                [    0.100000] ==================================================================\n\
                [    0.100001] just a banner\n\
                [    0.200000] ------------[ cut here ]------------\n\
                [    0.200001] nothing after it\n\
                [    0.300000] WARNING: this line has no location\n\
                [    0.400000] Run /init as init process";
    assert!(parse_all(text).is_empty());
}

#[test]
fn garbage_never_panics() {
    // Every prefix of every fixture, with bytes mangled.
    let mut p = ReportParser::new();
    for name in [
        "kasan_slab_uaf.log",
        "lockdep_circular.log",
        "rust_panic.log",
        "kcsan_data_race.log",
    ] {
        for (i, l) in fixture(name).lines().enumerate() {
            let mangled: String = l
                .chars()
                .enumerate()
                .map(|(j, c)| if (i + j) % 7 == 0 { '\u{1b}' } else { c })
                .collect();
            p.push(&mangled);
            p.push(&l[..l.len() / 2]);
        }
    }
    p.finish();
    let _ = parse::kmemleak("unreferenced object 0x\n\n\0\0", 10);
}
