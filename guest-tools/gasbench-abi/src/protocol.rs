//! The agent's wire protocol: one JSON object per line, in both directions,
//! over the guest's virtio-serial port named [`PORT_NAME`] (a unix socket on
//! the host).
//!
//! The host sends [`HostMsg`]; the agent answers with a stream of
//! [`AgentMsg`]. A session looks like this:
//!
//! ```text
//! agent: Ready
//! host:  RunBundle { id: 1, path: "bundles/1.json" }
//! agent: BundleBegin, Thread(main), StepBegin, CallBegin, CallEnd, StepEnd, …
//! agent: SyncWait { sync: 0 }          ← the agent stops here
//! host:  (snapshots the device, runs device_del, …) Resume { sync: 0 }
//! agent: StepBegin, …, BundleEnd
//! host:  Shutdown
//! ```
//!
//! Every call the agent makes on behalf of a scenario is bracketed by
//! [`AgentMsg::CallBegin`] and [`AgentMsg::CallEnd`]. The agent writes
//! `CallBegin` unbuffered immediately before the syscall; the write to the
//! port returns only once QEMU has taken the bytes, so it reaches the host
//! before the syscall's first MMIO does. The host uses that bracket to
//! attribute device register accesses to the call that caused them.
//!
//! The agent does not judge: it reports what each call returned, and the
//! host evaluates expectations from the [`CallRecord`]s.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Bumped on every incompatible change; the agent announces it in `Ready`.
///
/// 2: `Resume`, `SyncWait`, `Thread`, `Output`, `BundleBegin`; `thread` on
///    step messages; `iteration` on call records; `missing` in `Ready`.
pub const PROTOCOL_VERSION: u32 = 2;

/// The name of the virtio-serial port the agent talks on
/// (`/sys/class/virtio-ports/vportNpM/name`).
pub const PORT_NAME: &str = "org.gasbench.agent";

/// The virtiofs tag of the share that carries bundles and artifacts.
pub const SHARE_TAG: &str = "gasbench";

/// Where the agent mounts the share in the guest.
pub const SHARE_MOUNT: &str = "/mnt/gasbench";

/// Kernel command line parameter that tells the agent mkdirat2's syscall
/// number (`gasbench.mkdirat2=473`): it differs per base tree.
pub const CMDLINE_MKDIRAT2: &str = "gasbench.mkdirat2";

/// The longest line either side sends, newline included. The host drops
/// a longer line from the agent's port whole (a piece of a message is
/// not a message) and says so; the agent never sends one (a call whose
/// record would be longer is reported without its decoded output).
/// Generous: a `read_file` of 1 MiB of binary text escapes to at most
/// 6 MiB of JSON.
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// Identifies one call made by the agent, unique within a boot (also across
/// the agent's forked children).
pub type CallId = u64;

/// Identifies one thread of execution (a thread of a parallel group, or a
/// forked child process), unique within a boot. The bundle's main thread
/// is announced like any other.
pub type ThreadId = u32;

/// Host → agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum HostMsg {
    /// Run the compiled bundle found at `path` (relative to the share).
    RunBundle { id: u64, path: String },
    /// Continue after the agent stopped at sync point `sync`.
    Resume { bundle: u64, sync: u32 },
    /// Flush, sync and power off.
    Shutdown,
    /// Run an interactive shell (busybox `sh`) on the console, ttyS0,
    /// until it exits (`gasbench shell`); answered by `ShellEnded`.
    Shell,
}

/// Agent → host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub enum AgentMsg {
    /// The agent has mounted what it could and waits for work.
    Ready(Ready),
    /// A bundle was read and starts.
    BundleBegin {
        bundle: u64,
        scenario: String,
        steps: u32,
    },
    /// A thread of execution starts running steps: the bundle's main
    /// thread (`parent` = None), a thread of a parallel group, or a forked
    /// child process. Captured values are inherited from `parent`.
    Thread {
        thread: ThreadId,
        parent: Option<ThreadId>,
        /// The group or fork step that started it (None for main).
        step: Option<u32>,
        pid: u32,
    },
    /// A scenario step starts on `thread`.
    StepBegin {
        bundle: u64,
        step: u32,
        thread: ThreadId,
        name: String,
    },
    /// A call is about to enter the kernel.
    CallBegin {
        call: CallId,
        step: u32,
        thread: ThreadId,
        name: String,
    },
    /// The call returned.
    CallEnd(CallRecord),
    /// A step ended on `thread`; `error` is set when the agent itself could
    /// not run it (an unset variable, a missing binary), not when a call
    /// failed.
    StepEnd {
        bundle: u64,
        step: u32,
        thread: ThreadId,
        error: Option<String>,
    },
    /// The agent finished the step `step` and stops at sync point `sync`
    /// until the host sends [`HostMsg::Resume`] with the same numbers.
    SyncWait { bundle: u64, sync: u32, step: u32 },
    /// A line a program run by a step printed (a kselftest's KTAP).
    Output {
        step: u32,
        thread: ThreadId,
        line: String,
    },
    /// One KTAP result line of a kselftest binary, already parsed.
    Ktap(KtapResult),
    /// Free text the agent wants on record (mount failures and the like).
    Log { level: LogLevel, text: String },
    /// What a kmemleak scan found: after `step`, or (`step` None) at the
    /// end of the bundle. `text` is /sys/kernel/debug/kmemleak as read.
    Kmemleak {
        bundle: u64,
        step: Option<u32>,
        text: String,
        /// The file was longer than the agent sends.
        truncated: bool,
        /// The scan could not be made (no kmemleak in this kernel, …).
        error: Option<String>,
    },
    /// The bundle is finished; `error` is set when it stopped early.
    BundleEnd { bundle: u64, error: Option<String> },
    /// The console shell ended: its exit status (128 + signal when one
    /// ended it), or why it could not start.
    ShellEnded { status: i32, error: Option<String> },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ready {
    pub protocol: u32,
    pub kernel_release: String,
    /// Syscall numbers the agent will use, by name (`mkdirat2` → 473).
    /// mkdirat2 is absent when the command line did not give its number.
    pub syscalls: BTreeMap<String, i64>,
    /// Things the agent could not set up (a mount, the share), each said
    /// in a sentence. Empty when everything is there.
    #[serde(default)]
    pub missing: Vec<String>,
    /// Monotonic clock at the time of the message, for rough alignment.
    pub monotonic_ns: u64,
}

