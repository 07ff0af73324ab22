//! VM events: QEMU's life, QMP, the guest console.

use serde::{Deserialize, Serialize};

/// How serious a console line is, from the kernel's own markers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsoleSeverity {
    Normal,
    /// `WARNING:` and friends.
    Warn,
    /// `BUG:`, `Oops`, `Kernel panic`, `Call Trace:`.
    Bug,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum VmEvent {
    /// A child process (qemu, virtiofsd, device server) started.
    ProcessStarted { name: String, pid: u32 },
    /// A child process exited; `expected` is false when it died on us.
    ProcessExited {
        name: String,
        status: String,
        expected: bool,
    },
    /// The VM's run state as QMP reports it (`running`, `paused`, …).
    State { status: String },
    /// A QMP event, verbatim.
    Qmp {
        name: String,
        data: serde_json::Value,
    },
    /// A line on the agent port that is not a protocol message (a guest
    /// agent that crashed mid-line, a stray print).
    AgentText { line: String },
    /// A line from the guest console.
    Console {
        line: String,
        severity: ConsoleSeverity,
    },
    /// A kernel report (KASAN, lockdep, WARN, …) recognised in the
    /// console or a kmemleak scan, decoded and attributed.
    KernelReport(Box<crate::report::KernelReport>),
    /// The same report again (same signature): counted, not repeated.
    KernelReportAgain {
        id: u32,
        /// How many times it has been seen now, this one included.
        count: u32,
        attribution: crate::report::Attribution,
    },
    /// How the VM's host processes are confined, once per boot: every
    /// protection, in force or not, and why.
    Confinement { protections: Vec<Protection> },
}

/// One protection of the host against the guest and whether it is in
/// force (`QEMU seccomp`, `QEMU user`, `share read-only`, …).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Protection {
    pub name: String,
    pub active: bool,
    /// How it is set up, or why it could not be.
    pub detail: String,
}
