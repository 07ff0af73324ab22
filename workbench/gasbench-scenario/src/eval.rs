//! Judging a run: the engine feeds the [`Evaluator`] what it observed (the
//! agent's messages, device snapshots at sync points, host action results,
//! console lines with the step they belong to) and gets one [`Verdict`] per
//! expectation, with what was expected and what happened.
//!
//! Call-level expectations are checked as each call record arrives, so
//! `${…}` values resolve to what was captured on that thread at that time.
//! Device expectations are checked against the snapshot taken when the
//! agent stopped after their step, with the main thread's captures.

use std::collections::{BTreeMap, HashMap, HashSet};

use gasbench_abi::expr::IntExpr;
use gasbench_abi::protocol::{AgentMsg, CallRecord, KtapResult, KtapStatus, ThreadId};
use gasbench_events::device::{BlockInfo, BlockOwner, DeviceState};
use gasbench_events::report::{KernelReport, ReportKind};
use serde::Serialize;
use serde_json::Value;

use crate::plan::*;

/// One checked expectation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The step it belongs to (None for scenario-wide checks).
    pub step: Option<u32>,
    pub step_name: String,
    /// Line in the scenario file where the expectation (or step) is.
    pub line: usize,
    /// `errno`, `out.size`, `device.handles`, `kernel_log`, …
    pub what: String,
    pub expected: String,
    pub actual: String,
    pub held: bool,
}

/// All verdicts of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    pub scenario: String,
    pub verdicts: Vec<Verdict>,
    /// What the run observed, when the scenario asked for it
    /// ([`Compiled::record`]).
    #[serde(skip)]
    pub observed: Option<Box<Observations>>,
}

/// Everything a run observed, by step id, for a caller that judges the run
/// itself ([`Compiled::record`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observations {
    /// Call records, in the order they arrived.
    pub calls: Vec<CallRecord>,
    /// Device snapshots, with the step they were taken after.
    pub snapshots: Vec<(u32, DeviceState)>,
    /// Steps the agent could not run, and why.
    pub step_errors: Vec<(u32, String)>,
    /// Console lines (those kept), with the step that was running.
    pub console: Vec<(Option<u32>, String)>,
    /// The agent ran the bundle to its end.
    pub finished: bool,
}

impl Report {
    /// Every expectation held (and there was at least one).
    pub fn passed(&self) -> bool {
        !self.verdicts.is_empty() && self.verdicts.iter().all(|v| v.held)
    }

    pub fn failures(&self) -> impl Iterator<Item = &Verdict> {
        self.verdicts.iter().filter(|v| !v.held)
    }
}

#[derive(Clone, Debug)]
struct Cap {
    ret: i64,
    fd: Option<i32>,
    out: Value,
}

#[derive(Clone, Debug)]
enum State {
    /// A per-call check, folded over the step's calls.
    Calls {
        seen: u64,
        failed: u64,
        first_failure: Option<String>,
        last: Option<String>,
    },
    Done {
        held: bool,
        actual: String,
    },
    Pending,
}

/// Bytes of console lines an [`Evaluator`] keeps whole per scenario.
pub const CONSOLE_KEEP_BYTES: usize = 64 << 20;
/// Lines past that it keeps because a kernel_log rule matches them.
pub const CONSOLE_KEEP_MATCHING: usize = 10_000;

pub struct Evaluator<'a> {
    c: &'a Compiled,
    states: Vec<State>,
    /// Per-call expectation ids, by step.
    per_call: HashMap<u32, Vec<usize>>,
    started: HashSet<u32>,
    step_errors: BTreeMap<u32, Vec<String>>,
    calls: HashMap<u32, u64>,
    parents: HashMap<ThreadId, Option<ThreadId>>,
    captures: HashMap<ThreadId, HashMap<String, Cap>>,
    main: Option<ThreadId>,
    ktap: HashMap<u32, Vec<KtapResult>>,
    kselftest_out: HashMap<u32, Value>,
    console: Vec<(Option<u32>, String)>,
    /// Kernel reports attributed to the scenario, with how many times each
    /// was seen (duplicates are counted, not repeated).
    reports: Vec<(KernelReport, u32)>,
    /// kmemleak scans: after a step (Some) or the scenario (None), and
    /// why one could not be made.
    scans: Vec<(Option<u32>, Option<String>)>,
    /// Console lines seen, and the bytes of those kept whole.
    console_seen: usize,
    console_bytes: usize,
    /// Lines kept past [`CONSOLE_KEEP_BYTES`] because a rule matches them.
    console_matching: usize,
    /// Every kernel_log pattern of the scenario, for that test.
    console_rules: Option<regex::RegexSet>,
    bundle_begun: bool,
    bundle_end: Option<Option<String>>,
    regexes: HashMap<String, regex::Regex>,
    /// Set when the scenario asked for its observations.
    observed: Option<Observations>,
}

