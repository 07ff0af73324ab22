//! Running a bundle: resolving `${…}` values, making each call between a
//! `CallBegin` and a `CallEnd`, repeats, parallel groups, forked children,
//! kselftest binaries and the stops at sync points.
//!
//! The runner reports; it does not judge. A step that cannot be run (an
//! unset variable, a value that does not fit its field) ends with
//! `StepEnd { error }` and the bundle goes on, so one broken step does not
//! hide what the rest would have shown.

use std::collections::{HashMap, VecDeque};
use std::ffi::CString;
use std::io::{BufRead, Read};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use gasbench_abi::bundle::{
    Action, ArgPtr, Bundle, FaultKind, RawArg, Step, decode_hex, encode_hex,
};
use gasbench_abi::consts::{self, FCNTL_CMDS, RLIMITS};
use gasbench_abi::expr::{IntExpr, Template, VarRef};
use gasbench_abi::kmsg::Marker;
use gasbench_abi::ktap::KtapSummary;
use gasbench_abi::protocol::{
    AgentMsg, CallRecord, FaultAttempt, HostMsg, KtapResult, LogLevel, ThreadId,
};
use gasbench_abi::uapi::Ioctl;
use serde_json::{Value, json};

use crate::argbuf::ArgBuf;
use crate::kdebug::{self, FailNth};
use crate::out::Out;
use crate::sys::{self, cstring, errno, errno_name};

/// Why a bundle stopped before its end.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// The host asked for a shutdown while the agent waited.
    Shutdown,
    /// The host went away.
    Lost(String),
}

/// What the agent does at a sync point.
pub trait Host {
    fn wait_sync(&mut self, bundle: u64, sync: u32) -> Result<(), Stop>;
}

/// No host (`--local`): say so and go on.
pub struct NoHost<'a>(pub &'a Out);

impl Host for NoHost<'_> {
    fn wait_sync(&mut self, _bundle: u64, sync: u32) -> Result<(), Stop> {
        self.0.log(
            LogLevel::Info,
            format!("sync point {sync}: no host is attached, continuing"),
        );
        Ok(())
    }
}

/// The host on the other end of the port: wait for its `Resume`.
pub struct PortHost<'a> {
    pub input: &'a mut dyn BufRead,
    pub out: &'a Out,
    /// End of input means the host is gone (stdio), rather than not yet
    /// connected (a virtio port reads 0 bytes while nobody listens).
    pub eof_is_lost: bool,
}

impl Host for PortHost<'_> {
    fn wait_sync(&mut self, bundle: u64, sync: u32) -> Result<(), Stop> {
        loop {
            match read_host_msg(self.input, self.out, self.eof_is_lost)? {
                HostMsg::Resume { bundle: b, sync: s } if b == bundle && s == sync => return Ok(()),
                HostMsg::Shutdown => return Err(Stop::Shutdown),
                other => self.out.log(
                    LogLevel::Warn,
                    format!("waiting at sync point {sync} of bundle {bundle}; ignored {other:?}"),
                ),
            }
        }
    }
}

/// Longest host message line the agent accepts.
const MAX_HOST_LINE: usize = 1 << 20;

