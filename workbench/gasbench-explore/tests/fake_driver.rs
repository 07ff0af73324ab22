//! The explorer against a fake goldfish driver, run in-process: batches are
//! compiled by gasbench-scenario and interpreted step by step as the agent
//! would, calls go to a fake driver and device, and the reproducer the
//! explorer writes is judged by the real evaluator.
//!
//! A correct fake gives no defect; a deliberately wrong one (DEALLOCATE_BLOCK
//! frees any file's block) gives exactly that divergence, shrunk to the
//! smallest sequence that shows it.

use std::collections::{BTreeMap, HashMap};

use gasbench_abi::bundle::{Action, ArgPtr, RawArg, Step};
use gasbench_abi::expr::IntExpr;
use gasbench_abi::protocol::{AgentMsg, CallRecord};
use gasbench_abi::uapi::Ioctl;
use gasbench_events::device::{BlockInfo, BlockOwner, DeviceState, HandleInfo};
use gasbench_explore::goldfish::{Goldfish, Op};
use gasbench_explore::{Budget, Domain, Explorer, Kind, Observed, Recorded};
use gasbench_scenario::{Compiled, Evaluator};
use serde_json::{Value, json};

const SHARED: u64 = 16 << 20;
const PHYS: u64 = 0xc000_0000;
const PAGE: u64 = 4096;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Bug {
    None,
    /// DEALLOCATE_BLOCK frees a block whichever file allocated it.
    DeallocAnyBlock,
}

#[derive(Clone, Default)]
struct FFile {
    refs: usize,
    handle: u32,
    service: Option<u64>,
    served: u32,
    claims: Vec<(u64, u64)>,
}

/// The driver and the device in one, as the model wants them except for
/// the bug.
struct Fake {
    bug: Bug,
    files: Vec<FFile>,
    tables: Vec<BTreeMap<i64, usize>>,
    /// (offset, size, owner file, guest block?)
    blocks: Vec<(u64, u64, usize, bool)>,
    next_fd: i64,
    next_handle: u32,
    calls: Vec<CallRecord>,
    msgs: Vec<AgentMsg>,
    snapshots: Vec<(u32, DeviceState)>,
    syncs: Vec<(u32, DeviceState)>,
    call_id: u64,
}

#[derive(Clone, Default)]
struct Vars(HashMap<String, (i64, Option<i32>, Value)>);

impl Fake {
    fn new(bug: Bug) -> Fake {
        Fake {
            bug,
            files: Vec::new(),
            tables: vec![BTreeMap::new()],
            blocks: Vec::new(),
            next_fd: 3,
            next_handle: 1,
            calls: Vec::new(),
            msgs: Vec::new(),
            snapshots: Vec::new(),
            syncs: Vec::new(),
            call_id: 0,
        }
    }

    fn state(&self) -> DeviceState {
        let mut s = DeviceState {
            shared_size: SHARED,
            ..DeviceState::default()
        };
        s.registers.phys_start = PHYS;
        for f in self.files.iter().filter(|f| f.refs > 0) {
            s.handles.push(HandleInfo {
                handle: f.handle,
                ping_page: Some(0x1000),
                service: None,
                pings: 0,
            });
        }
        for (o, sz, f, guest) in &self.blocks {
            s.blocks.push(BlockInfo {
                offset: *o,
                size: *sz,
                owner: if *guest {
                    BlockOwner::Guest
                } else {
                    BlockOwner::Host {
                        handle: self.files[*f].handle,
                    }
                },
            });
        }
        s.blocks.sort_by_key(|b| b.offset);
        s
    }

    fn carve(&self, size: u64) -> Option<u64> {
        // First fit from the top, over the gaps between taken ranges.
        let mut taken: Vec<(u64, u64)> = self.blocks.iter().map(|b| (b.0, b.1)).collect();
        taken.sort();
        let mut end = SHARED;
        for (o, s) in taken.iter().rev() {
            let top = o + s;
            if end >= top && end - top >= size {
                return Some(end - size);
            }
            end = end.min(*o);
        }
        (end >= size).then(|| end - size)
    }

    fn release(&mut self, f: usize) {
        self.files[f].refs -= 1;
        if self.files[f].refs == 0 {
            self.blocks.retain(|b| b.2 != f);
            self.files[f].claims.clear();
        }
    }