impl<'a> Evaluator<'a> {
    pub fn new(c: &'a Compiled) -> Evaluator<'a> {
        let mut per_call: HashMap<u32, Vec<usize>> = HashMap::new();
        let states = c
            .plan
            .expectations
            .iter()
            .map(|e| match e.check {
                Check::Ok { .. }
                | Check::Errno { .. }
                | Check::Ret { .. }
                | Check::Out { .. }
                | Check::Injected { .. } => {
                    per_call.entry(e.step).or_default().push(e.id);
                    State::Calls {
                        seen: 0,
                        failed: 0,
                        first_failure: None,
                        last: None,
                    }
                }
                _ => State::Pending,
            })
            .collect();
        Evaluator {
            c,
            states,
            per_call,
            started: HashSet::new(),
            step_errors: BTreeMap::new(),
            calls: HashMap::new(),
            parents: HashMap::new(),
            captures: HashMap::new(),
            main: None,
            ktap: HashMap::new(),
            kselftest_out: HashMap::new(),
            console: Vec::new(),
            reports: Vec::new(),
            scans: Vec::new(),
            console_seen: 0,
            console_bytes: 0,
            console_matching: 0,
            console_rules: regex::RegexSet::new(
                c.plan
                    .kernel_log
                    .must_match
                    .iter()
                    .chain(&c.plan.kernel_log.must_not_match)
                    .chain(c.plan.expectations.iter().flat_map(|e| {
                        match &e.check {
                            Check::KernelLog { rules } => rules
                                .must_match
                                .iter()
                                .chain(&rules.must_not_match)
                                .collect(),
                            _ => Vec::new(),
                        }
                    }))
                    .map(|p| p.regex.as_str()),
            )
            .ok(),
            bundle_begun: false,
            bundle_end: None,
            regexes: HashMap::new(),
            observed: c.record.then(Observations::default),
        }
    }

    /// Everything the agent said, in order.
    pub fn agent(&mut self, msg: &AgentMsg) {
        match msg {
            AgentMsg::BundleBegin { .. } => self.bundle_begun = true,
            AgentMsg::Thread { thread, parent, .. } => {
                self.parents.insert(*thread, *parent);
                if parent.is_none() && self.main.is_none() {
                    self.main = Some(*thread);
                }
            }
            AgentMsg::StepBegin { step, .. } => {
                self.started.insert(*step);
            }
            AgentMsg::StepEnd {
                step,
                error: Some(e),
                ..
            } => {
                if let Some(o) = &mut self.observed {
                    o.step_errors.push((*step, e.clone()));
                }
                self.step_errors.entry(*step).or_default().push(e.clone())
            }
            AgentMsg::CallEnd(r) => {
                if let Some(o) = &mut self.observed {
                    o.calls.push(r.clone());
                }
                self.record(r)
            }
            AgentMsg::Ktap(k) => self.ktap.entry(k.step).or_default().push(k.clone()),
            AgentMsg::BundleEnd { error, .. } => self.bundle_end = Some(error.clone()),
            _ => {}
        }
    }

    /// The device state when the agent stopped at `sync`.
    pub fn device_snapshot(&mut self, sync: u32, state: &DeviceState) {
        let Some(sp) = self.c.plan.sync(sync) else {
            return;
        };
        let step = sp.step;
        if let Some(o) = &mut self.observed {
            o.snapshots.push((step, state.clone()));
        }
        let main = self.main;
        for e in &self.c.plan.expectations {
            if e.step != step {
                continue;
            }
            if let Check::Device { check } = &e.check {
                let (held, actual) = match self.device_check(check, state, main) {
                    Ok(x) => x,
                    Err(why) => (false, why),
                };
                self.states[e.id] = State::Done { held, actual };
            }
        }
    }

    /// The outcome of the host action(s) at `sync`.
    pub fn host_action(&mut self, sync: u32, result: Result<(), String>) {
        let Some(sp) = self.c.plan.sync(sync) else {
            return;
        };
        for e in &self.c.plan.expectations {
            if let (true, Check::Host { ok }) = (e.step == sp.step, &e.check) {
                let actual = match &result {
                    Ok(()) => "succeeded".to_string(),
                    Err(why) => format!("failed: {why}"),
                };
                self.states[e.id] = State::Done {
                    held: result.is_ok() == *ok,
                    actual,
                };
            }
        }
    }

    /// A console line, with the step that was running when it came.
    ///
    /// A guest can print without end: up to [`CONSOLE_KEEP_BYTES`] of
    /// lines are kept whole; past that only the lines a kernel_log rule
    /// of the scenario matches (all a verdict can use), at most
    /// [`CONSOLE_KEEP_MATCHING`] of them.
    pub fn console(&mut self, step: Option<u32>, line: &str) {
        self.console_seen += 1;
        if self.console_bytes + line.len() <= CONSOLE_KEEP_BYTES {
            self.console_bytes += line.len();
            self.console.push((step, line.to_string()));
            return;
        }
        if self.console_matching < CONSOLE_KEEP_MATCHING
            && self
                .console_rules
                .as_ref()
                .is_some_and(|set| set.is_match(line))
        {
            self.console_matching += 1;
            self.console.push((step, line.to_string()));
        }
    }

    /// A kernel report, attributed (its `attribution.step`); the same
    /// report again (same signature, same step) is counted.
    pub fn kernel_report(&mut self, r: &KernelReport) {
        if let Some((_, n)) = self
            .reports
            .iter_mut()
            .find(|(k, _)| k.signature == r.signature && k.attribution.step == r.attribution.step)
        {
            *n += 1;
            return;
        }
        self.reports.push((r.clone(), 1));
    }

    /// A kmemleak scan was made after `step` (None: after the scenario);
    /// `error` says why it could not be.
    pub fn kmemleak_scan(&mut self, step: Option<u32>, error: Option<String>) {
        self.scans.push((step, error));
    }

    fn regex(&mut self, pattern: &str) -> Option<&regex::Regex> {
        if !self.regexes.contains_key(pattern) {
            // Patterns were validated when the scenario was compiled.
            let r = regex::Regex::new(pattern).ok()?;
            self.regexes.insert(pattern.to_string(), r);
        }
        self.regexes.get(pattern)
    }

    fn lookup(
        &self,
        thread: Option<ThreadId>,
        e: &IntExpr,
        iteration: Option<u32>,
    ) -> Result<i128, String> {
        let (var, add) = match e {
            IntExpr::Lit(v) => return Ok(*v),
            IntExpr::Ref { var, add } => (var, *add),
        };
        if var.var == "iteration"
            && let Some(i) = iteration
        {
            return Ok(i128::from(i) + add);
        }
        if gasbench_abi::expr::is_builtin(&var.var) {
            return Err(format!("{var} is only known inside the guest"));
        }
        let mut t = thread;
        let mut hops = 0;
        while let Some(id) = t {
            if let Some(c) = self.captures.get(&id).and_then(|m| m.get(&var.var)) {
                let base: i128 = match var.field.as_deref() {
                    None | Some("ret") => c.ret.into(),
                    Some("fd") => {
                        c.fd.ok_or_else(|| format!("{var}: that call had no fd"))?
                            .into()
                    }
                    Some(f) => match c.out.get(f) {
                        Some(v) => {
                            json_int(v).ok_or_else(|| format!("{var} is {v}, not a number"))?
                        }
                        None => return Err(format!("{var} was not reported (the call failed?)")),
                    },
                };
                return Ok(base + add);
            }
            t = self.parents.get(&id).copied().flatten();
            hops += 1;
            if hops > 64 {
                break;
            }
        }
        Err(format!(
            "{var} was never captured (its step failed or did not run)"
        ))
    }

    fn record(&mut self, r: &CallRecord) {
        *self.calls.entry(r.step).or_default() += 1;
        let kind = self.c.plan.step(r.step).map(|s| s.kind.clone());
        if matches!(&kind, Some(StepKind::Call { op }) if op == "kselftest") {
            self.kselftest_out.insert(r.step, r.args_out.clone());
        }
        let ids = self.per_call.get(&r.step).cloned().unwrap_or_default();
        let injected = r.fault.is_some_and(|f| f.injected);
        for id in ids {
            let check = self.c.plan.expectations[id].check.clone();
            // An attempt in which a fault was injected is judged by the
            // injection's rule only; the others by the step's own.
            if matches!(check, Check::Injected { .. }) != injected {
                continue;
            }
            let (held, actual) = self.call_check(&check, r, kind.as_ref());
            if let State::Calls {
                seen,
                failed,
                first_failure,
                last,
            } = &mut self.states[id]
            {
                *seen += 1;
                if !held {
                    *failed += 1;
                    if first_failure.is_none() {
                        *first_failure = Some(format!(
                            "{actual} (call {}, thread {}, iteration {})",
                            r.call, r.thread, r.iteration
                        ));
                    }
                }
                *last = Some(actual);
            }
        }
        if let Some(name) = self.c.plan.step(r.step).and_then(|s| s.capture.clone()) {
            self.captures.entry(r.thread).or_default().insert(
                name,
                Cap {
                    ret: r.ret,
                    fd: r.fd,
                    out: r.args_out.clone(),
                },
            );
        }
    }

    fn call_check(
        &mut self,
        check: &Check,
        r: &CallRecord,
        kind: Option<&StepKind>,
    ) -> (bool, String) {
        let process = matches!(kind, Some(StepKind::Fork))
            || matches!(kind, Some(StepKind::Call { op }) if op == "kselftest");
        let outcome = describe_outcome(r, process);
        match check {
            Check::Ok { ok } => {
                let actual_ok = r.ok() && (!process || r.ret == 0);
                (actual_ok == *ok, outcome)
            }
            Check::Errno { errno } => (r.errno.as_deref() == Some(errno.as_str()), outcome),
            Check::Ret { matcher } => {
                let actual = Value::from(r.ret);
                match self.matches(matcher, &actual, Some(r.thread), Some(r.iteration)) {
                    Ok(held) => (held, format!("ret {}", r.ret)),
                    Err(why) => (false, why),
                }
            }
            Check::Out { field, matcher } => match r.args_out.get(field) {
                None | Some(Value::Null) => (false, format!("no `{field}` reported ({outcome})")),
                Some(v) => match self.matches(matcher, v, Some(r.thread), Some(r.iteration)) {
                    Ok(held) => (held, format!("{field} = {}", show_json(v))),
                    Err(why) => (false, why),
                },
            },
            Check::Injected { errnos } => {
                let f = r.fault.unwrap_or(gasbench_abi::protocol::FaultAttempt {
                    fault: gasbench_abi::bundle::FaultKind::Slab,
                    nth: 0,
                    injected: true,
                    fd_before: None,
                    fd_after: None,
                    path_before: None,
                    path_after: None,
                });
                let at = format!("{} fault #{}", f.fault.name(), f.nth);
                match &r.errno {
                    None => (true, format!("{at}: {outcome}")),
                    Some(e) if !errnos.contains(e) => (false, format!("{at}: {outcome}")),
                    Some(_) => {
                        let mut wrong = Vec::new();
                        if let (Some(b), Some(a)) = (f.fd_before, f.fd_after)
                            && a != b
                        {
                            wrong.push(format!(
                                "the lowest free fd went from {b} to {a} (a descriptor stayed reserved)"
                            ));
                        }
                        if let (Some(b), Some(a)) = (f.path_before, f.path_after)
                            && a != b
                        {
                            wrong.push(if a {
                                "the path was left behind".to_string()
                            } else {
                                "the path is gone".to_string()
                            });
                        }
                        if wrong.is_empty() {
                            (true, format!("{at}: {outcome}, nothing left behind"))
                        } else {
                            (false, format!("{at}: {outcome}, but {}", wrong.join("; ")))
                        }
                    }
                }
            }
            _ => (false, "internal: not a per-call check".into()),
        }
    }

    fn matches(
        &mut self,
        m: &Matcher,
        actual: &Value,
        thread: Option<ThreadId>,
        iteration: Option<u32>,
    ) -> Result<bool, String> {
        match &m.value {
            Expected::Int(e) => {
                let want = self.lookup(thread, e, iteration)?;
                let got = json_int(actual)
                    .ok_or_else(|| format!("{} is not a number", show_json(actual)))?;
                Ok(match m.op {
                    Op::Eq => got == want,
                    Op::Ne => got != want,
                    Op::Lt => got < want,
                    Op::Le => got <= want,
                    Op::Gt => got > want,
                    Op::Ge => got >= want,
                    Op::BitsSet => got & want == want,
                    Op::BitsClear => got & want == 0,
                    _ => false,
                })
            }
            Expected::Bool(b) => {
                let got = actual
                    .as_bool()
                    .ok_or_else(|| format!("{} is not true/false", show_json(actual)))?;
                Ok(if m.op == Op::Ne { got != *b } else { got == *b })
            }
            Expected::Str(s) => {
                let strings: Vec<String> = match actual {
                    Value::String(x) => vec![x.clone()],
                    Value::Array(items) => items
                        .iter()
                        .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                        .collect(),
                    other => vec![other.to_string()],
                };
                let is_list = actual.is_array();
                Ok(match m.op {
                    Op::Eq => !is_list && strings.first() == Some(s),
                    Op::Ne => is_list || strings.first() != Some(s),
                    Op::Contains if is_list => strings.iter().any(|x| x == s),
                    Op::NotContains if is_list => !strings.iter().any(|x| x == s),
                    Op::Contains => strings.iter().any(|x| x.contains(s.as_str())),
                    Op::NotContains => !strings.iter().any(|x| x.contains(s.as_str())),
                    Op::Matches | Op::NotMatches => {
                        let re = self.regex(s).ok_or_else(|| format!("bad regex {s:?}"))?;
                        let any = strings.iter().any(|x| re.is_match(x));
                        if m.op == Op::Matches { any } else { !any }
                    }
                    _ => false,
                })
            }
        }
    }

    fn device_check(
        &mut self,
        check: &DeviceCheck,
        st: &DeviceState,
        main: Option<ThreadId>,
    ) -> Result<(bool, String), String> {
        let count = |this: &mut Self,
                     m: &Matcher,
                     n: usize,
                     what: &str|
         -> Result<(bool, String), String> {
            let held = this.matches(m, &Value::from(n as u64), main, None)?;
            Ok((held, format!("{n} {what}")))
        };
        match check {
            DeviceCheck::Handles { matcher } => {
                let handles: Vec<u32> = st.handles.iter().map(|h| h.handle).collect();
                count(
                    self,
                    matcher,
                    handles.len(),
                    &format!("handles {handles:?}"),
                )
            }
            DeviceCheck::Blocks { matcher } => {
                let blocks: Vec<&BlockInfo> = st.guest_blocks().collect();
                count(
                    self,
                    matcher,
                    blocks.len(),
                    &format!("blocks {}", show_blocks(blocks)),
                )
            }
            DeviceCheck::PingPages { matcher } => {
                let n = st.handles.iter().filter(|h| h.ping_page.is_some()).count();
                count(self, matcher, n, "ping pages")
            }
            DeviceCheck::Block { offset, present } => {
                let off = self.lookup(main, offset, None)?;
                let there = st.guest_blocks().any(|b| i128::from(b.offset) == off);
                Ok((
                    there == *present,
                    format!("blocks {}", show_blocks(st.guest_blocks())),
                ))
            }
            DeviceCheck::AllFree => {
                // The blocks tile the shared area: all free and merged is
                // one free block covering all of it.
                let whole = matches!(
                    st.blocks.as_slice(),
                    [b] if b.owner == BlockOwner::Free && b.offset == 0 && b.size == st.shared_size
                );
                let free = st.blocks.iter().filter(|b| b.owner == BlockOwner::Free);
                let held = st.blocks.iter().filter(|b| b.owner != BlockOwner::Free);
                Ok((
                    whole,
                    format!(
                        "blocks {}, free {}, shared size {:#x}",
                        show_blocks(held),
                        show_blocks(free),
                        st.shared_size
                    ),
                ))
            }
        }
    }

    /// A report the scenario asked for (`expect.report` on its step or a
    /// block around it), or a leak judged by the step's `expect.kernel`.
    fn report_expected(&self, r: &KernelReport) -> bool {
        let Some(step) = r.attribution.step else {
            return false;
        };
        self.c.plan.expectations.iter().any(|e| {
            let covers = e.step == step || self.descendants(e.step).contains(&step);
            match &e.check {
                Check::Report { kinds } => covers && kinds.iter().any(|k| k == r.kind.name()),
                Check::Leaks { .. } => e.step == step && r.kind == ReportKind::Kmemleak,
                _ => false,
            }
        })
    }

    fn descendants(&self, step: u32) -> HashSet<u32> {
        let mut set = HashSet::from([step]);
        // Steps are numbered in document order, so children follow parents.
        for s in &self.c.plan.steps {
            if let Some(p) = s.parent
                && set.contains(&p)
            {
                set.insert(s.id);
            }
        }
        set
    }

    fn kernel_log(
        &mut self,
        rules: &KernelLogRules,
        lines: &[String],
        seen: usize,
    ) -> Vec<(String, String, bool, Span)> {
        let mut out = Vec::new();
        for p in &rules.must_match {
            let found = match self.regex(&p.regex) {
                Some(re) => lines.iter().find(|l| re.is_match(l)).cloned(),
                None => None,
            };
            out.push((
                format!("a console line matching /{}/", p.regex),
                found.clone().map_or_else(
                    || format!("none of {seen} lines"),
                    |l| format!("found: {l}"),
                ),
                found.is_some(),
                p.span,
            ));
        }
        for p in &rules.must_not_match {
            let found = match self.regex(&p.regex) {
                Some(re) => lines.iter().find(|l| re.is_match(l)).cloned(),
                None => None,
            };
            out.push((
                format!("no console line matching /{}/", p.regex),
                found.clone().map_or_else(
                    || format!("none of {seen} lines"),
                    |l| format!("found: {l}"),
                ),
                found.is_none(),
                p.span,
            ));
        }
        out
    }

    fn ktap_check(&self, step: u32, check: &KtapCheck) -> (bool, String) {
        let results: Vec<&KtapResult> = self
            .ktap
            .get(&step)
            .map(|v| v.iter().filter(|k| k.depth == 0).collect())
            .unwrap_or_default();
        let out = self.kselftest_out.get(&step);
        let planned = out.and_then(|o| o.get("planned")).and_then(Value::as_u64);
        match check {
            KtapCheck::Planned { count } => (
                planned == Some(u64::from(*count)),
                planned.map_or("no plan printed".into(), |p| format!("1..{p}")),
            ),
            KtapCheck::AllPass => {
                let failed: Vec<&str> = results
                    .iter()
                    .filter(|r| r.status == KtapStatus::NotOk)
                    .map(|r| r.name.as_str())
                    .collect();
                let bail = out.and_then(|o| o.get("bail_out")).and_then(Value::as_str);
                let held = out.is_some()
                    && planned == Some(results.len() as u64)
                    && failed.is_empty()
                    && bail.is_none();
                let actual = if out.is_none() {
                    "the kselftest did not run".into()
                } else if !failed.is_empty() {
                    format!("failed: {}", failed.join(", "))
                } else if let Some(b) = bail {
                    format!("bailed out: {b}")
                } else {
                    format!(
                        "{} of {} planned tests reported",
                        results.len(),
                        planned.map_or("?".into(), |p| p.to_string())
                    )
                };
                (held, actual)
            }
            KtapCheck::Status { status, tests } => {
                let mut wrong = Vec::new();
                for t in tests {
                    let found = results.iter().find(|r| {
                        r.name == *t || r.name.rsplit_once('.').is_some_and(|(_, n)| n == t)
                    });
                    match found {
                        Some(r) if r.status.as_str() == status => {}
                        Some(r) => wrong.push(format!("{t}: {}", r.status.as_str())),
                        None => wrong.push(format!("{t}: not reported")),
                    }
                }
                if wrong.is_empty() {
                    (true, format!("all {status}"))
                } else {
                    (false, wrong.join(", "))
                }
            }
        }
    }

    /// Every verdict. Expectations that saw nothing fail, saying why.
    pub fn finish(mut self) -> Report {
        let plan = &self.c.plan;
        let mut verdicts = Vec::new();
        let step_name = |id: u32| {
            plan.step(id)
                .map_or_else(|| format!("step {id}"), |s| s.name.clone())
        };
        let line_of = |span: Span| crate::diag::line_col(&self.c.source, span.start).0;
        let not_run = |this: &Self, id: u32| -> String {
            if let Some(errs) = this.step_errors.get(&id) {
                format!("the step could not run: {}", errs.join("; "))
            } else if !this.started.contains(&id) {
                match &this.bundle_end {
                    Some(Some(e)) => format!("the step never ran (the bundle stopped: {e})"),
                    None if this.bundle_begun => {
                        "the step never ran (the agent did not finish the bundle)".into()
                    }
                    None => "the step never ran (the bundle never started)".into(),
                    Some(None) => "the step never ran".into(),
                }
            } else {
                "no call was made".into()
            }
        };
        let expectations = plan.expectations.clone();
        for e in &expectations {
            let (what, expected) = describe_check(&e.check, plan, e.step);
            let (held, actual) = match (&e.check, &self.states[e.id]) {
                (_, State::Done { held, actual }) => (*held, actual.clone()),
                (Check::Injected { .. }, State::Calls { seen: 0, .. })
                    if self.calls.get(&e.step).copied().unwrap_or(0) > 0 =>
                {
                    (
                        true,
                        "no attempt had a fault injected: the call reached none of its fault points"
                            .into(),
                    )
                }
                (_, State::Calls { seen: 0, .. }) => (false, not_run(&self, e.step)),
                (
                    _,
                    State::Calls {
                        seen,
                        failed,
                        first_failure,
                        last,
                    },
                ) => {
                    if *failed > 0 {
                        let first = first_failure.clone().unwrap_or_default();
                        if *seen == 1 {
                            (false, first)
                        } else {
                            (
                                false,
                                format!("{failed} of {seen} calls failed it; first: {first}"),
                            )
                        }
                    } else if *seen == 1 {
                        (true, last.clone().unwrap_or_default())
                    } else {
                        (
                            true,
                            format!("all {seen} calls: {}", last.clone().unwrap_or_default()),
                        )
                    }
                }
                (Check::Calls { count }, State::Pending) => {
                    let n = self.calls.get(&e.step).copied().unwrap_or(0);
                    (n == *count, format!("{n} calls"))
                }
                (Check::Device { .. }, State::Pending) => (
                    false,
                    if self.started.contains(&e.step) {
                        "no device snapshot was taken at this step's sync point".into()
                    } else {
                        not_run(&self, e.step)
                    },
                ),
                (Check::Host { .. }, State::Pending) => (
                    false,
                    if self.started.contains(&e.step) {
                        "the host action was never reported".into()
                    } else {
                        not_run(&self, e.step)
                    },
                ),
                (Check::Ktap { check }, State::Pending) => self.ktap_check(e.step, check),
                (Check::Report { kinds }, State::Pending) => {
                    let steps = self.descendants(e.step);
                    let found = self.reports.iter().find(|(r, _)| {
                        r.attribution.step.is_some_and(|s| steps.contains(&s))
                            && kinds.iter().any(|k| k == r.kind.name())
                    });
                    match found {
                        Some((r, n)) => (true, format!("report #{}: {}{}", r.id, r.one_line(), times(*n))),
                        None if !self.started.contains(&e.step) => (false, not_run(&self, e.step)),
                        None => {
                            let others = self
                                .reports
                                .iter()
                                .filter(|(r, _)| r.attribution.step.is_some_and(|s| steps.contains(&s)))
                                .count();
                            (false, format!("no such report ({others} other report(s) from the step)"))
                        }
                    }
                }
                (Check::Leaks { matcher }, State::Pending) => {
                    match self.scans.iter().find(|(s, _)| *s == Some(e.step)) {
                        None => (false, if self.started.contains(&e.step) {
                            "no kmemleak scan was reported after the step".into()
                        } else {
                            not_run(&self, e.step)
                        }),
                        Some((_, Some(why))) => (true, format!("not checked: {why}")),
                        Some((_, None)) => {
                            let first = self
                                .reports
                                .iter()
                                .find(|(r, _)| r.kind == ReportKind::Kmemleak && r.attribution.step == Some(e.step))
                                .map(|(r, _)| r.one_line());
                            let n: u32 = self
                                .reports
                                .iter()
                                .filter(|(r, _)| r.kind == ReportKind::Kmemleak && r.attribution.step == Some(e.step))
                                .map(|(_, n)| *n)
                                .sum();
                            match self.matches(matcher, &Value::from(n), None, None) {
                                Ok(held) => (held, match first {
                                    Some(first) => format!("{n} unreferenced object(s); first: {first}"),
                                    None => "no unreferenced object".into(),
                                }),
                                Err(why) => (false, why),
                            }
                        }
                    }
                }
                (Check::KernelLog { rules }, State::Pending) => {
                    let steps = self.descendants(e.step);
                    let lines: Vec<String> = self
                        .console
                        .iter()
                        .filter(|(s, _)| s.is_some_and(|s| steps.contains(&s)))
                        .map(|(_, l)| l.clone())
                        .collect();
                    let seen = lines.len();
                    for (exp, act, held, span) in self.kernel_log(rules, &lines, seen) {
                        verdicts.push(Verdict {
                            step: Some(e.step),
                            step_name: step_name(e.step),
                            line: line_of(span),
                            what: "kernel_log".into(),
                            expected: exp,
                            actual: act,
                            held,
                        });
                    }
                    continue;
                }
                (_, State::Pending) => (false, "never checked".into()),
            };
            let line = if e.implicit {
                plan.step(e.step).map_or(0, |s| s.line)
            } else {
                line_of(e.span)
            };
            verdicts.push(Verdict {
                step: Some(e.step),
                step_name: step_name(e.step),
                line,
                what,
                expected,
                actual,
                held,
            });
        }
        // Steps the agent could not run fail even without expectations.
        for (id, errs) in &self.step_errors {
            verdicts.push(Verdict {
                step: Some(*id),
                step_name: step_name(*id),
                line: plan.step(*id).map_or(0, |s| s.line),
                what: "the agent ran the step".into(),
                expected: "the step runs".into(),
                actual: errs.join("; "),
                held: false,
            });
        }
        // Kernel reports nobody asked for fail the step they came from.
        if plan.reports_fail {
            for (r, n) in &self.reports {
                if self.report_expected(r) {
                    continue;
                }
                let step = r.attribution.step;
                verdicts.push(Verdict {
                    step,
                    step_name: step.map_or_else(|| "(whole scenario)".into(), step_name),
                    line: step.and_then(|s| plan.step(s)).map_or(0, |s| s.line),
                    what: format!("kernel report ({})", r.kind.detector()),
                    expected: "no kernel report".into(),
                    actual: format!("report #{}: {}{}", r.id, r.one_line(), times(*n)),
                    held: false,
                });
            }
        }
        // The whole run's console; lines of a kernel report are judged as
        // the report (above), not line by line by the built-in patterns.
        let in_report: HashSet<&str> = self
            .reports
            .iter()
            .flat_map(|(r, _)| r.text.iter().map(|l| l.trim()))
            .filter(|l| !l.is_empty())
            .collect();
        let all: Vec<String> = self
            .console
            .iter()
            .map(|(_, l)| l.clone())
            .filter(|l| !in_report.contains(message_of(l).trim()))
            .collect();
        let rules = plan.kernel_log.clone();
        let seen = self.console_seen;
        for (exp, act, held, span) in self.kernel_log(&rules, &all, seen) {
            verdicts.push(Verdict {
                step: None,
                step_name: "(whole run)".into(),
                line: if span.is_empty() { 0 } else { line_of(span) },
                what: "kernel_log".into(),
                expected: exp,
                actual: act,
                held,
            });
        }
        let (held, actual) = match &self.bundle_end {
            Some(None) => (true, "finished".to_string()),
            Some(Some(e)) => (false, format!("stopped early: {e}")),
            None if self.bundle_begun => (false, "the agent never finished it".into()),
            None => (false, "the agent never started it".into()),
        };
        verdicts.push(Verdict {
            step: None,
            step_name: "(whole run)".into(),
            line: 0,
            what: "bundle".into(),
            expected: "the agent runs every step".into(),
            actual,
            held,
        });
        let observed = self.observed.take().map(|mut o| {
            o.console = std::mem::take(&mut self.console);
            o.finished = matches!(self.bundle_end, Some(None));
            Box::new(o)
        });
        Report {
            scenario: plan.scenario.clone(),
            verdicts,
            observed,
        }
    }
}

fn json_int(v: &Value) -> Option<i128> {
    v.as_i64()
        .map(i128::from)
        .or_else(|| v.as_u64().map(i128::from))
}

fn show_json(v: &Value) -> String {
    match v {
        Value::Number(_) => match json_int(v) {
            Some(n) if n > 4096 => format!("{n:#x}"),
            _ => v.to_string(),
        },
        Value::String(s) => format!("{s:?}"),
        other => {
            let s = other.to_string();
            if s.len() > 200 {
                format!("{}…", &s[..s.floor_char_boundary(200)])
            } else {
                s
            }
        }
    }
}

fn times(n: u32) -> String {
    if n > 1 {
        format!(" (seen {n} times)")
    } else {
        String::new()
    }
}

/// A console line without the kernel's `[   12.3]` and `[  T97]`
/// prefixes.
fn message_of(line: &str) -> &str {
    let mut rest = line;
    for _ in 0..2 {
        let Some(inner) = rest.strip_prefix('[') else {
            break;
        };
        let Some(end) = inner.find(']').filter(|&e| e <= 24) else {
            break;
        };
        rest = inner[end + 1..]
            .strip_prefix(' ')
            .unwrap_or(&inner[end + 1..]);
    }
    rest
}

fn show_blocks<'b>(blocks: impl IntoIterator<Item = &'b BlockInfo>) -> String {
    let items: Vec<String> = blocks
        .into_iter()
        .map(|b| format!("{:#x}+{:#x}", b.offset, b.size))
        .collect();
    format!("[{}]", items.join(", "))
}

