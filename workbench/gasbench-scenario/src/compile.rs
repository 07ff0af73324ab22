//! From TOML text to a [`Compiled`] scenario, or to every problem in it.
//!
//! The parser keeps a span for every key and value; the compiler walks the
//! tree once, collecting problems instead of stopping at the first, and
//! builds the bundle and the plan as it goes. Hostile input is refused up
//! front (too large, not UTF-8, NUL bytes) or bounded (the TOML parser's
//! recursion limit, our limits on steps, nesting, repeats and threads).

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gasbench_abi::bundle::{self, Action, ArgPtr, BUNDLE_VERSION, Bundle, RawArg};
use gasbench_abi::consts::{
    self, AT_FLAGS, ERRNOS, FCNTL_CMDS, MOUNT_FLAGS, OPEN_FLAGS, RLIMITS, UMOUNT_FLAGS,
};
use gasbench_abi::expr::{self, IntExpr, Template, VarRef};
use gasbench_abi::uapi::{self, Ioctl};
use gasbench_events::report::ReportKind;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diag::{Problem, Problems, line_col, suggest};
use crate::plan::*;

/// Scenario files larger than this are refused unread.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// Steps in one scenario, nested ones included.
pub const MAX_STEPS: usize = 2_000;
/// Blocks, groups and forks nested in each other.
pub const MAX_NESTING: usize = 4;
pub const MAX_REPEAT: i128 = 1_000_000;
pub const MAX_THREADS: i128 = 64;

const DEFAULT_SCENARIO_TIMEOUT: Duration = Duration::from_secs(600);
const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// Console patterns no scenario tolerates unless it says
/// `[kernel_log] default_checks = false`.
pub const DEFAULT_MUST_NOT_MATCH: &[&str] = &[
    r"\bBUG:",
    r"\bOops\b",
    r"\bWARNING:",
    r"Kernel panic",
    r"\bUBSAN:",
    r"\bKASAN:",
    r"general protection fault",
    r"rust_panic|panicked at",
];

type V<'a> = Spanned<DeValue<'a>>;

/// Read and compile a scenario file.
pub fn load(path: &Path) -> Result<Compiled, Box<Problems>> {
    let origin = path.display().to_string();
    let fail = |msg: String| {
        Box::new(Problems::new(
            &origin,
            Arc::from(""),
            vec![Problem::new(Span::new(0..0), msg, "here")],
        ))
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read {origin}: {e}")))?;
    // A FIFO would block the open, a device could be endless: only
    // regular files (symlinks to them included) are read.
    if !meta.is_file() {
        return Err(fail(format!(
            "{origin} is not a regular file ({}); a scenario is a .toml file",
            file_kind(&meta)
        )));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(fail(format!(
            "the file is {} bytes; scenario files may be at most {} bytes",
            meta.len(),
            MAX_FILE_BYTES
        )));
    }
    // Bounded even if the file grows between the stat and the read.
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| fail(format!("cannot read {origin}: {e}")))?;
    compile_bytes(&origin, &bytes)
}

fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

/// Compile raw file content: refuses what is too large, binary or not UTF-8.
pub fn compile_bytes(origin: &str, bytes: &[u8]) -> Result<Compiled, Box<Problems>> {
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(Box::new(Problems::new(
            origin,
            Arc::from(""),
            vec![Problem::new(
                Span::new(0..0),
                format!(
                    "the file is {} bytes; scenario files may be at most {MAX_FILE_BYTES} bytes",
                    bytes.len()
                ),
                "here",
            )],
        )));
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let at = e.valid_up_to();
            let shown: Arc<str> = Arc::from(String::from_utf8_lossy(bytes).as_ref());
            let (l, c) = line_col(&shown, at);
            return Err(Box::new(Problems::new(
                origin,
                shown,
                vec![
                    Problem::new(
                        Span::new(at..at + 1),
                        format!(
                            "not UTF-8 text: byte {:#04x} at line {l}, column {c}",
                            bytes[at]
                        ),
                        "invalid byte",
                    )
                    .with_help(
                        "scenario files are TOML, which is UTF-8 text; is this a binary file?",
                    ),
                ],
            )));
        }
    };
    compile(origin, text)
}

/// Compile scenario text.
pub fn compile(origin: &str, text: &str) -> Result<Compiled, Box<Problems>> {
    let source: Arc<str> = Arc::from(text);
    if let Some(at) = text.find('\0') {
        return Err(Box::new(Problems::new(
            origin,
            source.clone(),
            vec![
                Problem::new(Span::new(at..at + 1), "the file holds a NUL byte", "NUL")
                    .with_help("scenario files are TOML text; is this a binary file?"),
            ],
        )));
    }
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(Box::new(Problems::new(
            origin,
            source.clone(),
            vec![Problem::new(
                Span::new(0..0),
                "the text is larger than 1 MiB",
                "here",
            )],
        )));
    }
    let (doc, errors) = DeTable::parse_recoverable(text);
    let mut cx = Cx::new(text);
    for e in &errors {
        let span = e.span().unwrap_or(0..0);
        cx.problems.push(Problem::new(
            Span::new(span),
            format!("TOML syntax: {}", e.message().trim()),
            "here",
        ));
    }
    // Syntax errors make the tree unreliable: report them alone.
    if !cx.problems.is_empty() {
        return Err(Box::new(Problems::new(origin, source, cx.problems)));
    }
    let stem = Path::new(origin)
        .file_stem()
        .map_or_else(|| origin.to_string(), |s| s.to_string_lossy().into_owned());
    let result = cx.document(doc.get_ref(), &stem);
    if !cx.problems.is_empty() {
        return Err(Box::new(Problems::new(origin, source, cx.problems)));
    }
    let (bundle, plan) = result.expect("no problems means a result");
    Ok(Compiled {
        origin: origin.to_string(),
        source,
        bundle,
        plan,
        record: false,
    })
}

// ---------------------------------------------------------------------------

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

fn span_of<T>(v: &Spanned<T>) -> Span {
    Span::new(v.span())
}

/// The kinds of values a step's output fields hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Int,
    Str,
    Bool,
    StrList,
}

/// Integer field types, for range checks of literals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IntTy {
    /// A file descriptor or dirfd: i32; `"AT_FDCWD"` allowed.
    Fd,
    I32,
    U32,
    U64,
    /// Permission bits.
    Mode,
    /// Anything an expectation may compare with: i64 or u64.
    Wide,
}

impl IntTy {
    fn range(self) -> (i128, i128, &'static str) {
        match self {
            IntTy::Fd | IntTy::I32 => {
                (i32::MIN as i128, i32::MAX as i128, "an int (32-bit signed)")
            }
            IntTy::U32 => (0, u32::MAX as i128, "a 32-bit unsigned value"),
            IntTy::U64 => (0, u64::MAX as i128, "a 64-bit unsigned value"),
            IntTy::Mode => (0, 0o7777, "a mode (0 to 0o7777)"),
            IntTy::Wide => (i64::MIN as i128, u64::MAX as i128, "a 64-bit value"),
        }
    }
}

/// What a captured variable holds.
#[derive(Clone, Debug)]
struct VarInfo {
    line: usize,
    /// The step that captures it had errors: accept any field, so one
    /// mistake is not reported again at every use.
    lenient: bool,
    fields: Vec<(&'static str, Kind)>,
    has_fd: bool,
}

/// Captures visible at a point, innermost scope last.
#[derive(Clone, Default)]
struct Scope {
    frames: Vec<HashMap<String, VarInfo>>,
}

impl Scope {
    fn get(&self, name: &str) -> Option<&VarInfo> {
        self.frames.iter().rev().find_map(|f| f.get(name))
    }

    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.frames.iter().flat_map(|f| f.keys().cloned()).collect();
        v.sort();
        v.dedup();
        v
    }

    fn define(&mut self, name: &str, info: VarInfo) {
        if self.frames.is_empty() {
            self.frames.push(HashMap::new());
        }
        self.frames
            .last_mut()
            .expect("a frame")
            .insert(name.to_string(), info);
    }
}

/// Where a step sits.
#[derive(Clone, Copy)]
struct Nest {
    depth: usize,
    parent: Option<u32>,
    /// Inside a parallel group or a fork: no sync points possible.
    detached: bool,
    in_group: bool,
    /// Calls per execution of the enclosing blocks (repeats × threads).
    multiplier: Option<u64>,
}

struct Cx<'s> {
    src: &'s str,
    problems: Vec<Problem>,
    steps: Vec<StepInfo>,
    syncs: Vec<SyncPoint>,
    expectations: Vec<Expectation>,
    step_timeout: Duration,
    requires: Requires,
    /// Names captured anywhere, with their line, for "defined later" hints.
    all_captures: HashMap<String, usize>,
    too_many_steps: bool,
    profiles: Vec<String>,
    /// `inject.errno` of the step being compiled.
    inject_errnos: Vec<String>,
}

/// The keys a step table may have, besides one action.
const STEP_KEYS: &[&str] = &[
    "name", "repeat", "capture", "timeout", "expect", "steps", "threads", "fork", "inject",
];

/// `nth = "each"`: fault numbers 1, 2, 3, … up to this many attempts.
pub const DEFAULT_INJECT_ATTEMPTS: u32 = 200;

const ACTIONS: &[&str] = &[
    "open",
    "openat",
    "close",
    "dup",
    "ioctl",
    "raw_ioctl",
    "mkdirat2",
    "mkdirat",
    "unlinkat",
    "symlinkat",
    "rename",
    "mkfifo",
    "write_file",
    "write_agent_port",
    "fstat",
    "fstatat",
    "fcntl",
    "setrlimit",
    "getrlimit",
    "exhaust_fds",
    "read_file",
    "write_file",
    "list_dir",
    "wait_path",
    "dmesg",
    "sleep",
    "kselftest",
    "mount",
    "umount",
    "host",
    "faults",
];

const STAT_FIELDS: &[(&str, Kind)] = &[
    ("type", Kind::Str),
    ("mode", Kind::Int),
    ("perm", Kind::Int),
    ("ino", Kind::Int),
    ("dev", Kind::Int),
    ("nlink", Kind::Int),
    ("uid", Kind::Int),
    ("gid", Kind::Int),
    ("size", Kind::Int),
    ("rdev", Kind::Int),
];

/// Fields of a call's `args_out`, as the agent reports them.
fn out_fields(action: &Action) -> Vec<(&'static str, Kind)> {
    match action {
        Action::Ioctl { cmd, .. } => Ioctl::from_name(cmd)
            .map(|i| i.layout().iter().map(|(n, _, _)| (*n, Kind::Int)).collect())
            .unwrap_or_default(),
        Action::RawIoctl {
            arg: RawArg::Bytes { .. },
            ..
        } => vec![("bytes", Kind::Str)],
        Action::Fstat { .. } | Action::Fstatat { .. } => STAT_FIELDS.to_vec(),
        Action::Fcntl { .. } => vec![
            ("cloexec", Kind::Bool),
            ("accmode", Kind::Str),
            ("flags", Kind::StrList),
        ],
        Action::Getrlimit { .. } => vec![("soft", Kind::Int), ("hard", Kind::Int)],
        Action::ExhaustFds { .. } => vec![
            ("opened", Kind::Int),
            ("stopped_by", Kind::Str),
            ("first_fd", Kind::Int),
            ("last_fd", Kind::Int),
        ],
        Action::ReadFile { .. } => vec![("text", Kind::Str), ("truncated", Kind::Bool)],
        Action::WriteFile { .. } => vec![("written", Kind::Int), ("stopped_by", Kind::Str)],
        Action::WriteAgentPort { .. } => vec![("written", Kind::Int)],
        Action::ListDir { .. } => vec![("names", Kind::StrList)],
        Action::WaitPath { .. } => vec![("waited_ms", Kind::Int)],
        Action::Dmesg { .. } => vec![("lines", Kind::StrList)],
        Action::Kselftest { .. } => vec![
            ("exit_code", Kind::Int),
            ("signal", Kind::Int),
            ("timed_out", Kind::Bool),
            ("planned", Kind::Int),
            ("passed", Kind::Int),
            ("failed", Kind::Int),
            ("skipped", Kind::Int),
            ("xfailed", Kind::Int),
            ("all_passed", Kind::Bool),
            ("bail_out", Kind::Str),
        ],
        Action::Fork { .. } => vec![
            ("pid", Kind::Int),
            ("exit_code", Kind::Int),
            ("signal", Kind::Int),
            ("timed_out", Kind::Bool),
        ],
        _ => Vec::new(),
    }
}

