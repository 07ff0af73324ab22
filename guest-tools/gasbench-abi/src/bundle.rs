//! The bundle: a compiled scenario as the guest agent runs it.
//!
//! The host compiles a scenario file (gasbench-scenario) into a bundle,
//! writes it as JSON into the virtiofs share and sends
//! [`HostMsg::RunBundle`](crate::protocol::HostMsg::RunBundle). A bundle
//! holds only what the agent needs to make the calls: actions with their
//! arguments (numbers, `${…}` references to captured results, strings that
//! interpolate them), repeats, parallel groups, forked children, and the
//! sync points where it must stop and wait for the host. Expectations stay
//! on the host: the agent does not judge.
//!
//! Every step has an `id` unique in the bundle (nested steps included); the
//! agent reports calls with that id and the host maps it back to the line
//! of the scenario file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::expr::{IntExpr, Template};
use crate::uapi::Ioctl;

/// Bumped on every incompatible change of the bundle format.
pub const BUNDLE_VERSION: u32 = 1;

/// Limits the agent enforces before it runs anything, so that a hostile or
/// broken bundle gets an error message rather than an exhausted guest.
pub mod limits {
    /// Steps in a bundle, nested ones included.
    pub const MAX_STEPS: usize = 10_000;
    /// Nesting of blocks, groups and forks.
    pub const MAX_DEPTH: usize = 8;
    /// Threads of one parallel group.
    pub const MAX_THREADS: u32 = 256;
    /// Repetitions of one step.
    pub const MAX_REPEAT: u32 = 1_000_000;
    /// Bytes of a raw ioctl argument.
    pub const MAX_RAW_BYTES: usize = 1 << 16;
    /// Bytes `read_file` returns.
    pub const MAX_READ_BYTES: u64 = 1 << 20;
    /// File descriptors `exhaust_fds` opens at most.
    pub const MAX_EXHAUST_FDS: u32 = 1 << 20;
    /// Attempts of one call under systematic fault injection.
    pub const MAX_INJECT_ATTEMPTS: u32 = 1_000;
    /// Bytes `write_file` and `write_agent_port` write at most.
    pub const MAX_WRITE_BYTES: u64 = 1 << 30;
    /// Bytes of a kmemleak scan the agent sends.
    pub const MAX_KMEMLEAK_BYTES: usize = 256 << 10;
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bundle {
    pub version: u32,
    pub scenario: String,
    pub steps: Vec<Step>,
    /// Write a marker into the kernel log before and after each call
    /// ([`crate::kmsg`]), so kernel reports can be tied to calls.
    #[serde(default, skip_serializing_if = "is_false")]
    pub kmsg_markers: bool,
    /// Scan for leaks with kmemleak at the start (to forget older ones)
    /// and after the last step, and send what it found.
    #[serde(default, skip_serializing_if = "is_false")]
    pub kmemleak: bool,
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// One step: an action, how often, what to remember of its result, and
/// whether to stop for the host afterwards.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub id: u32,
    pub name: String,
    #[serde(rename = "do")]
    pub action: Action,
    /// Run the action this many times (each run is one call record, with
    /// `iteration` 0..repeat).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub repeat: u32,
    /// Remember the last call's result under this name (`${name}` is its
    /// return value, `${name.field}` a field of its `args_out`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<String>,
    /// The agent enforces this where it can (programs it runs, forked
    /// children); the host enforces it for everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// After the step (all repeats), send `SyncWait` and wait for `Resume`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<u32>,
    /// Systematic fault injection: the call (or a plain block's last
    /// call, after the block's other steps as its set-up) is made once per
    /// fault number until an attempt completes with no fault consumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inject: Option<Inject>,
    /// After the step, scan for leaks with kmemleak and send the result.
    #[serde(default, skip_serializing_if = "is_false")]
    pub kmemleak_scan: bool,
}

/// Which kind of fault `/proc/thread-self/fail-nth` makes happen; the
/// others are kept from counting (their stack-trace filter excludes
/// every address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// kmalloc and kmem_cache_alloc fail (failslab).
    Slab,
    /// alloc_pages fails (fail_page_alloc).
    Page,
    /// copy_from_user / copy_to_user fail (fail_usercopy).
    Usercopy,
}

