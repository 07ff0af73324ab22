//! Console lines to kernel reports.
//!
//! The formats are the kernel's own (7.2): KASAN (mm/kasan/report.c) and
//! KCSAN (kernel/kcsan/report.c) between lines of `=`; lockdep's headers
//! (kernel/locking/lockdep.c) after a line of `=`, ending with the stack
//! after `stack backtrace:`; UBSAN (lib/ubsan.c), WARN (kernel/panic.c)
//! and `kernel BUG at` after `cut here`, ending with `---[ end trace`;
//! `BUG: sleeping function called from invalid context`
//! (kernel/sched/core.c) ending with its stack; Oops and page faults
//! (arch/x86/kernel/dumpstack.c, arch/x86/mm/fault.c) ending with `---[
//! end trace`; Rust panics (rust/kernel/lib.rs) with the BUG that
//! follows; kmemleak's `unreferenced object` blocks (mm/kmemleak.c).
//!
//! With PRINTK_CALLER every line says which task printed it, and reports
//! printed at once by two tasks are kept apart; without it, lines are
//! taken in order.

use std::sync::LazyLock;

use gasbench_events::report::{
    Attribution, Frame, KernelReport, ReportKind, ReportTask, Stack, is_machinery,
};
use regex::Regex;

use crate::line::{Caller, ConsoleLine, sanitize};

/// A report as parsed, before it is numbered and attributed.
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    /// `id` 0 and an empty attribution: the engine fills them in.
    pub report: KernelReport,
    /// Who printed it (PRINTK_CALLER), when the kernel says.
    pub caller: Option<Caller>,
    /// Seconds since boot of its first line.
    pub time: Option<f64>,
    /// It was cut at [`KernelReport::MAX_LINES`] or at the end of the
    /// input without its closing line.
    pub truncated: bool,
}

/// How an open report ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// A line of `=` (KASAN, KCSAN).
    Equals,
    /// `---[ end trace` (WARN, BUG, Oops, UBSAN, Rust panics).
    TraceMarker,
    /// `</TASK>`, the end of the stack dump.
    StackDump,
    /// `</TASK>` after `stack backtrace:` (lockdep prints other stacks
    /// before its own).
    LockdepBacktrace,
    /// One line.
    Single,
}

/// A line that may start a report once the next line says which.
#[derive(Clone, Debug)]
enum Opener {
    /// A line of `=`.
    Equals(String),
    /// `------------[ cut here ]------------`.
    CutHere(String),
}

#[derive(Debug)]
struct Open {
    key: Option<Caller>,
    kind: ReportKind,
    end: End,
    title: String,
    lines: Vec<String>,
    time: Option<f64>,
    seen_backtrace: bool,
}

#[derive(Debug)]
struct Pending {
    key: Option<Caller>,
    opener: Opener,
    time: Option<f64>,
    /// Blank lines seen since the opener.
    blanks: u8,
}

/// Lines in, reports out.
#[derive(Debug, Default)]
pub struct ReportParser {
    open: Vec<Open>,
    pending: Vec<Pending>,
}

/// At most this many reports are open at once (one per task printing).
const MAX_OPEN: usize = 16;

impl ReportParser {
    pub fn new() -> ReportParser {
        ReportParser::default()
    }

    /// Feed one console line (with or without its prefixes); returns the
    /// reports it completed.
    pub fn push(&mut self, raw: &str) -> Vec<Parsed> {
        let line = ConsoleLine::parse(raw);
        let mut done = Vec::new();
        self.push_line(line, &mut done);
        done
    }

    /// Everything still open, as it is (the console ended, the step
    /// ended without the report's closing line).
    pub fn finish(&mut self) -> Vec<Parsed> {
        self.pending.clear();
        let open = std::mem::take(&mut self.open);
        open.into_iter().map(|o| close(o, true)).collect()
    }

    /// True when a report is being read (it may yet complete).
    pub fn is_reading(&self) -> bool {
        !self.open.is_empty()
    }