/// Does the call put an fd in its record (so `${x.fd}` works)?
fn has_fd(action: &Action) -> bool {
    !matches!(
        action,
        Action::Mkdirat { .. }
            | Action::Unlinkat { .. }
            | Action::Symlinkat { .. }
            | Action::Rename { .. }
            | Action::Mkfifo { .. }
            | Action::WriteFile { .. }
            | Action::WriteAgentPort { .. }
            | Action::Fstatat { .. }
            | Action::Setrlimit { .. }
            | Action::Getrlimit { .. }
            | Action::ExhaustFds { .. }
            | Action::ReadFile { .. }
            | Action::ListDir { .. }
            | Action::WaitPath { .. }
            | Action::Dmesg { .. }
            | Action::Kselftest { .. }
            | Action::Fork { .. }
            | Action::Mount { .. }
            | Action::Umount { .. }
    )
}

impl<'s> Cx<'s> {
    fn new(src: &'s str) -> Cx<'s> {
        Cx {
            src,
            problems: Vec::new(),
            steps: Vec::new(),
            syncs: Vec::new(),
            expectations: Vec::new(),
            step_timeout: DEFAULT_STEP_TIMEOUT,
            requires: Requires::default(),
            all_captures: HashMap::new(),
            too_many_steps: false,
            profiles: Vec::new(),
            inject_errnos: Vec::new(),
        }
    }

    fn err(&mut self, span: Span, message: impl Into<String>, label: impl Into<String>) {
        self.problems.push(Problem::new(span, message, label));
    }

    fn err_help(
        &mut self,
        span: Span,
        message: impl Into<String>,
        label: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.problems
            .push(Problem::new(span, message, label).with_help(help));
    }

    fn line(&self, offset: usize) -> usize {
        line_col(self.src, offset).0
    }

    /// The span of bytes `off..off+len` inside a string value, when the
    /// string is written without escapes; else the whole value.
    fn inner_span(&self, v: Span, text: &str, off: usize, len: usize) -> Span {
        let raw = &self.src[v.start.min(self.src.len())..v.end.min(self.src.len())];
        if (raw.starts_with('"') || raw.starts_with('\''))
            && raw.get(1..1 + text.len()) == Some(text)
        {
            let start = v.start + 1 + off;
            Span::new(start..start + len.max(1))
        } else {
            v
        }
    }

    /// Report keys not in `allowed`, with a suggestion.
    fn check_keys(&mut self, t: &DeTable<'_>, allowed: &[&str], what: &str) {
        for (k, _) in t.iter() {
            let key: &str = k.get_ref();
            if !allowed.contains(&key) {
                let help = match suggest(key, allowed.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`? {what} takes: {}", allowed.join(", ")),
                    None => format!("{what} takes: {}", allowed.join(", ")),
                };
                self.err_help(
                    span_of(k),
                    format!("unknown key `{key}` in {what}"),
                    "unknown key",
                    help,
                );
            }
        }
    }

    fn table<'a, 'i>(&mut self, v: &'a V<'i>, what: &str) -> Option<&'a DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            other => {
                self.err(
                    span_of(v),
                    format!("{what} must be a table, not {}", type_name(other)),
                    "expected a table",
                );
                None
            }
        }
    }

    fn string<'a>(&mut self, v: &'a V<'_>, what: &str) -> Option<&'a str> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.as_ref()),
            other => {
                self.err(
                    span_of(v),
                    format!("{what} must be a string, not {}", type_name(other)),
                    "expected a string",
                );
                None
            }
        }
    }

    fn boolean(&mut self, v: &V<'_>, what: &str) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => {
                self.err(
                    span_of(v),
                    format!("{what} must be true or false, not {}", type_name(other)),
                    "expected a boolean",
                );
                None
            }
        }
    }

    fn string_list(&mut self, v: &V<'_>, what: &str) -> Option<Vec<(String, Span)>> {
        match v.get_ref() {
            DeValue::Array(a) => {
                let mut out = Vec::new();
                for item in a {
                    if let Some(s) = self.string(item, &format!("each entry of {what}")) {
                        out.push((s.to_string(), span_of(item)));
                    }
                }
                Some(out)
            }
            other => {
                self.err(
                    span_of(v),
                    format!(
                        "{what} must be an array of strings, not {}",
                        type_name(other)
                    ),
                    "expected an array",
                );
                None
            }
        }
    }

    /// A literal integer of a TOML value (any size up to i128).
    fn literal(&mut self, v: &V<'_>, what: &str) -> Option<i128> {
        match v.get_ref() {
            DeValue::Integer(i) => match i128::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some(n),
                Err(_) => {
                    self.err(
                        span_of(v),
                        format!("{what}: the number is far too large"),
                        "too large",
                    );
                    None
                }
            },
            other => {
                self.err(
                    span_of(v),
                    format!("{what} must be an integer, not {}", type_name(other)),
                    "expected an integer",
                );
                None
            }
        }
    }

    fn in_range(&mut self, span: Span, n: i128, ty: IntTy, what: &str) -> bool {
        let (lo, hi, desc) = ty.range();
        if n < lo || n > hi {
            let help = if ty == IntTy::U64 && n < 0 {
                "write the two's complement value (e.g. 0xffff_ffff_ffff_ffff for -1)".to_string()
            } else {
                format!("{what} is {desc}")
            };
            self.err_help(
                span,
                format!("{what} = {n} is out of range"),
                format!("not {desc}"),
                help,
            );
            false
        } else {
            true
        }
    }

    /// A variable reference, checked against the scope.
    fn check_ref(&mut self, r: &VarRef, span: Span, scope: &Scope, want_int: bool) {
        if expr::is_builtin(&r.var) {
            if r.field.is_some() {
                self.err(
                    span,
                    format!("built-in ${{{}}} has no fields", r.var),
                    "no fields",
                );
            } else if want_int && r.var == "workdir" {
                self.err(span, "${workdir} is a path, not a number", "a path");
            }
            return;
        }
        let Some(info) = scope.get(&r.var).cloned() else {
            let mut help = match self.all_captures.get(&r.var) {
                Some(line) => format!(
                    "`{}` is captured at line {line}, which is not before this step (or is inside a parallel group or fork whose captures stay inside it)",
                    r.var
                ),
                None => String::new(),
            };
            if help.is_empty() {
                let names = scope.names();
                help = match suggest(&r.var, names.iter().map(String::as_str)) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None if names.is_empty() => "no variable is captured before this step; capture one with `capture = \"name\"`".into(),
                    None => format!("variables here: {}", names.join(", ")),
                };
            }
            self.err_help(
                span,
                format!("undefined variable `{}`", r.var),
                "not captured before this step",
                help,
            );
            return;
        };
        let Some(field) = &r.field else { return };
        if info.lenient {
            return;
        }
        if field == "ret" || (field == "fd" && info.has_fd) {
            return;
        }
        match info.fields.iter().find(|(f, _)| f == field) {
            Some((_, kind)) => {
                if want_int && *kind != Kind::Int {
                    self.err(span, format!("{r} is not a number"), "not a number");
                }
            }
            None => {
                let mut names: Vec<&str> = vec!["ret"];
                if info.has_fd {
                    names.push("fd");
                }
                names.extend(info.fields.iter().map(|(f, _)| *f));
                let help = match suggest(field, names.iter().copied()) {
                    Some(s) => format!(
                        "did you mean `{s}`? `{}` (line {}) has: {}",
                        r.var,
                        info.line,
                        names.join(", ")
                    ),
                    None => format!("`{}` (line {}) has: {}", r.var, info.line, names.join(", ")),
                };
                self.err_help(
                    span,
                    format!("`{}` has no field `{field}`", r.var),
                    "no such field",
                    help,
                );
            }
        }
    }

    /// An integer value: a literal (range-checked), a named constant, or a
    /// `${…}` expression (checked against the scope).
    fn int(&mut self, v: &V<'_>, ty: IntTy, what: &str, scope: &Scope) -> Option<IntExpr> {
        let span = span_of(v);
        match v.get_ref() {
            DeValue::Integer(_) => {
                let n = self.literal(v, what)?;
                self.in_range(span, n, ty, what).then_some(IntExpr::Lit(n))
            }
            DeValue::String(s) => {
                let s = s.as_ref();
                if ty == IntTy::Fd && s == "AT_FDCWD" {
                    return Some(IntExpr::Lit(consts::AT_FDCWD.into()));
                }
                if s == "RLIM_INFINITY" || s == "U64_MAX" {
                    return self
                        .in_range(span, u64::MAX.into(), ty, what)
                        .then_some(IntExpr::Lit(u64::MAX.into()));
                }
                match expr::parse_int_expr(s) {
                    Ok(IntExpr::Lit(n)) => {
                        self.in_range(span, n, ty, what).then_some(IntExpr::Lit(n))
                    }
                    Ok(e) => {
                        if let Some(r) = e.var() {
                            self.check_ref(r, span, scope, true);
                        }
                        Some(e)
                    }
                    Err(e) => {
                        let at = self.inner_span(span, s, e.offset, e.len);
                        let help = if ty == IntTy::Fd {
                            "write a number, \"AT_FDCWD\", or a captured value like \"${fd}\""
                        } else {
                            "write a number or a captured value like \"${blk.offset}\" (optionally + N or - N)"
                        };
                        self.err_help(at, format!("{what}: {}", e.message), "here", help);
                        None
                    }
                }
            }
            other => {
                self.err(
                    span,
                    format!(
                        "{what} must be an integer or \"${{name}}\", not {}",
                        type_name(other)
                    ),
                    "expected an integer",
                );
                None
            }
        }
    }

    /// Flags: an integer, a `${…}`, or an array of names (and integers)
    /// from `table`, or'ed together.
    fn flags(
        &mut self,
        v: &V<'_>,
        table: &[(&str, i64)],
        ty: IntTy,
        what: &str,
        scope: &Scope,
    ) -> Option<IntExpr> {
        match v.get_ref() {
            DeValue::Array(items) => {
                let mut acc: i128 = 0;
                let mut ok = true;
                for item in items {
                    match item.get_ref() {
                        DeValue::String(name) => match consts::lookup(table, name) {
                            Some(bits) => acc |= bits as i128,
                            None => {
                                ok = false;
                                let names: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
                                let help = match suggest(name, names.iter().copied()) {
                                    Some(s) => format!("did you mean `{s}`?"),
                                    None => format!("known: {}", names.join(", ")),
                                };
                                self.err_help(
                                    span_of(item),
                                    format!("unknown flag `{name}` in {what}"),
                                    "unknown flag",
                                    help,
                                );
                            }
                        },
                        DeValue::Integer(_) => match self.literal(item, what) {
                            Some(n) if self.in_range(span_of(item), n, ty, what) => acc |= n,
                            _ => ok = false,
                        },
                        other => {
                            ok = false;
                            self.err(
                                span_of(item),
                                format!(
                                    "{what}: flags are names or integers, not {}",
                                    type_name(other)
                                ),
                                "expected a flag",
                            );
                        }
                    }
                }
                (ok && self.in_range(span_of(v), acc, ty, what)).then_some(IntExpr::Lit(acc))
            }
            _ => self.int(v, ty, what, scope),
        }
    }

    fn template(&mut self, v: &V<'_>, what: &str, scope: &Scope) -> Option<Template> {
        let s = self.string(v, what)?;
        let span = span_of(v);
        match Template::parse(s) {
            Ok(t) => {
                for r in t.refs() {
                    self.check_ref(r, span, scope, false);
                }
                Some(t)
            }
            Err(e) => {
                let at = self.inner_span(span, s, e.offset, e.len);
                self.err_help(
                    at,
                    format!("{what}: {}", e.message),
                    "here",
                    "write `$$` for a literal `$`",
                );
                None
            }
        }
    }

    fn duration(&mut self, v: &V<'_>, what: &str) -> Option<Duration> {
        let span = span_of(v);
        let s = match v.get_ref() {
            DeValue::String(s) => s.as_ref(),
            DeValue::Integer(_) => {
                self.err_help(
                    span,
                    format!("{what} needs a unit"),
                    "which unit?",
                    "write \"500ms\", \"5s\" or \"2m\"",
                );
                return None;
            }
            other => {
                self.err(
                    span,
                    format!(
                        "{what} must be a duration like \"5s\", not {}",
                        type_name(other)
                    ),
                    "expected a duration",
                );
                return None;
            }
        };
        let (num, unit) = s.trim().split_at(
            s.trim()
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(s.trim().len()),
        );
        let n: u64 = match num.parse() {
            Ok(n) => n,
            Err(_) => {
                self.err_help(
                    span,
                    format!("{what}: `{s}` is not a duration"),
                    "not a duration",
                    "write \"500ms\", \"5s\" or \"2m\"",
                );
                return None;
            }
        };
        let d = match unit.trim() {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" | "min" => Duration::from_secs(n.saturating_mul(60)),
            _ => {
                self.err_help(
                    span,
                    format!("{what}: unknown unit in `{s}`"),
                    "unknown unit",
                    "units: ms, s, m",
                );
                return None;
            }
        };
        if d > Duration::from_secs(24 * 3600) {
            self.err(
                span,
                format!("{what} = {s} is longer than a day"),
                "too long",
            );
            return None;
        }
        Some(d)
    }

    /// A duration that is a limit: zero could never be met.
    fn timeout(&mut self, v: &V<'_>, what: &str) -> Option<Duration> {
        let d = self.duration(v, what)?;
        if d.is_zero() {
            self.err_help(
                span_of(v),
                format!("{what} of 0 can never be met"),
                "zero",
                "give the step time to run, e.g. \"5s\"",
            );
            return None;
        }
        Some(d)
    }

    fn pattern(&mut self, s: &str, span: Span) -> Option<Pattern> {
        match regex::RegexBuilder::new(s).size_limit(1 << 20).build() {
            Ok(_) => Some(Pattern {
                regex: s.to_string(),
                span,
            }),
            Err(e) => {
                let msg = e.to_string();
                let last = msg.lines().last().unwrap_or("invalid").trim().to_string();
                self.err(
                    span,
                    format!("invalid regular expression: {last}"),
                    "bad regex",
                );
                None
            }
        }
    }

    fn kernel_log_rules(
        &mut self,
        t: &DeTable<'_>,
        extra_keys: &[&str],
        what: &str,
    ) -> KernelLogRules {
        let mut allowed = vec!["must_match", "must_not_match"];
        allowed.extend_from_slice(extra_keys);
        self.check_keys(t, &allowed, what);
        let mut rules = KernelLogRules::default();
        for (key, list) in [
            ("must_match", &mut rules.must_match),
            ("must_not_match", &mut rules.must_not_match),
        ] {
            if let Some(v) = t.get(key) {
                for (s, span) in self
                    .string_list(v, &format!("{what}.{key}"))
                    .unwrap_or_default()
                {
                    if let Some(p) = self.pattern(&s, span) {
                        list.push(p);
                    }
                }
            }
        }
        rules
    }

    fn opaque(&mut self, v: &V<'_>) -> Opaque {
        Opaque {
            value: to_json(v.get_ref()),
            span: span_of(v),
        }
    }

    fn fault_plan(&mut self, v: &V<'_>, what: &str) -> Option<FaultPlan> {
        match v.get_ref() {
            DeValue::Array(items) => {
                let mut rules = Vec::new();
                for item in items {
                    if self.table(item, &format!("each rule of {what}")).is_some() {
                        rules.push(self.opaque(item));
                    }
                }
                Some(FaultPlan {
                    rules,
                    span: span_of(v),
                })
            }
            other => {
                self.err_help(
                    span_of(v),
                    format!("{what} must be an array of rule tables, not {}", type_name(other)),
                    "expected an array",
                    "write `faults = [ { on = \"allocate_block\", nth = 1, action = \"fail\", errno = \"ENOMEM\" } ]`",
                );
                None
            }
        }
    }

    // ----- the document -----

    fn document(&mut self, doc: &DeTable<'_>, stem: &str) -> Option<(Bundle, HostPlan)> {
        self.check_keys(
            doc,
            &["scenario", "kernel_log", "device", "step"],
            "a scenario file",
        );
        let mut name = stem.to_string();
        let mut description = None;
        let mut timeout = DEFAULT_SCENARIO_TIMEOUT;
        if let Some(v) = doc.get("scenario")
            && let Some(t) = self.table(v, "[scenario]")
        {
            self.check_keys(
                t,
                &[
                    "name",
                    "description",
                    "timeout",
                    "step_timeout",
                    "requires",
                    "profiles",
                ],
                "[scenario]",
            );
            if let Some(v) = t.get("profiles") {
                for (p, span) in self.string_list(v, "profiles").unwrap_or_default() {
                    let plain = !p.is_empty()
                        && p.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                    if plain {
                        self.profiles.push(p);
                    } else {
                        self.err_help(
                            span,
                            format!("`{p}` is not a profile name"),
                            "bad name",
                            "profiles are named in kernel/profiles/profiles.toml: default, debug, race",
                        );
                    }
                }
            }
            if let Some(s) = t.get("name").and_then(|v| self.string(v, "name")) {
                name = s.to_string();
            }
            description = t
                .get("description")
                .and_then(|v| self.string(v, "description"))
                .map(str::to_string);
            if let Some(d) = t.get("timeout").and_then(|v| self.timeout(v, "timeout")) {
                timeout = d;
            }
            if let Some(d) = t
                .get("step_timeout")
                .and_then(|v| self.timeout(v, "step_timeout"))
            {
                self.step_timeout = d;
            }
            if let Some(v) = t.get("requires") {
                for (r, span) in self.string_list(v, "requires").unwrap_or_default() {
                    match r.as_str() {
                        "goldfish" => self.requires.goldfish = true,
                        "mkdirat2" => self.requires.mkdirat2 = true,
                        other => self.err_help(
                            span,
                            format!("unknown requirement `{other}`"),
                            "unknown",
                            "known: goldfish, mkdirat2",
                        ),
                    }
                }
            }
        }
        let mut kernel_log = KernelLogRules::default();
        let mut default_checks = true;
        if let Some(v) = doc.get("kernel_log")
            && let Some(t) = self.table(v, "[kernel_log]")
        {
            kernel_log = self.kernel_log_rules(t, &["default_checks"], "[kernel_log]");
            if let Some(b) = t
                .get("default_checks")
                .and_then(|v| self.boolean(v, "default_checks"))
            {
                default_checks = b;
            }
        }
        if default_checks {
            for p in DEFAULT_MUST_NOT_MATCH {
                kernel_log.must_not_match.push(Pattern {
                    regex: p.to_string(),
                    span: Span::new(0..0),
                });
            }
        }
        let mut initial_faults = None;
        let mut device_config = None;
        if let Some(v) = doc.get("device")
            && let Some(t) = self.table(v, "[device]")
        {
            self.check_keys(t, &["faults", "config"], "[device]");
            if let Some(f) = t.get("faults") {
                initial_faults = self.fault_plan(f, "[device] faults");
                self.requires.goldfish = true;
            }
            if let Some(c) = t.get("config")
                && self.table(c, "[device] config").is_some()
            {
                device_config = Some(self.opaque(c));
            }
        }
        // Captures anywhere, for hints about variables used too early.
        if let Some(v) = doc.get("step") {
            self.collect_captures(v, 0);
        }
        let mut scope = Scope {
            frames: vec![HashMap::new()],
        };
        let nest = Nest {
            depth: 0,
            parent: None,
            detached: false,
            in_group: false,
            multiplier: Some(1),
        };
        let steps = match doc.get("step") {
            Some(v) => self.steps(v, &mut scope, nest),
            None => {
                self.err_help(
                    Span::new(0..0),
                    "the scenario has no steps",
                    "no [[step]]",
                    "add steps with [[step]] tables",
                );
                Vec::new()
            }
        };
        if !self.problems.is_empty() {
            return None;
        }
        let plan = HostPlan {
            scenario: name.clone(),
            description,
            timeout,
            requires: std::mem::take(&mut self.requires),
            initial_faults,
            device_config,
            steps: std::mem::take(&mut self.steps),
            syncs: std::mem::take(&mut self.syncs),
            expectations: std::mem::take(&mut self.expectations),
            kernel_log,
            profiles: std::mem::take(&mut self.profiles),
            reports_fail: default_checks,
        };
        let bundle = Bundle {
            version: BUNDLE_VERSION,
            scenario: name,
            steps,
            kmsg_markers: false,
            kmemleak: false,
        };
        // The agent checks the same limits; a compiled bundle must pass.
        if let Err(e) = bundle.check() {
            self.err(
                Span::new(0..0),
                format!("internal: the compiled bundle is invalid: {e}"),
                "here",
            );
            return None;
        }
        Some((bundle, plan))
    }

    fn collect_captures(&mut self, v: &V<'_>, depth: usize) {
        if depth > MAX_NESTING + 1 {
            return;
        }
        if let DeValue::Array(items) = v.get_ref() {
            for item in items {
                if let DeValue::Table(t) = item.get_ref() {
                    if let Some(DeValue::String(c)) = t.get("capture").map(|c| c.get_ref()) {
                        let line = self.line(item.span().start);
                        self.all_captures.entry(c.to_string()).or_insert(line);
                    }
                    if let Some(inner) = t.get("steps") {
                        self.collect_captures(inner, depth + 1);
                    }
                }
            }
        }
    }

    fn steps(&mut self, v: &V<'_>, scope: &mut Scope, nest: Nest) -> Vec<bundle::Step> {
        let DeValue::Array(items) = v.get_ref() else {
            self.err_help(
                span_of(v),
                format!(
                    "steps must be an array of tables, not {}",
                    type_name(v.get_ref())
                ),
                "expected [[step]] tables",
                "write each step as a [[step]] table",
            );
            return Vec::new();
        };
        if items.is_empty() {
            self.err(span_of(v), "an empty list of steps", "no steps");
        }
        let mut out = Vec::new();
        for item in items {
            if let Some(s) = self.step(item, scope, nest) {
                out.push(s);
            }
        }
        out
    }

    fn step(&mut self, v: &V<'_>, scope: &mut Scope, nest: Nest) -> Option<bundle::Step> {
        let t = self.table(v, "a step")?;
        let span = span_of(v);
        if self.steps.len() >= MAX_STEPS {
            if !self.too_many_steps {
                self.too_many_steps = true;
                self.err(
                    span,
                    format!("more than {MAX_STEPS} steps"),
                    "too many steps",
                );
            }
            return None;
        }
        let line = self.line(span.start);
        let id = self.steps.len() as u32;
        // Reserve the id now so nested steps number after their parent.
        self.steps.push(StepInfo {
            id,
            name: String::new(),
            kind: StepKind::Checkpoint,
            parent: nest.parent,
            line,
            span,
            timeout: self.step_timeout,
            calls: None,
            capture: None,
            sync: None,
            inject: None,
        });

        // Keys: the step's own, plus actions.
        let mut allowed: Vec<&str> = STEP_KEYS.to_vec();
        allowed.extend_from_slice(ACTIONS);
        self.check_keys(t, &allowed, "a step");
        let mut actions: Vec<(&Spanned<std::borrow::Cow<'_, str>>, &V<'_>)> = t
            .iter()
            .filter(|(k, _)| ACTIONS.contains(&k.get_ref().as_ref()))
            .collect();
        actions.sort_by_key(|(k, _)| k.span().start);
        for (k, _) in actions.iter().skip(1) {
            self.err_help(
                span_of(k),
                format!("a second action `{}` in one step", k.get_ref()),
                "second action",
                format!("a step does one thing; `{}` is already its action: split it into two [[step]]s", actions[0].0.get_ref()),
            );
        }
        let steps_v = t.get("steps");
        let name = match t.get("name") {
            Some(n) => self.string(n, "name").unwrap_or("").to_string(),
            None => String::new(),
        };
        let repeat = match t.get("repeat") {
            Some(r) => match self.literal(r, "repeat") {
                Some(n) if (1..=MAX_REPEAT).contains(&n) => n as u32,
                Some(n) => {
                    self.err(
                        span_of(r),
                        format!("repeat = {n}: must be between 1 and {MAX_REPEAT}"),
                        "out of range",
                    );
                    1
                }
                None => 1,
            },
            None => 1,
        };
        let timeout = match t.get("timeout") {
            Some(d) => self.timeout(d, "timeout").unwrap_or(self.step_timeout),
            None => self.step_timeout,
        };
        let capture = t.get("capture").and_then(|c| {
            let s = self.string(c, "capture")?;
            let valid = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                self.err(span_of(c), format!("capture name `{s}` must be letters, digits and `_`, not starting with a digit"), "bad name");
                return None;
            }
            if expr::is_builtin(s) {
                self.err(span_of(c), format!("`{s}` is a built-in variable; pick another name"), "reserved");
                return None;
            }
            Some((s.to_string(), span_of(c)))
        });
        let threads = t
            .get("threads")
            .and_then(|v| match self.literal(v, "threads") {
                Some(n) if (1..=MAX_THREADS).contains(&n) => Some(n as u32),
                Some(n) => {
                    self.err(
                        span_of(v),
                        format!("threads = {n}: must be between 1 and {MAX_THREADS}"),
                        "out of range",
                    );
                    None
                }
                None => None,
            });
        let fork = t
            .get("fork")
            .and_then(|v| self.boolean(v, "fork"))
            .unwrap_or(false);
        for (key, present) in [("threads", t.get("threads")), ("fork", t.get("fork"))] {
            if let Some(v) = present
                && steps_v.is_none()
            {
                self.err_help(
                    span_of(v),
                    format!("`{key}` needs nested steps"),
                    "no steps",
                    "add the steps as [[step.steps]] tables after this one",
                );
            }
        }
        if t.get("threads").is_some() && fork {
            self.err(
                span,
                "a block is either `threads = N` or `fork = true`, not both",
                "both",
            );
        }

        let mut sync_actions: Vec<HostAction> = Vec::new();
        let (action, kind) = if let Some(sv) = steps_v {
            if let Some((k, _)) = actions.first() {
                self.err_help(
                    span_of(k),
                    format!("a step with nested steps cannot also `{}`", k.get_ref()),
                    "action",
                    "move the action into a step of its own",
                );
            }
            if nest.depth + 1 > MAX_NESTING {
                self.err(
                    span_of(sv),
                    format!("blocks nested deeper than {MAX_NESTING}"),
                    "too deep",
                );
                return None;
            }
            if fork && nest.detached {
                self.err(
                    span,
                    "a fork inside a parallel group or another fork is not supported",
                    "nested fork",
                );
            }
            let detached = nest.detached || threads.is_some() || fork;
            let mult = nest
                .multiplier
                .and_then(|m| m.checked_mul(repeat as u64 * threads.unwrap_or(1) as u64));
            let child_nest = Nest {
                depth: nest.depth + 1,
                parent: Some(id),
                detached,
                in_group: nest.in_group || threads.is_some(),
                multiplier: if fork { Some(1) } else { mult },
            };
            // Groups and forks keep their captures to themselves; a plain
            // block shares the enclosing scope.
            let own_scope = threads.is_some() || fork;
            if own_scope {
                scope.frames.push(HashMap::new());
            }
            let children = self.steps(sv, scope, child_nest);
            if own_scope {
                scope.frames.pop();
            }
            if fork {
                (Action::Fork { steps: children }, StepKind::Fork)
            } else if let Some(n) = threads {
                (
                    Action::Block {
                        threads: n,
                        steps: children,
                    },
                    StepKind::Group { threads: n },
                )
            } else {
                (
                    Action::Block {
                        threads: 0,
                        steps: children,
                    },
                    StepKind::Block,
                )
            }
        } else if let Some((k, av)) = actions.first() {
            let key: &str = k.get_ref();
            match key {
                "host" => {
                    let a = match self.string(av, "host") {
                        Some("device_del") => Some(HostAction::DeviceDel),
                        Some("device_add") => Some(HostAction::DeviceAdd),
                        Some(other) => {
                            self.err_help(span_of(av), format!("unknown host action `{other}`"), "unknown", "host steps: \"device_del\", \"device_add\" (and `faults = [...]` steps)");
                            None
                        }
                        None => None,
                    };
                    self.requires.goldfish = true;
                    let what = a.as_ref().map_or("?", HostAction::name).to_string();
                    sync_actions.extend(a);
                    (Action::Host { what }, StepKind::Host)
                }
                "faults" => {
                    self.requires.goldfish = true;
                    if let Some(p) = self.fault_plan(av, "faults") {
                        sync_actions.push(HostAction::SetFaults(p));
                    }
                    (
                        Action::Host {
                            what: "faults".into(),
                        },
                        StepKind::Host,
                    )
                }
                "sleep" => {
                    let ms = self
                        .duration(av, "sleep")
                        .map_or(0, |d| d.as_millis() as u64);
                    (Action::Sleep { ms }, StepKind::Sleep)
                }
                _ => match self.action(key, av, scope) {
                    Some(a) => (
                        a,
                        StepKind::Call {
                            op: key.to_string(),
                        },
                    ),
                    None => {
                        if let Some((c, _)) = &capture {
                            scope.define(
                                c,
                                VarInfo {
                                    line,
                                    lenient: true,
                                    fields: Vec::new(),
                                    has_fd: true,
                                },
                            );
                        }
                        return None;
                    }
                },
            }
        } else {
            (Action::Checkpoint, StepKind::Checkpoint)
        };

        self.inject_errnos.clear();
        let inject = match t.get("inject") {
            Some(iv) => self.inject(iv, &kind, &action, nest, id),
            None => None,
        };
        let inject_errnos = std::mem::take(&mut self.inject_errnos);

        let is_host = matches!(kind, StepKind::Host);
        if is_host && nest.detached {
            self.err(
                span,
                "a host step inside a parallel group or a fork cannot stop everything else",
                "inside a group",
            );
        }
        if repeat != 1 && matches!(kind, StepKind::Host | StepKind::Checkpoint) {
            self.err(
                span_of(t.get("repeat").expect("repeat present")),
                "host steps and checkpoints do not repeat",
                "repeat",
            );
        }
        let calls = match kind {
            StepKind::Call { .. } | StepKind::Fork => {
                nest.multiplier.and_then(|m| m.checked_mul(repeat as u64))
            }
            _ => None,
        };
        if let Some((_, cspan)) = &capture
            && !matches!(kind, StepKind::Call { .. } | StepKind::Fork)
        {
            self.err(
                *cspan,
                "only calls can capture a result",
                "nothing to capture",
            );
        }

        // Expectations, checked against the scope before this step's own
        // capture is defined.
        // Device checks happen after the step, so they also see its own
        // capture.
        let mut after = scope.clone();
        if let Some((c, _)) = &capture {
            after.define(
                c,
                VarInfo {
                    line,
                    lenient: false,
                    fields: out_fields(&action),
                    has_fd: has_fd(&action),
                },
            );
        }
        let exp_start = self.expectations.len();
        let (wants_sync, kmemleak_scan) = self.expect(
            t.get("expect"),
            id,
            &kind,
            &action,
            (scope, &after),
            nest,
            span,
        );
        let has_expectation = self.expectations.len() > exp_start;
        let block_keys = t.get("threads").is_some() || t.get("fork").is_some();
        if matches!(kind, StepKind::Checkpoint) && !has_expectation && !block_keys {
            let help = format!(
                "give it one action ({}) or `expect.device` / `expect.kernel_log` / `expect.kernel`",
                ACTIONS.join(", ")
            );
            self.err_help(span, "this step does nothing", "no action", help);
        }

        let sync = if is_host || wants_sync {
            let sid = self.syncs.len() as u32;
            self.syncs.push(SyncPoint {
                id: sid,
                step: id,
                actions: sync_actions,
                snapshot: wants_sync,
            });
            Some(sid)
        } else {
            None
        };

        if let Some((c, _)) = &capture {
            scope.define(
                c,
                VarInfo {
                    line,
                    lenient: false,
                    fields: out_fields(&action),
                    has_fd: has_fd(&action),
                },
            );
        }
        match &action {
            Action::Ioctl { .. } => self.requires.goldfish = true,
            Action::Mkdirat2 { .. } => self.requires.mkdirat2 = true,
            Action::Kselftest { path, .. } => {
                let p = path.raw().to_string();
                if !self.requires.kselftests.contains(&p) {
                    self.requires.kselftests.push(p);
                }
            }
            _ => {}
        }
        let name = if name.is_empty() {
            let op = match &kind {
                StepKind::Call { op } => op.clone(),
                StepKind::Group { threads } => format!("{threads} threads"),
                StepKind::Host => action_host_name(&action),
                other => format!("{other:?}").to_lowercase(),
            };
            format!("{op} (line {line})")
        } else {
            name
        };
        let info = &mut self.steps[id as usize];
        info.name = name.clone();
        info.kind = kind;
        info.timeout = timeout;
        info.calls = calls;
        info.capture = capture.as_ref().map(|(c, _)| c.clone());
        info.sync = sync;
        info.inject = inject.as_ref().map(|(i, _)| *i);
        if let Some((i, target)) = &inject {
            // The attempts' own rule, on the call that is attempted.
            let mut errnos = vec![match i.fault {
                bundle::FaultKind::Usercopy => "EFAULT".to_string(),
                _ => "ENOMEM".to_string(),
            }];
            for e in &self.expectations[exp_start..] {
                if let (true, Check::Errno { errno }) = (e.step == id, &e.check)
                    && !errnos.contains(errno)
                {
                    errnos.push(errno.clone());
                }
            }
            for e in inject_errnos {
                if !errnos.contains(&e) {
                    errnos.push(e);
                }
            }
            let span = span_of(t.get("inject").expect("inject present"));
            self.push(*target, Check::Injected { errnos }, span, true);
        }
        Some(bundle::Step {
            id,
            name,
            action,
            repeat,
            capture: capture.map(|(c, _)| c),
            timeout_ms: Some(timeout.as_millis() as u64),
            sync,
            inject: inject.map(|(i, _)| i),
            kmemleak_scan,
        })
    }