impl FaultKind {
    pub const ALL: [FaultKind; 3] = [FaultKind::Slab, FaultKind::Page, FaultKind::Usercopy];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Slab => "slab",
            FaultKind::Page => "page",
            FaultKind::Usercopy => "usercopy",
        }
    }

    pub fn from_name(name: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Its directory under /sys/kernel/debug.
    pub fn debugfs_dir(self) -> &'static str {
        match self {
            FaultKind::Slab => "failslab",
            FaultKind::Page => "fail_page_alloc",
            FaultKind::Usercopy => "fail_usercopy",
        }
    }
}

/// Fault numbers `first..=last` in turn, stopping at the first attempt
/// in which no fault was consumed (the call went through every fault
/// point it has).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inject {
    pub fault: FaultKind,
    pub first: u32,
    pub last: u32,
}

fn one() -> u32 {
    1
}

fn is_one(v: &u32) -> bool {
    *v == 1
}

/// Where the agent puts an ioctl's argument. Everything but `Buffer` and
/// `Unaligned` is a bad user pointer the kernel must refuse with EFAULT
/// (`Readonly` only once it tries to write the result back).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArgPtr {
    /// An ordinary writable buffer.
    #[default]
    Buffer,
    /// A writable buffer at an odd address.
    Unaligned,
    /// Address 0.
    Null,
    /// A page that was mapped and unmapped again.
    Unmapped,
    /// An address in the kernel's direct map.
    Kernel,
    /// A page holding the argument, made read-only.
    Readonly,
    /// The first half of the argument at the end of a mapped page, the
    /// rest in the unmapped page after it.
    Straddle,
}

impl ArgPtr {
    pub const ALL: [ArgPtr; 7] = [
        ArgPtr::Buffer,
        ArgPtr::Unaligned,
        ArgPtr::Null,
        ArgPtr::Unmapped,
        ArgPtr::Kernel,
        ArgPtr::Readonly,
        ArgPtr::Straddle,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ArgPtr::Buffer => "buffer",
            ArgPtr::Unaligned => "unaligned",
            ArgPtr::Null => "null",
            ArgPtr::Unmapped => "unmapped",
            ArgPtr::Kernel => "kernel",
            ArgPtr::Readonly => "readonly",
            ArgPtr::Straddle => "straddle",
        }
    }

    pub fn from_name(name: &str) -> Option<ArgPtr> {
        ArgPtr::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// The third argument of a raw ioctl.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RawArg {
    /// A pointer to these bytes (hex), placed as `ptr` says.
    Bytes { hex: String, ptr: ArgPtr },
    /// The integer itself, no buffer.
    Value { value: IntExpr },
}

