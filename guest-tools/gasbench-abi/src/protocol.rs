//! The agent's wire protocol: one JSON object per line, in both directions,
//! over the guest's virtio-serial port (`/dev/hvc1` in the guest, a unix
//! socket on the host).
//!
//! The host sends [`HostMsg`]; the agent answers with a stream of
//! [`AgentMsg`]. Every call the agent makes on behalf of a scenario is
//! bracketed by [`AgentMsg::CallBegin`] and [`AgentMsg::CallEnd`]: the host
//! uses that bracket to attribute the device register accesses that happen
//! in between to the call that caused them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Bumped on every incompatible change; the agent announces it in `Ready`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Identifies one call made by the agent, unique within a boot.
pub type CallId = u64;

/// Host → agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum HostMsg {
    /// Run the compiled scenario found at `path` (relative to the share).
    RunBundle { id: u64, path: String },
    /// Flush, sync and power off.
    Shutdown,
}

/// Agent → host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub enum AgentMsg {
    /// The agent is PID 1, has mounted what it needs and waits for work.
    Ready(Ready),
    /// A scenario step starts.
    StepBegin {
        bundle: u64,
        step: u32,
        name: String,
    },
    /// A call is about to enter the kernel.
    CallBegin {
        call: CallId,
        step: u32,
        thread: u32,
        name: String,
    },
    /// The call returned.
    CallEnd(CallRecord),
    /// A step ended; `error` is set when the agent itself could not run it
    /// (a bad path, a missing binary), not when a call failed.
    StepEnd {
        bundle: u64,
        step: u32,
        error: Option<String>,
    },
    /// One line of KTAP from a kselftest binary, already parsed.
    Ktap(KtapResult),
    /// Free text the agent wants on record (mount failures and the like).
    Log { level: LogLevel, text: String },
    /// The bundle is finished.
    BundleEnd { bundle: u64 },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ready {
    pub protocol: u32,
    pub kernel_release: String,
    /// Syscall numbers the agent will use, by name (`mkdirat2` → 473).
    pub syscalls: BTreeMap<String, i64>,
    /// Monotonic clock at the time of the message, for rough alignment.
    pub monotonic_ns: u64,
}

/// Everything known about one finished call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    pub call: CallId,
    pub step: u32,
    pub thread: u32,
    /// `open`, `ioctl:ALLOCATE_BLOCK`, `mkdirat2`, …
    pub name: String,
    pub fd: Option<i32>,
    /// Decoded arguments as passed in.
    pub args_in: serde_json::Value,
    /// Decoded in/out arguments after the call (for `_IOWR` structs).
    pub args_out: serde_json::Value,
    pub ret: i64,
    /// Symbolic errno (`EINVAL`) when `ret` signals failure.
    pub errno: Option<String>,
    pub duration_ns: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KtapResult {
    pub step: u32,
    pub binary: String,
    pub number: u32,
    pub name: String,
    pub status: KtapStatus,
    pub directive: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KtapStatus {
    Ok,
    NotOk,
    Skip,
    Xfail,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Info,
    Warn,
    Error,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_tagged_single_line_json() {
        let msg = AgentMsg::CallBegin {
            call: 7,
            step: 2,
            thread: 0,
            name: "ioctl:PING".into(),
        };
        let line = serde_json::to_string(&msg).unwrap();
        assert!(!line.contains('\n'));
        assert!(line.starts_with(r#"{"msg":"call_begin""#), "{line}");
        assert_eq!(serde_json::from_str::<AgentMsg>(&line).unwrap(), msg);

        let host: HostMsg = serde_json::from_str(r#"{"op":"shutdown"}"#).unwrap();
        assert_eq!(host, HostMsg::Shutdown);
    }
}