    /// The bytes a write step repeats: `text` (a string, TOML escapes
    /// such as `\u001b` included) or `hex`, exactly one, 1 to
    /// `MAX_RAW_BYTES` of them.
    fn write_bytes(&mut self, t: &DeTable<'_>, v: &V<'_>, key: &str) -> Option<Vec<u8>> {
        let bytes = match (t.get("text"), t.get("hex")) {
            (Some(s), None) => self.string(s, &format!("{key}.text"))?.as_bytes().to_vec(),
            (None, Some(h)) => {
                let s = self.string(h, &format!("{key}.hex"))?;
                match bundle::decode_hex(s) {
                    Ok(b) => b,
                    Err(e) => {
                        self.err_help(
                            span_of(h),
                            format!("{key}.hex: {e}"),
                            "not hex",
                            "write bytes as hex, e.g. \"1b 5b 32 4a\"",
                        );
                        return None;
                    }
                }
            }
            (Some(_), Some(h)) => {
                self.err(
                    span_of(h),
                    format!("`{key}` takes `text` or `hex`, not both"),
                    "one too many",
                );
                return None;
            }
            (None, None) => {
                self.err_help(
                    span_of(v),
                    format!("`{key}` needs `text` or `hex`"),
                    "nothing to write",
                    "add `text = \"…\"` or `hex = \"…\"`",
                );
                return None;
            }
        };
        let at = t
            .get("text")
            .or(t.get("hex"))
            .map(span_of)
            .unwrap_or(span_of(v));
        if bytes.is_empty() || bytes.len() > bundle::limits::MAX_RAW_BYTES {
            self.err(
                at,
                format!(
                    "{} bytes to write; 1 to {} are allowed",
                    bytes.len(),
                    bundle::limits::MAX_RAW_BYTES
                ),
                "out of range",
            );
            return None;
        }
        Some(bytes)
    }