/// What a step does. Numbers are [`IntExpr`] (a literal or a reference),
/// paths are [`Template`]s.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Action {
    Open {
        path: Template,
        flags: IntExpr,
        mode: IntExpr,
    },
    Openat {
        dir: IntExpr,
        path: Template,
        flags: IntExpr,
        mode: IntExpr,
    },
    Close {
        fd: IntExpr,
    },
    Dup {
        fd: IntExpr,
    },
    /// A goldfish ioctl with typed fields (missing fields are 0).
    Ioctl {
        fd: IntExpr,
        /// [`Ioctl::name`].
        cmd: String,
        fields: BTreeMap<String, IntExpr>,
        #[serde(default)]
        ptr: ArgPtr,
    },
    RawIoctl {
        fd: IntExpr,
        request: IntExpr,
        arg: RawArg,
    },
    /// `syscall(nr_mkdirat2, dir, path, mode, flags)`; the number comes
    /// from the kernel command line.
    Mkdirat2 {
        dir: IntExpr,
        path: Template,
        mode: IntExpr,
        flags: IntExpr,
    },
    Mkdirat {
        dir: IntExpr,
        path: Template,
        mode: IntExpr,
    },
    Unlinkat {
        dir: IntExpr,
        path: Template,
        flags: IntExpr,
    },
    Symlinkat {
        target: Template,
        dir: IntExpr,
        path: Template,
    },
    /// `renameat(AT_FDCWD, from, AT_FDCWD, to)`.
    Rename {
        from: Template,
        to: Template,
    },
    /// `mknodat(dir, path, S_IFIFO | mode, 0)`.
    Mkfifo {
        dir: IntExpr,
        path: Template,
        mode: IntExpr,
    },
    /// Open `path` with `flags` and write the bytes `hex` over and over
    /// until `size` bytes are written or a write fails.
    WriteFile {
        path: Template,
        flags: IntExpr,
        mode: IntExpr,
        hex: String,
        size: u64,
    },
    /// Write the bytes `hex` over and over, `size` bytes in all, raw onto
    /// the agent's own port (then a newline, so the agent's next message
    /// starts a line of its own). A testing aid: it is how a scenario
    /// plays a guest that floods the host with garbage.
    WriteAgentPort {
        hex: String,
        size: u64,
    },
    Fstat {
        fd: IntExpr,
    },
    Fstatat {
        dir: IntExpr,
        path: Template,
        flags: IntExpr,
    },
    Fcntl {
        fd: IntExpr,
        /// An `F_*` name from [`crate::consts::FCNTL_CMDS`].
        cmd: String,
        arg: IntExpr,
    },
    Setrlimit {
        /// An `RLIMIT_*` name.
        resource: String,
        soft: IntExpr,
        hard: IntExpr,
    },
    Getrlimit {
        resource: String,
    },
    /// Open `path` read-only until the kernel refuses (EMFILE) or `max`
    /// descriptors are open; the descriptors stay open.
    ExhaustFds {
        path: Template,
        max: u32,
    },
    ReadFile {
        path: Template,
        max_bytes: u64,
    },
    ListDir {
        path: Template,
    },
    /// Poll until `path` exists (`present`) or is gone; fails with
    /// ETIMEDOUT when the step's timeout passes first.
    WaitPath {
        path: Template,
        present: bool,
    },
    /// Read the kernel log buffer (`/dev/kmsg`), the last `max_lines`.
    Dmesg {
        max_lines: u32,
    },
    Sleep {
        ms: u64,
    },
    /// `mount(source, target, fstype, flags, data)`: a filesystem for the
    /// steps after it (`flags` are `MS_*`).
    Mount {
        source: Template,
        target: Template,
        fstype: String,
        flags: IntExpr,
        data: Template,
    },
    /// `umount2(target, flags)` (`MNT_*`).
    Umount {
        target: Template,
        flags: IntExpr,
    },
    /// Run a kselftest binary, stream and parse its KTAP output.
    Kselftest {
        path: Template,
        #[serde(default)]
        args: Vec<Template>,
    },
    /// Run `steps` in order on `threads` threads at once (each thread runs
    /// them all), or in place on the current thread when `threads` is 0.
    Block {
        threads: u32,
        steps: Vec<Step>,
    },
    /// Run `steps` in a forked child process that then exits without
    /// closing anything, so the kernel's release paths run on exit.
    Fork {
        steps: Vec<Step>,
    },
    /// The host does something here (`what` says what, for the log); the
    /// agent only stops at the step's sync point.
    Host {
        what: String,
    },
    /// Nothing to do: the host checks things at the step's sync point.
    Checkpoint,
}

impl Action {
    /// The nested steps of a block or fork.
    pub fn children(&self) -> &[Step] {
        match self {
            Action::Block { steps, .. } | Action::Fork { steps } => steps,
            _ => &[],
        }
    }

    /// The name calls of this action are reported under.
    pub fn call_name(&self) -> String {
        match self {
            Action::Ioctl { cmd, .. } => format!("ioctl:{cmd}"),
            Action::RawIoctl { .. } => "ioctl".into(),
            other => other.op().to_string(),
        }
    }

    /// The `op` tag.
    pub fn op(&self) -> &'static str {
        match self {
            Action::Open { .. } => "open",
            Action::Openat { .. } => "openat",
            Action::Close { .. } => "close",
            Action::Dup { .. } => "dup",
            Action::Ioctl { .. } => "ioctl",
            Action::RawIoctl { .. } => "raw_ioctl",
            Action::Mkdirat2 { .. } => "mkdirat2",
            Action::Mkdirat { .. } => "mkdirat",
            Action::Unlinkat { .. } => "unlinkat",
            Action::Symlinkat { .. } => "symlinkat",
            Action::Rename { .. } => "rename",
            Action::Mkfifo { .. } => "mkfifo",
            Action::WriteFile { .. } => "write_file",
            Action::WriteAgentPort { .. } => "write_agent_port",
            Action::Fstat { .. } => "fstat",
            Action::Fstatat { .. } => "fstatat",
            Action::Fcntl { .. } => "fcntl",
            Action::Setrlimit { .. } => "setrlimit",
            Action::Getrlimit { .. } => "getrlimit",
            Action::ExhaustFds { .. } => "exhaust_fds",
            Action::ReadFile { .. } => "read_file",
            Action::ListDir { .. } => "list_dir",
            Action::WaitPath { .. } => "wait_path",
            Action::Dmesg { .. } => "dmesg",
            Action::Sleep { .. } => "sleep",
            Action::Mount { .. } => "mount",
            Action::Umount { .. } => "umount",
            Action::Kselftest { .. } => "kselftest",
            Action::Block { .. } => "block",
            Action::Fork { .. } => "fork",
            Action::Host { .. } => "host",
            Action::Checkpoint => "checkpoint",
        }
    }
}

