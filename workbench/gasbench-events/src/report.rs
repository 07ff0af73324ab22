//! Kernel reports: what the kernel's own bug detectors (KASAN, lockdep,
//! KCSAN, UBSAN, kmemleak, the atomic-sleep check) and its plain checks
//! (WARN, BUG, Oops, Rust panics) print, as one record each, attributed to
//! the step and call that were running.

use gasbench_abi::protocol::ThreadId;
use serde::{Deserialize, Serialize};

/// What kind of report, which says which detector wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReportKind {
    /// `BUG: KASAN: …`: use-after-free, out-of-bounds.
    Kasan,
    /// `BUG: KCSAN: data-race in …`.
    Kcsan,
    /// `UBSAN: …`: undefined behaviour (an index or shift out of range).
    Ubsan,
    /// lockdep's `WARNING: possible circular locking dependency detected`
    /// and the rest of its headers.
    Lockdep,
    /// `BUG: sleeping function called from invalid context`.
    AtomicSleep,
    /// kmemleak's `unreferenced object`.
    Kmemleak,
    /// `WARNING: … at …` (WARN_ON and friends).
    Warning,
    /// `BUG: …` and `kernel BUG at …` not claimed by a detector.
    Bug,
    /// `Oops: …`, general protection faults, page faults in the kernel.
    Oops,
    /// `rust_kernel: panicked at …` (a Rust panic, followed by its BUG).
    RustPanic,
    /// `Kernel panic - not syncing: …`.
    Panic,
    /// Soft lockups, hung tasks, RCU stalls.
    Hang,
}

impl ReportKind {
    pub const ALL: [ReportKind; 12] = [
        ReportKind::Kasan,
        ReportKind::Kcsan,
        ReportKind::Ubsan,
        ReportKind::Lockdep,
        ReportKind::AtomicSleep,
        ReportKind::Kmemleak,
        ReportKind::Warning,
        ReportKind::Bug,
        ReportKind::Oops,
        ReportKind::RustPanic,
        ReportKind::Panic,
        ReportKind::Hang,
    ];

    /// The name scenarios and reports use (`kasan`, `atomic-sleep`).
    pub fn name(self) -> &'static str {
        match self {
            ReportKind::Kasan => "kasan",
            ReportKind::Kcsan => "kcsan",
            ReportKind::Ubsan => "ubsan",
            ReportKind::Lockdep => "lockdep",
            ReportKind::AtomicSleep => "atomic-sleep",
            ReportKind::Kmemleak => "kmemleak",
            ReportKind::Warning => "warning",
            ReportKind::Bug => "bug",
            ReportKind::Oops => "oops",
            ReportKind::RustPanic => "rust-panic",
            ReportKind::Panic => "panic",
            ReportKind::Hang => "hang",
        }
    }

    pub fn from_name(name: &str) -> Option<ReportKind> {
        ReportKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The detector that writes it: a kernel profile arms these (the
    /// plain checks, `kernel`, are always there).
    pub fn detector(self) -> &'static str {
        match self {
            ReportKind::Kasan
            | ReportKind::Kcsan
            | ReportKind::Ubsan
            | ReportKind::Lockdep
            | ReportKind::AtomicSleep
            | ReportKind::Kmemleak => self.name(),
            _ => "kernel",
        }
    }

    /// After this report a detector is off for the rest of the boot
    /// (lockdep reports once; a KASAN report taints the kernel with
    /// LOCKDEP_NOW_UNRELIABLE, which turns lockdep off), or the kernel is
    /// tainted beyond trust (an Oops killed a task): the next scenario
    /// needs a fresh boot.
    pub fn spoils_the_boot(self) -> bool {
        matches!(
            self,
            ReportKind::Lockdep
                | ReportKind::Kasan
                | ReportKind::Oops
                | ReportKind::Bug
                | ReportKind::RustPanic
                | ReportKind::Panic
                | ReportKind::Hang
        )
    }
}

/// One line of a stack trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    /// As the kernel printed it, Rust symbols demangled.
    pub function: String,
    /// The symbol as printed when it differs from `function` (a mangled
    /// Rust symbol): what System.map knows it by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    pub offset: u64,
    pub size: u64,
    /// `? ` frames: the unwinder is not sure they are on the stack.
    pub reliable: bool,
    /// `file:line` from the built vmlinux, once decoded; inlined callers
    /// follow, innermost first, as `function (file:line)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inlined: Vec<String>,
}

/// A stack in a report: the call trace, or KASAN's allocation and free
/// stacks, or one side of a KCSAN race.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stack {
    /// `Call Trace`, `Allocated by task 97`, `write to … by task 120`.
    pub label: String,
    pub frames: Vec<Frame>,
}

/// The task a report names (the one that was running).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportTask {
    pub pid: u32,
    pub comm: String,
}

/// Where in the run a report belongs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribution {
    pub scenario: Option<String>,
    pub step: Option<u32>,
    pub call: Option<u64>,
    pub thread: Option<ThreadId>,
    /// How it was attributed, in a few words (`the call's thread`, `the
    /// step running`, `kmemleak scan after the step`).
    pub how: String,
}