    /// A call action's arguments.
    fn action(&mut self, key: &str, v: &V<'_>, scope: &Scope) -> Option<Action> {
        let t = self.table(v, key)?;
        let what = |f: &str| format!("{key}.{f}");
        // Required and optional fields.
        macro_rules! req {
            ($name:literal) => {{
                match t.get($name) {
                    Some(x) => Some(x),
                    None => {
                        self.err_help(
                            span_of(v),
                            format!("`{key}` needs `{}`", $name),
                            format!("missing `{}`", $name),
                            format!("add `{} = …`", $name),
                        );
                        None
                    }
                }
            }};
        }
        let dir = |cx: &mut Self| match t.get("dir") {
            Some(d) => cx.int(d, IntTy::Fd, &what("dir"), scope),
            None => Some(IntExpr::Lit(consts::AT_FDCWD.into())),
        };
        let mode = |cx: &mut Self, default: i128| match t.get("mode") {
            Some(m) => cx.int(m, IntTy::Mode, &what("mode"), scope),
            None => Some(IntExpr::Lit(default)),
        };
        match key {
            "open" | "openat" => {
                self.check_keys(
                    t,
                    if key == "open" {
                        &["path", "flags", "mode"]
                    } else {
                        &["dir", "path", "flags", "mode"]
                    },
                    key,
                );
                let path = req!("path").and_then(|p| self.template(p, &what("path"), scope));
                let flags = match t.get("flags") {
                    Some(f) => self.flags(f, OPEN_FLAGS, IntTy::I32, &what("flags"), scope),
                    None => Some(IntExpr::Lit(0)),
                };
                let mode = mode(self, 0);
                if key == "open" {
                    Some(Action::Open {
                        path: path?,
                        flags: flags?,
                        mode: mode?,
                    })
                } else {
                    let dir = dir(self);
                    Some(Action::Openat {
                        dir: dir?,
                        path: path?,
                        flags: flags?,
                        mode: mode?,
                    })
                }
            }
            "close" | "dup" | "fstat" => {
                self.check_keys(t, &["fd"], key);
                let fd = req!("fd").and_then(|f| self.int(f, IntTy::Fd, &what("fd"), scope))?;
                Some(match key {
                    "close" => Action::Close { fd },
                    "dup" => Action::Dup { fd },
                    _ => Action::Fstat { fd },
                })
            }
            "ioctl" => self.ioctl(t, v, scope),
            "raw_ioctl" => self.raw_ioctl(t, v, scope),
            "mkdirat2" | "mkdirat" => {
                self.check_keys(
                    t,
                    if key == "mkdirat2" {
                        &["dir", "path", "mode", "flags"]
                    } else {
                        &["dir", "path", "mode"]
                    },
                    key,
                );
                let d = dir(self);
                let path = req!("path").and_then(|p| self.template(p, &what("path"), scope));
                let m = mode(self, 0o700);
                if key == "mkdirat" {
                    return Some(Action::Mkdirat {
                        dir: d?,
                        path: path?,
                        mode: m?,
                    });
                }
                let flags = match t.get("flags") {
                    Some(f) => self.flags(f, AT_FLAGS, IntTy::U32, &what("flags"), scope),
                    None => Some(IntExpr::Lit(0)),
                };
                Some(Action::Mkdirat2 {
                    dir: d?,
                    path: path?,
                    mode: m?,
                    flags: flags?,
                })
            }
            "unlinkat" | "fstatat" => {
                self.check_keys(t, &["dir", "path", "flags"], key);
                let d = dir(self);
                let path = req!("path").and_then(|p| self.template(p, &what("path"), scope));
                let flags = match t.get("flags") {
                    Some(f) => self.flags(f, AT_FLAGS, IntTy::I32, &what("flags"), scope),
                    None => Some(IntExpr::Lit(0)),
                };
                if key == "unlinkat" {
                    Some(Action::Unlinkat {
                        dir: d?,
                        path: path?,
                        flags: flags?,
                    })
                } else {
                    Some(Action::Fstatat {
                        dir: d?,
                        path: path?,
                        flags: flags?,
                    })
                }
            }
            "mount" => {
                self.check_keys(t, &["source", "target", "fstype", "flags", "data"], key);
                let source = match t.get("source") {
                    Some(p) => self.template(p, &what("source"), scope),
                    None => expr::Template::parse("none").ok(),
                };
                let target = req!("target").and_then(|p| self.template(p, &what("target"), scope));
                let fstype = req!("fstype").and_then(|f| {
                    let s = self.string(f, &what("fstype"))?;
                    if s.is_empty()
                        || s.len() > 64
                        || !s
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
                    {
                        self.err(
                            span_of(f),
                            format!("`{s}` is not a filesystem type name"),
                            "bad fstype",
                        );
                        return None;
                    }
                    Some(s.to_string())
                });
                let flags = match t.get("flags") {
                    Some(f) => self.flags(f, MOUNT_FLAGS, IntTy::U32, &what("flags"), scope),
                    None => Some(IntExpr::Lit(0)),
                };
                let data = match t.get("data") {
                    Some(d) => self.template(d, &what("data"), scope),
                    None => expr::Template::parse("").ok(),
                };
                Some(Action::Mount {
                    source: source?,
                    target: target?,
                    fstype: fstype?,
                    flags: flags?,
                    data: data?,
                })
            }
            "umount" => {
                self.check_keys(t, &["target", "flags"], key);
                let target = req!("target").and_then(|p| self.template(p, &what("target"), scope));
                let flags = match t.get("flags") {
                    Some(f) => self.flags(f, UMOUNT_FLAGS, IntTy::I32, &what("flags"), scope),
                    None => Some(IntExpr::Lit(0)),
                };
                Some(Action::Umount {
                    target: target?,
                    flags: flags?,
                })
            }
            "symlinkat" => {
                self.check_keys(t, &["target", "dir", "path"], key);
                let target = req!("target").and_then(|p| self.template(p, &what("target"), scope));
                let d = dir(self);
                let path = req!("path").and_then(|p| self.template(p, &what("path"), scope));
                Some(Action::Symlinkat {
                    target: target?,
                    dir: d?,
                    path: path?,
                })
            }
            "rename" => {
                self.check_keys(t, &["from", "to"], key);
                let from = req!("from").and_then(|p| self.template(p, &what("from"), scope));
                let to = req!("to").and_then(|p| self.template(p, &what("to"), scope));
                Some(Action::Rename {
                    from: from?,
                    to: to?,
                })
            }
            "mkfifo" => {
                self.check_keys(t, &["dir", "path", "mode"], key);
                let d = dir(self);
                let path = req!("path").and_then(|p| self.template(p, &what("path"), scope));
                let m = mode(self, 0o644);
                Some(Action::Mkfifo {
                    dir: d?,
                    path: path?,
                    mode: m?,
                })
            }
            "write_file" | "write_agent_port" => {
                self.check_keys(
                    t,
                    if key == "write_file" {
                        &["path", "text", "hex", "size", "flags", "mode"]
                    } else {
                        &["text", "hex", "size"]
                    },
                    key,
                );
                let bytes = self.write_bytes(t, v, key);
                let size = match (t.get("size"), &bytes) {
                    (Some(m), _) => match self.literal(m, &what("size")) {
                        Some(n) if (1..=bundle::limits::MAX_WRITE_BYTES as i128).contains(&n) => {
                            Some(n as u64)
                        }
                        Some(n) => {
                            self.err(
                                span_of(m),
                                format!(
                                    "{key}.size = {n}: must be between 1 and {}",
                                    bundle::limits::MAX_WRITE_BYTES
                                ),
                                "out of range",
                            );
                            None
                        }
                        None => None,
                    },
                    (None, Some(b)) => Some(b.len() as u64),
                    (None, None) => None,
                };
                if key == "write_agent_port" {
                    return Some(Action::WriteAgentPort {
                        hex: bundle::encode_hex(&bytes?),
                        size: size?,
                    });
                }
                let path = req!("path").and_then(|p| self.template(p, &what("path"), scope));
                let flags = match t.get("flags") {
                    Some(f) => self.flags(f, OPEN_FLAGS, IntTy::I32, &what("flags"), scope),
                    None => Some(IntExpr::Lit(
                        ["O_WRONLY", "O_CREAT", "O_TRUNC"]
                            .iter()
                            .filter_map(|n| consts::lookup(OPEN_FLAGS, n))
                            .fold(0, |a, f| a | f)
                            .into(),
                    )),
                };
                let m = mode(self, 0o644);
                Some(Action::WriteFile {
                    path: path?,
                    flags: flags?,
                    mode: m?,
                    hex: bundle::encode_hex(&bytes?),
                    size: size?,
                })
            }
            "fcntl" => {
                self.check_keys(t, &["fd", "cmd", "arg"], key);
                let fd = req!("fd").and_then(|f| self.int(f, IntTy::Fd, &what("fd"), scope));
                let cmd = req!("cmd").and_then(|c| {
                    let s = self.string(c, &what("cmd"))?;
                    if consts::lookup(FCNTL_CMDS, s).is_none() {
                        let names: Vec<&str> = FCNTL_CMDS.iter().map(|(n, _)| *n).collect();
                        self.err_help(
                            span_of(c),
                            format!("unknown fcntl command `{s}`"),
                            "unknown",
                            format!("known: {}", names.join(", ")),
                        );
                        return None;
                    }
                    Some(s.to_string())
                });
                let arg = match t.get("arg") {
                    Some(a) => self.flags(
                        a,
                        &[
                            ("FD_CLOEXEC", 1),
                            ("O_NONBLOCK", 0o4000),
                            ("O_APPEND", 0o2000),
                        ],
                        IntTy::I32,
                        &what("arg"),
                        scope,
                    ),
                    None => Some(IntExpr::Lit(0)),
                };
                Some(Action::Fcntl {
                    fd: fd?,
                    cmd: cmd?,
                    arg: arg?,
                })
            }
            "setrlimit" | "getrlimit" => {
                self.check_keys(
                    t,
                    if key == "setrlimit" {
                        &["resource", "soft", "hard"]
                    } else {
                        &["resource"]
                    },
                    key,
                );
                let resource = req!("resource").and_then(|r| {
                    let s = self.string(r, &what("resource"))?;
                    if consts::lookup(RLIMITS, s).is_none() {
                        let names: Vec<&str> = RLIMITS.iter().map(|(n, _)| *n).collect();
                        let help = suggest(s, names.iter().copied()).map_or_else(
                            || format!("known: {}", names.join(", ")),
                            |x| format!("did you mean `{x}`?"),
                        );
                        self.err_help(
                            span_of(r),
                            format!("unknown resource `{s}`"),
                            "unknown",
                            help,
                        );
                        return None;
                    }
                    Some(s.to_string())
                });
                if key == "getrlimit" {
                    return Some(Action::Getrlimit {
                        resource: resource?,
                    });
                }
                let soft = req!("soft").and_then(|s| self.int(s, IntTy::U64, &what("soft"), scope));
                let hard = match t.get("hard") {
                    Some(h) => self.int(h, IntTy::U64, &what("hard"), scope),
                    None => soft.clone(),
                };
                Some(Action::Setrlimit {
                    resource: resource?,
                    soft: soft?,
                    hard: hard?,
                })
            }
            "exhaust_fds" => {
                self.check_keys(t, &["path", "max"], key);
                let path = match t.get("path") {
                    Some(p) => self.template(p, &what("path"), scope),
                    None => Some(Template::literal("/dev/null")),
                };
                let max = match t.get("max") {
                    Some(m) => match self.literal(m, &what("max")) {
                        Some(n) if (1..=bundle::limits::MAX_EXHAUST_FDS as i128).contains(&n) => {
                            Some(n as u32)
                        }
                        Some(n) => {
                            self.err(
                                span_of(m),
                                format!(
                                    "max = {n}: must be between 1 and {}",
                                    bundle::limits::MAX_EXHAUST_FDS
                                ),
                                "out of range",
                            );
                            None
                        }
                        None => None,
                    },
                    None => Some(65_536),
                };
                Some(Action::ExhaustFds {
                    path: path?,
                    max: max?,
                })
            }
            "read_file" | "list_dir" => {
                self.check_keys(
                    t,
                    if key == "read_file" {
                        &["path", "max_bytes"]
                    } else {
                        &["path"]
                    },
                    key,
                );
                let path = req!("path").and_then(|p| self.template(p, &what("path"), scope))?;
                if key == "list_dir" {
                    return Some(Action::ListDir { path });
                }
                let max_bytes = match t.get("max_bytes") {
                    Some(m) => match self.literal(m, &what("max_bytes")) {
                        Some(n) if (1..=bundle::limits::MAX_READ_BYTES as i128).contains(&n) => {
                            n as u64
                        }
                        Some(n) => {
                            self.err(
                                span_of(m),
                                format!(
                                    "{key}.max_bytes = {n}: must be between 1 and {}",
                                    bundle::limits::MAX_READ_BYTES
                                ),
                                "out of range",
                            );
                            return None;
                        }
                        None => return None,
                    },
                    None => 65_536,
                };
                Some(Action::ReadFile { path, max_bytes })
            }
            "wait_path" => {
                self.check_keys(t, &["path", "present"], key);
                let path = req!("path").and_then(|p| self.template(p, &what("path"), scope));
                let present = match t.get("present") {
                    Some(p) => self.boolean(p, &what("present")),
                    None => Some(true),
                };
                Some(Action::WaitPath {
                    path: path?,
                    present: present?,
                })
            }
            "dmesg" => {
                self.check_keys(t, &["max_lines"], key);
                let max_lines = match t.get("max_lines") {
                    Some(m) => match self.literal(m, &what("max_lines")) {
                        Some(n) if (1..=100_000).contains(&n) => n as u32,
                        Some(n) => {
                            self.err(
                                span_of(m),
                                format!("dmesg.max_lines = {n}: must be between 1 and 100000"),
                                "out of range",
                            );
                            return None;
                        }
                        None => return None,
                    },
                    None => 2_000,
                };
                Some(Action::Dmesg { max_lines })
            }
            "kselftest" => {
                self.check_keys(t, &["path", "args"], key);
                let path = req!("path").and_then(|p| self.template(p, &what("path"), scope));
                let mut args = Vec::new();
                if let Some(a) = t.get("args") {
                    match a.get_ref() {
                        DeValue::Array(items) => {
                            for item in items {
                                args.extend(self.template(item, &what("args"), scope));
                            }
                        }
                        other => self.err(
                            span_of(a),
                            format!(
                                "kselftest.args must be an array of strings, not {}",
                                type_name(other)
                            ),
                            "expected an array",
                        ),
                    }
                }
                Some(Action::Kselftest { path: path?, args })
            }
            other => {
                self.err(
                    span_of(v),
                    format!("internal: unhandled action {other}"),
                    "here",
                );
                None
            }
        }
    }