impl Bundle {
    /// Parse and check a bundle as the agent receives it.
    pub fn from_json(text: &str) -> Result<Bundle, String> {
        let bundle: Bundle =
            serde_json::from_str(text).map_err(|e| format!("not a valid bundle: {e}"))?;
        bundle.check()?;
        Ok(bundle)
    }

    /// Every step, depth first, in document order.
    pub fn all_steps(&self) -> Vec<&Step> {
        fn walk<'a>(steps: &'a [Step], out: &mut Vec<&'a Step>) {
            for s in steps {
                out.push(s);
                walk(s.action.children(), out);
            }
        }
        let mut out = Vec::new();
        walk(&self.steps, &mut out);
        out
    }

    /// The limits in [`limits`], the version, unique step ids, known ioctl
    /// names: what the agent relies on before it starts.
    pub fn check(&self) -> Result<(), String> {
        if self.version != BUNDLE_VERSION {
            return Err(format!(
                "bundle version {} is not the agent's {BUNDLE_VERSION}",
                self.version
            ));
        }
        fn depth(steps: &[Step]) -> usize {
            steps
                .iter()
                .map(|s| match &s.action {
                    Action::Block { steps, .. } | Action::Fork { steps } => 1 + depth(steps),
                    _ => 0,
                })
                .max()
                .unwrap_or(0)
        }
        // Serde's recursion limit already bounds the depth of the JSON;
        // this bounds the work the agent does for it.
        if depth(&self.steps) > limits::MAX_DEPTH {
            return Err(format!(
                "blocks are nested deeper than {}",
                limits::MAX_DEPTH
            ));
        }
        let steps = self.all_steps();
        if steps.len() > limits::MAX_STEPS {
            return Err(format!(
                "{} steps; at most {} are allowed",
                steps.len(),
                limits::MAX_STEPS
            ));
        }
        let mut ids = std::collections::BTreeSet::new();
        for s in &steps {
            if !ids.insert(s.id) {
                return Err(format!("step id {} is used twice", s.id));
            }
            if s.repeat > limits::MAX_REPEAT {
                return Err(format!("step {}: repeat {} is too many", s.id, s.repeat));
            }
            if let Some(i) = &s.inject {
                if i.first == 0 || i.last < i.first {
                    return Err(format!(
                        "step {}: fault numbers {}..={} (they count from 1)",
                        s.id, i.first, i.last
                    ));
                }
                if i.last - i.first >= limits::MAX_INJECT_ATTEMPTS {
                    return Err(format!(
                        "step {}: at most {} attempts under fault injection",
                        s.id,
                        limits::MAX_INJECT_ATTEMPTS
                    ));
                }
            }
            match &s.action {
                Action::Block { threads, .. } if *threads > limits::MAX_THREADS => {
                    return Err(format!("step {}: {threads} threads is too many", s.id));
                }
                Action::Ioctl { cmd, fields, .. } => {
                    let ioctl = Ioctl::from_name(cmd)
                        .ok_or_else(|| format!("step {}: unknown ioctl {cmd}", s.id))?;
                    if let Some(f) = fields
                        .keys()
                        .find(|f| !ioctl.layout().iter().any(|(n, _, _)| n == f))
                    {
                        return Err(format!("step {}: {cmd} has no field {f}", s.id));
                    }
                }
                Action::RawIoctl {
                    arg: RawArg::Bytes { hex, .. },
                    ..
                } => {
                    if hex.len() / 2 > limits::MAX_RAW_BYTES {
                        return Err(format!("step {}: raw ioctl argument too large", s.id));
                    }
                    decode_hex(hex).map_err(|e| format!("step {}: {e}", s.id))?;
                }
                Action::Fcntl { cmd, .. }
                    if crate::consts::lookup(crate::consts::FCNTL_CMDS, cmd).is_none() =>
                {
                    return Err(format!("step {}: unknown fcntl command {cmd}", s.id));
                }
                Action::Setrlimit { resource, .. } | Action::Getrlimit { resource }
                    if crate::consts::lookup(crate::consts::RLIMITS, resource).is_none() =>
                {
                    return Err(format!("step {}: unknown resource {resource}", s.id));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Decode a hex string (whitespace allowed between bytes).
pub fn decode_hex(hex: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return Err("hex bytes need an even number of digits".into());
    }
    digits
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).map_err(|_| "not hex".to_string())?;
            u8::from_str_radix(s, 16).map_err(|_| format!("`{s}` is not a hex byte"))
        })
        .collect()
}