    fn push_line(&mut self, line: ConsoleLine, done: &mut Vec<Parsed>) {
        let key = line.caller;
        let text = line.text;
        let trimmed = text.trim();

        if let Some(i) = self.open.iter().position(|o| o.key == key) {
            // A panic ends whatever was being printed.
            if trimmed.starts_with("Kernel panic - not syncing") {
                let o = self.open.remove(i);
                done.push(close(o, false));
            } else {
                let o = &mut self.open[i];
                o.lines.push(text.clone());
                if trimmed == "stack backtrace:" {
                    o.seen_backtrace = true;
                }
                if ends(o, trimmed) {
                    let o = self.open.remove(i);
                    done.push(close(o, false));
                } else if o.lines.len() >= KernelReport::MAX_LINES {
                    let o = self.open.remove(i);
                    done.push(close(o, true));
                }
                return;
            }
        }

        if let Some(i) = self.pending.iter().position(|p| p.key == key) {
            if trimmed.is_empty() && self.pending[i].blanks < 2 {
                self.pending[i].blanks += 1;
                return;
            }
            let p = self.pending.remove(i);
            if let Some((kind, end)) = decide(&p.opener, trimmed) {
                let first = match &p.opener {
                    Opener::Equals(l) | Opener::CutHere(l) => l.clone(),
                };
                self.open_report(
                    Open {
                        key,
                        kind,
                        end,
                        title: trimmed.to_string(),
                        lines: vec![first, text.clone()],
                        time: p.time,
                        seen_backtrace: false,
                    },
                    done,
                );
                return;
            }
            // Not a report after all: the line may start one itself.
        }

        match start(trimmed) {
            Some(Start::Opener(o)) => {
                if self.pending.len() >= MAX_OPEN {
                    self.pending.remove(0);
                }
                self.pending.push(Pending {
                    key,
                    opener: o,
                    time: line.time,
                    blanks: 0,
                });
            }
            Some(Start::Report(kind, end)) => self.open_report(
                Open {
                    key,
                    kind,
                    end,
                    title: trimmed.to_string(),
                    lines: vec![text.clone()],
                    time: line.time,
                    seen_backtrace: false,
                },
                done,
            ),
            None => {}
        }
    }

    fn open_report(&mut self, o: Open, done: &mut Vec<Parsed>) {
        if o.end == End::Single {
            done.push(close(o, false));
            return;
        }
        if self.open.len() >= MAX_OPEN {
            let oldest = self.open.remove(0);
            done.push(close(oldest, true));
        }
        self.open.push(o);
    }
}

enum Start {
    Opener(Opener),
    Report(ReportKind, End),
}

fn is_equals_line(t: &str) -> bool {
    t.len() >= 20 && t.bytes().all(|b| b == b'=')
}

const CUT_HERE: &str = "------------[ cut here ]------------";

fn start(t: &str) -> Option<Start> {
    if is_equals_line(t) {
        return Some(Start::Opener(Opener::Equals(t.to_string())));
    }
    if t == CUT_HERE {
        return Some(Start::Opener(Opener::CutHere(t.to_string())));
    }
    let report = |k, e| Some(Start::Report(k, e));
    if t.starts_with("Kernel panic - not syncing") {
        return report(ReportKind::Panic, End::Single);
    }
    if t.starts_with("BUG: KASAN:") {
        return report(ReportKind::Kasan, End::Equals);
    }
    if t.starts_with("BUG: KCSAN:") {
        return report(ReportKind::Kcsan, End::Equals);
    }
    if t.starts_with("UBSAN:") {
        return report(ReportKind::Ubsan, End::TraceMarker);
    }
    if t.starts_with("BUG: sleeping function called from invalid context")
        || t.starts_with("BUG: scheduling while atomic")
    {
        return report(ReportKind::AtomicSleep, End::StackDump);
    }
    if t.starts_with("unreferenced object 0x") {
        return report(ReportKind::Kmemleak, End::StackDump);
    }
    if t.contains("panicked at ") && (t.starts_with("rust_kernel:") || t.starts_with("panicked at"))
    {
        return report(ReportKind::RustPanic, End::TraceMarker);
    }
    if t.starts_with("watchdog: BUG: soft lockup")
        || (t.starts_with("INFO: task ") && t.contains("blocked for more than"))
        || (t.starts_with("rcu: INFO:") && t.contains("stall"))
    {
        return report(ReportKind::Hang, End::StackDump);
    }
    if t.starts_with("BUG: kernel NULL pointer dereference")
        || t.starts_with("BUG: unable to handle page fault")
        || t.starts_with("BUG: unable to handle kernel")
        || t.starts_with("Oops:")
        || t.starts_with("general protection fault")
    {
        return report(ReportKind::Oops, End::TraceMarker);
    }
    if t.starts_with("kernel BUG at ") || t.starts_with("BUG: ") {
        return report(ReportKind::Bug, End::TraceMarker);
    }
    if t.starts_with("WARNING: ") && t.contains(" at ") {
        return report(ReportKind::Warning, End::TraceMarker);
    }
    None
}