/// Everything known about one finished call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    pub call: CallId,
    pub step: u32,
    pub thread: ThreadId,
    /// 0-based repetition of the step (`repeat = N`).
    #[serde(default)]
    pub iteration: u32,
    /// `open`, `ioctl:ALLOCATE_BLOCK`, `ioctl`, `mkdirat2`, `kselftest`, …
    pub name: String,
    pub fd: Option<i32>,
    /// Decoded arguments as passed in.
    pub args_in: serde_json::Value,
    /// Decoded results after the call: in/out structs, stat fields, the
    /// text a file held, a program's exit status.
    pub args_out: serde_json::Value,
    pub ret: i64,
    /// Symbolic errno (`EINVAL`) when the call failed.
    pub errno: Option<String>,
    pub duration_ns: u64,
    /// Under systematic fault injection: which fault number this attempt
    /// armed and whether the kernel consumed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<FaultAttempt>,
}

/// One attempt of a call under fault injection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultAttempt {
    pub fault: crate::bundle::FaultKind,
    /// The fault number armed (`fail-nth`), from 1.
    pub nth: u32,
    /// The kernel reached that fault point and failed it (fail-nth read
    /// back 0); false means the call had fewer fault points.
    pub injected: bool,
    /// The lowest free descriptor before and after the attempt: a failed
    /// call must not keep one reserved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fd_before: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fd_after: Option<i32>,
    /// For a call that makes a path (mkdirat2, mkdirat, open with
    /// O_CREAT): whether it existed before and after the attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_before: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_after: Option<bool>,
}

impl CallRecord {
    /// The call succeeded as far as the kernel is concerned.
    pub fn ok(&self) -> bool {
        self.errno.is_none()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KtapResult {
    pub step: u32,
    #[serde(default)]
    pub thread: ThreadId,
    pub binary: String,
    /// Nesting level: 0 for top-level results, 1 for subtests, …
    #[serde(default)]
    pub depth: u32,
    pub number: u32,
    pub name: String,
    pub status: KtapStatus,
    /// The text after `#` (`SKIP no device`), if any.
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

impl KtapStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KtapStatus::Ok => "ok",
            KtapStatus::NotOk => "not_ok",
            KtapStatus::Skip => "skip",
            KtapStatus::Xfail => "xfail",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Info,
    Warn,
    Error,
}

/// Encode one message as a line (with its `\n`), ready for a single write.
pub fn encode_line<T: Serialize>(msg: &T) -> Vec<u8> {
    // Serializing these types cannot fail: no maps with non-string keys,
    // no floats that are NaN.
    let mut line = serde_json::to_vec(msg).unwrap_or_else(|e| {
        format!(r#"{{"msg":"log","level":"error","text":"encode: {e}"}}"#).into_bytes()
    });
    line.push(b'\n');
    line
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
        let line = encode_line(&msg);
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        assert!(line.ends_with(b"\n"));
        let text = std::str::from_utf8(&line).unwrap();
        assert!(text.starts_with(r#"{"msg":"call_begin""#), "{text}");
        assert_eq!(
            serde_json::from_str::<AgentMsg>(text.trim_end()).unwrap(),
            msg
        );

        let host: HostMsg = serde_json::from_str(r#"{"op":"shutdown"}"#).unwrap();
        assert_eq!(host, HostMsg::Shutdown);
        let host: HostMsg = serde_json::from_str(r#"{"op":"resume","bundle":3,"sync":1}"#).unwrap();
        assert_eq!(host, HostMsg::Resume { bundle: 3, sync: 1 });
    }

    #[test]
    fn strings_with_newlines_stay_on_one_line() {
        let msg = AgentMsg::Output {
            step: 1,
            thread: 0,
            line: "a\nb\r\n".into(),
        };
        let line = encode_line(&msg);
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
    }

    #[test]
    fn call_record_ok_is_the_absence_of_errno() {
        let mut r = CallRecord {
            call: 1,
            step: 0,
            thread: 0,
            iteration: 0,
            name: "close".into(),
            fd: Some(3),
            args_in: serde_json::Value::Null,
            args_out: serde_json::Value::Null,
            ret: 0,
            errno: None,
            duration_ns: 1,
            fault: None,
        };
        assert!(r.ok());
        r.errno = Some("EBADF".into());
        assert!(!r.ok());
    }
}