    fn ptr(&mut self, t: &DeTable<'_>) -> Option<ArgPtr> {
        match t.get("ptr") {
            None => Some(ArgPtr::Buffer),
            Some(p) => {
                let s = self.string(p, "ptr")?;
                match ArgPtr::from_name(s) {
                    Some(k) => Some(k),
                    None => {
                        let names: Vec<&str> = ArgPtr::ALL.iter().map(|k| k.name()).collect();
                        self.err_help(
                            span_of(p),
                            format!("unknown pointer kind `{s}`"),
                            "unknown",
                            format!("kinds: {}", names.join(", ")),
                        );
                        None
                    }
                }
            }
        }
    }

    fn ioctl(&mut self, t: &DeTable<'_>, v: &V<'_>, scope: &Scope) -> Option<Action> {
        let names: Vec<&str> = Ioctl::ALL.iter().map(|i| i.name()).collect();
        let Some(cmd_v) = t.get("cmd") else {
            self.err_help(
                span_of(v),
                "`ioctl` needs `cmd`",
                "missing `cmd`",
                format!(
                    "cmd is one of {}; use `raw_ioctl` for any other number",
                    names.join(", ")
                ),
            );
            return None;
        };
        let cmd_s = self.string(cmd_v, "ioctl.cmd")?;
        let Some(ioctl) = Ioctl::from_name(cmd_s) else {
            let help = match suggest(cmd_s, names.iter().copied()) {
                Some(s) => format!("did you mean `{s}`? For other numbers use `raw_ioctl`."),
                None => format!(
                    "goldfish ioctls: {}; for other numbers use `raw_ioctl`",
                    names.join(", ")
                ),
            };
            self.err_help(
                span_of(cmd_v),
                format!("unknown goldfish ioctl `{cmd_s}`"),
                "unknown",
                help,
            );
            return None;
        };
        let mut allowed = vec!["fd", "cmd", "ptr"];
        allowed.extend(ioctl.layout().iter().map(|(n, _, _)| *n));
        self.check_keys(t, &allowed, &format!("ioctl {}", ioctl.name()));
        let fd = match t.get("fd") {
            Some(f) => self.int(f, IntTy::Fd, "ioctl.fd", scope),
            None => {
                self.err(span_of(v), "`ioctl` needs `fd`", "missing `fd`");
                None
            }
        };
        let mut fields = BTreeMap::new();
        for &(field, _, width) in ioctl.layout() {
            if let Some(fv) = t.get(field) {
                let ty = if width == 8 { IntTy::U64 } else { IntTy::U32 };
                if let Some(e) = self.int(fv, ty, &format!("{}.{field}", ioctl.name()), scope) {
                    fields.insert(field.to_string(), e);
                }
            }
        }
        let ptr = self.ptr(t)?;
        Some(Action::Ioctl {
            fd: fd?,
            cmd: ioctl.name().to_string(),
            fields,
            ptr,
        })
    }

