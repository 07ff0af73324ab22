//! What a scenario compiles to: the guest's [`Bundle`] and the host's
//! [`HostPlan`] (steps with their source lines, sync points and what the
//! host does at each, the device fault plan, expectations, timeouts).

use std::sync::Arc;
use std::time::Duration;

use gasbench_abi::bundle::Bundle;
use gasbench_abi::expr::IntExpr;
use serde::Serialize;

/// A byte range in the scenario file, for reporting against it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(r: std::ops::Range<usize>) -> Span {
        Span {
            start: r.start,
            end: r.end.max(r.start),
        }
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

impl From<Span> for miette::SourceSpan {
    fn from(s: Span) -> Self {
        (s.start, s.len()).into()
    }
}

/// A compiled scenario.
#[derive(Clone, Debug)]
pub struct Compiled {
    /// Where it came from (a path or a name) and its text, for diagnostics
    /// the engine reports against the file later (a fault plan the device
    /// refuses, a timeout).
    pub origin: String,
    pub source: Arc<str>,
    pub bundle: Bundle,
    pub plan: HostPlan,
    /// Keep what the run observed (call records, device snapshots, step
    /// errors, console lines) in its [`crate::Report`], for a caller that
    /// judges the run itself (the explorer). Off for ordinary scenarios:
    /// a long run's call records are not kept twice.
    pub record: bool,
}

/// 1-based line and column (in characters) of a byte offset. Offsets past
/// the end or inside a character are clamped.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = text[line_start..offset].chars().count() + 1;
    (line, col)
}

impl Compiled {
    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        line_col(&self.source, offset)
    }
}

/// Everything the host needs to drive and judge a run.
#[derive(Clone, Debug, Serialize)]
pub struct HostPlan {
    pub scenario: String,
    pub description: Option<String>,
    /// For the whole scenario, boot excluded.
    pub timeout: Duration,
    /// What the guest must provide.
    pub requires: Requires,
    /// The device's fault plan from the start (`[device] faults`).
    pub initial_faults: Option<FaultPlan>,
    /// Device configuration (`[device] config`), for the device model.
    pub device_config: Option<Opaque>,
    /// Every step, indexed by step id (document order, nested included).
    pub steps: Vec<StepInfo>,
    /// Indexed by sync id.
    pub syncs: Vec<SyncPoint>,
    pub expectations: Vec<Expectation>,
    /// Kernel log rules for the whole run (console lines of any step).
    pub kernel_log: KernelLogRules,
    /// The kernel profiles the scenario is for (`[scenario] profiles`);
    /// empty: every profile. Elsewhere it is skipped, saying why.
    pub profiles: Vec<String>,
    /// A kernel report (KASAN, lockdep, WARN, …) that no `expect.report`
    /// asked for fails the step it is attributed to (`[kernel_log]
    /// default_checks = false` turns this off with the line checks).
    pub reports_fail: bool,
}

impl HostPlan {
    pub fn step(&self, id: u32) -> Option<&StepInfo> {
        self.steps.get(id as usize)
    }

    pub fn sync(&self, id: u32) -> Option<&SyncPoint> {
        self.syncs.get(id as usize)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Requires {
    /// A goldfish address space device and its driver.
    pub goldfish: bool,
    /// The mkdirat2 syscall (`gasbench.mkdirat2=N`).
    pub mkdirat2: bool,
    /// kselftest binaries the steps run, by guest path.
    pub kselftests: Vec<String>,
}

/// A TOML value the scenario language carries without interpreting it
/// (fault rules, device configuration), as JSON, with its span.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Opaque {
    pub value: serde_json::Value,
    pub span: Span,
}

/// A device fault plan: the rules as written, one per array element. The
/// device crate interprets them; the spans let the engine report a rule
/// the device refuses against the scenario file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FaultPlan {
    pub rules: Vec<Opaque>,
    pub span: Span,
}

impl FaultPlan {
    /// The rules as one JSON array.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Array(self.rules.iter().map(|r| r.value.clone()).collect())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepKind {
    /// A call the agent makes (`open`, `ioctl`, `mkdirat2`, …).
    Call {
        op: String,
    },
    /// Steps run in order on the same thread.
    Block,
    /// Steps run on `threads` threads at once.
    Group {
        threads: u32,
    },
    /// Steps run in a forked child.
    Fork,
    /// The host acts; the agent waits.
    Host,
    /// The agent waits while the host checks.
    Checkpoint,
    Sleep,
}

#[derive(Clone, Debug, Serialize)]
pub struct StepInfo {
    pub id: u32,
    pub name: String,
    pub kind: StepKind,
    pub parent: Option<u32>,
    /// Line of the step's table in the file (1-based).
    pub line: usize,
    pub span: Span,
    pub timeout: Duration,
    /// Calls the step makes in a complete run, when known statically
    /// (repeats times threads of every enclosing group).
    pub calls: Option<u64>,
    pub capture: Option<String>,
    /// The sync point the agent stops at after this step.
    pub sync: Option<u32>,
    /// Systematic fault injection on the step's call (`inject`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inject: Option<gasbench_abi::bundle::Inject>,
}