    fn table(&mut self) -> &mut BTreeMap<i64, usize> {
        self.tables.last_mut().unwrap()
    }

    fn int(vars: &Vars, e: &IntExpr) -> i128 {
        match e {
            IntExpr::Lit(v) => *v,
            IntExpr::Ref { var, add } => {
                let (ret, _, out) =
                    vars.0
                        .get(&var.var)
                        .cloned()
                        .unwrap_or((-1, None, Value::Null));
                let base: i128 = match var.field.as_deref() {
                    None | Some("ret") | Some("fd") => ret.into(),
                    Some(f) => out.get(f).and_then(|v| v.as_u64()).map_or(0, i128::from),
                };
                base + add
            }
        }
    }

    fn ioctl(
        &mut self,
        fd: i64,
        ioctl: Ioctl,
        v: &mut BTreeMap<&'static str, u64>,
        ptr: ArgPtr,
    ) -> Option<&'static str> {
        let Some(f) = self.tables.last().unwrap().get(&fd).copied() else {
            return Some("EBADF");
        };
        if matches!(
            ptr,
            ArgPtr::Null | ArgPtr::Unmapped | ArgPtr::Kernel | ArgPtr::Straddle
        ) {
            return Some("EFAULT");
        }
        let writes = matches!(
            ioctl,
            Ioctl::AllocateBlock | Ioctl::Ping | Ioctl::ClaimShared
        );
        if ptr == ArgPtr::Readonly && writes {
            return Some("EFAULT");
        }
        match ioctl {
            Ioctl::AllocateBlock => {
                let size = v["size"];
                if size == 0 {
                    return Some("EINVAL");
                }
                let rounded = (size as u128 + 2 * PAGE as u128 - 2) / PAGE as u128 * PAGE as u128;
                if rounded > SHARED as u128 {
                    return Some("ENOMEM");
                }
                let Some(o) = self.carve(rounded as u64) else {
                    return Some("ENOMEM");
                };
                self.blocks.push((o, rounded as u64, f, true));
                v.insert("size", rounded as u64);
                v.insert("offset", o);
                v.insert("phys_addr", PHYS + o);
                None
            }
            Ioctl::DeallocateBlock => {
                let o = v["offset"];
                let i = self.blocks.iter().position(|b| {
                    b.3 && b.0 == o && (b.2 == f || self.bug == Bug::DeallocAnyBlock)
                });
                match i {
                    Some(i) => {
                        self.blocks.remove(i);
                        None
                    }
                    None => Some("ENXIO"),
                }
            }
            Ioctl::Ping => {
                let md = v["metadata"];
                match self.files[f].service {
                    None => {
                        self.files[f].service = Some(md);
                        v.insert("metadata", 0);
                    }
                    Some(100) => {
                        self.files[f].served += 1;
                        v.insert("metadata", !md);
                        v.insert("wait_flags", u64::from(self.files[f].served));
                    }
                    Some(6) if md == 1 => {
                        let size = v["size"];
                        let rounded = size.div_ceil(PAGE) * PAGE;
                        match (size > 0 && rounded <= SHARED)
                            .then(|| self.carve(rounded))
                            .flatten()
                        {
                            Some(o) => {
                                self.blocks.push((o, rounded, f, false));
                                v.insert("offset", o);
                                v.insert("size", rounded);
                                v.insert("metadata", 0);
                            }
                            None => {
                                v.insert("metadata", u64::MAX);
                            }
                        }
                    }
                    Some(6) if md == 2 => {
                        let o = v["offset"];
                        match self
                            .blocks
                            .iter()
                            .position(|b| !b.3 && b.2 == f && b.0 == o)
                        {
                            Some(i) => {
                                self.blocks.remove(i);
                                v.insert("metadata", 0);
                            }
                            None => {
                                v.insert("metadata", u64::MAX);
                            }
                        }
                    }
                    Some(_) => {
                        v.insert("metadata", u64::MAX);
                    }
                }
                None
            }
            Ioctl::ClaimShared => {
                let (o, s) = (v["offset"], v["size"]);
                let end = o as u128 + s as u128;
                let given = self
                    .blocks
                    .iter()
                    .any(|b| !b.3 && b.2 == f && o >= b.0 && end <= (b.0 + b.1) as u128);
                if s == 0 || end > SHARED as u128 || !given {
                    return Some("EINVAL");
                }
                if self.files[f].claims.iter().any(|c| c.0 == o) {
                    return Some("EEXIST");
                }
                self.files[f].claims.push((o, s));
                None
            }
            Ioctl::UnclaimShared => {
                let o = v["offset"];
                match self.files[f].claims.iter().position(|c| c.0 == o) {
                    Some(i) => {
                        self.files[f].claims.remove(i);
                        None
                    }
                    None => Some("ENXIO"),
                }
            }
        }
    }

    // One argument per field of the CallRecord it makes.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        step: &Step,
        name: &str,
        fd: Option<i32>,
        args_in: Value,
        args_out: Value,
        errno: Option<&str>,
        ret: i64,
    ) -> CallRecord {
        self.call_id += 1;
        let r = CallRecord {
            call: self.call_id,
            step: step.id,
            thread: 0,
            iteration: 0,
            name: name.into(),
            fd,
            args_in,
            args_out,
            ret: if errno.is_some() { -1 } else { ret },
            errno: errno.map(str::to_string),
            duration_ns: 1,
            fault: None,
        };
        self.msgs.push(AgentMsg::CallEnd(r.clone()));
        self.calls.push(r.clone());
        r
    }

    fn run(&mut self, steps: &[Step], vars: &mut Vars) {
        for step in steps {
            self.msgs.push(AgentMsg::StepBegin {
                bundle: 1,
                step: step.id,
                thread: 0,
                name: step.name.clone(),
            });
            let rec = match &step.action {
                Action::Open { .. } => {
                    self.files.push(FFile {
                        refs: 1,
                        handle: self.next_handle,
                        ..FFile::default()
                    });
                    self.next_handle += 1;
                    let fd = self.next_fd;
                    self.next_fd += 1;
                    let f = self.files.len() - 1;
                    self.table().insert(fd, f);
                    Some(self.record(
                        step,
                        "open",
                        Some(fd as i32),
                        json!({}),
                        Value::Null,
                        None,
                        fd,
                    ))
                }
                Action::Close { fd } => {
                    let fd = Self::int(vars, fd) as i64;
                    let e = match self.table().remove(&fd) {
                        Some(f) => {
                            self.release(f);
                            None
                        }
                        None => Some("EBADF"),
                    };
                    Some(self.record(
                        step,
                        "close",
                        Some(fd as i32),
                        json!({"fd": fd}),
                        Value::Null,
                        e,
                        0,
                    ))
                }
                Action::Dup { fd } => {
                    let fd = Self::int(vars, fd) as i64;
                    match self.tables.last().unwrap().get(&fd).copied() {
                        Some(f) => {
                            let n = self.next_fd;
                            self.next_fd += 1;
                            self.files[f].refs += 1;
                            self.table().insert(n, f);
                            Some(self.record(
                                step,
                                "dup",
                                Some(fd as i32),
                                json!({"fd": fd}),
                                Value::Null,
                                None,
                                n,
                            ))
                        }
                        None => Some(self.record(
                            step,
                            "dup",
                            None,
                            json!({"fd": fd}),
                            Value::Null,
                            Some("EBADF"),
                            -1,
                        )),
                    }
                }
                Action::Ioctl {
                    fd,
                    cmd,
                    fields,
                    ptr,
                } => {
                    let ioctl = Ioctl::from_name(cmd).unwrap();
                    let fd = Self::int(vars, fd) as i64;
                    let mut v: BTreeMap<&'static str, u64> = ioctl
                        .layout()
                        .iter()
                        .map(|(n, _, _)| {
                            (*n, fields.get(*n).map_or(0, |e| Self::int(vars, e) as u64))
                        })
                        .collect();
                    let args_in: Value =
                        Value::Object(v.iter().map(|(k, x)| (k.to_string(), json!(x))).collect());
                    let before = v.clone();
                    let e = self.ioctl(fd, ioctl, &mut v, *ptr);
                    let out = if e.is_some() { before } else { v };
                    let args_out =
                        Value::Object(out.iter().map(|(k, x)| (k.to_string(), json!(x))).collect());
                    Some(self.record(
                        step,
                        &format!("ioctl:{cmd}"),
                        Some(fd as i32),
                        args_in,
                        args_out,
                        e,
                        0,
                    ))
                }
                Action::RawIoctl { fd, arg, .. } => {
                    let fd = Self::int(vars, fd) as i64;
                    let e = if self.tables.last().unwrap().contains_key(&fd) {
                        "ENOTTY"
                    } else {
                        "EBADF"
                    };
                    let _ = matches!(arg, RawArg::Value { .. });
                    Some(self.record(
                        step,
                        "ioctl",
                        Some(fd as i32),
                        json!({}),
                        Value::Null,
                        Some(e),
                        -1,
                    ))
                }
                Action::Fork { steps } => {
                    let t = self.tables.last().unwrap().clone();
                    for f in t.values() {
                        self.files[*f].refs += 1;
                    }
                    self.tables.push(t);
                    let mut child = vars.clone();
                    self.run(steps, &mut child);
                    let t = self.tables.pop().unwrap();
                    for f in t.values() {
                        self.release(*f);
                    }
                    Some(self.record(
                        step,
                        "fork",
                        None,
                        json!({}),
                        json!({"exit_code": 0}),
                        None,
                        0,
                    ))
                }
                Action::Checkpoint => None,
                other => panic!("the fake does not run {}", other.op()),
            };
            if let (Some(r), Some(c)) = (&rec, &step.capture) {
                vars.0.insert(c.clone(), (r.ret, r.fd, r.args_out.clone()));
            }
            self.msgs.push(AgentMsg::StepEnd {
                bundle: 1,
                step: step.id,
                thread: 0,
                error: None,
            });
            if let Some(sync) = step.sync {
                let s = self.state();
                self.snapshots.push((step.id, s.clone()));
                self.syncs.push((sync, s));
            }
        }
    }
}