/// One kernel report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelReport {
    /// Distinct reports of a run are numbered from 1.
    pub id: u32,
    pub kind: ReportKind,
    /// The report's headline without the console prefix
    /// (`BUG: KASAN: slab-use-after-free in lkdtm_READ_AFTER_FREE+0x1a6/0x280`).
    pub title: String,
    pub task: Option<ReportTask>,
    /// The stack that says where it happened first, then the others.
    pub stacks: Vec<Stack>,
    /// The report as printed (prefixes removed, control characters
    /// replaced, at most [`KernelReport::MAX_LINES`] lines).
    pub text: Vec<String>,
    /// What makes two reports the same report: kind, title without
    /// addresses, the first reliable frames.
    pub signature: String,
    pub attribution: Attribution,
    /// Why the stacks have no file:line (no vmlinux, no debug info, the
    /// decoder failed); empty when they were decoded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub undecoded: String,
}

impl KernelReport {
    pub const MAX_LINES: usize = 400;

    /// The frame that says where: the first reliable frame that is not
    /// the detector's own machinery, in the leading stack (or the next,
    /// when a RIP in the BUG helper is all the first one has).
    pub fn culprit(&self) -> Option<&Frame> {
        self.stacks
            .iter()
            .take(2)
            .flat_map(|s| s.frames.iter())
            .find(|f| f.reliable && !is_machinery(&f.function))
    }

    /// `KASAN: slab-use-after-free in goldfish_release (drivers/…/x.rs:120)`.
    pub fn one_line(&self) -> String {
        let mut s = self.title.clone();
        if let Some(f) = self.culprit()
            && let Some(loc) = &f.location
        {
            s.push_str(&format!(" ({} at {loc})", f.function));
        }
        s
    }
}

/// Functions every report of a kind has on top of its stack: reporting
/// code, not the culprit.
pub fn is_machinery(function: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "dump_stack",
        "show_stack",
        "print_report",
        "print_address_description",
        "kasan_",
        "__kasan_",
        "__asan_",
        "check_region",
        "ubsan_",
        "__ubsan_",
        "lockdep_",
        "__lock_acquire",
        "mutex_lock",
        "__mutex_lock",
        "_raw_spin_lock",
        "_raw_read_lock",
        "_raw_write_lock",
        "down_read",
        "down_write",
        "lock_acquire",
        "check_noncircular",
        "check_prev_add",
        "validate_chain",
        "print_circular_bug",
        "__might_resched",
        "__might_sleep",
        "might_sleep",
        "kcsan_",
        "__kcsan_",
        "__tsan_",
        "__warn",
        "warn_slowpath",
        "report_bug",
        "handle_bug",
        "exc_invalid_op",
        "asm_exc_invalid_op",
        "kmemleak_",
        "__kmalloc",
        "kmalloc_",
        "__kmem_cache",
        "kmem_cache_alloc",
        "slab_post_alloc_hook",
        "__alloc_pages",
        "alloc_pages",
        "__alloc_frozen_pages",
        "rust_begin_unwind",
        "__rustc::",
        "core::panicking::",
        "rust_helper_BUG",
    ];
    PREFIXES.iter().any(|p| function.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_by_name_and_name_their_detector() {
        for k in ReportKind::ALL {
            assert_eq!(ReportKind::from_name(k.name()), Some(k));
            // JSON says the same name scenarios use.
            assert_eq!(serde_json::to_value(k).unwrap(), k.name());
        }
        assert_eq!(ReportKind::AtomicSleep.detector(), "atomic-sleep");
        assert_eq!(ReportKind::Warning.detector(), "kernel");
        assert!(ReportKind::Lockdep.spoils_the_boot());
        assert!(ReportKind::Kasan.spoils_the_boot());
        assert!(!ReportKind::Ubsan.spoils_the_boot());
    }

    #[test]
    fn the_culprit_skips_the_reporting_code() {
        let f = |name: &str, reliable: bool| Frame {
            function: name.into(),
            symbol: None,
            offset: 0,
            size: 0,
            reliable,
            location: Some(format!("{name}.c:1")),
            inlined: vec![],
        };
        let r = KernelReport {
            id: 1,
            kind: ReportKind::Kasan,
            title: "BUG: KASAN: slab-use-after-free in x".into(),
            task: None,
            stacks: vec![Stack {
                label: "Call Trace".into(),
                frames: vec![
                    f("dump_stack_lvl", true),
                    f("print_report", true),
                    f("goldfish_open", false),
                    f("kasan_report", true),
                    f("goldfish_release", true),
                ],
            }],
            text: vec![],
            signature: String::new(),
            attribution: Attribution::default(),
            undecoded: String::new(),
        };
        assert_eq!(r.culprit().unwrap().function, "goldfish_release");
        assert!(
            r.one_line()
                .ends_with("(goldfish_release at goldfish_release.c:1)")
        );
    }
}