fn describe_outcome(r: &CallRecord, process: bool) -> String {
    match &r.errno {
        Some(e) => format!("errno {e}"),
        None if process => format!("exit code {}", r.ret),
        None => format!("ok (ret {})", r.ret),
    }
}

/// `(what, expected)` of a check, for the verdict.
fn describe_check(check: &Check, plan: &HostPlan, step: u32) -> (String, String) {
    match check {
        Check::Ok { ok: true } => ("ok".into(), "success".into()),
        Check::Ok { ok: false } => ("ok".into(), "failure".into()),
        Check::Errno { errno } => ("errno".into(), format!("errno {errno}")),
        Check::Ret { matcher } => ("ret".into(), format!("ret {}", fmt_matcher(matcher))),
        Check::Out { field, matcher } => (
            format!("out.{field}"),
            format!("{field} {}", fmt_matcher(matcher)),
        ),
        Check::Calls { count } => ("calls".into(), format!("{count} calls")),
        Check::Device { check } => match check {
            DeviceCheck::Handles { matcher } => (
                "device.handles".into(),
                format!("handles {}", fmt_matcher(matcher)),
            ),
            DeviceCheck::Blocks { matcher } => (
                "device.blocks".into(),
                format!("blocks {}", fmt_matcher(matcher)),
            ),
            DeviceCheck::PingPages { matcher } => (
                "device.ping_pages".into(),
                format!("ping pages {}", fmt_matcher(matcher)),
            ),
            DeviceCheck::Block {
                offset,
                present: true,
            } => ("device.has_block".into(), format!("a block at {offset}")),
            DeviceCheck::Block {
                offset,
                present: false,
            } => ("device.lacks_block".into(), format!("no block at {offset}")),
            DeviceCheck::AllFree => (
                "device.all_free".into(),
                "no blocks; the free list is the whole area".into(),
            ),
        },
        Check::KernelLog { .. } => ("kernel_log".into(), String::new()),
        Check::Report { kinds } => (
            "report".into(),
            format!("a {} report from the step", kinds.join(" or ")),
        ),
        Check::Leaks { matcher } => (
            "kernel.leaks".into(),
            format!("kmemleak: unreferenced objects {}", fmt_matcher(matcher)),
        ),
        Check::Injected { errnos } => (
            "inject".into(),
            format!(
                "each attempt that failed a fault point succeeds, or fails with {} leaving no descriptor and no path behind",
                errnos.join(" or ")
            ),
        ),
        Check::Ktap { check } => match check {
            KtapCheck::AllPass => (
                "ktap.all_pass".into(),
                "every planned test reported ok".into(),
            ),
            KtapCheck::Planned { count } => ("ktap.planned".into(), format!("1..{count}")),
            KtapCheck::Status { status, tests } => (
                format!("ktap.{status}"),
                format!("{status}: {}", tests.join(", ")),
            ),
        },
        Check::Host { ok } => {
            let action = plan
                .step(step)
                .and_then(|s| s.sync)
                .and_then(|id| plan.sync(id))
                .and_then(|s| s.actions.first())
                .map_or("host", HostAction::name);
            (
                format!("host {action}"),
                if *ok {
                    "succeeds".into()
                } else {
                    "fails".into()
                },
            )
        }
    }
}

fn fmt_matcher(m: &Matcher) -> String {
    match m.op {
        Op::Eq => format!("== {}", m.value),
        _ => m.to_string(),
    }
}