/// Run a scenario text against a fresh fake: what the explorer observes,
/// and the evaluator's failed expectations.
fn run(bug: Bug, name: &str, text: &str) -> (Compiled, Observed, Vec<String>) {
    let c = gasbench_scenario::compile(name, text).unwrap_or_else(|p| {
        panic!(
            "{:?}",
            p.problems
                .iter()
                .map(|x| x.message.clone())
                .collect::<Vec<_>>()
        )
    });
    let mut fake = Fake::new(bug);
    fake.msgs.push(AgentMsg::BundleBegin {
        bundle: 1,
        scenario: name.into(),
        steps: 0,
    });
    fake.msgs.push(AgentMsg::Thread {
        thread: 0,
        parent: None,
        step: None,
        pid: 1,
    });
    let mut vars = Vars::default();
    fake.run(&c.bundle.steps, &mut vars);
    fake.msgs.push(AgentMsg::BundleEnd {
        bundle: 1,
        error: None,
    });
    let mut ev = Evaluator::new(&c);
    let mut syncs = fake.syncs.iter();
    for m in &fake.msgs {
        ev.agent(m);
        if let AgentMsg::StepEnd { step, .. } = m
            && let Some(sync) = c
                .bundle
                .all_steps()
                .iter()
                .find(|s| s.id == *step)
                .and_then(|s| s.sync)
            && let Some((_, st)) = syncs.next()
        {
            ev.device_snapshot(sync, st);
        }
    }
    let failed: Vec<String> = ev
        .finish()
        .failures()
        .map(|v| {
            format!(
                "line {}: {}: expected {}, got {}",
                v.line, v.what, v.expected, v.actual
            )
        })
        .collect();
    let obs = Observed::build(
        &c.plan,
        Recorded {
            calls: &fake.calls,
            snapshots: &fake.snapshots,
            console: &[],
            step_errors: &[],
            finished: true,
            stopped: None,
            failed_expectations: failed.clone(),
        },
    );
    (c, obs, failed)
}