    fn raw_ioctl(&mut self, t: &DeTable<'_>, v: &V<'_>, scope: &Scope) -> Option<Action> {
        self.check_keys(t, &["fd", "request", "bytes", "arg", "ptr"], "raw_ioctl");
        let fd = match t.get("fd") {
            Some(f) => self.int(f, IntTy::Fd, "raw_ioctl.fd", scope),
            None => {
                self.err(span_of(v), "`raw_ioctl` needs `fd`", "missing `fd`");
                None
            }
        };
        let request = match t.get("request") {
            Some(r) => match r.get_ref() {
                DeValue::Table(rt) => self.ioc_request(rt, r),
                _ => self.int(r, IntTy::U32, "raw_ioctl.request", scope),
            },
            None => {
                self.err_help(
                    span_of(v),
                    "`raw_ioctl` needs `request`",
                    "missing `request`",
                    "a number, or { dir = \"rw\", type = \"G\", nr = 10, size = 24 }",
                );
                None
            }
        };
        let ptr = self.ptr(t)?;
        let arg = match (t.get("bytes"), t.get("arg")) {
            (Some(b), None) => {
                let s = self.string(b, "raw_ioctl.bytes")?;
                match bundle::decode_hex(s) {
                    Ok(bytes) if bytes.len() <= bundle::limits::MAX_RAW_BYTES => {
                        Some(RawArg::Bytes {
                            hex: bundle::encode_hex(&bytes),
                            ptr,
                        })
                    }
                    Ok(bytes) => {
                        self.err(
                            span_of(b),
                            format!(
                                "{} bytes; at most {} are allowed",
                                bytes.len(),
                                bundle::limits::MAX_RAW_BYTES
                            ),
                            "too many bytes",
                        );
                        None
                    }
                    Err(e) => {
                        self.err_help(
                            span_of(b),
                            format!("raw_ioctl.bytes: {e}"),
                            "not hex",
                            "write bytes as hex, e.g. \"00 10 00 00\"",
                        );
                        None
                    }
                }
            }
            (None, Some(a)) => {
                if t.get("ptr").is_some() {
                    self.err(
                        span_of(t.get("ptr").expect("present")),
                        "`ptr` places `bytes`; with `arg` the integer itself is passed",
                        "no buffer to place",
                    );
                }
                self.int(a, IntTy::U64, "raw_ioctl.arg", scope)
                    .map(|value| RawArg::Value { value })
            }
            (Some(_), Some(a)) => {
                self.err(
                    span_of(a),
                    "give either `bytes` (a buffer) or `arg` (an integer), not both",
                    "both",
                );
                None
            }
            (None, None) => {
                // A zero-filled buffer as large as the request's size field.
                let size = match &request {
                    Some(IntExpr::Lit(r)) => ((*r as u64 >> 16) & 0x3fff) as usize,
                    _ => 0,
                };
                Some(RawArg::Bytes {
                    hex: bundle::encode_hex(&vec![0u8; size]),
                    ptr,
                })
            }
        };
        Some(Action::RawIoctl {
            fd: fd?,
            request: request?,
            arg: arg?,
        })
    }