/// Encode bytes as lowercase hex.
pub fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(id: u32, action: Action) -> Step {
        Step {
            id,
            name: format!("s{id}"),
            action,
            repeat: 1,
            capture: None,
            timeout_ms: None,
            sync: None,
            inject: None,
            kmemleak_scan: false,
        }
    }

    #[test]
    fn json_round_trip_and_shape() {
        let b = Bundle {
            kmsg_markers: false,
            kmemleak: false,
            version: BUNDLE_VERSION,
            scenario: "t".into(),
            steps: vec![
                Step {
                    capture: Some("dev".into()),
                    ..step(
                        0,
                        Action::Open {
                            path: Template::parse("/dev/null").unwrap(),
                            flags: IntExpr::Lit(2),
                            mode: IntExpr::Lit(0),
                        },
                    )
                },
                step(
                    1,
                    Action::Block {
                        threads: 2,
                        steps: vec![step(
                            2,
                            Action::Ioctl {
                                fd: crate::expr::parse_int_expr("${dev}").unwrap(),
                                cmd: "PING".into(),
                                fields: BTreeMap::new(),
                                ptr: ArgPtr::Buffer,
                            },
                        )],
                    },
                ),
                Step {
                    sync: Some(0),
                    ..step(3, Action::Checkpoint)
                },
            ],
        };
        let json = serde_json::to_string(&b).unwrap();
        assert!(
            json.contains(r#""do":{"op":"open","path":"/dev/null","flags":2,"mode":0}"#),
            "{json}"
        );
        assert!(json.contains(r#""fd":"${dev}""#), "{json}");
        assert!(
            !json.contains("repeat"),
            "default repeat is omitted: {json}"
        );
        let back = Bundle::from_json(&json).unwrap();
        assert_eq!(back, b);
        assert_eq!(back.all_steps().len(), 4);
    }

    #[test]
    fn check_rejects_what_the_agent_cannot_run() {
        let mut b = Bundle {
            kmsg_markers: false,
            kmemleak: false,
            version: BUNDLE_VERSION,
            scenario: "t".into(),
            steps: vec![step(0, Action::Checkpoint), step(0, Action::Checkpoint)],
        };
        assert!(b.check().unwrap_err().contains("used twice"));
        b.steps[1].id = 1;
        assert!(b.check().is_ok());
        b.version = 99;
        assert!(b.check().unwrap_err().contains("version"));
        b.version = BUNDLE_VERSION;
        b.steps.push(step(
            2,
            Action::Ioctl {
                fd: IntExpr::Lit(3),
                cmd: "PING".into(),
                fields: [("bogus".to_string(), IntExpr::Lit(1))].into(),
                ptr: ArgPtr::Null,
            },
        ));
        assert!(b.check().unwrap_err().contains("no field bogus"));
        // Deep nesting.
        let mut inner = step(100, Action::Checkpoint);
        for i in 0..20 {
            inner = step(
                200 + i,
                Action::Block {
                    threads: 0,
                    steps: vec![inner],
                },
            );
        }
        b.steps = vec![inner];
        assert!(b.check().unwrap_err().contains("nested"));
        assert!(Bundle::from_json("{").is_err());
        assert!(Bundle::from_json("[]").is_err());
    }

    #[test]
    fn hex() {
        assert_eq!(decode_hex("00 ff 1a").unwrap(), vec![0, 255, 26]);
        assert!(decode_hex("0").is_err());
        assert!(decode_hex("zz").is_err());
        assert_eq!(encode_hex(&[1, 0xab]), "01ab");
    }
}
