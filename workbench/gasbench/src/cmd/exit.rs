//! The exit statuses every command shares (`run`, `repro`, `kernel
//! build`, `b4-check`, `merge`), so a CI system can tell "the series is
//! broken" from "the tool broke":
//!
//! - 0: every expectation held (every patch applies and builds);
//! - 1: findings: the series (or the kernel under test) is at fault;
//! - 2: bad input: nothing was run;
//! - 3: the tool or its environment failed (QEMU missing, a build that
//!   failed for reasons the series does not explain): the verdicts are
//!   incomplete.
//!
//! An interrupted run ends with the signal's status (130 for Ctrl-C).

use std::process::ExitCode;

use gasbench_kbuild::error::Blame;

pub const CLEAN: u8 = 0;
pub const FINDINGS: u8 = 1;
pub const BAD_INPUT: u8 = 2;
pub const TOOL_FAILED: u8 = 3;

/// What `--help` says about them.
pub const HELP: &str = "Exit status: 0 every expectation held; 1 findings (the series or the \
kernel under test is at fault); 2 bad input (nothing was run); 3 the tool or its environment \
failed (the verdicts are incomplete); 128 + the signal's number when one stopped it (130 Ctrl-C, \
143 SIGTERM, 129 SIGHUP).";

pub fn code(status: u8) -> ExitCode {
    ExitCode::from(status)
}

/// Ctrl-C (SIGINT): 128 + 2, as a shell reports it.
pub const INTERRUPTED: u8 = 130;

/// The status of a recorded run: its verdict, or 130 when the user
/// stopped it (its verdicts are kept, but they are not the whole run's).
pub fn for_run(summary: &gasbench_trace::RunSummary) -> u8 {
    if summary
        .errors
        .iter()
        .any(|e| gasbench_engine::pipeline::is_interrupted_error(e))
    {
        return INTERRUPTED;
    }
    summary.verdict().exit_status()
}

/// The status for a kernel stage error.
pub fn for_blame(b: Blame) -> u8 {
    match b {
        Blame::Input => BAD_INPUT,
        Blame::Series => FINDINGS,
        Blame::Environment => TOOL_FAILED,
    }
}

/// The worse of two statuses: a tool failure outweighs findings (the
/// verdicts are incomplete), findings outweigh a clean run; bad input
/// stops before anything runs.
pub fn worst(a: u8, b: u8) -> u8 {
    let rank = |s: u8| match s {
        CLEAN => 0,
        FINDINGS => 1,
        TOOL_FAILED => 2,
        BAD_INPUT => 3,
        _ => 4,
    };
    if rank(b) > rank(a) { b } else { a }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_failure_outweighs_findings() {
        assert_eq!(worst(CLEAN, FINDINGS), FINDINGS);
        assert_eq!(worst(TOOL_FAILED, FINDINGS), TOOL_FAILED);
        assert_eq!(worst(FINDINGS, TOOL_FAILED), TOOL_FAILED);
        assert_eq!(worst(BAD_INPUT, TOOL_FAILED), BAD_INPUT);
        assert_eq!(worst(130, TOOL_FAILED), 130);
        assert_eq!(for_blame(Blame::Series), FINDINGS);
        assert_eq!(for_blame(Blame::Environment), TOOL_FAILED);
    }
}