    /// `{ dir = "rw", type = "G", nr = 10, size = 24 }` → `_IOC(…)`.
    fn ioc_request(&mut self, t: &DeTable<'_>, v: &V<'_>) -> Option<IntExpr> {
        self.check_keys(t, &["dir", "type", "nr", "size"], "an ioctl request");
        let dir = match t.get("dir") {
            None => Some(0),
            Some(d) => match self.string(d, "request.dir") {
                Some("none") => Some(0),
                Some("w") => Some(1),
                Some("r") => Some(2),
                Some("rw" | "wr") => Some(3),
                Some(other) => {
                    self.err_help(
                        span_of(d),
                        format!("unknown direction `{other}`"),
                        "unknown",
                        "none, r, w or rw (as _IO, _IOR, _IOW, _IOWR)",
                    );
                    None
                }
                None => None,
            },
        };
        let ty = match t.get("type") {
            Some(x) => match x.get_ref() {
                DeValue::String(s) if s.len() == 1 && s.is_ascii() => Some(s.as_bytes()[0]),
                DeValue::Integer(_) => match self.literal(x, "request.type") {
                    Some(n) if (0..=255).contains(&n) => Some(n as u8),
                    Some(_) => {
                        self.err(span_of(x), "request.type must fit a byte", "out of range");
                        None
                    }
                    None => None,
                },
                _ => {
                    self.err(
                        span_of(x),
                        "request.type is one character (\"G\") or a byte",
                        "expected a character",
                    );
                    None
                }
            },
            None => {
                self.err(
                    span_of(v),
                    "an ioctl request table needs `type`",
                    "missing `type`",
                );
                None
            }
        };
        let field = |cx: &mut Self, key: &str, max: i128| -> Option<i128> {
            match t.get(key) {
                Some(x) => match cx.literal(x, key) {
                    Some(n) if (0..=max).contains(&n) => Some(n),
                    Some(n) => {
                        cx.err(
                            span_of(x),
                            format!("request.{key} = {n}: must be 0 to {max}"),
                            "out of range",
                        );
                        None
                    }
                    None => None,
                },
                None => Some(0),
            }
        };
        let nr = field(self, "nr", 255);
        let size = field(self, "size", 0x3fff);
        Some(IntExpr::Lit(
            uapi::ioc(dir?, ty?, nr? as u8, size? as usize) as i128,
        ))
    }

    // ----- fault injection -----

    /// `inject = { fault = "slab", nth = "each" }` on a call, or on a
    /// plain block whose last step is the call (the steps before it set
    /// each attempt up). Returns the injection and the attempted step.
    fn inject(
        &mut self,
        v: &V<'_>,
        kind: &StepKind,
        action: &Action,
        nest: Nest,
        id: u32,
    ) -> Option<(bundle::Inject, u32)> {
        let t = self.table(v, "inject")?;
        self.check_keys(t, &["fault", "nth", "errno"], "inject");
        let span = span_of(v);
        let target = match (kind, action) {
            (StepKind::Call { op }, _) if op == "kselftest" => {
                self.err(
                    span,
                    "a kselftest runs a program: fault injection is per call",
                    "not a call",
                );
                return None;
            }
            (StepKind::Call { .. }, _) => id,
            (StepKind::Block, Action::Block { steps, .. }) => match steps.last() {
                Some(last)
                    if last.action.children().is_empty()
                        && !matches!(
                            last.action,
                            Action::Host { .. } | Action::Checkpoint | Action::Sleep { .. }
                        ) =>
                {
                    last.id
                }
                _ => {
                    self.err_help(span, "the block's last step is not a call", "nothing to attempt", "on a block, `inject` attempts its last step, a call; the steps before it set each attempt up");
                    return None;
                }
            },
            _ => {
                self.err_help(
                    span,
                    "`inject` goes on a call or a plain block",
                    "not a call",
                    "put it on the call's step, or on a block of set-up steps ending with the call",
                );
                return None;
            }
        };
        if nest.detached {
            self.err(
                span,
                "fault injection inside a parallel group or a fork is not supported",
                "inside a group",
            );
            return None;
        }
        let fault = match t.get("fault") {
            Some(f) => match self.string(f, "inject.fault") {
                Some(name) => match bundle::FaultKind::from_name(name) {
                    Some(k) => k,
                    None => {
                        self.err_help(
                            span_of(f),
                            format!("unknown fault kind `{name}`"),
                            "unknown",
                            "slab, page or usercopy",
                        );
                        return None;
                    }
                },
                None => return None,
            },
            None => {
                self.err_help(
                    span,
                    "`inject` needs `fault`",
                    "missing `fault`",
                    "fault = \"slab\", \"page\" or \"usercopy\"",
                );
                return None;
            }
        };
        let max = bundle::limits::MAX_INJECT_ATTEMPTS;
        let (first, last) = match t.get("nth") {
            None => (1, DEFAULT_INJECT_ATTEMPTS),
            Some(n) => match n.get_ref() {
                DeValue::String(s) if s == "each" => (1, DEFAULT_INJECT_ATTEMPTS),
                DeValue::String(s) => {
                    let parsed = s.split_once("..").and_then(|(a, b)| {
                        Some((a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?))
                    });
                    match parsed {
                        Some((a, b)) if a >= 1 && b >= a && b - a < max => (a, b),
                        _ => {
                            self.err_help(span_of(n), format!("nth = {s:?}"), "bad range", format!("\"each\", a fault number from 1, or a range \"3..10\" of at most {max} numbers"));
                            return None;
                        }
                    }
                }
                _ => match self.literal(n, "inject.nth") {
                    Some(k) if (1..=u32::MAX as i128).contains(&k) => (k as u32, k as u32),
                    Some(k) => {
                        self.err(
                            span_of(n),
                            format!("nth = {k}: fault numbers count from 1"),
                            "out of range",
                        );
                        return None;
                    }
                    None => return None,
                },
            },
        };
        for (name, span) in t
            .get("errno")
            .and_then(|e| match e.get_ref() {
                DeValue::String(_) => self
                    .string(e, "inject.errno")
                    .map(|s| vec![(s.to_string(), span_of(e))]),
                _ => self.string_list(e, "inject.errno"),
            })
            .unwrap_or_default()
        {
            if consts::errno_value(&name).is_some() {
                self.inject_errnos.push(name);
            } else {
                self.err_help(
                    span,
                    format!("`{name}` is not an errno name"),
                    "unknown errno",
                    "errno names are the kernel's, like ENOMEM or ENOSPC",
                );
            }
        }
        Some((bundle::Inject { fault, first, last }, target))
    }

    // ----- expectations -----

    #[allow(clippy::too_many_arguments)]
    fn push(&mut self, step: u32, check: Check, span: Span, implicit: bool) {
        let id = self.expectations.len();
        self.expectations.push(Expectation {
            id,
            step,
            check,
            span,
            implicit,
        });
    }