/// Read the next well-formed host message; malformed lines are logged and
/// skipped.
pub fn read_host_msg(
    input: &mut dyn BufRead,
    out: &Out,
    eof_is_lost: bool,
) -> Result<HostMsg, Stop> {
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = input
            .take(MAX_HOST_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| Stop::Lost(format!("reading the port: {e}")))?;
        if n == 0 {
            if eof_is_lost {
                return Err(Stop::Lost("the host closed the port".into()));
            }
            // Nobody on the other end yet: poll gently.
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        if line.len() > MAX_HOST_LINE {
            out.log(LogLevel::Warn, "host message longer than 1 MiB ignored");
            // Skip the rest of the over-long line.
            let mut rest = Vec::new();
            let _ = input.read_until(b'\n', &mut rest);
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        match serde_json::from_str::<HostMsg>(text) {
            Ok(msg) => return Ok(msg),
            Err(e) => out.log(LogLevel::Warn, format!("bad host message ({e}): {text}")),
        }
    }
}

/// A remembered call result.
#[derive(Clone, Debug)]
struct Captured {
    ret: i64,
    fd: Option<i32>,
    out: Value,
}

/// Per thread of execution.
#[derive(Clone)]
struct Ctx {
    thread: ThreadId,
    thread_index: u32,
    iteration: u32,
    vars: HashMap<String, Captured>,
    /// Inside a parallel group or a forked child: no sync points, no forks.
    nested: bool,
    /// The fault the next call arms (systematic fault injection).
    arm: Option<(FaultKind, u32)>,
    /// What the last armed call did: its record, or why it could not be
    /// armed.
    armed: Armed,
}

/// The outcome of the last armed call (shared by clones: only the main
/// thread arms faults).
#[derive(Clone, Default)]
struct Armed(std::sync::Arc<std::sync::Mutex<Option<Result<CallRecord, String>>>>);

impl Armed {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Result<CallRecord, String>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct Runner<'a> {
    pub out: &'a Out,
    pub bundle_id: u64,
    pub mkdirat2_nr: Option<i64>,
    /// The kernel log, for call markers (when the bundle asks for them).
    pub kmsg: std::sync::OnceLock<Option<std::fs::File>>,
    pub workdir: String,
}

type StepResult = Result<(), String>;

impl Runner<'_> {
    /// Run a whole bundle, from `BundleBegin` to `BundleEnd`.
    pub fn run(&self, bundle: &Bundle, host: &mut dyn Host) -> Result<(), Stop> {
        self.out.send(&AgentMsg::BundleBegin {
            bundle: self.bundle_id,
            scenario: bundle.scenario.clone(),
            steps: bundle.all_steps().len() as u32,
        });
        let thread = sys::next_thread_id();
        self.out.send(&AgentMsg::Thread {
            thread,
            parent: None,
            step: None,
            pid: sys::getpid(),
        });
        let mut ctx = Ctx {
            thread,
            thread_index: 0,
            iteration: 0,
            vars: HashMap::new(),
            nested: false,
            arm: None,
            armed: Default::default(),
        };
        let _ = self
            .kmsg
            .set(bundle.kmsg_markers.then(kdebug::open_kmsg).flatten());
        if bundle.kmemleak
            && let Err(e) = kdebug::kmemleak_forget()
        {
            self.out.log(LogLevel::Warn, format!("kmemleak: {e}"));
        }
        let result = self.run_steps(&mut ctx, &bundle.steps, Some(host));
        if bundle.kmemleak && result.is_ok() {
            self.send_scan(None);
        }
        let error = match &result {
            Ok(()) => None,
            Err(Stop::Shutdown) => Some("shutdown requested during the bundle".to_string()),
            Err(Stop::Lost(why)) => Some(why.clone()),
        };
        self.out.send(&AgentMsg::BundleEnd {
            bundle: self.bundle_id,
            error,
        });
        result
    }

    fn run_steps(
        &self,
        ctx: &mut Ctx,
        steps: &[Step],
        mut host: Option<&mut dyn Host>,
    ) -> Result<(), Stop> {
        for step in steps {
            self.out.send(&AgentMsg::StepBegin {
                bundle: self.bundle_id,
                step: step.id,
                thread: ctx.thread,
                name: step.name.clone(),
            });
            let result = match step.inject {
                Some(_) => self.run_injected(ctx, step),
                None => self.run_step(ctx, step),
            };
            self.out.send(&AgentMsg::StepEnd {
                bundle: self.bundle_id,
                step: step.id,
                thread: ctx.thread,
                error: result.err(),
            });
            if step.kmemleak_scan {
                self.send_scan(Some(step.id));
            }
            if let Some(sync) = step.sync {
                match host.as_deref_mut() {
                    Some(h) if !ctx.nested => {
                        self.out.send(&AgentMsg::SyncWait {
                            bundle: self.bundle_id,
                            sync,
                            step: step.id,
                        });
                        h.wait_sync(self.bundle_id, sync)?;
                    }
                    _ => self.out.log(
                        LogLevel::Warn,
                        format!(
                            "step {}: sync point {sync} inside a group or a forked child is skipped",
                            step.id
                        ),
                    ),
                }
            }
        }
        Ok(())
    }

    fn run_step(&self, ctx: &mut Ctx, step: &Step) -> StepResult {
        match &step.action {
            Action::Host { .. } | Action::Checkpoint => Ok(()),
            Action::Sleep { ms } => {
                for _ in 0..step.repeat {
                    std::thread::sleep(Duration::from_millis(*ms));
                }
                Ok(())
            }
            Action::Block { threads: 0, steps } => {
                for i in 0..step.repeat {
                    ctx.iteration = i;
                    // Errors of inner steps are reported by the inner steps.
                    self.run_steps(ctx, steps, None)
                        .map_err(|stop| format!("stopped: {stop:?}"))?;
                }
                Ok(())
            }
            Action::Block { threads, steps } => {
                for i in 0..step.repeat {
                    ctx.iteration = i;
                    self.run_group(ctx, step.id, *threads, steps)?;
                }
                Ok(())
            }
            Action::Fork { steps } => {
                if ctx.nested {
                    return Err(
                        "a fork inside a parallel group or a forked child is not supported".into(),
                    );
                }
                for i in 0..step.repeat {
                    ctx.iteration = i;
                    let record = self.fork_child(ctx, step, steps)?;
                    self.remember(ctx, step, &record);
                }
                Ok(())
            }
            action => {
                for i in 0..step.repeat {
                    ctx.iteration = i;
                    let record = self.call(ctx, step, action)?;
                    self.remember(ctx, step, &record);
                }
                Ok(())
            }
        }
    }

    fn remember(&self, ctx: &mut Ctx, step: &Step, record: &CallRecord) {
        if let Some(name) = &step.capture {
            ctx.vars.insert(
                name.clone(),
                Captured {
                    ret: record.ret,
                    fd: record.fd,
                    out: record.args_out.clone(),
                },
            );
        }
    }

    fn run_group(&self, ctx: &Ctx, step_id: u32, threads: u32, steps: &[Step]) -> StepResult {
        std::thread::scope(|scope| {
            let mut handles = Vec::new();
            for index in 0..threads {
                let mut child = ctx.clone();
                child.thread = sys::next_thread_id();
                child.thread_index = index;
                child.nested = true;
                let spawned = std::thread::Builder::new()
                    .name(format!("group-{step_id}-{index}"))
                    .spawn_scoped(scope, move || {
                        self.out.send(&AgentMsg::Thread {
                            thread: child.thread,
                            parent: Some(ctx.thread),
                            step: Some(step_id),
                            pid: sys::getpid(),
                        });
                        // Inner steps report their own errors.
                        let _ = self.run_steps(&mut child, steps, None);
                    });
                match spawned {
                    Ok(h) => handles.push(h),
                    Err(e) => {
                        return Err(format!(
                            "could start only {index} of {threads} threads: {e}"
                        ));
                    }
                }
            }
            let panicked = handles
                .into_iter()
                .map(|h| h.join())
                .filter(Result::is_err)
                .count();
            if panicked > 0 {
                Err(format!("{panicked} thread(s) of the group panicked"))
            } else {
                Ok(())
            }
        })
    }

    // ----- values -----

    fn lookup_int(&self, ctx: &Ctx, var: &VarRef) -> Result<i128, String> {
        match (var.var.as_str(), var.field.as_deref()) {
            ("pid", None) => return Ok(sys::getpid().into()),
            ("thread", None) => return Ok(ctx.thread_index.into()),
            ("iteration", None) => return Ok(ctx.iteration.into()),
            ("workdir", _) => return Err("${workdir} is a path, not a number".into()),
            _ => {}
        }
        let c = ctx
            .vars
            .get(&var.var)
            .ok_or_else(|| format!("{var} is not set (did the step that captures it run?)"))?;
        match var.field.as_deref() {
            None | Some("ret") => Ok(c.ret.into()),
            Some("fd") => {
                c.fd.map(Into::into)
                    .ok_or_else(|| format!("{var}: that call has no fd"))
            }
            Some(f) => match c.out.get(f) {
                Some(v) => v
                    .as_i64()
                    .map(i128::from)
                    .or_else(|| v.as_u64().map(i128::from))
                    .ok_or_else(|| format!("{var} is {v}, not a number")),
                None => Err(format!(
                    "{var}: the captured result has no field `{f}` (it has {})",
                    c.out
                )),
            },
        }
    }

    fn int(&self, ctx: &Ctx, e: &IntExpr) -> Result<i128, String> {
        match e {
            IntExpr::Lit(v) => Ok(*v),
            IntExpr::Ref { var, add } => self
                .lookup_int(ctx, var)?
                .checked_add(*add)
                .ok_or_else(|| format!("{e} overflows")),
        }
    }

    fn text(&self, ctx: &Ctx, t: &Template) -> Result<String, String> {
        t.render(|var| {
            if var.var == "workdir" && var.field.is_none() {
                return Ok(self.workdir.clone());
            }
            if let Some(Value::String(s)) = ctx
                .vars
                .get(&var.var)
                .and_then(|c| var.field.as_deref().and_then(|f| c.out.get(f)))
            {
                return Ok(s.clone());
            }
            self.lookup_int(ctx, var).map(|v| v.to_string())
        })
    }

    fn fit<T: TryFrom<i128>>(
        &self,
        ctx: &Ctx,
        e: &IntExpr,
        what: &str,
        ty: &str,
    ) -> Result<T, String> {
        let v = self.int(ctx, e)?;
        T::try_from(v).map_err(|_| format!("{what} = {v} does not fit a {ty}"))
    }

    // ----- calls -----

    /// Send `CallBegin`, make the call, time it. `f` returns the raw
    /// return value and, on failure, the errno it read immediately.
    fn bracket(
        &self,
        ctx: &Ctx,
        step: &Step,
        name: &str,
        f: impl FnOnce() -> (i64, Option<i32>),
    ) -> Bracketed {
        self.bracket_path(ctx, step, name, None, f)
    }

    /// [`Runner::bracket`] for a call that makes `path` (relative to the
    /// descriptor): under fault injection, whether it existed before and
    /// after is part of the attempt's record.
    ///
    /// In the kernel log the call sits between two markers. Under fault
    /// injection the fault is armed after everything the agent itself
    /// does (the markers, `CallBegin`, the probes) and read back before
    /// anything else, so only the call's own fault points count.
    fn bracket_path(
        &self,
        ctx: &Ctx,
        step: &Step,
        name: &str,
        path: Option<(i32, &std::ffi::CStr)>,
        f: impl FnOnce() -> (i64, Option<i32>),
    ) -> Bracketed {
        let call = sys::next_call_id();
        let marker = |begin: bool| {
            if let Some(Some(mut kmsg)) = self.kmsg.get().map(Option::as_ref) {
                let m = Marker {
                    call,
                    begin,
                    bundle: self.bundle_id,
                    step: step.id,
                    thread: ctx.thread,
                    tid: kdebug::gettid(),
                };
                let _ = std::io::Write::write_all(&mut kmsg, m.line().as_bytes());
            }
        };
        marker(true);
        self.out.send(&AgentMsg::CallBegin {
            call,
            step: step.id,
            thread: ctx.thread,
            name: name.to_string(),
        });
        let mut fault = None;
        let (ret, err, duration_ns) = match ctx.arm {
            None => {
                let t0 = Instant::now();
                let (ret, err) = f();
                (ret, err, t0.elapsed().as_nanos() as u64)
            }
            Some((kind, nth)) => match FailNth::open() {
                Err(e) => {
                    *ctx.armed.slot() = Some(Err(e));
                    (-1, Some(libc::ENOSYS), 0)
                }
                Ok(mut fail) => {
                    let fd_before = fail.lowest_free_fd();
                    let path_before = path.map(|(d, p)| kdebug::path_exists(d, p));
                    if let Err(e) = fail.arm(nth) {
                        *ctx.armed.slot() = Some(Err(e));
                    }
                    let t0 = Instant::now();
                    let (ret, err) = f();
                    let duration_ns = t0.elapsed().as_nanos() as u64;
                    match fail.consumed() {
                        Ok(injected) => {
                            fault = Some(FaultAttempt {
                                fault: kind,
                                nth,
                                injected,
                                fd_before,
                                fd_after: fail.lowest_free_fd(),
                                path_before,
                                path_after: path.map(|(d, p)| kdebug::path_exists(d, p)),
                            });
                        }
                        Err(e) => *ctx.armed.slot() = Some(Err(e)),
                    }
                    (ret, err, duration_ns)
                }
            },
        };
        marker(false);
        Bracketed {
            call,
            name: name.to_string(),
            ret,
            errno: err,
            duration_ns,
            fault,
        }
    }

    /// A step under systematic fault injection: the call (or a plain
    /// block's last call, after the block's other steps) once per fault
    /// number, until an attempt consumes no fault: the call then went
    /// through every fault point it has. A successful attempt that is not
    /// the last is undone where it made a descriptor or a directory.
    fn run_injected(&self, ctx: &mut Ctx, step: &Step) -> StepResult {
        let Some(inj) = step.inject else {
            return self.run_step(ctx, step);
        };
        if ctx.nested {
            return Err("fault injection inside a group or a forked child is not supported".into());
        }
        kdebug::select_fault(inj.fault)?;
        FailNth::open()?;
        let mut last = None;
        for nth in inj.first..=inj.last {
            ctx.iteration = nth - inj.first;
            *ctx.armed.slot() = None;
            match &step.action {
                Action::Block { threads: 0, steps } if !steps.is_empty() => {
                    let (setup, target) = steps.split_at(steps.len() - 1);
                    self.run_steps(ctx, setup, None)
                        .map_err(|stop| format!("stopped: {stop:?}"))?;
                    ctx.arm = Some((inj.fault, nth));
                    let r = self.run_steps(ctx, target, None);
                    ctx.arm = None;
                    r.map_err(|stop| format!("stopped: {stop:?}"))?;
                }
                Action::Block { .. } | Action::Fork { .. } => {
                    return Err("fault injection goes on a call or a plain block".into());
                }
                action => {
                    ctx.arm = Some((inj.fault, nth));
                    let r = self.call(ctx, step, action);
                    ctx.arm = None;
                    let record = r?;
                    self.remember(ctx, step, &record);
                }
            }
            let outcome = ctx.armed.slot().take();
            let record = match outcome {
                Some(Ok(r)) => r,
                Some(Err(e)) => return Err(format!("fault #{nth}: {e}")),
                None => return Err(format!("fault #{nth}: the call was not made")),
            };
            let injected = record.fault.is_some_and(|f| f.injected);
            if !injected {
                last = Some(nth);
                break;
            }
            undo_attempt(&record);
        }
        if last.is_none() {
            self.out.log(
                LogLevel::Warn,
                format!(
                    "step {}: every attempt from fault #{} to #{} consumed its fault; the call has more fault points than that",
                    step.id, inj.first, inj.last
                ),
            );
        }
        Ok(())
    }

    /// Scan with kmemleak and send what it found.
    fn send_scan(&self, step: Option<u32>) {
        let (text, truncated, error) = match kdebug::kmemleak_scan() {
            Ok(s) => (s.text, s.truncated, None),
            Err(e) => (String::new(), false, Some(e)),
        };
        self.out.send(&AgentMsg::Kmemleak {
            bundle: self.bundle_id,
            step,
            text,
            truncated,
            error,
        });
    }

    fn finish(
        &self,
        ctx: &Ctx,
        step: &Step,
        b: Bracketed,
        fd: Option<i32>,
        args_in: Value,
        args_out: Value,
    ) -> CallRecord {
        let record = CallRecord {
            call: b.call,
            step: step.id,
            thread: ctx.thread,
            iteration: ctx.iteration,
            name: b.name,
            fd,
            args_in,
            args_out,
            ret: b.ret,
            errno: b.errno.map(errno_name),
            duration_ns: b.duration_ns,
            fault: b.fault,
        };
        self.out.send(&AgentMsg::CallEnd(record.clone()));
        if ctx.arm.is_some() {
            let mut armed = ctx.armed.slot();
            if armed.is_none() {
                *armed = Some(Ok(record.clone()));
            }
        }
        record
    }

    fn call(&self, ctx: &Ctx, step: &Step, action: &Action) -> Result<CallRecord, String> {
        let name = action.call_name();
        // A plain syscall: -1 means failure, errno says why.
        fn sys_ret(r: i64) -> (i64, Option<i32>) {
            if r < 0 { (r, Some(errno())) } else { (r, None) }
        }
        macro_rules! simple {
            ($fd:expr, $args:expr, $call:expr) => {{
                let b = self.bracket(ctx, step, &name, || sys_ret($call as i64));
                let fd = $fd;
                Ok(self.finish(ctx, step, b, fd, $args, Value::Null))
            }};
        }
        match action {
            Action::Open { path, flags, mode } => {
                let p = self.text(ctx, path)?;
                let c = cstring(&p)?;
                let flags: i32 = self.fit(ctx, flags, "flags", "int")?;
                let mode: u32 = self.fit(ctx, mode, "mode", "mode_t")?;
                // SAFETY: `c` is a valid NUL-terminated path.
                let b = self.bracket(ctx, step, &name, || {
                    sys_ret(unsafe { libc::open(c.as_ptr(), flags, mode) } as i64)
                });
                let fd = ok_fd(&b);
                Ok(self.finish(
                    ctx,
                    step,
                    b,
                    fd,
                    json!({"path": p, "flags": flags, "mode": mode}),
                    Value::Null,
                ))
            }
            Action::Openat {
                dir,
                path,
                flags,
                mode,
            } => {
                let d: i32 = self.fit(ctx, dir, "dir", "int")?;
                let p = self.text(ctx, path)?;
                let c = cstring(&p)?;
                let flags: i32 = self.fit(ctx, flags, "flags", "int")?;
                let mode: u32 = self.fit(ctx, mode, "mode", "mode_t")?;
                // SAFETY: `c` is a valid NUL-terminated path.
                let b = self.bracket(ctx, step, &name, || {
                    sys_ret(unsafe { libc::openat(d, c.as_ptr(), flags, mode) } as i64)
                });
                let fd = ok_fd(&b);
                Ok(self.finish(
                    ctx,
                    step,
                    b,
                    fd,
                    json!({"dir": d, "path": p, "flags": flags, "mode": mode}),
                    Value::Null,
                ))
            }
            Action::Close { fd } => {
                let fd: i32 = self.fit(ctx, fd, "fd", "int")?;
                // SAFETY: closing a descriptor is memory-safe whatever it is.
                simple!(Some(fd), json!({"fd": fd}), unsafe { libc::close(fd) })
            }
            Action::Dup { fd } => {
                let fd: i32 = self.fit(ctx, fd, "fd", "int")?;
                // SAFETY: dup touches no memory of ours.
                simple!(Some(fd), json!({"fd": fd}), unsafe { libc::dup(fd) })
            }
            Action::Ioctl {
                fd,
                cmd,
                fields,
                ptr,
            } => self.goldfish_ioctl(ctx, step, fd, cmd, fields, *ptr),
            Action::RawIoctl { fd, request, arg } => self.raw_ioctl(ctx, step, fd, request, arg),
            Action::Mkdirat2 {
                dir,
                path,
                mode,
                flags,
            } => {
                let nr = self.mkdirat2_nr.ok_or(
                    "mkdirat2's syscall number is unknown: boot with gasbench.mkdirat2=N on the kernel command line (or run with --mkdirat2 N)",
                )?;
                let d: i32 = self.fit(ctx, dir, "dir", "int")?;
                let p = self.text(ctx, path)?;
                let c = cstring(&p)?;
                let mode: u32 = self.fit(ctx, mode, "mode", "umode_t")?;
                let flags: u32 = self.fit(ctx, flags, "flags", "unsigned int")?;
                // SAFETY: a raw syscall with a valid path pointer and
                // integer arguments; the kernel validates everything else.
                let b = self.bracket_path(ctx, step, &name, Some((d, &c)), || {
                    sys_ret(unsafe {
                        libc::syscall(
                            nr as libc::c_long,
                            d as libc::c_long,
                            c.as_ptr(),
                            mode as libc::c_long,
                            flags as libc::c_long,
                        )
                    })
                });
                let fd = ok_fd(&b);
                Ok(self.finish(
                    ctx,
                    step,
                    b,
                    fd,
                    json!({"nr": nr, "dir": d, "path": p, "mode": mode, "flags": flags}),
                    Value::Null,
                ))
            }
            Action::Mkdirat { dir, path, mode } => {
                let d: i32 = self.fit(ctx, dir, "dir", "int")?;
                let p = self.text(ctx, path)?;
                let c = cstring(&p)?;
                let mode: u32 = self.fit(ctx, mode, "mode", "mode_t")?;
                // SAFETY: `c` is a valid NUL-terminated path.
                simple!(None, json!({"dir": d, "path": p, "mode": mode}), unsafe {
                    libc::mkdirat(d, c.as_ptr(), mode)
                })
            }
            Action::Unlinkat { dir, path, flags } => {
                let d: i32 = self.fit(ctx, dir, "dir", "int")?;
                let p = self.text(ctx, path)?;
                let c = cstring(&p)?;
                let flags: i32 = self.fit(ctx, flags, "flags", "int")?;
                // SAFETY: `c` is a valid NUL-terminated path.
                simple!(None, json!({"dir": d, "path": p, "flags": flags}), unsafe {
                    libc::unlinkat(d, c.as_ptr(), flags)
                })
            }
            Action::Symlinkat { target, dir, path } => {
                let t = self.text(ctx, target)?;
                let tc = cstring(&t)?;
                let d: i32 = self.fit(ctx, dir, "dir", "int")?;
                let p = self.text(ctx, path)?;
                let c = cstring(&p)?;
                // SAFETY: both strings are valid NUL-terminated paths.
                simple!(None, json!({"target": t, "dir": d, "path": p}), unsafe {
                    libc::symlinkat(tc.as_ptr(), d, c.as_ptr())
                })
            }
            Action::Mount {
                source,
                target,
                fstype,
                flags,
                data,
            } => {
                let src = self.text(ctx, source)?;
                let tgt = self.text(ctx, target)?;
                let dat = self.text(ctx, data)?;
                let (sc, tc, fc, dc) = (
                    cstring(&src)?,
                    cstring(&tgt)?,
                    cstring(fstype)?,
                    cstring(&dat)?,
                );
                let fl: u64 = self.fit(ctx, flags, "flags", "unsigned long")?;
                let data_ptr = if dat.is_empty() {
                    std::ptr::null()
                } else {
                    dc.as_ptr() as *const libc::c_void
                };
                // SAFETY: valid NUL-terminated strings (data may be NULL).
                simple!(
                    None,
                    json!({"source": src, "target": tgt, "fstype": fstype, "flags": fl, "data": dat}),
                    unsafe {
                        libc::mount(
                            sc.as_ptr(),
                            tc.as_ptr(),
                            fc.as_ptr(),
                            fl as libc::c_ulong,
                            data_ptr,
                        )
                    }
                )
            }
            Action::Umount { target, flags } => {
                let tgt = self.text(ctx, target)?;
                let tc = cstring(&tgt)?;
                let fl: i32 = self.fit(ctx, flags, "flags", "int")?;
                // SAFETY: a valid NUL-terminated path.
                simple!(None, json!({"target": tgt, "flags": fl}), unsafe {
                    libc::umount2(tc.as_ptr(), fl)
                })
            }
            Action::Rename { from, to } => {
                let f = self.text(ctx, from)?;
                let fc = cstring(&f)?;
                let t = self.text(ctx, to)?;
                let tc = cstring(&t)?;
                // SAFETY: both are valid NUL-terminated paths.
                simple!(None, json!({"from": f, "to": t}), unsafe {
                    libc::renameat(libc::AT_FDCWD, fc.as_ptr(), libc::AT_FDCWD, tc.as_ptr())
                })
            }
            Action::Mkfifo { dir, path, mode } => {
                let d: i32 = self.fit(ctx, dir, "dir", "int")?;
                let p = self.text(ctx, path)?;
                let c = cstring(&p)?;
                let mode: u32 = self.fit(ctx, mode, "mode", "mode_t")?;
                // SAFETY: `c` is a valid NUL-terminated path.
                simple!(None, json!({"dir": d, "path": p, "mode": mode}), unsafe {
                    libc::mknodat(d, c.as_ptr(), libc::S_IFIFO | (mode & 0o7777), 0)
                })
            }
            Action::WriteFile {
                path,
                flags,
                mode,
                hex,
                size,
            } => {
                let p = self.text(ctx, path)?;
                let c = cstring(&p)?;
                let flags: i32 = self.fit(ctx, flags, "flags", "int")?;
                let mode: u32 = self.fit(ctx, mode, "mode", "mode_t")?;
                let pattern = decode_hex(hex)?;
                let size = (*size).min(gasbench_abi::bundle::limits::MAX_WRITE_BYTES);
                let chunk = repeated(&pattern, size);
                let mut written = 0u64;
                let mut stopped_by = None;
                let b = self.bracket(ctx, step, &name, || {
                    // SAFETY: `c` is a valid NUL-terminated path.
                    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, mode) };
                    if fd < 0 {
                        return (-1, Some(errno()));
                    }
                    while written < size {
                        let n = (size - written).min(chunk.len() as u64) as usize;
                        // SAFETY: `chunk` holds at least `n` readable bytes.
                        let r = unsafe { libc::write(fd, chunk.as_ptr().cast(), n) };
                        if r < 0 {
                            if errno() == libc::EINTR {
                                continue;
                            }
                            stopped_by = Some(errno());
                            break;
                        }
                        if r == 0 {
                            stopped_by = Some(libc::EIO);
                            break;
                        }
                        written += r as u64;
                    }
                    // SAFETY: `fd` is ours and open.
                    unsafe { libc::close(fd) };
                    match stopped_by {
                        Some(e) => (-1, Some(e)),
                        None => (written as i64, None),
                    }
                });
                let out = json!({"written": written, "stopped_by": stopped_by.map(errno_name)});
                Ok(self.finish(
                    ctx,
                    step,
                    b,
                    None,
                    json!({"path": p, "flags": flags, "mode": mode, "size": size, "pattern_bytes": pattern.len()}),
                    out,
                ))
            }
            Action::WriteAgentPort { hex, size } => {
                let pattern = decode_hex(hex)?;
                let size = (*size).min(gasbench_abi::bundle::limits::MAX_WRITE_BYTES);
                let chunk = repeated(&pattern, size);
                let mut written = 0u64;
                let b = self.bracket(ctx, step, &name, || match self.out.send_raw(&chunk, size) {
                    Ok(n) => {
                        written = n;
                        (n as i64, None)
                    }
                    Err((n, e)) => {
                        written = n;
                        (-1, Some(e.raw_os_error().unwrap_or(libc::EIO)))
                    }
                });
                Ok(self.finish(
                    ctx,
                    step,
                    b,
                    None,
                    json!({"size": size, "pattern_bytes": pattern.len()}),
                    json!({"written": written}),
                ))
            }
            Action::Fstat { fd } => {
                let fd: i32 = self.fit(ctx, fd, "fd", "int")?;
                // SAFETY: stat is plain old data.
                let mut st: libc::stat = unsafe { std::mem::zeroed() };
                // SAFETY: `st` is a valid, writable stat buffer.
                let b = self.bracket(ctx, step, &name, || {
                    sys_ret(unsafe { libc::fstat(fd, &mut st) } as i64)
                });
                let out = if b.errno.is_none() {
                    stat_json(&st)
                } else {
                    Value::Null
                };
                Ok(self.finish(ctx, step, b, Some(fd), json!({"fd": fd}), out))
            }
            Action::Fstatat { dir, path, flags } => {
                let d: i32 = self.fit(ctx, dir, "dir", "int")?;
                let p = self.text(ctx, path)?;
                let c = cstring(&p)?;
                let flags: i32 = self.fit(ctx, flags, "flags", "int")?;
                // SAFETY: stat is plain old data.
                let mut st: libc::stat = unsafe { std::mem::zeroed() };
                // SAFETY: valid path and a writable stat buffer.
                let b = self.bracket(ctx, step, &name, || {
                    sys_ret(unsafe { libc::fstatat(d, c.as_ptr(), &mut st, flags) } as i64)
                });
                let out = if b.errno.is_none() {
                    stat_json(&st)
                } else {
                    Value::Null
                };
                Ok(self.finish(
                    ctx,
                    step,
                    b,
                    None,
                    json!({"dir": d, "path": p, "flags": flags}),
                    out,
                ))
            }
            Action::Fcntl { fd, cmd, arg } => {
                let fd: i32 = self.fit(ctx, fd, "fd", "int")?;
                let c = consts::lookup(FCNTL_CMDS, cmd)
                    .ok_or_else(|| format!("unknown fcntl command {cmd}"))?;
                let a: i32 = self.fit(ctx, arg, "arg", "int")?;
                // SAFETY: the integer fcntl commands take an int argument.
                let b = self.bracket(ctx, step, &name, || {
                    sys_ret(unsafe { libc::fcntl(fd, c, a) } as i64)
                });
                let out = match (cmd.as_str(), b.errno) {
                    ("F_GETFD", None) => json!({"cloexec": b.ret & consts::FD_CLOEXEC != 0}),
                    ("F_GETFL", None) => json!({
                        "accmode": match b.ret & 3 { 0 => "O_RDONLY", 1 => "O_WRONLY", 2 => "O_RDWR", _ => "?" },
                        "flags": flag_names(consts::OPEN_FLAGS, b.ret),
                    }),
                    _ => Value::Null,
                };
                let dup_fd = matches!(cmd.as_str(), "F_DUPFD" | "F_DUPFD_CLOEXEC")
                    .then(|| ok_fd(&b))
                    .flatten();
                Ok(self.finish(
                    ctx,
                    step,
                    b,
                    dup_fd.or(Some(fd)),
                    json!({"fd": fd, "cmd": cmd, "arg": a}),
                    out,
                ))
            }
            Action::Setrlimit {
                resource,
                soft,
                hard,
            } => {
                let r = consts::lookup(RLIMITS, resource)
                    .ok_or_else(|| format!("unknown resource {resource}"))?;
                let soft: u64 = self.fit(ctx, soft, "soft", "rlim_t")?;
                let hard: u64 = self.fit(ctx, hard, "hard", "rlim_t")?;
                let lim = libc::rlimit {
                    rlim_cur: soft,
                    rlim_max: hard,
                };
                // SAFETY: `lim` is a valid rlimit.
                simple!(
                    None,
                    json!({"resource": resource, "soft": soft, "hard": hard}),
                    unsafe { libc::setrlimit(r as _, &lim) }
                )
            }
            Action::Getrlimit { resource } => {
                let r = consts::lookup(RLIMITS, resource)
                    .ok_or_else(|| format!("unknown resource {resource}"))?;
                let mut lim = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                // SAFETY: `lim` is a valid, writable rlimit.
                let b = self.bracket(ctx, step, &name, || {
                    sys_ret(unsafe { libc::getrlimit(r as _, &mut lim) } as i64)
                });
                let out = if b.errno.is_none() {
                    json!({"soft": lim.rlim_cur, "hard": lim.rlim_max})
                } else {
                    Value::Null
                };
                Ok(self.finish(ctx, step, b, None, json!({"resource": resource}), out))
            }
            Action::ExhaustFds { path, max } => {
                let p = self.text(ctx, path)?;
                let c = cstring(&p)?;
                let max = (*max).min(gasbench_abi::bundle::limits::MAX_EXHAUST_FDS);
                let mut first = None;
                let mut last = None;
                let mut stopped_by = None;
                let b = self.bracket(ctx, step, &name, || {
                    let mut opened = 0i64;
                    while opened < max as i64 {
                        // SAFETY: `c` is a valid NUL-terminated path.
                        let fd =
                            unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
                        if fd < 0 {
                            stopped_by = Some(errno());
                            break;
                        }
                        first.get_or_insert(fd);
                        last = Some(fd);
                        opened += 1;
                    }
                    // Running out of descriptors is the point; any other
                    // error is this call's failure.
                    match stopped_by {
                        Some(e) if e != libc::EMFILE => (-1, Some(e)),
                        _ => (opened, None),
                    }
                });
                let out = json!({
                    "opened": if b.ret >= 0 { b.ret } else { 0 },
                    "stopped_by": stopped_by.map(errno_name),
                    "first_fd": first,
                    "last_fd": last,
                });
                Ok(self.finish(ctx, step, b, None, json!({"path": p, "max": max}), out))
            }
            Action::ReadFile { path, max_bytes } => {
                let p = self.text(ctx, path)?;
                let max = (*max_bytes).min(gasbench_abi::bundle::limits::MAX_READ_BYTES);
                let mut data = Vec::new();
                let mut truncated = false;
                let b = self.bracket(ctx, step, &name, || match std::fs::File::open(&p) {
                    Ok(f) => {
                        let mut f = f.take(max + 1);
                        match f.read_to_end(&mut data) {
                            Ok(_) => {
                                if data.len() as u64 > max {
                                    data.truncate(max as usize);
                                    truncated = true;
                                }
                                (data.len() as i64, None)
                            }
                            Err(e) => (-1, Some(e.raw_os_error().unwrap_or(libc::EIO))),
                        }
                    }
                    Err(e) => (-1, Some(e.raw_os_error().unwrap_or(libc::EIO))),
                });
                let out = if b.errno.is_none() {
                    json!({"text": String::from_utf8_lossy(&data), "truncated": truncated})
                } else {
                    Value::Null
                };
                Ok(self.finish(
                    ctx,
                    step,
                    b,
                    None,
                    json!({"path": p, "max_bytes": max}),
                    out,
                ))
            }
            Action::ListDir { path } => {
                let p = self.text(ctx, path)?;
                let mut names = Vec::new();
                let b = self.bracket(ctx, step, &name, || match std::fs::read_dir(&p) {
                    Ok(rd) => {
                        for e in rd {
                            match e {
                                Ok(e) => names.push(e.file_name().to_string_lossy().into_owned()),
                                Err(e) => return (-1, Some(e.raw_os_error().unwrap_or(libc::EIO))),
                            }
                        }
                        (names.len() as i64, None)
                    }
                    Err(e) => (-1, Some(e.raw_os_error().unwrap_or(libc::EIO))),
                });
                names.sort();
                let out = if b.errno.is_none() {
                    json!({"names": names})
                } else {
                    Value::Null
                };
                Ok(self.finish(ctx, step, b, None, json!({"path": p}), out))
            }
            Action::WaitPath { path, present } => {
                let p = self.text(ctx, path)?;
                let limit = Duration::from_millis(step.timeout_ms.unwrap_or(10_000));
                let present = *present;
                let b = self.bracket(ctx, step, &name, || {
                    let t0 = Instant::now();
                    loop {
                        if std::path::Path::new(&p).exists() == present {
                            return (t0.elapsed().as_millis() as i64, None);
                        }
                        if t0.elapsed() >= limit {
                            return (-1, Some(libc::ETIMEDOUT));
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                });
                let out = if b.errno.is_none() {
                    json!({"waited_ms": b.ret})
                } else {
                    Value::Null
                };
                Ok(self.finish(
                    ctx,
                    step,
                    b,
                    None,
                    json!({"path": p, "present": present}),
                    out,
                ))
            }
            Action::Dmesg { max_lines } => {
                let mut lines = VecDeque::new();
                let max = (*max_lines).max(1) as usize;
                let b = self.bracket(ctx, step, &name, || read_kmsg(&mut lines, max));
                let out = if b.errno.is_none() {
                    json!({"lines": lines.into_iter().collect::<Vec<_>>()})
                } else {
                    Value::Null
                };
                Ok(self.finish(ctx, step, b, None, json!({"max_lines": max}), out))
            }
            Action::Kselftest { path, args } => self.kselftest(ctx, step, path, args),
            Action::Sleep { .. }
            | Action::Block { .. }
            | Action::Fork { .. }
            | Action::Host { .. }
            | Action::Checkpoint => Err(format!("internal: {} is not a call", action.op())),
        }
    }

    fn goldfish_ioctl(
        &self,
        ctx: &Ctx,
        step: &Step,
        fd: &IntExpr,
        cmd: &str,
        fields: &std::collections::BTreeMap<String, IntExpr>,
        ptr: ArgPtr,
    ) -> Result<CallRecord, String> {
        let ioctl = Ioctl::from_name(cmd).ok_or_else(|| format!("unknown goldfish ioctl {cmd}"))?;
        let fd: i32 = self.fit(ctx, fd, "fd", "int")?;
        let mut values = Vec::new();
        for &(field, _, width) in ioctl.layout() {
            let v: u64 = match fields.get(field) {
                Some(e) => self.fit(ctx, e, field, if width == 8 { "u64" } else { "u32" })?,
                None => 0,
            };
            if width == 4 && v > u32::MAX as u64 {
                return Err(format!("{field} = {v} does not fit a u32"));
            }
            values.push((field, v));
        }
        let bytes = ioctl.encode(|n| values.iter().find(|(f, _)| *f == n).map_or(0, |(_, v)| *v));
        let buf = ArgBuf::place(ptr, &bytes)?;
        let addr = buf.addr();
        let request = ioctl.request();
        let name = format!("ioctl:{}", ioctl.name());
        // SAFETY: the kernel validates the user pointer; bad pointers are
        // the point of some steps and cannot hurt this process.
        let b = self.bracket(ctx, step, &name, || {
            let r = unsafe { libc::ioctl(fd, request as libc::c_ulong, addr) };
            if r < 0 {
                (r as i64, Some(errno()))
            } else {
                (r as i64, None)
            }
        });
        let mut args_in = serde_json::Map::new();
        for (f, v) in &values {
            args_in.insert(f.to_string(), json!(v));
        }
        args_in.insert("request".into(), json!(format!("{request:#010x}")));
        if ptr != ArgPtr::Buffer {
            args_in.insert("ptr".into(), json!(ptr.name()));
        }
        let args_out = match buf.read_back().and_then(|bytes| ioctl.decode(&bytes)) {
            Some(pairs) => Value::Object(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), json!(v)))
                    .collect(),
            ),
            None => Value::Null,
        };
        Ok(self.finish(ctx, step, b, Some(fd), Value::Object(args_in), args_out))
    }

    fn raw_ioctl(
        &self,
        ctx: &Ctx,
        step: &Step,
        fd: &IntExpr,
        request: &IntExpr,
        arg: &RawArg,
    ) -> Result<CallRecord, String> {
        let fd: i32 = self.fit(ctx, fd, "fd", "int")?;
        let request: u64 = self.fit(ctx, request, "request", "unsigned long")?;
        let (buf, value, args_in) = match arg {
            RawArg::Bytes { hex, ptr } => {
                let bytes = decode_hex(hex)?;
                let buf = ArgBuf::place(*ptr, &bytes)?;
                let mut a = json!({"fd": fd, "request": format!("{request:#x}"), "bytes": encode_hex(&bytes)});
                if *ptr != ArgPtr::Buffer {
                    a["ptr"] = json!(ptr.name());
                }
                let addr = buf.addr();
                (Some(buf), addr as u64, a)
            }
            RawArg::Value { value } => {
                let v: u64 = self.fit(ctx, value, "arg", "unsigned long")?;
                (
                    None,
                    v,
                    json!({"fd": fd, "request": format!("{request:#x}"), "arg": v}),
                )
            }
        };
        let mut args_in = args_in;
        if let Some(known) = u32::try_from(request).ok().and_then(Ioctl::from_request) {
            args_in["decoded"] = json!(known.name());
        }
        let name = "ioctl".to_string();
        // SAFETY: the kernel validates the pointer/integer argument; that
        // is what raw ioctl steps test.
        let b = self.bracket(ctx, step, &name, || {
            let r = unsafe { libc::ioctl(fd, request as libc::c_ulong, value as usize) };
            if r < 0 {
                (r as i64, Some(errno()))
            } else {
                (r as i64, None)
            }
        });
        let args_out = match buf.as_ref().and_then(ArgBuf::read_back) {
            Some(bytes) => json!({"bytes": encode_hex(&bytes)}),
            None => Value::Null,
        };
        Ok(self.finish(ctx, step, b, Some(fd), args_in, args_out))
    }

    fn fork_child(&self, ctx: &Ctx, step: &Step, steps: &[Step]) -> Result<CallRecord, String> {
        let timeout = step.timeout_ms.map(Duration::from_millis);
        let mut child_pid = 0;
        let mut timed_out = false;
        let mut signal = None;
        let b = self.bracket(ctx, step, "fork", || {
            // SAFETY: at this point the process has only this thread (forks
            // are refused inside parallel groups), so the child may run
            // ordinary Rust code; it leaves with _exit.
            let pid = unsafe { libc::fork() };
            if pid < 0 {
                return (-1, Some(errno()));
            }
            if pid == 0 {
                let mut child = ctx.clone();
                child.thread = sys::next_thread_id();
                child.nested = true;
                self.out.send(&AgentMsg::Thread {
                    thread: child.thread,
                    parent: Some(ctx.thread),
                    step: Some(step.id),
                    pid: sys::getpid(),
                });
                let _ = self.run_steps(&mut child, steps, None);
                // Exit without closing anything: the kernel's release paths
                // run as part of the exit, which is what these steps test.
                // SAFETY: ends the child without unwinding into the parent's
                // state.
                unsafe { libc::_exit(0) };
            }
            child_pid = pid;
            match wait_child(pid, timeout) {
                Ok((status, t)) => {
                    timed_out = t;
                    if libc::WIFSIGNALED(status) {
                        signal = Some(libc::WTERMSIG(status));
                        (128 + libc::WTERMSIG(status) as i64, None)
                    } else {
                        (libc::WEXITSTATUS(status) as i64, None)
                    }
                }
                Err(e) => (-1, Some(e)),
            }
        });
        let out = json!({"pid": child_pid, "exit_code": if signal.is_none() { Some(b.ret) } else { None }, "signal": signal, "timed_out": timed_out});
        Ok(self.finish(ctx, step, b, None, json!({"steps": steps.len()}), out))
    }

    fn kselftest(
        &self,
        ctx: &Ctx,
        step: &Step,
        path: &Template,
        args: &[Template],
    ) -> Result<CallRecord, String> {
        let p = self.text(ctx, path)?;
        let mut argv_s = vec![p.clone()];
        for a in args {
            argv_s.push(self.text(ctx, a)?);
        }
        let argv: Vec<CString> = argv_s
            .iter()
            .map(|a| cstring(a))
            .collect::<Result<_, _>>()?;
        let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let env = [
            cstring("PATH=/usr/bin:/bin:/usr/sbin:/sbin")?,
            cstring("HOME=/")?,
        ];
        let mut env_ptrs: Vec<*const libc::c_char> = env.iter().map(|a| a.as_ptr()).collect();
        env_ptrs.push(std::ptr::null());
        let cwd = cstring(&self.workdir)?;
        let binary = std::path::Path::new(&p)
            .file_name()
            .map_or(p.clone(), |n| n.to_string_lossy().into_owned());
        let timeout = step.timeout_ms.map(Duration::from_millis);
        let mut summary = KtapSummary::default();
        let mut timed_out = false;
        let mut signal = None;
        let b = self.bracket(ctx, step, "kselftest", || {
            // Say ENOENT/EACCES as the call's errno rather than as an exit
            // code of 127 from the child.
            // SAFETY: argv[0] is a valid NUL-terminated path.
            if unsafe { libc::access(argv[0].as_ptr(), libc::X_OK) } != 0 {
                return (-1, Some(errno()));
            }
            let mut fds = [0; 2];
            // SAFETY: `fds` has room for two descriptors.
            if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
                return (-1, Some(errno()));
            }
            // SAFETY: the child only calls async-signal-safe functions
            // (setpgid, dup2, chdir, execve, _exit) on memory prepared
            // before the fork.
            let pid = unsafe { libc::fork() };
            if pid < 0 {
                let e = errno();
                // SAFETY: closing our own pipe.
                unsafe {
                    libc::close(fds[0]);
                    libc::close(fds[1]);
                }
                return (-1, Some(e));
            }
            if pid == 0 {
                // SAFETY: see above; all pointers outlive the exec.
                unsafe {
                    libc::setpgid(0, 0);
                    libc::dup2(fds[1], 1);
                    libc::dup2(fds[1], 2);
                    libc::chdir(cwd.as_ptr());
                    libc::execve(argv_ptrs[0], argv_ptrs.as_ptr(), env_ptrs.as_ptr());
                    libc::_exit(127);
                }
            }
            // SAFETY: the parent does not write; close its copy so EOF comes
            // when the child (and its children) exit.
            unsafe { libc::close(fds[1]) };
            // SAFETY: we own fds[0] from here on.
            let reader = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[0]) };
            let deadline = timeout.map(|t| Instant::now() + t);
            timed_out = !self.pump_lines(ctx, step, &binary, reader, deadline, &mut summary);
            if timed_out {
                // SAFETY: killing the child's own process group.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
            match wait_child(pid, None) {
                Ok((status, _)) => {
                    if libc::WIFSIGNALED(status) {
                        signal = Some(libc::WTERMSIG(status));
                        (128 + libc::WTERMSIG(status) as i64, None)
                    } else {
                        (libc::WEXITSTATUS(status) as i64, None)
                    }
                }
                Err(e) => (-1, Some(e)),
            }
        });
        use gasbench_abi::protocol::KtapStatus;
        let results: Vec<Value> = summary
            .results
            .iter()
            .map(|r| json!({"depth": r.depth, "number": r.number, "name": r.name, "status": r.status.as_str()}))
            .collect();
        let out = if b.ret >= 0 {
            json!({
                "exit_code": if signal.is_none() { Some(b.ret) } else { None },
                "signal": signal,
                "timed_out": timed_out,
                "planned": summary.planned,
                "passed": summary.count(KtapStatus::Ok),
                "failed": summary.count(KtapStatus::NotOk),
                "skipped": summary.count(KtapStatus::Skip),
                "xfailed": summary.count(KtapStatus::Xfail),
                "all_passed": summary.all_passed(),
                "bail_out": summary.bail_out,
                "results": results,
            })
        } else {
            Value::Null
        };
        Ok(self.finish(
            ctx,
            step,
            b,
            None,
            json!({"path": p, "args": argv_s[1..]}),
            out,
        ))
    }

    /// Forward a program's output line by line; false on timeout.
    fn pump_lines(
        &self,
        ctx: &Ctx,
        step: &Step,
        binary: &str,
        mut reader: std::fs::File,
        deadline: Option<Instant>,
        summary: &mut KtapSummary,
    ) -> bool {
        const MAX_LINE: usize = 64 * 1024;
        let mut pending: Vec<u8> = Vec::new();
        let mut chunk = [0u8; 8192];
        let emit = |line: &[u8], summary: &mut KtapSummary| {
            let text = String::from_utf8_lossy(line)
                .trim_end_matches('\r')
                .to_string();
            if let Some(r) = summary.feed(&text) {
                self.out.send(&AgentMsg::Ktap(KtapResult {
                    step: step.id,
                    thread: ctx.thread,
                    binary: binary.to_string(),
                    depth: r.depth,
                    number: r.number,
                    name: r.name,
                    status: r.status,
                    directive: r.directive,
                }));
            }
            self.out.send(&AgentMsg::Output {
                step: step.id,
                thread: ctx.thread,
                line: text,
            });
        };
        loop {
            let wait_ms = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    (d - now).as_millis().min(i32::MAX as u128) as i32
                }
                None => -1,
            };
            let mut pfd = libc::pollfd {
                fd: reader.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, wait_ms) };
            if n < 0 {
                if errno() == libc::EINTR {
                    continue;
                }
                break;
            }
            if n == 0 {
                continue; // the deadline check above ends this
            }
            match reader.read(&mut chunk) {
                Ok(0) => break,
                Ok(k) => {
                    pending.extend_from_slice(&chunk[..k]);
                    while let Some(nl) = pending.iter().position(|&c| c == b'\n') {
                        let line: Vec<u8> = pending.drain(..=nl).collect();
                        emit(&line[..line.len() - 1], summary);
                    }
                    if pending.len() > MAX_LINE {
                        let line: Vec<u8> = std::mem::take(&mut pending);
                        emit(&line, summary);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        if !pending.is_empty() {
            emit(&pending, summary);
        }
        true
    }
}

struct Bracketed {
    call: u64,
    name: String,
    ret: i64,
    errno: Option<i32>,
    duration_ns: u64,
    fault: Option<FaultAttempt>,
}

/// Undo what an attempt under fault injection made, so the next attempt
/// starts where this one did: the descriptor it returned, the directory
/// mkdirat2 made; and a directory a failed attempt left behind (the
/// record already says so).
fn undo_attempt(r: &CallRecord) {
    let made_fd = matches!(r.name.as_str(), "open" | "openat" | "dup" | "mkdirat2");
    if r.ok() && made_fd && r.ret >= 0 {
        // SAFETY: closing the descriptor the attempt returned.
        unsafe { libc::close(r.ret as i32) };
    }
    let left_behind = r
        .fault
        .is_some_and(|f| f.path_after == Some(true) && f.path_before == Some(false));
    if r.name == "mkdirat2" && (r.ok() || left_behind) {
        let dir = r.args_in.get("dir").and_then(Value::as_i64).unwrap_or(-100) as i32;
        if let Some(path) = r.args_in.get("path").and_then(Value::as_str)
            && let Ok(c) = cstring(path)
        {
            // SAFETY: valid NUL-terminated path.
            unsafe { libc::unlinkat(dir, c.as_ptr(), libc::AT_REMOVEDIR) };
        }
    }
}

/// `pattern` repeated into a buffer of up to 64 KiB (whole repeats where
/// the pattern fits, and no more than `size`): what a write step writes
/// again and again.
fn repeated(pattern: &[u8], size: u64) -> Vec<u8> {
    const CHUNK: usize = 64 * 1024;
    let per = (CHUNK / pattern.len().max(1)).max(1) * pattern.len();
    let want = size.min(per as u64) as usize;
    pattern.iter().copied().cycle().take(want).collect()
}

fn ok_fd(b: &Bracketed) -> Option<i32> {
    (b.errno.is_none() && b.ret >= 0).then_some(b.ret as i32)
}

fn flag_names(table: &[(&'static str, i64)], value: i64) -> Vec<&'static str> {
    table
        .iter()
        .filter(|(_, v)| *v != 0 && value & v == *v)
        .map(|(n, _)| *n)
        .collect()
}

fn stat_json(st: &libc::stat) -> Value {
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => "dir",
        libc::S_IFREG => "file",
        libc::S_IFLNK => "symlink",
        libc::S_IFCHR => "char",
        libc::S_IFBLK => "block",
        libc::S_IFIFO => "fifo",
        libc::S_IFSOCK => "socket",
        _ => "unknown",
    };
    json!({
        "type": kind,
        "mode": st.st_mode,
        "perm": st.st_mode & 0o7777,
        "ino": st.st_ino,
        "dev": st.st_dev,
        "nlink": st.st_nlink,
        "uid": st.st_uid,
        "gid": st.st_gid,
        "size": st.st_size,
        "rdev": st.st_rdev,
    })
}

/// Wait for `pid`; with a timeout, SIGKILL it when the time is up.
/// Returns the wait status and whether it was killed for time.
fn wait_child(pid: i32, timeout: Option<Duration>) -> Result<(i32, bool), i32> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut killed = false;
    let mut nap = Duration::from_millis(1);
    loop {
        let mut status = 0;
        let flags = if deadline.is_some() && !killed {
            libc::WNOHANG
        } else {
            0
        };
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, flags) };
        if r == pid {
            return Ok((status, killed));
        }
        if r < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if let Some(d) = deadline
            && Instant::now() >= d
            && !killed
        {
            // SAFETY: killing our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed = true;
            continue;
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(20));
    }
}

/// Read `/dev/kmsg` without blocking; keep the last `max` messages.
fn read_kmsg(lines: &mut VecDeque<String>, max: usize) -> (i64, Option<i32>) {
    let path = c"/dev/kmsg";
    // SAFETY: a valid path; the descriptor is closed below.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return (-1, Some(errno()));
    }
    let mut buf = vec![0u8; 8192];
    let result = loop {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            match errno() {
                libc::EAGAIN => break (lines.len() as i64, None),
                // A record was overwritten while we read: go on.
                libc::EPIPE | libc::EINTR => continue,
                e => break (-1, Some(e)),
            }
        }
        if n == 0 {
            break (lines.len() as i64, None);
        }
        let rec = String::from_utf8_lossy(&buf[..n as usize]);
        // "prio,seq,ts,flags;message\n continuation…"
        let msg = rec.split_once(';').map_or(&*rec, |(_, m)| m);
        let msg = msg.lines().next().unwrap_or("").to_string();
        lines.push_back(msg);
        if lines.len() > max {
            lines.pop_front();
        }
    };
    // SAFETY: closing the descriptor opened above.
    unsafe { libc::close(fd) };
    result
}