/// lockdep's report headers (kernel/locking/lockdep.c, lockdep_proc and
/// RCU's lockdep_rcu_suspicious): `WARNING: …` after a line of `=`.
fn is_lockdep_header(t: &str) -> bool {
    const HEADERS: &[&str] = &[
        "WARNING: possible circular locking dependency detected",
        "WARNING: possible recursive locking detected",
        "WARNING: inconsistent lock state",
        "WARNING: possible irq lock inversion dependency detected",
        "WARNING: bad unlock balance detected!",
        "WARNING: bad contention detected!",
        "WARNING: suspicious RCU usage",
        "WARNING: lock held when returning to user space!",
        "WARNING: held lock freed!",
        "WARNING: held lock freed while held",
        "WARNING: Nested lock was not taken",
        "WARNING: chain_key collision",
        "WARNING: lock held by a task that exited",
        "BUG: held lock freed!",
        "BUG: MAX_LOCKDEP",
        "BUG: MAX_LOCK_DEPTH too low!",
        "BUG: looking up invalid subclass",
    ];
    HEADERS.iter().any(|h| t.starts_with(h))
        || (t.starts_with("WARNING: ")
            && t.contains("-safe -> ")
            && t.contains("-unsafe lock order"))
}

fn decide(opener: &Opener, t: &str) -> Option<(ReportKind, End)> {
    match opener {
        Opener::Equals(_) => {
            if t.starts_with("BUG: KASAN:") {
                Some((ReportKind::Kasan, End::Equals))
            } else if t.starts_with("BUG: KCSAN:") {
                Some((ReportKind::Kcsan, End::Equals))
            } else if is_lockdep_header(t) {
                Some((ReportKind::Lockdep, End::LockdepBacktrace))
            } else if t.starts_with("BUG: KFENCE:") {
                Some((ReportKind::Bug, End::Equals))
            } else {
                None
            }
        }
        Opener::CutHere(_) => {
            if t.starts_with("UBSAN:") {
                Some((ReportKind::Ubsan, End::TraceMarker))
            } else if t.starts_with("WARNING: ") {
                Some((ReportKind::Warning, End::TraceMarker))
            } else if t.starts_with("kernel BUG at ") || t.starts_with("BUG: ") {
                Some((ReportKind::Bug, End::TraceMarker))
            } else if t.contains("panicked at ") {
                Some((ReportKind::RustPanic, End::TraceMarker))
            } else {
                None
            }
        }
    }
}

fn ends(o: &Open, t: &str) -> bool {
    match o.end {
        End::Equals => is_equals_line(t),
        End::TraceMarker => t.starts_with("---[ end trace"),
        End::StackDump => t == "</TASK>",
        End::LockdepBacktrace => o.seen_backtrace && t == "</TASK>",
        End::Single => true,
    }
}

static FRAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(\? )?(?:\[<[0-9a-f]+>\] )?([A-Za-z_.$][A-Za-z0-9_.$]*)\+0x([0-9a-f]+)/0x([0-9a-f]+)(?: \[([A-Za-z0-9_]+)\])?$",
    )
    .expect("frame regex")
});
static RIP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^RIP: 0010:([A-Za-z_.$][A-Za-z0-9_.$]*)\+0x([0-9a-f]+)/0x([0-9a-f]+)")
        .expect("rip regex")
});
static CPU_LINE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\bPID: (\d+) Comm: (\S+)").expect("cpu regex"));
static BY_TASK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r" by task (\S+)/(\d+)$").expect("task regex"));
static SLEEP_TASK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\bpid: (\d+), name: (\S+)").expect("sleep regex"));
static WARN_TASK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"CPU#\d+: (\S+)/(\d+)$").expect("warn regex"));
static LEAK_TASK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"comm "([^"]*)", pid (\d+)"#).expect("leak regex"));
static LOCKDEP_TASK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(\S+)/(\d+) is trying to (?:acquire|release)").expect("lockdep regex")
});
/// A build's absolute source path before the tree's own top directory
/// (UBSAN prints the file name the compiler was given).
static BUILD_PATH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:/[^\s/:]+)+/src/((?:arch|block|crypto|drivers|fs|include|init|io_uring|ipc|kernel|lib|mm|net|rust|samples|security|sound|virt)/)")
        .expect("path regex")
});
static NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"0x[0-9a-fA-F]+|\d+").expect("number regex"));

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s, 16).unwrap_or(0)
}

/// A Rust symbol demangled (`kernel::miscdevice::…`), else as printed.
pub fn demangle(symbol: &str) -> String {
    if symbol.starts_with("_R") || symbol.starts_with("_ZN") {
        match rustc_demangle::try_demangle(symbol) {
            Ok(d) => return sanitize(&format!("{d:#}")),
            Err(_) => return symbol.to_string(),
        }
    }
    symbol.to_string()
}