/// What the host does when the agent stops after `step`: first the
/// actions, then (if `snapshot`) a device state snapshot for the step's
/// device expectations; then it sends `Resume`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SyncPoint {
    pub id: u32,
    pub step: u32,
    pub actions: Vec<HostAction>,
    pub snapshot: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum HostAction {
    /// QMP `device_del` of the goldfish device; the engine waits for
    /// `DEVICE_DELETED` (the guest has unbound the driver).
    DeviceDel,
    /// QMP `device_add` of the goldfish device again.
    DeviceAdd,
    /// Replace the device's fault plan (an empty plan clears it).
    SetFaults(FaultPlan),
}

impl HostAction {
    pub fn name(&self) -> &'static str {
        match self {
            HostAction::DeviceDel => "device_del",
            HostAction::DeviceAdd => "device_add",
            HostAction::SetFaults(_) => "faults",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct KernelLogRules {
    /// Regexes at least one line must match.
    pub must_match: Vec<Pattern>,
    /// Regexes no line may match.
    pub must_not_match: Vec<Pattern>,
}

impl KernelLogRules {
    pub fn is_empty(&self) -> bool {
        self.must_match.is_empty() && self.must_not_match.is_empty()
    }
}

/// A regular expression as written (validated at compile time).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Pattern {
    pub regex: String,
    pub span: Span,
}

/// One expectation: a check tied to a step, with where it was written.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Expectation {
    pub id: usize,
    pub step: u32,
    pub check: Check,
    pub span: Span,
    /// True when nobody wrote it: the default `ok = true`.
    pub implicit: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Check {
    /// Every call of the step succeeded (`true`) or failed (`false`).
    Ok { ok: bool },
    /// Every call of the step failed with this errno.
    Errno { errno: String },
    /// Every call's return value matches.
    Ret { matcher: Matcher },
    /// A field of every call's `args_out` matches.
    Out { field: String, matcher: Matcher },
    /// The step made exactly this many calls.
    Calls { count: u64 },
    /// The device state at the step's sync point.
    Device { check: DeviceCheck },
    /// Console lines attributed to the step.
    KernelLog { rules: KernelLogRules },
    /// The kselftest's KTAP results.
    Ktap { check: KtapCheck },
    /// The host action(s) at the step's sync point succeeded (`true`) or
    /// failed (`false`).
    Host { ok: bool },
    /// The step made the kernel report this (`expect.report = "kasan"`):
    /// a detector proven to fire. Such reports do not fail the step.
    Report { kinds: Vec<String> },
    /// What kmemleak found after the step (`expect.kernel.leaks`).
    Leaks { matcher: Matcher },
    /// Under fault injection, every attempt in which the kernel failed a
    /// fault point either succeeded or failed cleanly with one of these
    /// errnos, leaving the descriptor table (and, for a call that makes
    /// a path, the path) as it was when it failed.
    Injected { errnos: Vec<String> },
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum DeviceCheck {
    Handles {
        matcher: Matcher,
    },
    Blocks {
        matcher: Matcher,
    },
    PingPages {
        matcher: Matcher,
    },
    /// A block at this offset is allocated (`true`) or not (`false`).
    Block {
        offset: IntExpr,
        present: bool,
    },
    /// No block is allocated and the free list is one block covering the
    /// whole shared area (freed neighbours were merged).
    AllFree,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum KtapCheck {
    /// The plan was printed, every planned test reported, none failed.
    AllPass,
    Planned {
        count: u32,
    },
    /// Each named test reported this status.
    Status {
        status: String,
        tests: Vec<String>,
    },
}

/// A comparison of an observed value with an expected one.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Matcher {
    pub op: Op,
    pub value: Expected,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// All these bits are set.
    BitsSet,
    /// None of these bits is set.
    BitsClear,
    /// The string (or some element of a list) matches the regex.
    Matches,
    /// The string (and every element of a list) does not match.
    NotMatches,
    /// The list has this element, or the string this substring.
    Contains,
    NotContains,
}

impl Op {
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::BitsSet => "has bits",
            Op::BitsClear => "lacks bits",
            Op::Matches => "matches",
            Op::NotMatches => "does not match",
            Op::Contains => "contains",
            Op::NotContains => "does not contain",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Expected {
    Int(IntExpr),
    Str(String),
    Bool(bool),
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expected::Int(IntExpr::Lit(v)) if *v > 4096 => write!(f, "{v:#x}"),
            Expected::Int(e) => write!(f, "{e}"),
            Expected::Str(s) => write!(f, "{s:?}"),
            Expected::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.op {
            Op::Eq => write!(f, "{}", self.value),
            op => write!(f, "{} {}", op.symbol(), self.value),
        }
    }
}