    /// Parse `expect`; returns whether the step needs a device snapshot
    /// and whether the agent scans for leaks after it.
    #[allow(clippy::too_many_arguments)]
    fn expect(
        &mut self,
        v: Option<&V<'_>>,
        step: u32,
        kind: &StepKind,
        action: &Action,
        scopes: (&Scope, &Scope),
        nest: Nest,
        step_span: Span,
    ) -> (bool, bool) {
        let (scope, after) = scopes;
        let is_call = matches!(kind, StepKind::Call { .. });
        let has_result = is_call || matches!(kind, StepKind::Fork | StepKind::Host);
        let Some(v) = v else {
            if has_result {
                self.push_default(step, kind, step_span);
            }
            return (false, false);
        };
        let Some(t) = self.table(v, "expect") else {
            return (false, false);
        };
        let mut allowed: Vec<&str> = vec!["device", "kernel_log", "report", "kernel"];
        if has_result {
            allowed.push("ok");
        }
        if is_call || matches!(kind, StepKind::Fork) {
            allowed.extend(["errno", "ret", "out", "calls"]);
        }
        if matches!(action, Action::Kselftest { .. }) {
            allowed.push("ktap");
        }
        let what = match kind {
            StepKind::Call { op } => format!("expect of a `{op}` step"),
            StepKind::Host => "expect of a host step".into(),
            _ => format!("expect of a {} step", format!("{kind:?}").to_lowercase()),
        };
        self.check_keys(t, &allowed, &what);

        let mut outcome_given = false;
        let mut ok_val: Option<(bool, Span)> = None;
        if let Some(o) = t.get("ok").filter(|_| has_result) {
            outcome_given = true;
            match o.get_ref() {
                DeValue::Boolean(b) => ok_val = Some((*b, span_of(o))),
                DeValue::String(s) if s == "any" => {}
                other => self.err_help(
                    span_of(o),
                    format!(
                        "expect.ok must be true, false or \"any\", not {}",
                        type_name(other)
                    ),
                    "expected a boolean",
                    "\"any\" accepts success and failure",
                ),
            }
        }
        if let Some(e) = t.get("errno").filter(|_| allowed.contains(&"errno")) {
            outcome_given = true;
            if let Some((true, _)) = ok_val {
                self.err(
                    span_of(e),
                    "`ok = true` and an errno contradict each other",
                    "contradiction",
                );
            }
            if let Some(name) = self.string(e, "expect.errno") {
                if consts::errno_value(name).is_some() {
                    self.push(
                        step,
                        Check::Errno {
                            errno: name.to_string(),
                        },
                        span_of(e),
                        false,
                    );
                } else {
                    let help = match suggest(name, ERRNOS.iter().map(|(n, _)| *n)) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => "errno names are the kernel's, like ENOTTY or EFAULT".into(),
                    };
                    self.err_help(
                        span_of(e),
                        format!("`{name}` is not an errno name"),
                        "unknown errno",
                        help,
                    );
                }
            }
            ok_val = None;
        }
        if let Some((ok, span)) = ok_val {
            if matches!(kind, StepKind::Host) {
                self.push(step, Check::Host { ok }, span, false);
            } else {
                self.push(step, Check::Ok { ok }, span, false);
            }
        }
        if let Some(r) = t.get("ret").filter(|_| allowed.contains(&"ret")) {
            outcome_given = true;
            for (m, span) in self.matchers(r, Kind::Int, "expect.ret", scope) {
                self.push(step, Check::Ret { matcher: m }, span, false);
            }
        }
        if !outcome_given && has_result {
            self.push_default(step, kind, span_of(v));
        }
        if let Some(o) = t.get("out").filter(|_| allowed.contains(&"out"))
            && let Some(ot) = self.table(o, "expect.out")
        {
            let fields = out_fields(action);
            if fields.is_empty() {
                self.err(
                    span_of(o),
                    format!("`{}` reports no output fields", action.op()),
                    "nothing to compare",
                );
            } else {
                let names: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
                self.check_keys(ot, &names, &format!("the output of `{}`", action.op()));
                for (k, fv) in ot.iter() {
                    if let Some((_, kind)) = fields.iter().find(|(n, _)| *n == k.get_ref().as_ref())
                    {
                        for (m, span) in
                            self.matchers(fv, *kind, &format!("expect.out.{}", k.get_ref()), scope)
                        {
                            self.push(
                                step,
                                Check::Out {
                                    field: k.get_ref().to_string(),
                                    matcher: m,
                                },
                                span,
                                false,
                            );
                        }
                    }
                }
            }
        }
        if let Some(c) = t.get("calls").filter(|_| allowed.contains(&"calls"))
            && let Some(n) = self.literal(c, "expect.calls")
        {
            if (0..=u64::MAX as i128).contains(&n) {
                self.push(step, Check::Calls { count: n as u64 }, span_of(c), false);
            } else {
                self.err(span_of(c), "expect.calls must be 0 or more", "out of range");
            }
        }
        if let Some(k) = t.get("kernel_log")
            && let Some(kt) = self.table(k, "expect.kernel_log")
        {
            let rules = self.kernel_log_rules(kt, &[], "expect.kernel_log");
            if !rules.is_empty() {
                self.push(step, Check::KernelLog { rules }, span_of(k), false);
            }
        }
        if let Some(k) = t.get("ktap").filter(|_| allowed.contains(&"ktap"))
            && let Some(kt) = self.table(k, "expect.ktap")
        {
            self.ktap(kt, step);
        }
        if let Some(r) = t.get("report") {
            let kinds = match r.get_ref() {
                DeValue::String(_) => self
                    .string(r, "expect.report")
                    .map(|s| vec![(s.to_string(), span_of(r))]),
                _ => self.string_list(r, "expect.report"),
            }
            .unwrap_or_default();
            let mut names = Vec::new();
            for (k, span) in kinds {
                if ReportKind::from_name(&k).is_some() {
                    names.push(k);
                } else {
                    let all: Vec<&str> = ReportKind::ALL.iter().map(|k| k.name()).collect();
                    self.err_help(
                        span,
                        format!("`{k}` is not a kind of kernel report"),
                        "unknown",
                        format!("kinds: {}", all.join(", ")),
                    );
                }
            }
            if !names.is_empty() {
                self.push(step, Check::Report { kinds: names }, span_of(r), false);
            }
        }
        let mut kmemleak_scan = false;
        if let Some(k) = t.get("kernel")
            && let Some(kt) = self.table(k, "expect.kernel")
        {
            self.check_keys(kt, &["leaks"], "expect.kernel");
            if let Some(l) = kt.get("leaks") {
                if nest.detached {
                    self.err_help(
                        span_of(l),
                        "a leak check inside a parallel group or a forked child",
                        "cannot scan here",
                        "put a step with `expect.kernel = { leaks = 0 }` after the block",
                    );
                } else {
                    for (m, span) in self.matchers(l, Kind::Int, "expect.kernel.leaks", scope) {
                        self.push(step, Check::Leaks { matcher: m }, span, false);
                    }
                    kmemleak_scan = true;
                }
            }
        }
        let mut wants_sync = false;
        if let Some(d) = t.get("device")
            && let Some(dt) = self.table(d, "expect.device")
        {
            if nest.detached {
                self.err_help(
                    span_of(d),
                    "device expectations inside a parallel group or a forked child",
                    "cannot stop here",
                    "the agent can only stop the whole scenario between top-level steps: put a step with `expect.device` after the block",
                );
            } else {
                wants_sync = true;
                self.requires.goldfish = true;
                self.device(dt, step, after);
            }
        }
        (wants_sync, kmemleak_scan)
    }

    fn push_default(&mut self, step: u32, kind: &StepKind, span: Span) {
        let check = if matches!(kind, StepKind::Host) {
            Check::Host { ok: true }
        } else {
            Check::Ok { ok: true }
        };
        self.push(step, check, span, true);
    }

    fn ktap(&mut self, t: &DeTable<'_>, step: u32) {
        self.check_keys(
            t,
            &["all_pass", "planned", "pass", "fail", "skip", "xfail"],
            "expect.ktap",
        );
        if let Some(a) = t.get("all_pass")
            && let Some(b) = self.boolean(a, "expect.ktap.all_pass")
        {
            if b {
                self.push(
                    step,
                    Check::Ktap {
                        check: KtapCheck::AllPass,
                    },
                    span_of(a),
                    false,
                );
            } else {
                self.err_help(
                    span_of(a),
                    "all_pass = false checks nothing",
                    "nothing",
                    "list the tests that must fail in `fail = [...]`",
                );
            }
        }
        if let Some(p) = t.get("planned")
            && let Some(n) = self.literal(p, "expect.ktap.planned")
        {
            if (0..=u32::MAX as i128).contains(&n) {
                self.push(
                    step,
                    Check::Ktap {
                        check: KtapCheck::Planned { count: n as u32 },
                    },
                    span_of(p),
                    false,
                );
            } else {
                self.err(span_of(p), "planned is out of range", "out of range");
            }
        }
        for (key, status) in [
            ("pass", "ok"),
            ("fail", "not_ok"),
            ("skip", "skip"),
            ("xfail", "xfail"),
        ] {
            if let Some(l) = t.get(key) {
                let tests: Vec<String> = self
                    .string_list(l, &format!("expect.ktap.{key}"))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(s, _)| s)
                    .collect();
                if !tests.is_empty() {
                    self.push(
                        step,
                        Check::Ktap {
                            check: KtapCheck::Status {
                                status: status.into(),
                                tests,
                            },
                        },
                        span_of(l),
                        false,
                    );
                }
            }
        }
    }

    fn device(&mut self, t: &DeTable<'_>, step: u32, scope: &Scope) {
        self.check_keys(
            t,
            &[
                "handles",
                "blocks",
                "ping_pages",
                "has_block",
                "lacks_block",
                "all_free",
            ],
            "expect.device",
        );
        for key in ["handles", "blocks", "ping_pages"] {
            if let Some(v) = t.get(key) {
                for (m, span) in self.matchers(v, Kind::Int, &format!("expect.device.{key}"), scope)
                {
                    let check = match key {
                        "handles" => DeviceCheck::Handles { matcher: m },
                        "blocks" => DeviceCheck::Blocks { matcher: m },
                        _ => DeviceCheck::PingPages { matcher: m },
                    };
                    self.push(step, Check::Device { check }, span, false);
                }
            }
        }
        for (key, present) in [("has_block", true), ("lacks_block", false)] {
            if let Some(v) = t.get(key)
                && let Some(offset) =
                    self.int(v, IntTy::U64, &format!("expect.device.{key}"), scope)
            {
                self.push(
                    step,
                    Check::Device {
                        check: DeviceCheck::Block { offset, present },
                    },
                    span_of(v),
                    false,
                );
            }
        }
        if let Some(v) = t.get("all_free")
            && let Some(b) = self.boolean(v, "expect.device.all_free")
        {
            if b {
                self.push(
                    step,
                    Check::Device {
                        check: DeviceCheck::AllFree,
                    },
                    span_of(v),
                    false,
                );
            } else {
                self.err(span_of(v), "all_free = false checks nothing", "nothing");
            }
        }
    }

    /// A value to compare with: a scalar (equality) or a table of
    /// comparisons (`{ ge = 0, ne = 3 }`), each returned with its span.
    fn matchers(
        &mut self,
        v: &V<'_>,
        kind: Kind,
        what: &str,
        scope: &Scope,
    ) -> Vec<(Matcher, Span)> {
        let ops: &[(&str, Op)] = &[
            ("eq", Op::Eq),
            ("ne", Op::Ne),
            ("lt", Op::Lt),
            ("le", Op::Le),
            ("gt", Op::Gt),
            ("ge", Op::Ge),
            ("bits_set", Op::BitsSet),
            ("bits_clear", Op::BitsClear),
            ("matches", Op::Matches),
            ("not_matches", Op::NotMatches),
            ("contains", Op::Contains),
            ("not_contains", Op::NotContains),
        ];
        let allowed_ops: &[Op] = match kind {
            Kind::Int => &[
                Op::Eq,
                Op::Ne,
                Op::Lt,
                Op::Le,
                Op::Gt,
                Op::Ge,
                Op::BitsSet,
                Op::BitsClear,
            ],
            Kind::Str => &[
                Op::Eq,
                Op::Ne,
                Op::Matches,
                Op::NotMatches,
                Op::Contains,
                Op::NotContains,
            ],
            Kind::Bool => &[Op::Eq, Op::Ne],
            Kind::StrList => &[Op::Contains, Op::NotContains, Op::Matches, Op::NotMatches],
        };
        let mut out = Vec::new();
        match v.get_ref() {
            DeValue::Table(t) => {
                let names: Vec<&str> = ops
                    .iter()
                    .filter(|(_, o)| allowed_ops.contains(o))
                    .map(|(n, _)| *n)
                    .collect();
                self.check_keys(t, &names, what);
                for (k, ov) in t.iter() {
                    let Some((_, op)) = ops.iter().find(|(n, _)| *n == k.get_ref().as_ref()) else {
                        continue;
                    };
                    if !allowed_ops.contains(op) {
                        continue; // reported by check_keys
                    }
                    if let Some(value) = self.expected(ov, kind, *op, what, scope) {
                        out.push((Matcher { op: *op, value }, span_of(ov)));
                    }
                }
                if t.is_empty() {
                    self.err(
                        span_of(v),
                        format!("{what}: an empty table compares nothing"),
                        "empty",
                    );
                }
            }
            _ => {
                if kind == Kind::StrList {
                    self.err_help(
                        span_of(v),
                        format!("{what} is a list: compare it with a table"),
                        "a list",
                        "e.g. { contains = \"x\" } or { not_matches = \"^tmp\" }",
                    );
                } else if let Some(value) = self.expected(v, kind, Op::Eq, what, scope) {
                    out.push((Matcher { op: Op::Eq, value }, span_of(v)));
                }
            }
        }
        out
    }

    fn expected(
        &mut self,
        v: &V<'_>,
        kind: Kind,
        op: Op,
        what: &str,
        scope: &Scope,
    ) -> Option<Expected> {
        match (kind, op) {
            (Kind::Int, Op::BitsSet | Op::BitsClear) => {
                let mut table: Vec<(&str, i64)> = OPEN_FLAGS.to_vec();
                table.extend_from_slice(AT_FLAGS);
                table.push(("FD_CLOEXEC", consts::FD_CLOEXEC));
                self.flags(v, &table, IntTy::U64, what, scope)
                    .map(Expected::Int)
            }
            (Kind::Int, _) => match v.get_ref() {
                DeValue::String(s) if consts::errno_value(s).is_some() => {
                    self.err_help(
                        span_of(v),
                        format!("{what} compares numbers; `{s}` is an errno"),
                        "an errno",
                        "write `errno = \"…\"` to expect a failure",
                    );
                    None
                }
                // Comparisons may be negative (ret = -1) and as wide as u64.
                _ => self.int(v, IntTy::Wide, what, scope).map(Expected::Int),
            },
            (Kind::Str | Kind::StrList, Op::Matches | Op::NotMatches) => {
                let s = self.string(v, what)?;
                self.pattern(s, span_of(v)).map(|p| Expected::Str(p.regex))
            }
            (Kind::Str | Kind::StrList, _) => {
                self.string(v, what).map(|s| Expected::Str(s.to_string()))
            }
            (Kind::Bool, _) => self.boolean(v, what).map(Expected::Bool),
        }
    }
}

fn action_host_name(a: &Action) -> String {
    match a {
        Action::Host { what } => format!("host {what}"),
        _ => "host".into(),
    }
}

/// A TOML value as JSON (integers as wide as they come; dates as text).
fn to_json(v: &DeValue<'_>) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        DeValue::String(s) => J::String(s.to_string()),
        DeValue::Integer(i) => match i128::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => {
                if let Ok(x) = i64::try_from(n) {
                    J::from(x)
                } else if let Ok(x) = u64::try_from(n) {
                    J::from(x)
                } else {
                    J::String(n.to_string())
                }
            }
            Err(_) => J::String(i.as_str().to_string()),
        },
        DeValue::Float(f) => f
            .as_str()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(J::Null, J::Number),
        DeValue::Boolean(b) => J::Bool(*b),
        DeValue::Datetime(d) => J::String(d.to_string()),
        DeValue::Array(a) => J::Array(a.iter().map(|x| to_json(x.get_ref())).collect()),
        DeValue::Table(t) => J::Object(
            t.iter()
                .map(|(k, x)| (k.get_ref().to_string(), to_json(x.get_ref())))
                .collect(),
        ),
    }
}