fn frame(symbol: &str, offset: &str, size: &str, reliable: bool) -> Frame {
    let function = demangle(symbol);
    Frame {
        symbol: (function != symbol).then(|| symbol.to_string()),
        function,
        offset: hex(offset),
        size: hex(size),
        reliable,
        location: None,
        inlined: Vec::new(),
    }
}

/// One stack frame line (`? ` frames are unreliable).
pub fn parse_frame(t: &str) -> Option<Frame> {
    let c = FRAME.captures(t.trim())?;
    Some(frame(&c[2], &c[3], &c[4], c.get(1).is_none()))
}

fn stacks_of(kind: ReportKind, lines: &[String]) -> Vec<Stack> {
    let mut stacks: Vec<Stack> = Vec::new();
    let mut cur: Option<Stack> = None;
    let mut label: Option<String> = None;
    let mut rip: Option<Stack> = None;
    for l in lines {
        let t = l.trim();
        if let Some(f) = parse_frame(t) {
            cur.get_or_insert_with(|| Stack {
                label: label.take().unwrap_or_else(|| "Call Trace".into()),
                frames: Vec::new(),
            })
            .frames
            .push(f);
            continue;
        }
        if matches!(
            t,
            "<TASK>"
                | "</TASK>"
                | "<IRQ>"
                | "</IRQ>"
                | "<NMI>"
                | "</NMI>"
                | "<SOFTIRQ>"
                | "</SOFTIRQ>"
        ) {
            continue;
        }
        if let Some(s) = cur.take() {
            stacks.push(s);
        }
        if rip.is_none()
            && let Some(c) = RIP.captures(t)
        {
            rip = Some(Stack {
                label: "RIP".into(),
                frames: vec![frame(&c[1], &c[2], &c[3], true)],
            });
        }
        if let Some(l) = t.strip_suffix(':').filter(|l| !l.is_empty()) {
            label = Some(l.to_string());
        } else if !t.is_empty() {
            label = None;
        }
    }
    if let Some(s) = cur.take() {
        stacks.push(s);
    }
    // The stack that says where goes first.
    let first_trace = stacks.iter().position(|s| s.label == "Call Trace");
    match kind {
        ReportKind::Kcsan | ReportKind::Kmemleak => {}
        ReportKind::Oops
        | ReportKind::Bug
        | ReportKind::Warning
        | ReportKind::RustPanic
        | ReportKind::Panic => {
            if let Some(i) = first_trace {
                let s = stacks.remove(i);
                stacks.insert(0, s);
            }
            if let Some(r) = rip {
                stacks.insert(0, r);
            }
        }
        _ => {
            if let Some(i) = first_trace {
                let s = stacks.remove(i);
                stacks.insert(0, s);
            }
        }
    }
    stacks
}

fn task_of(lines: &[String]) -> Option<ReportTask> {
    let find = |re: &Regex, pid_first: bool| {
        lines.iter().find_map(|l| {
            let c = re.captures(l.trim())?;
            let (pid, comm) = if pid_first {
                (&c[1], &c[2])
            } else {
                (&c[2], &c[1])
            };
            Some(ReportTask {
                pid: pid.parse().ok()?,
                comm: comm.to_string(),
            })
        })
    };
    find(&CPU_LINE, true)
        .or_else(|| find(&BY_TASK, false))
        .or_else(|| find(&SLEEP_TASK, true))
        .or_else(|| find(&WARN_TASK, false))
        .or_else(|| find(&LEAK_TASK, false))
        .or_else(|| find(&LOCKDEP_TASK, false))
}

/// Kind, title without numbers, and the first frames that are not the
/// detector's own: the same bug reported twice has the same signature.
pub fn signature(kind: ReportKind, title: &str, stacks: &[Stack]) -> String {
    let title = NUMBER.replace_all(title, "N");
    let top: Vec<&str> = stacks
        .first()
        .map(|s| {
            s.frames
                .iter()
                .filter(|f| f.reliable && !is_machinery(&f.function))
                .take(4)
                .map(|f| f.function.as_str())
                .collect()
        })
        .unwrap_or_default();
    format!("{}|{}|{}", kind.name(), title, top.join(","))
}