fn explore(bug: Bug, seed: u64) -> Explorer<Goldfish> {
    explore_with(bug, seed, 6000)
}

fn explore_with(bug: Bug, seed: u64, calls: usize) -> Explorer<Goldfish> {
    let mut ex = Explorer::new(
        Goldfish::default(),
        seed,
        Budget {
            calls,
            ..Budget::default()
        },
    );
    while let Some(b) = ex.next_batch() {
        let (_, obs, _) = run(bug, &b.name, &b.toml);
        ex.observe(&b, &obs);
    }
    ex
}

#[test]
fn a_correct_driver_shows_no_defect() {
    for seed in [1, 2, 3] {
        let ex = explore(Bug::None, seed);
        let r = ex.report();
        assert!(r.stats.calls > 3000, "{:?}", r.stats);
        let defects: Vec<_> = r
            .findings
            .iter()
            .filter(|f| f.kind == Kind::Defect)
            .map(|f| (&f.signature, &f.observed))
            .collect();
        assert!(defects.is_empty(), "seed {seed}: {defects:#?}");
    }
}

#[test]
fn a_driver_that_frees_other_files_blocks_is_caught_and_shrunk_to_four_calls() {
    let ex = explore(Bug::DeallocAnyBlock, 1);
    let r = ex.report();
    let f = r
        .findings
        .iter()
        .find(|f| f.signature == "dealloc.not-held")
        .unwrap_or_else(|| {
            panic!(
                "not found: {:#?}",
                r.findings.iter().map(|f| &f.signature).collect::<Vec<_>>()
            )
        });
    assert_eq!(f.kind, Kind::Defect);
    assert!(
        f.original_ops > f.minimal_ops,
        "{} -> {}",
        f.original_ops,
        f.minimal_ops
    );
    // The smallest sequence that shows it: two files, a block on one,
    // DEALLOCATE_BLOCK of it through the other.
    assert_eq!(f.minimal_ops, 4, "{}", f.reproducer);
    assert!(f.minimal, "the explorer did not see the sequence 1-minimal");
    let (_, seq) = ex
        .minimal_sequences()
        .into_iter()
        .find(|(s, _)| s == "dealloc.not-held")
        .unwrap();
    let opens = seq.iter().filter(|o| matches!(o, Op::Open { .. })).count();
    assert_eq!(opens, 2, "{seq:?}");
    assert!(matches!(seq.last(), Some(Op::Dealloc { .. })), "{seq:?}");
    // Minimal: without any one of its calls (and what uses it), the
    // divergence is gone.
    let d = Goldfish::default();
    for op in &seq {
        let smaller = gasbench_explore::goldfish::without(&seq, &[op.id()]);
        let text = format!(
            "{}{}{}",
            d.header("m", "m"),
            d.prologue(),
            d.render(&smaller, "x0", None)
        );
        let (_, obs, _) = run(Bug::DeallocAnyBlock, "m", &text);
        let c = d.check(&smaller, "x0", "setup.start", &obs);
        assert!(
            !c.has("dealloc.not-held"),
            "still there without op {}: {smaller:?}",
            op.id()
        );
    }
    // The reproducer is an ordinary scenario: it fails on the wrong driver
    // and passes on a correct one.
    assert_eq!(f.confirmed, Some(true), "{:?}\n{}", f.note, f.reproducer);
    let (_, _, failed) = run(Bug::DeallocAnyBlock, "r", &f.reproducer);
    assert!(
        failed.len() == 1 && failed[0].contains("expected failure, got ok"),
        "{failed:?}\n{}",
        f.reproducer
    );
    let (_, _, failed) = run(Bug::None, "r", &f.reproducer);
    assert!(failed.is_empty(), "{failed:?}\n{}", f.reproducer);
    assert!(
        f.reproducer.contains("# explorer: DEALLOCATE_BLOCK"),
        "{}",
        f.reproducer
    );
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let a = explore(Bug::DeallocAnyBlock, 9).report();
    let b = explore(Bug::DeallocAnyBlock, 9).report();
    assert_eq!(a.stats.calls, b.stats.calls);
    assert_eq!(
        a.findings.iter().map(|f| &f.reproducer).collect::<Vec<_>>(),
        b.findings.iter().map(|f| &f.reproducer).collect::<Vec<_>>()
    );
}

/// repro's budget (600 calls), which the last generated batch overspends:
/// the divergence is still shrunk with the share kept for shrinking
/// (counted from where generation ended), and every reproducer is run
/// again as written whatever is left of the budget.
#[test]
fn repro_s_small_budget_still_shrinks_and_confirms_what_it_found() {
    // The first seeds that find the bug in 600 calls.
    let found: Vec<_> = (1..=40)
        .map(|seed| explore_with(Bug::DeallocAnyBlock, seed, 600).report())
        .filter(|r| !r.findings.is_empty())
        .take(3)
        .collect();
    assert!(!found.is_empty(), "no seed of 40 found it in 600 calls");
    for r in &found {
        assert!(r.stats.shrink_batches > 0, "{:?}", r.stats);
        for f in &r.findings {
            assert!(f.confirmed.is_some(), "{}: {:?}", f.signature, f.note);
        }
    }
}