fn close(o: Open, truncated: bool) -> Parsed {
    let mut title = o.title.clone();
    if o.kind == ReportKind::RustPanic {
        // `panicked at file:line:col:` then the message on its own line.
        if let Some(msg) = o.lines.get(1).map(|l| l.trim())
            && !msg.is_empty()
            && msg != CUT_HERE
            && parse_frame(msg).is_none()
        {
            title = format!("{title} {msg}");
        }
    }
    let title = BUILD_PATH.replace_all(&sanitize(&title), "$1").into_owned();
    let stacks = stacks_of(o.kind, &o.lines);
    let task = task_of(&o.lines);
    let signature = signature(o.kind, &title, &stacks);
    Parsed {
        report: KernelReport {
            id: 0,
            kind: o.kind,
            title,
            task,
            stacks,
            text: o.lines,
            signature,
            attribution: Attribution::default(),
            undecoded: String::new(),
        },
        caller: o.key,
        time: o.time,
        truncated,
    }
}

/// The reports in the text of `/sys/kernel/debug/kmemleak` after a scan:
/// one per `unreferenced object` block. At most `max` are returned (the
/// file can be long); the count of all blocks comes second.
pub fn kmemleak(text: &str, max: usize) -> (Vec<Parsed>, usize) {
    let mut out = Vec::new();
    let mut total = 0;
    let mut cur: Option<Open> = None;
    let flush = |cur: &mut Option<Open>, out: &mut Vec<Parsed>| {
        if let Some(o) = cur.take()
            && out.len() < max
        {
            out.push(close(o, false));
        }
    };
    for raw in text.lines() {
        let line = sanitize(raw);
        let t = line.trim();
        if t.starts_with("unreferenced object 0x") {
            flush(&mut cur, &mut out);
            total += 1;
            cur = Some(Open {
                key: None,
                kind: ReportKind::Kmemleak,
                end: End::StackDump,
                title: t.to_string(),
                lines: vec![line.clone()],
                time: None,
                seen_backtrace: false,
            });
        } else if let Some(o) = &mut cur
            && o.lines.len() < KernelReport::MAX_LINES
        {
            o.lines.push(line.clone());
        }
    }
    flush(&mut cur, &mut out);
    (out, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_reliable_or_not_with_modules_and_addresses() {
        let f = parse_frame(" dump_stack_lvl+0x5d/0x80").unwrap();
        assert_eq!(
            (f.function.as_str(), f.offset, f.size),
            ("dump_stack_lvl", 0x5d, 0x80)
        );
        assert!(f.reliable);
        assert!(
            !parse_frame(" ? __virt_addr_valid+0x1d/0x1a0")
                .unwrap()
                .reliable
        );
        let f = parse_frame("[<ffffffff81a0c0a0>] provoke+0x1e/0x60").unwrap();
        assert_eq!(f.function, "provoke");
        let f = parse_frame(" foo.cold+0x3/0x10 [lkdtm]").unwrap();
        assert_eq!(f.function, "foo.cold");
        assert!(parse_frame("RIP: 0033:0x4a2b7d").is_none());
        assert!(parse_frame("Call Trace:").is_none());
        assert!(parse_frame("f+0x1").is_none());
    }

    #[test]
    fn rust_symbols_are_demangled_and_keep_the_printed_one() {
        let f = parse_frame(
            " _RNvMNtCs1234567890_6kernel10miscdeviceINtB2_20MiscDeviceRegistrationpE7release+0x12/0x40",
        );
        // An invalid mangling stays as printed rather than failing.
        assert!(f.is_some());
        let f = parse_frame(" _RNvCs1QLEhZ2QfLZ_7___rustc17rust_begin_unwind+0x12/0x40").unwrap();
        assert_eq!(f.function, "__rustc::rust_begin_unwind");
        assert_eq!(
            f.symbol.as_deref(),
            Some("_RNvCs1QLEhZ2QfLZ_7___rustc17rust_begin_unwind")
        );
    }

    #[test]
    fn build_paths_in_titles_are_cut_at_the_tree_top() {
        let mut p = ReportParser::new();
        p.push("[ 1.0] ------------[ cut here ]------------");
        p.push("[ 1.0] UBSAN: array-index-out-of-bounds in /var/cache/gasbench/kernel/trees/7.2.12-x/src/drivers/misc/lkdtm/bugs.c:458:16");
        let r = p.finish();
        assert_eq!(
            r[0].report.title,
            "UBSAN: array-index-out-of-bounds in drivers/misc/lkdtm/bugs.c:458:16"
        );
    }

    #[test]
    fn signatures_ignore_addresses_and_numbers() {
        let a = signature(
            ReportKind::Kmemleak,
            "unreferenced object 0xffff888004b2c000 (size 256):",
            &[],
        );
        let b = signature(
            ReportKind::Kmemleak,
            "unreferenced object 0xffff888004b2d100 (size 256):",
            &[],
        );
        assert_eq!(a, b);
    }
}
