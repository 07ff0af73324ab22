//! `/dev/goldfish_address_space`: random call sequences and the reference
//! model of what the driver promises to user space.
//!
//! The model is written from the sources a reviewer has, never from the
//! posted driver:
//!
//! - the uapi header (patch 1/6 as quoted by Arnd Bergmann): five `_IOWR`
//!   ioctls; `offset`s are offsets in the shared area (BAR1);
//! - the cover letter (0/6): open/release, allocate/deallocate, ping,
//!   claim/unclaim, unknown ioctl, reopen; mmap is left out;
//! - the Android emulator's device (DESIGN.md): ALLOCATE_BLOCK rounds the
//!   size up to whole pages (`((size + 2*ps - 2) / ps) * ps`), size 0 is
//!   EINVAL, no room is ENOMEM; DEALLOCATE_BLOCK takes exactly an offset
//!   it handed out; a context is bound to a host service on its first
//!   ping; the shared-slots service hands out areas of the shared area
//!   for CLAIM_SHARED; a context's claims and mappings die with it;
//! - the list's review (Arnd): physical addresses should not reach user
//!   space;
//! - what every ioctl promises: EBADF for a closed fd, EFAULT for an
//!   argument the kernel cannot read or write back, ENOTTY for a request
//!   it does not know, and a failed call has no effect.
//!
//! Where these say nothing (a claim of a range the host never handed out,
//! the same offset claimed twice, what PING returns in `offset`), the
//! model answers "unspecified" and the explorer asks the driver's
//! behaviour as a question instead of calling it a defect.
//!
//! State is per open file description (what `open` returns; `dup` and
//! `fork` share it), as the uapi's per-fd ioctls imply: blocks, claims,
//! the bound service. Device-side invariants come from snapshots at two
//! checkpoints per sequence: before the final closes every block and
//! handle on the device is one a live file holds, and after them the
//! device is back where the sequence found it.

use std::collections::BTreeMap;

use gasbench_abi::bundle::ArgPtr;
use gasbench_abi::protocol::CallRecord;
use gasbench_events::device::{BlockOwner, DeviceState};

use crate::explorer::Domain;
use crate::model::{Divergence, Kind, Outcome, SeqCheck};
use crate::observe::{Observed, errno_name, field};
use crate::toml_out::{comment, nested_step, num, step, string};

const DEVICE: &str = "/dev/goldfish_address_space";

/// Service numbers a first PING binds (the emulator's device types 5 and
/// 6, and gasbench's echo).
const ECHO: u64 = 100;
const HOST_MEMORY: u64 = 5;
const SHARED_SLOTS: u64 = 6;

/// A number, or a field of an earlier call's result plus a constant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Val {
    Lit(u64),
    Out {
        of: u32,
        field: &'static str,
        add: u64,
    },
}

impl Val {
    fn render(&self, tag: &str) -> String {
        match self {
            Val::Lit(v) => num(*v),
            Val::Out { of, field, add: 0 } => string(&format!("${{{tag}_{of}.{field}}}")),
            Val::Out { of, field, add } => string(&format!("${{{tag}_{of}.{field}}} + {add}")),
        }
    }

    fn uses(&self) -> Option<u32> {
        match self {
            Val::Out { of, .. } => Some(*of),
            Val::Lit(_) => None,
        }
    }
}

/// One call of a sequence. `id` is unique in the sequence and stable under
/// shrinking; `fd` names the op that opened (or dup'ed) the descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Open {
        id: u32,
    },
    Close {
        id: u32,
        fd: u32,
    },
    Dup {
        id: u32,
        fd: u32,
    },
    Alloc {
        id: u32,
        fd: u32,
        size: u64,
        ptr: ArgPtr,
    },
    Dealloc {
        id: u32,
        fd: u32,
        offset: Val,
        ptr: ArgPtr,
    },
    Ping {
        id: u32,
        fd: u32,
        offset: Val,
        size: u64,
        metadata: u64,
        ptr: ArgPtr,
    },
    Claim {
        id: u32,
        fd: u32,
        offset: Val,
        size: Val,
        ptr: ArgPtr,
    },
    Unclaim {
        id: u32,
        fd: u32,
        offset: Val,
        ptr: ArgPtr,
    },
    /// A goldfish-looking request the driver does not know.
    Raw {
        id: u32,
        fd: u32,
        dir: &'static str,
        nr: u32,
        size: u32,
    },
    /// A child process runs `ops` (on inherited descriptors and its own)
    /// and exits without closing anything.
    Fork {
        id: u32,
        ops: Vec<Op>,
    },
}

impl Op {
    pub fn id(&self) -> u32 {
        match self {
            Op::Open { id }
            | Op::Close { id, .. }
            | Op::Dup { id, .. }
            | Op::Alloc { id, .. }
            | Op::Dealloc { id, .. }
            | Op::Ping { id, .. }
            | Op::Claim { id, .. }
            | Op::Unclaim { id, .. }
            | Op::Raw { id, .. }
            | Op::Fork { id, .. } => *id,
        }
    }

    /// The ids this op refers to.
    fn uses(&self) -> Vec<u32> {
        let mut u = Vec::new();
        match self {
            Op::Open { .. } => {}
            Op::Close { fd, .. }
            | Op::Dup { fd, .. }
            | Op::Alloc { fd, .. }
            | Op::Raw { fd, .. } => u.push(*fd),
            Op::Dealloc { fd, offset, .. } | Op::Unclaim { fd, offset, .. } => {
                u.push(*fd);
                u.extend(offset.uses());
            }
            Op::Ping { fd, offset, .. } => {
                u.push(*fd);
                u.extend(offset.uses());
            }
            Op::Claim {
                fd, offset, size, ..
            } => {
                u.push(*fd);
                u.extend(offset.uses());
                u.extend(size.uses());
            }
            Op::Fork { ops, .. } => {
                for o in ops {
                    u.extend(o.uses());
                }
            }
        }
        u
    }

    fn what(&self) -> &'static str {
        match self {
            Op::Open { .. } => "open",
            Op::Close { .. } => "close",
            Op::Dup { .. } => "dup",
            Op::Alloc { .. } => "ALLOCATE_BLOCK",
            Op::Dealloc { .. } => "DEALLOCATE_BLOCK",
            Op::Ping { .. } => "PING",
            Op::Claim { .. } => "CLAIM_SHARED",
            Op::Unclaim { .. } => "UNCLAIM_SHARED",
            Op::Raw { .. } => "raw ioctl",
            Op::Fork { .. } => "fork",
        }
    }
}

/// The goldfish explorer's domain.
#[derive(Clone, Debug)]
pub struct Goldfish {
    /// BAR1's size as the generator assumes it (the model takes the real
    /// one from the device's first snapshot).
    pub shared_size: u64,
    pub page: u64,
}

impl Default for Goldfish {
    fn default() -> Self {
        Goldfish {
            shared_size: 16 << 20,
            page: 4096,
        }
    }
}

// ---------------------------------------------------------------------
// Generation

struct Gen<'a> {
    rng: &'a mut fastrand::Rng,
    next: u32,
    page: u64,
    shared: u64,
}

/// What a generated scope (the sequence, or a fork's child) can refer to.
#[derive(Clone, Default)]
struct Scope {
    fds: Vec<u32>,
    closed: Vec<u32>,
    allocs: Vec<u32>,
    /// PINGs that may have bound a service, by fd, and which.
    bound: BTreeMap<u32, u64>,
    /// PINGs asking the shared-slots service for an area.
    grants: Vec<u32>,
    claims: Vec<Val>,
}

impl Gen<'_> {
    fn id(&mut self) -> u32 {
        self.next += 1;
        self.next
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.rng.usize(..items.len())].clone()
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.rng.u32(..100) < percent
    }

    fn ptr(&mut self) -> ArgPtr {
        match self.rng.u32(..100) {
            0..=87 => ArgPtr::Buffer,
            88..=91 => ArgPtr::Unaligned,
            92..=94 => ArgPtr::Readonly,
            95 => ArgPtr::Null,
            96 => ArgPtr::Unmapped,
            97 => ArgPtr::Kernel,
            _ => ArgPtr::Straddle,
        }
    }

    /// Sizes biased to the boundaries: 0, 1, page-1, page, page+1, the
    /// emulator's rounding edges, the shared area's size, 32-bit edges,
    /// and sizes whose rounding wraps 64 bits.
    fn size(&mut self) -> u64 {
        let p = self.page;
        let s = self.shared;
        let edges = [
            0,
            1,
            p - 1,
            p,
            p + 1,
            2 * p,
            3 * p - 1,
            16 * p,
            s / 2,
            s - p,
            s - 2 * p + 2,
            s,
            s + 1,
            1 << 32,
            (1 << 32) + p,
            u64::MAX,
            u64::MAX - p + 2,
            u64::MAX - 2 * p + 3,
        ];
        if self.chance(55) {
            // Ordinary sizes.
            self.rng.u64(1..=8) * p
                - if self.chance(30) {
                    self.rng.u64(0..p)
                } else {
                    0
                }
        } else {
            self.pick(&edges)
        }
    }

    fn literal_offset(&mut self) -> u64 {
        let p = self.page;
        let s = self.shared;
        let edges = [
            0,
            1,
            p,
            s - p,
            s,
            s + p,
            0xdead_0000,
            1 << 32,
            u64::MAX,
            u64::MAX - p + 1,
        ];
        self.pick(&edges)
    }

    fn offset(&mut self, sc: &Scope) -> Val {
        let roll = self.rng.u32(..100);
        if roll < 60 && !sc.allocs.is_empty() {
            let of = self.pick(&sc.allocs);
            let add = match self.rng.u32(..10) {
                0 => self.page,
                1 => 1,
                _ => 0,
            };
            Val::Out {
                of,
                field: "offset",
                add,
            }
        } else if roll < 80 && !sc.grants.is_empty() {
            let of = self.pick(&sc.grants);
            Val::Out {
                of,
                field: "offset",
                add: 0,
            }
        } else {
            Val::Lit(self.literal_offset())
        }
    }

    fn ops(&mut self, sc: &mut Scope, n: usize, top: bool) -> Vec<Op> {
        let mut ops = Vec::new();
        while ops.len() < n {
            if sc.fds.is_empty() || (sc.fds.len() < 3 && self.chance(8)) {
                let id = self.id();
                ops.push(Op::Open { id });
                sc.fds.push(id);
                continue;
            }
            let fd = if !sc.closed.is_empty() && self.chance(3) {
                self.pick(&sc.closed)
            } else {
                self.pick(&sc.fds)
            };
            let roll = self.rng.u32(..100);
            let id = self.id();
            let op = match roll {
                0..=21 => {
                    let size = self.size();
                    let ptr = self.ptr();
                    sc.allocs.push(id);
                    Op::Alloc { id, fd, size, ptr }
                }
                22..=35 => {
                    let offset = self.offset(sc);
                    Op::Dealloc {
                        id,
                        fd,
                        offset,
                        ptr: self.ptr(),
                    }
                }
                36..=49 => self.ping(id, fd, sc),
                50..=61 => {
                    let (offset, size) = if !sc.grants.is_empty() && self.chance(45) {
                        let of = self.pick(&sc.grants);
                        (
                            Val::Out {
                                of,
                                field: "offset",
                                add: 0,
                            },
                            Val::Out {
                                of,
                                field: "size",
                                add: 0,
                            },
                        )
                    } else {
                        let off = self.offset(sc);
                        (off, Val::Lit(self.size()))
                    };
                    let ptr = self.ptr();
                    sc.claims.push(offset.clone());
                    Op::Claim {
                        id,
                        fd,
                        offset,
                        size,
                        ptr,
                    }
                }
                62..=71 => {
                    let offset = if !sc.claims.is_empty() && self.chance(70) {
                        self.pick(&sc.claims)
                    } else {
                        self.offset(sc)
                    };
                    Op::Unclaim {
                        id,
                        fd,
                        offset,
                        ptr: self.ptr(),
                    }
                }
                72..=76 => {
                    let (dir, nr, size) = match self.rng.u32(..5) {
                        0 => ("rw", 15, 24),
                        1 => ("rw", 10, 16),
                        2 => ("r", 10, 24),
                        3 => ("w", 12, 40),
                        _ => ("rw", self.rng.u32(0..10), 8),
                    };
                    Op::Raw {
                        id,
                        fd,
                        dir,
                        nr,
                        size,
                    }
                }
                77..=83 => {
                    sc.fds.retain(|f| *f != fd);
                    if !sc.closed.contains(&fd) {
                        sc.closed.push(fd);
                    }
                    sc.bound.remove(&fd);
                    Op::Close { id, fd }
                }
                84..=88 => {
                    sc.fds.push(id);
                    Op::Dup { id, fd }
                }
                89..=95 if top => {
                    // The child sees what the parent holds; what it makes
                    // stays in it.
                    let mut child = sc.clone();
                    let n = self.rng.usize(1..=5);
                    let ops = self.ops(&mut child, n, false);
                    Op::Fork { id, ops }
                }
                _ => {
                    let size = self.rng.u64(1..=4) * self.page;
                    sc.allocs.push(id);
                    Op::Alloc {
                        id,
                        fd,
                        size,
                        ptr: ArgPtr::Buffer,
                    }
                }
            };
            ops.push(op);
        }
        ops
    }

    fn ping(&mut self, id: u32, fd: u32, sc: &mut Scope) -> Op {
        let ptr = self.ptr();
        let (offset, size, metadata) = match sc.bound.get(&fd).copied() {
            None => {
                let metadata = match self.rng.u32(..10) {
                    0..=4 => ECHO,
                    5..=7 => SHARED_SLOTS,
                    8 => HOST_MEMORY,
                    _ => self.pick(&[0, 1, 7, u64::MAX]),
                };
                sc.bound.insert(fd, metadata);
                (Val::Lit(0), 0, metadata)
            }
            Some(SHARED_SLOTS) => {
                if !sc.grants.is_empty() && self.chance(35) {
                    let of = self.pick(&sc.grants);
                    (
                        Val::Out {
                            of,
                            field: "offset",
                            add: 0,
                        },
                        0,
                        2,
                    )
                } else {
                    sc.grants.push(id);
                    let size = self.pick(&[1, self.page, 3 * self.page, 0, self.shared + 1]);
                    (Val::Lit(0), size, 1)
                }
            }
            Some(HOST_MEMORY) => {
                let offset = self.offset(sc);
                let size = self.pick(&[self.page, 1, 2 * self.page]);
                (offset, size, self.pick(&[1, 2]))
            }
            Some(_) => {
                let offset = if self.chance(70) {
                    Val::Lit(self.rng.u64(0..16) * self.page)
                } else {
                    Val::Lit(self.literal_offset())
                };
                (offset, self.pick(&[0, self.page, 8]), self.rng.u64(0..1000))
            }
        };
        Op::Ping {
            id,
            fd,
            offset,
            size,
            metadata,
            ptr,
        }
    }
}

// ---------------------------------------------------------------------
// Rendering

/// Descriptors a sequence leaves open at its end, in opening order
/// (closed by the sequence's last steps).
fn left_open(seq: &[Op]) -> Vec<u32> {
    let mut open: Vec<u32> = Vec::new();
    for op in seq {
        match op {
            Op::Open { id } | Op::Dup { id, .. } => open.push(*id),
            Op::Close { fd, .. } => open.retain(|f| f != fd),
            _ => {}
        }
    }
    open
}

impl Goldfish {
    fn render_op(
        &self,
        op: &Op,
        tag: &str,
        nested: bool,
        out: &mut String,
        annotate: &dyn Fn(&str, &mut String),
    ) {
        let key = format!("{tag}.{}", op.id());
        let head = |out: &mut String, what: &str| {
            let name = format!("{key} {what}");
            out.push_str(&if nested {
                nested_step(&name)
            } else {
                step(&name)
            });
        };
        let fd = |f: &u32| string(&format!("${{{tag}_{f}}}"));
        let ptr = |p: &ArgPtr| match p {
            ArgPtr::Buffer => String::new(),
            other => format!(", ptr = {}", string(other.name())),
        };
        match op {
            Op::Open { id } => {
                head(out, "open");
                out.push_str(&format!(
                    "open = {{ path = {}, flags = [\"O_RDWR\"] }}\ncapture = \"{tag}_{id}\"\n",
                    string(DEVICE)
                ));
            }
            Op::Close { fd: f, .. } => {
                head(out, "close");
                out.push_str(&format!("close = {{ fd = {} }}\n", fd(f)));
            }
            Op::Dup { id, fd: f } => {
                head(out, "dup");
                out.push_str(&format!(
                    "dup = {{ fd = {} }}\ncapture = \"{tag}_{id}\"\n",
                    fd(f)
                ));
            }
            Op::Alloc {
                id,
                fd: f,
                size,
                ptr: p,
            } => {
                head(out, "ALLOCATE_BLOCK");
                out.push_str(&format!(
                    "ioctl = {{ fd = {}, cmd = \"ALLOCATE_BLOCK\", size = {}{} }}\ncapture = \"{tag}_{id}\"\n",
                    fd(f),
                    num(*size),
                    ptr(p)
                ));
            }
            Op::Dealloc {
                fd: f,
                offset,
                ptr: p,
                ..
            } => {
                head(out, "DEALLOCATE_BLOCK");
                out.push_str(&format!(
                    "ioctl = {{ fd = {}, cmd = \"DEALLOCATE_BLOCK\", offset = {}{} }}\n",
                    fd(f),
                    offset.render(tag),
                    ptr(p)
                ));
            }
            Op::Ping {
                id,
                fd: f,
                offset,
                size,
                metadata,
                ptr: p,
            } => {
                head(out, "PING");
                out.push_str(&format!(
                    "ioctl = {{ fd = {}, cmd = \"PING\", offset = {}, size = {}, metadata = {}{} }}\ncapture = \"{tag}_{id}\"\n",
                    fd(f),
                    offset.render(tag),
                    num(*size),
                    num(*metadata),
                    ptr(p)
                ));
            }
            Op::Claim {
                id,
                fd: f,
                offset,
                size,
                ptr: p,
            } => {
                head(out, "CLAIM_SHARED");
                out.push_str(&format!(
                    "ioctl = {{ fd = {}, cmd = \"CLAIM_SHARED\", offset = {}, size = {}{} }}\ncapture = \"{tag}_{id}\"\n",
                    fd(f),
                    offset.render(tag),
                    size.render(tag),
                    ptr(p)
                ));
            }
            Op::Unclaim {
                fd: f,
                offset,
                ptr: p,
                ..
            } => {
                head(out, "UNCLAIM_SHARED");
                out.push_str(&format!(
                    "ioctl = {{ fd = {}, cmd = \"UNCLAIM_SHARED\", offset = {}{} }}\n",
                    fd(f),
                    offset.render(tag),
                    ptr(p)
                ));
            }
            Op::Raw {
                fd: f,
                dir,
                nr,
                size,
                ..
            } => {
                head(out, "raw ioctl");
                out.push_str(&format!(
                    "raw_ioctl = {{ fd = {}, request = {{ dir = \"{dir}\", type = \"G\", nr = {nr}, size = {size} }} }}\n",
                    fd(f)
                ));
            }
            Op::Fork { ops, .. } => {
                head(out, "fork");
                out.push_str("fork = true\n");
                annotate(&key, out);
                for o in ops {
                    self.render_op(o, tag, true, out, annotate);
                }
                return;
            }
        }
        annotate(&key, out);
    }
}

// ---------------------------------------------------------------------
// The model

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Service {
    Unbound,
    Echo {
        served: u32,
    },
    HostMemory,
    SharedSlots,
    /// The first PING named no service the model knows.
    Unrecognised,
    /// A PING whose result was lost (EFAULT writing it back): the model
    /// cannot say what the host did.
    Unknown,
}

#[derive(Clone, Debug)]
struct File {
    refs: usize,
    blocks: Vec<(u64, u64)>,
    claims: Vec<(u64, u64)>,
    /// Areas the shared-slots service handed to this file's context.
    grants: Vec<(u64, u64)>,
    service: Service,
    /// A failed call may have left something the model cannot see.
    unsure: bool,
}

impl File {
    fn new() -> File {
        File {
            refs: 0,
            blocks: Vec::new(),
            claims: Vec::new(),
            grants: Vec::new(),
            service: Service::Unbound,
            unsure: false,
        }
    }
}

struct Model {
    files: Vec<File>,
    /// Descriptor tables: the parent's, and a forked child's on top.
    tables: Vec<BTreeMap<i64, usize>>,
    shared: u64,
    page: u64,
    phys_start: Option<u64>,
    /// What the device held when the sequence began.
    base: Option<DeviceState>,
    /// `phys_addr - offset` of the first block (the shared area's
    /// physical start, as the driver reports it).
    phys_base: Option<u64>,
    questions_asked: Vec<&'static str>,
}

/// Why a call's pointer makes it fail before or after it acts.
fn bad_read(p: ArgPtr) -> bool {
    matches!(
        p,
        ArgPtr::Null | ArgPtr::Unmapped | ArgPtr::Kernel | ArgPtr::Straddle
    )
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    let (a0, a1) = (a.0 as u128, a.0 as u128 + a.1 as u128);
    let (b0, b1) = (b.0 as u128, b.0 as u128 + b.1 as u128);
    a0 < b1 && b0 < a1
}

impl Model {
    fn table(&mut self) -> &mut BTreeMap<i64, usize> {
        self.tables.last_mut().expect("a table")
    }

    fn file_of(&self, fd: i64) -> Option<usize> {
        self.tables.last().and_then(|t| t.get(&fd).copied())
    }

    fn release(&mut self, f: usize) {
        let file = &mut self.files[f];
        file.refs = file.refs.saturating_sub(1);
        if file.refs == 0 {
            file.blocks.clear();
            file.claims.clear();
            file.grants.clear();
            file.service = Service::Unbound;
        }
    }

    fn live(&self) -> impl Iterator<Item = &File> {
        self.files.iter().filter(|f| f.refs > 0)
    }

    /// Ranges of the shared area the model knows are taken.
    fn occupied(&self) -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = self
            .base
            .iter()
            .flat_map(|b| b.blocks.iter())
            .filter(|b| b.owner != BlockOwner::Free)
            .map(|b| (b.offset, b.size))
            .collect();
        for f in self.live() {
            v.extend(f.blocks.iter().copied());
            v.extend(f.grants.iter().copied());
        }
        v.sort();
        v
    }

    fn largest_free(&self) -> u64 {
        let mut at = 0u64;
        let mut best = 0u64;
        for (o, s) in self.occupied() {
            if o > at {
                best = best.max(o - at);
            }
            at = at.max(o.saturating_add(s));
        }
        if self.shared > at {
            best = best.max(self.shared - at);
        }
        best
    }

    fn unsure(&self) -> bool {
        self.files.iter().any(|f| f.unsure)
    }
}

struct Ctx<'a> {
    tag: &'a str,
    obs: &'a Observed,
    check: SeqCheck,
    stop: bool,
}

impl Ctx<'_> {
    fn expect(&mut self, key: &str, lines: Vec<String>) {
        self.check.expects.push((key.to_string(), lines));
    }

    fn diverge(&mut self, d: Divergence) {
        if d.kind == Kind::Defect {
            self.stop = true;
        }
        if !self
            .check
            .divergences
            .iter()
            .any(|x| x.signature == d.signature)
        {
            self.check.divergences.push(d);
        }
    }
}

fn outcome_text(r: &CallRecord) -> String {
    match errno_name(r) {
        None => format!("returned {}", r.ret),
        Some(e) => format!("failed with {e}"),
    }
}

fn observed_expect(r: &CallRecord) -> String {
    match errno_name(r) {
        None => "expect.ok = true".into(),
        Some(e) => format!("expect.errno = \"{e}\""),
    }
}

impl Goldfish {
    fn check_ops(&self, ops: &[Op], m: &mut Model, cx: &mut Ctx<'_>) {
        for op in ops {
            if cx.stop {
                return;
            }
            let key = format!("{}.{}", cx.tag, op.id());
            if let Op::Fork { ops: child, .. } = op {
                // The child gets a copy of the table: every file gains a
                // reference for as long as the child lives.
                let t = m.tables.last().cloned().unwrap_or_default();
                for f in t.values() {
                    m.files[*f].refs += 1;
                }
                m.tables.push(t);
                self.check_ops(child, m, cx);
                let t = m.tables.pop().unwrap_or_default();
                for f in t.values() {
                    m.release(*f);
                }
                if cx.stop {
                    return;
                }
                match cx.obs.call(&key) {
                    Some(r) => {
                        cx.check.calls += 1;
                        cx.expect(&key, vec!["expect.ok = true".into()]);
                        if r.ret != 0 || r.errno.is_some() {
                            cx.diverge(Divergence {
                                signature: "fork.child-died".into(),
                                kind: Kind::Defect,
                                at: key.clone(),
                                title: "a forked child running goldfish calls did not exit cleanly"
                                    .into(),
                                model: "the child runs its calls and exits with status 0".into(),
                                observed: format!("the fork step returned {}", r.ret),
                                expect: vec!["expect.ok = true".into()],
                            });
                        }
                    }
                    None => {
                        self.missing(&key, cx);
                        return;
                    }
                }
                continue;
            }
            let Some(r) = cx.obs.call(&key) else {
                self.missing(&key, cx);
                return;
            };
            cx.check.calls += 1;
            self.check_call(op, r, &key, m, cx);
        }
    }

    fn missing(&self, key: &str, cx: &mut Ctx<'_>) {
        let why = match cx.obs.step_errors.get(key) {
            Some(_) => format!("the agent could not run step {key}"),
            None if !cx.obs.finished => format!("the run ended before step {key}"),
            None => format!("no call was recorded for step {key}"),
        };
        cx.check.incomplete.get_or_insert(why);
        cx.stop = true;
    }

    fn check_call(&self, op: &Op, r: &CallRecord, key: &str, m: &mut Model, cx: &mut Ctx<'_>) {
        let errno = errno_name(r);
        let ok = errno.is_none();
        let fdn = r.fd.map(i64::from).unwrap_or(-1);
        let file = m.file_of(fdn);
        let input = |n: &str| field(&r.args_in, n).unwrap_or(0);
        let output = |n: &str| field(&r.args_out, n);
        // The model's outcome, the rule's signature, and where it comes from.
        let (outcome, sig, why): (Outcome, &str, String) = match op {
            Op::Open { .. } => (Outcome::Ok, "open", "open(2) of the device node succeeds while the device is present (cover letter: open/release, reopen)".into()),
            Op::Close { .. } => match file {
                Some(_) => (Outcome::Ok, "close", "close(2) of an open descriptor".into()),
                None => (Outcome::fails(&["EBADF"]), "close", "close(2) of a descriptor that is not open".into()),
            },
            Op::Dup { .. } => match file {
                Some(_) => (Outcome::Ok, "dup", "dup(2) of an open descriptor".into()),
                None => (Outcome::fails(&["EBADF"]), "dup", "dup(2) of a descriptor that is not open".into()),
            },
            _ if file.is_none() => (Outcome::fails(&["EBADF"]), "ebadf", "an ioctl on a descriptor that is not open".into()),
            Op::Raw { .. } => (Outcome::fails(&["ENOTTY"]), "raw.enotty", "a request the uapi header does not define is ENOTTY".into()),
            Op::Alloc { size, ptr, .. } => self.alloc_outcome(*size, *ptr, m),
            Op::Dealloc { ptr, .. } => {
                let f = file.unwrap_or(0);
                let offset = input("offset");
                if bad_read(*ptr) {
                    (Outcome::fails(&["EFAULT"]), "dealloc.efault", "the argument cannot be read: EFAULT, and nothing happens".into())
                } else if m.files[f].blocks.iter().any(|b| b.0 == offset) {
                    if *ptr == ArgPtr::Readonly {
                        (Outcome::unspecified(), "dealloc", "DEALLOCATE_BLOCK only reads its argument; whether a read-only one is refused is not said".into())
                    } else {
                        (Outcome::Ok, "dealloc", "DEALLOCATE_BLOCK of an offset this file's ALLOCATE_BLOCK returned (the emulator frees exactly the offsets it handed out)".into())
                    }
                } else {
                    (Outcome::fails(&["ENXIO", "EINVAL"]), "dealloc.not-held", "DEALLOCATE_BLOCK of an offset this file does not hold (never allocated, freed, inside a block, or another file's) must fail and free nothing".into())
                }
            }
            Op::Ping { ptr, .. } => {
                let end = input("offset") as u128 + input("size") as u128;
                if bad_read(*ptr) {
                    (Outcome::fails(&["EFAULT"]), "ping.efault", "the argument cannot be read: EFAULT, and nothing reaches the host".into())
                } else if *ptr == ArgPtr::Readonly {
                    (Outcome::fails(&["EFAULT"]), "ping.efault", "the host's answer cannot be written back: EFAULT".into())
                } else if end <= m.shared as u128 {
                    (Outcome::Ok, "ping", "PING passes the request to the host service and returns its answer".into())
                } else {
                    (Outcome::unspecified(), "ping", "a PING range past the shared area: the host service decides".into())
                }
            }
            Op::Claim { ptr, .. } => {
                let f = file.unwrap_or(0);
                let (o, s) = (input("offset"), input("size"));
                let end = o as u128 + s as u128;
                if bad_read(*ptr) {
                    (Outcome::fails(&["EFAULT"]), "claim.efault", "the argument cannot be read: EFAULT, and nothing is claimed".into())
                } else if *ptr == ArgPtr::Readonly {
                    (Outcome::fails(&["EFAULT"]), "claim.efault", "the answer cannot be written back: EFAULT, and a failed call claims nothing".into())
                } else if end > m.shared as u128 {
                    (Outcome::Fails(Vec::new()), "claim.out-of-area", format!(
                        "a claim is a range of the shared area (uapi: offset and size in BAR1, {:#x} bytes here); a range that ends past it{} is not one and must be refused",
                        m.shared,
                        if end > u64::MAX as u128 { " (offset + size wraps 64 bits)" } else { "" }
                    ))
                } else if s == 0 {
                    (Outcome::ask("claim.size-zero", "CLAIM_SHARED accepts a claim of 0 bytes", "the uapi and the cover letter do not say whether an empty claim is valid"), "claim", "an empty claim".into())
                } else if m.files[f].claims.iter().any(|c| c.0 == o) {
                    (Outcome::ask("claim.duplicate", "CLAIM_SHARED accepts the same offset twice on one file, so UNCLAIM_SHARED of it succeeds twice", "nothing says whether claims are a set or a list"), "claim", "a second claim at an offset this file already claimed".into())
                } else if !m.files[f].grants.iter().any(|g| o >= g.0 && end <= g.0 as u128 + g.1 as u128) {
                    (Outcome::ask("claim.not-given", "CLAIM_SHARED accepts a range the host never handed to this file (another file's block, free space)", "the emulator's shared-slots service hands areas to a context for it to claim; the RFC does not say whether the driver should check a claim against them (without mmap, a claim has no effect yet)"), "claim", "a claim of a range the shared-slots service did not hand to this file".into())
                } else {
                    (Outcome::Ok, "claim", "CLAIM_SHARED of an area the shared-slots service handed to this file".into())
                }
            }
            Op::Unclaim { ptr, .. } => {
                let f = file.unwrap_or(0);
                let o = input("offset");
                if bad_read(*ptr) {
                    (Outcome::fails(&["EFAULT"]), "unclaim.efault", "the argument cannot be read: EFAULT".into())
                } else if m.files[f].claims.iter().any(|c| c.0 == o) {
                    if *ptr == ArgPtr::Readonly {
                        (Outcome::unspecified(), "unclaim", "UNCLAIM_SHARED only reads its argument".into())
                    } else {
                        (Outcome::Ok, "unclaim", "UNCLAIM_SHARED of an offset this file claimed".into())
                    }
                } else {
                    (Outcome::fails(&["ENXIO", "EINVAL"]), "unclaim.not-held", "UNCLAIM_SHARED of an offset this file holds no claim at (never claimed, unclaimed, or claimed only by a call that failed) must fail".into())
                }
            }
            Op::Fork { .. } => unreachable!("forks are checked by check_ops"),
        };
        cx.expect(key, vec![outcome.expect_toml()]);
        if !outcome.admits(errno.as_deref()) {
            let what = op.what();
            cx.diverge(Divergence {
                signature: format!("{sig}{}", if ok { ".accepted" } else { ".refused" })
                    .replace(".not-held.accepted", ".not-held")
                    .replace(".out-of-area.accepted", ".out-of-area"),
                kind: Kind::Defect,
                at: key.to_string(),
                title: format!(
                    "{what} {} where the model says it {}",
                    if ok {
                        "succeeds".to_string()
                    } else {
                        outcome_text(r)
                    },
                    outcome.describe()
                ),
                model: format!("{why}: it {}", outcome.describe()),
                observed: format!("{what}({}) {}", args_text(r), outcome_text(r)),
                expect: vec![outcome.expect_toml()],
            });
            return;
        }
        if let (Outcome::Unspecified { question: Some(q) }, true) = (&outcome, ok)
            && !m.questions_asked.contains(&q.signature)
        {
            m.questions_asked.push(q.signature);
            cx.diverge(Divergence {
                signature: q.signature.into(),
                kind: Kind::Question,
                at: key.to_string(),
                title: q.title.into(),
                model: format!("unspecified: {}; {why}", q.why),
                observed: format!("{}({}) {}", op.what(), args_text(r), outcome_text(r)),
                expect: vec![observed_expect(r)],
            });
        }
        // Effects, as the kernel reported them.
        match op {
            Op::Open { .. } => {
                if ok {
                    m.files.push(File {
                        refs: 1,
                        ..File::new()
                    });
                    let f = m.files.len() - 1;
                    m.table().insert(r.ret, f);
                }
            }
            Op::Close { .. } => {
                if let (true, Some(f)) = (ok, file) {
                    m.table().remove(&fdn);
                    m.release(f);
                }
            }
            Op::Dup { .. } => {
                if let (true, Some(f)) = (ok, file) {
                    m.files[f].refs += 1;
                    m.table().insert(r.ret, f);
                }
            }
            Op::Alloc { size, ptr, .. } => {
                let f = file.unwrap_or(0);
                if ok {
                    self.check_block(*size, r, key, m, cx);
                    if let (Some(o), Some(s)) = (output("offset"), output("size")) {
                        m.files[f].blocks.push((o, s));
                    }
                } else if *ptr == ArgPtr::Readonly {
                    // The driver may have allocated before the copy-out
                    // failed; the device snapshot will tell.
                }
            }
            Op::Dealloc { .. } => {
                if ok {
                    let o = input("offset");
                    let f = file.unwrap_or(0);
                    if let Some(i) = m.files[f].blocks.iter().position(|b| b.0 == o) {
                        m.files[f].blocks.remove(i);
                    }
                }
            }
            Op::Ping { ptr, .. } => {
                let f = file.unwrap_or(0);
                if !ok {
                    if *ptr == ArgPtr::Readonly {
                        // The host may have acted; the answer was lost.
                        m.files[f].service = Service::Unknown;
                        m.files[f].unsure = true;
                    }
                } else {
                    self.check_ping(r, key, f, m, cx);
                }
            }
            Op::Claim { .. } => {
                if ok {
                    let f = file.unwrap_or(0);
                    let (o, s) = (input("offset"), input("size"));
                    m.files[f].claims.push((o, s));
                    if output("offset") != Some(o) || output("size") != Some(s) {
                        cx.diverge(Divergence {
                            signature: "claim.answer".into(),
                            kind: Kind::Defect,
                            at: key.to_string(),
                            title: "CLAIM_SHARED changes the range it returns".into(),
                            model:
                                "a claim that succeeds claims the range asked for and returns it"
                                    .into(),
                            observed: format!(
                                "asked offset {o:#x} size {s:#x}, returned {}",
                                args_out_text(r)
                            ),
                            expect: vec![format!(
                                "expect.out = {{ offset = {}, size = {} }}",
                                num(o),
                                num(s)
                            )],
                        });
                    }
                }
            }
            Op::Unclaim { .. } => {
                if ok {
                    let f = file.unwrap_or(0);
                    let o = input("offset");
                    if let Some(i) = m.files[f].claims.iter().position(|c| c.0 == o) {
                        m.files[f].claims.remove(i);
                    }
                }
            }
            Op::Raw { .. } | Op::Fork { .. } => {}
        }
    }

    fn alloc_outcome(&self, size: u64, ptr: ArgPtr, m: &Model) -> (Outcome, &'static str, String) {
        let p = m.page as u128;
        let s = size as u128;
        if bad_read(ptr) {
            return (
                Outcome::fails(&["EFAULT"]),
                "alloc.efault",
                "the argument cannot be read: EFAULT, and nothing is allocated".into(),
            );
        }
        if ptr == ArgPtr::Readonly {
            return (Outcome::fails(&["EFAULT"]), "alloc.efault", "the answer cannot be written back: EFAULT (a failed call allocates nothing: user space never learns the offset)".into());
        }
        if size == 0 {
            return (
                Outcome::fails(&["EINVAL"]),
                "alloc.size-zero",
                "the emulator refuses size 0 with EINVAL".into(),
            );
        }
        let pages = s.div_ceil(p) * p;
        let emulator = (s + 2 * p - 2) / p * p;
        if pages > m.shared as u128 {
            return (
                Outcome::fails(&["ENOMEM"]),
                "alloc.too-large",
                format!(
                    "{size:#x} bytes do not fit the shared area ({:#x} bytes){}: ENOMEM, as the emulator answers when no block is large enough",
                    m.shared,
                    if s + 2 * p - 2 > u64::MAX as u128 {
                        "; the emulator's rounding must not wrap"
                    } else {
                        ""
                    }
                ),
            );
        }
        let free = m.largest_free() as u128;
        if pages > free {
            return (
                Outcome::fails(&["ENOMEM"]),
                "alloc.no-room",
                format!("no free range of {pages:#x} bytes is left (largest {free:#x}): ENOMEM"),
            );
        }
        if emulator <= free && !m.unsure() {
            return (
                Outcome::Ok,
                "alloc",
                format!("{size:#x} bytes fit (the largest free range is {free:#x} bytes)"),
            );
        }
        (
            Outcome::unspecified(),
            "alloc",
            "whether the rounded size still fits is the device's call".into(),
        )
    }

    fn check_block(&self, asked: u64, r: &CallRecord, key: &str, m: &mut Model, cx: &mut Ctx<'_>) {
        let (Some(o), Some(s)) = (field(&r.args_out, "offset"), field(&r.args_out, "size")) else {
            return;
        };
        let phys = field(&r.args_out, "phys_addr").unwrap_or(0);
        let p = m.page;
        let mut bad = Vec::new();
        if o % p != 0 {
            bad.push(format!("offset {o:#x} is not page aligned"));
        }
        if s % p != 0 || s < asked {
            bad.push(format!(
                "size {s:#x} is not whole pages of at least {asked:#x}"
            ));
        }
        if o as u128 + s as u128 > m.shared as u128 {
            bad.push(format!(
                "{o:#x}+{s:#x} ends past the shared area ({:#x})",
                m.shared
            ));
        }
        let occupied = m.occupied();
        if let Some(x) = occupied.iter().find(|x| overlaps(**x, (o, s))) {
            bad.push(format!(
                "{o:#x}+{s:#x} overlaps {:#x}+{:#x}, which is held",
                x.0, x.1
            ));
        }
        if !bad.is_empty() {
            cx.diverge(Divergence {
                signature: "alloc.block".into(),
                kind: Kind::Defect,
                at: key.into(),
                title: "ALLOCATE_BLOCK returns a block that is not a fresh range of the shared area".into(),
                model: "a block is whole pages, at least the size asked, inside the shared area, and overlaps no block or claim that is held".into(),
                observed: bad.join("; "),
                expect: vec![format!("expect.out = {{ offset = {{ bits_clear = {} }} }}", num(p - 1))],
            });
            return;
        }
        let base = phys.wrapping_sub(o);
        match (m.phys_base, m.phys_start) {
            (_, Some(start)) if base != start => cx.diverge(Divergence {
                signature: "alloc.phys-addr".into(),
                kind: Kind::Defect,
                at: key.into(),
                title: "ALLOCATE_BLOCK's phys_addr is not the shared area's start plus the offset"
                    .into(),
                model: "phys_addr names the block's physical address: PHYS_START + offset".into(),
                observed: format!("offset {o:#x}, phys_addr {phys:#x}, PHYS_START {start:#x}"),
                expect: vec![format!(
                    "expect.out = {{ phys_addr = \"${{{}.offset}} + {}\" }}",
                    key.replace('.', "_"),
                    num(start)
                )],
            }),
            (Some(b), None) if base != b => cx.diverge(Divergence {
                signature: "alloc.phys-addr".into(),
                kind: Kind::Defect,
                at: key.into(),
                title: "ALLOCATE_BLOCK's phys_addr - offset differs between blocks".into(),
                model: "phys_addr names the block's physical address: one base plus the offset"
                    .into(),
                observed: format!(
                    "offset {o:#x}, phys_addr {phys:#x}; an earlier block had base {b:#x}"
                ),
                expect: vec![],
            }),
            _ => m.phys_base = Some(base),
        }
    }

    fn check_ping(&self, r: &CallRecord, key: &str, f: usize, m: &mut Model, cx: &mut Ctx<'_>) {
        let i = |n: &str| field(&r.args_in, n).unwrap_or(0);
        let o = |n: &str| field(&r.args_out, n);
        let metadata = i("metadata");
        match m.files[f].service {
            Service::Unbound => {
                m.files[f].service = match metadata {
                    ECHO => Service::Echo { served: 0 },
                    HOST_MEMORY => Service::HostMemory,
                    SHARED_SLOTS => Service::SharedSlots,
                    _ => Service::Unrecognised,
                };
            }
            Service::Echo { served } => {
                let served = served + 1;
                m.files[f].service = Service::Echo { served };
                let want = [
                    ("metadata", !metadata),
                    ("wait_flags", u64::from(served)),
                    ("size", i("size")),
                    ("version", i("version")),
                    ("wait_fd", i("wait_fd")),
                    ("direction", i("direction")),
                ];
                let wrong: Vec<String> = want
                    .iter()
                    .filter(|(n, v)| o(n) != Some(*v))
                    .map(|(n, v)| {
                        format!(
                            "{n} {} (expected {v:#x})",
                            o(n).map_or("?".into(), |x| format!("{x:#x}"))
                        )
                    })
                    .collect();
                if !wrong.is_empty() {
                    cx.diverge(Divergence {
                        signature: "ping.echo".into(),
                        kind: Kind::Defect,
                        at: key.into(),
                        title: "PING does not return the echo service's answer".into(),
                        model: "PING returns what the host wrote into the ping page; the echo inverts metadata and counts in wait_flags".into(),
                        observed: wrong.join(", "),
                        expect: vec![format!("expect.out = {{ metadata = {} }}", num(!metadata))],
                    });
                    return;
                }
                let (asked, got) = (i("offset"), o("offset").unwrap_or(0));
                if asked != got && !m.questions_asked.contains(&"ping.offset-out") {
                    m.questions_asked.push("ping.offset-out");
                    let start = m.phys_start.map(|s| format!(" (PHYS_START is {s:#x}, so it is PHYS_START + offset: a physical address)")).unwrap_or_default();
                    cx.diverge(Divergence {
                        signature: "ping.offset-out".into(),
                        kind: Kind::Question,
                        at: key.into(),
                        title: "PING returns in `offset` something other than the shared-area offset it was given".into(),
                        model: "unspecified: the uapi has one `offset` field, an offset in the shared area on the way in; it does not say what comes back. The echo host leaves it as the driver put it in the ping page; Arnd Bergmann's review asks that physical addresses not reach user space".into(),
                        observed: format!("offset {asked:#x} in, {got:#x} out{start}"),
                        expect: vec![format!("expect.out = {{ offset = {} }}", num(got))],
                    });
                }
            }
            Service::SharedSlots => {
                if metadata == 1 && o("metadata") == Some(0) {
                    let (go, gs) = (o("offset").unwrap_or(0), o("size").unwrap_or(0));
                    let fine = go % m.page == 0
                        && gs >= i("size")
                        && go as u128 + gs as u128 <= m.shared as u128
                        && !m.occupied().iter().any(|x| overlaps(*x, (go, gs)));
                    if !fine {
                        cx.diverge(Divergence {
                            signature: "ping.slot".into(),
                            kind: Kind::Defect,
                            at: key.into(),
                            title: "PING to the shared-slots service returns an area that is not a fresh range of the shared area".into(),
                            model: "the host hands out a free, page-aligned range of the shared area, relative to its start, ready for CLAIM_SHARED".into(),
                            observed: format!("offset {go:#x} size {gs:#x}"),
                            expect: vec![],
                        });
                        return;
                    }
                    m.files[f].grants.push((go, gs));
                } else if metadata == 2 && o("metadata") == Some(0) {
                    let at = i("offset");
                    m.files[f].grants.retain(|g| g.0 != at);
                }
            }
            Service::HostMemory | Service::Unrecognised | Service::Unknown => {}
        }
    }

    fn check_device(&self, key: &str, at_end: bool, m: &Model, cx: &mut Ctx<'_>) {
        let Some(state) = cx.obs.snapshots.get(key) else {
            return;
        };
        let base = m.base.clone().unwrap_or_default();
        let guest = |s: &DeviceState| {
            s.guest_blocks()
                .map(|b| (b.offset, b.size))
                .collect::<Vec<_>>()
        };
        let before = guest(&base);
        let now: Vec<(u64, u64)> = guest(state)
            .into_iter()
            .filter(|b| !before.contains(b))
            .collect();
        let mut held: Vec<(u64, u64)> = m.live().flat_map(|f| f.blocks.iter().copied()).collect();
        held.sort();
        let files = m.live().count();
        let handles = state.handles.len().saturating_sub(base.handles.len());
        let host_before = base.claims().count();
        let host_now = state.claims().count().saturating_sub(host_before);
        let grants: usize = m.live().map(|f| f.grants.len()).sum();
        cx.expect(
            key,
            vec![format!(
                "expect.device = {{ handles = {}, blocks = {} }}",
                files + base.handles.len(),
                held.len() + before.len()
            )],
        );
        let extra: Vec<_> = now.iter().filter(|b| !held.contains(b)).collect();
        let lost: Vec<_> = held.iter().filter(|b| !now.contains(b)).collect();
        let (sig, title, model) = if at_end {
            if state.handles.len() > base.handles.len()
                || !extra.is_empty()
                || host_now > 0
                || state.mappings.len() > base.mappings.len()
            {
                (
                    "device.left-after-close",
                    "after every descriptor is closed, the device still holds what the files had",
                    "release gives back everything a file held: its handle (DESTROY_HANDLE), its blocks, its claims and mappings (they die with the context)",
                )
            } else {
                return;
            }
        } else if !extra.is_empty() {
            (
                "device.block-not-held",
                "the device holds a block no open file holds: ALLOCATE_BLOCK allocated for a call that failed",
                "every block on the device is one a live file got from a successful ALLOCATE_BLOCK; a failed call allocates nothing",
            )
        } else if !lost.is_empty() {
            (
                "device.block-lost",
                "a block a file holds is gone from the device",
                "a block stays allocated until DEALLOCATE_BLOCK or release",
            )
        } else if handles != files {
            (
                "device.handles",
                "the device's handles do not match the open files",
                "one handle per open file description (GEN_HANDLE at open, DESTROY_HANDLE at release)",
            )
        } else if host_now != grants && !m.unsure() {
            (
                "device.claims",
                "the device's host-carved areas do not match what the files were handed",
                "areas the shared-slots service hands out stay until returned or until the context dies",
            )
        } else {
            return;
        };
        let mut observed = format!(
            "device: {} handle(s) and {} guest block(s) beyond the start; model: {files} open file(s) holding {} block(s)",
            handles,
            now.len(),
            held.len()
        );
        if !extra.is_empty() {
            observed.push_str(&format!(
                "; not held: {}",
                extra
                    .iter()
                    .map(|b| format!("{:#x}+{:#x}", b.0, b.1))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if at_end && host_now > 0 {
            observed.push_str(&format!("; {host_now} host-carved area(s)"));
        }
        let expect = if at_end {
            vec![format!(
                "expect.device = {{ handles = {}, blocks = {} }}",
                base.handles.len(),
                before.len()
            )]
        } else {
            vec![format!(
                "expect.device = {{ handles = {}, blocks = {} }}",
                files + base.handles.len(),
                held.len() + before.len()
            )]
        };
        cx.diverge(Divergence {
            signature: sig.into(),
            kind: Kind::Defect,
            at: key.into(),
            title: title.into(),
            model: model.into(),
            observed,
            expect,
        });
    }
}

fn args_text(r: &CallRecord) -> String {
    let mut parts = Vec::new();
    if let Some(o) = r.args_in.as_object() {
        for (k, v) in o {
            if k == "request" {
                continue;
            }
            match (v.as_u64(), v.as_str()) {
                (Some(n), _) => parts.push(format!("{k}={n:#x}")),
                (None, Some(s))
                    if k == "ptr" && s.bytes().all(|b| b.is_ascii_lowercase()) && s.len() < 16 =>
                {
                    parts.push(format!("ptr={s}"))
                }
                _ => {}
            }
        }
    }
    parts.join(" ")
}

fn args_out_text(r: &CallRecord) -> String {
    let mut parts = Vec::new();
    if let Some(o) = r.args_out.as_object() {
        for (k, v) in o {
            if let Some(n) = v.as_u64() {
                parts.push(format!("{k}={n:#x}"));
            }
        }
    }
    parts.join(" ")
}

/// Console lines during the sequence that the kernel's detectors print.
pub(crate) fn kernel_log_divergence(tag: &str, obs: &Observed) -> Option<Divergence> {
    let prefix = format!("{tag}.");
    let patterns: Vec<regex::Regex> = gasbench_scenario::DEFAULT_MUST_NOT_MATCH
        .iter()
        .filter_map(|p| regex::Regex::new(p).ok())
        .collect();
    for (k, line) in &obs.console {
        let Some(k) = k else { continue };
        if !k.starts_with(&prefix) {
            continue;
        }
        if let Some(p) = patterns.iter().find(|p| p.is_match(line)) {
            return Some(Divergence {
                signature: "kernel-log".into(),
                kind: Kind::Defect,
                at: k.clone(),
                title: "the kernel reported a problem while the sequence ran".into(),
                model: "no call may make the kernel print a BUG, oops, WARNING or detector report"
                    .into(),
                observed: format!("console (pattern {}): {}", p.as_str(), sanitize(line)),
                expect: vec![],
            });
        }
    }
    None
}

/// A guest line for a report: printable ASCII only, at most 160 chars.
pub fn sanitize(line: &str) -> String {
    line.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(160)
        .collect()
}

impl Domain for Goldfish {
    type Op = Op;

    fn name(&self) -> String {
        "goldfish".into()
    }

    fn header(&self, scenario: &str, description: &str) -> String {
        format!(
            "[scenario]\nname = {}\ndescription = {}\nrequires = [\"goldfish\"]\ntimeout = \"10m\"\n",
            string(scenario),
            string(description)
        )
    }

    fn prologue(&self) -> String {
        let mut s = step("setup.start device snapshot");
        s.push_str("expect.device = { handles = { ge = 0 } }\n");
        s
    }

    fn generate(&self, rng: &mut fastrand::Rng) -> Vec<Op> {
        let mut g = Gen {
            rng,
            next: 0,
            page: self.page,
            shared: self.shared_size,
        };
        let n = g.rng.usize(3..=16);
        let mut sc = Scope::default();
        g.ops(&mut sc, n, true)
    }

    fn cost(&self, seq: &[Op]) -> usize {
        self.size(seq) + left_open(seq).len() + 2
    }

    fn render(&self, seq: &[Op], tag: &str, check: Option<(&SeqCheck, &Divergence)>) -> String {
        let mut out = String::new();
        let annotate = |key: &str, out: &mut String| match check {
            None => {
                if !key.ends_with(".live") && !key.ends_with(".end") {
                    out.push_str("expect.ok = \"any\"\n");
                }
            }
            Some((c, d)) if d.at == key => {
                out.push_str(&comment(&format!(
                    "explorer: {} ({}). Model: {}. Observed: {}.",
                    d.title,
                    d.kind.as_str(),
                    d.model,
                    d.observed
                )));
                if d.expect.is_empty() {
                    for e in c.expects_at(key).unwrap_or_default() {
                        out.push_str(e);
                        out.push('\n');
                    }
                } else {
                    for e in &d.expect {
                        out.push_str(e);
                        out.push('\n');
                    }
                }
            }
            Some((c, _)) => match c.expects_at(key) {
                Some(lines) => {
                    for e in lines {
                        out.push_str(e);
                        out.push('\n');
                    }
                }
                None => out.push_str("expect.ok = \"any\"\n"),
            },
        };
        for op in seq {
            self.render_op(op, tag, false, &mut out, &annotate);
        }
        out.push_str(&step(&format!("{tag}.live checkpoint")));
        let live_key = format!("{tag}.live");
        match check {
            Some((c, d)) if d.at == live_key || c.expects_at(&live_key).is_some() => {
                annotate(&live_key, &mut out)
            }
            _ => out.push_str("expect.device = { handles = { ge = 0 } }\n"),
        }
        for fd in left_open(seq) {
            out.push_str(&step(&format!("{tag}.z{fd} close")));
            out.push_str(&format!(
                "close = {{ fd = {} }}\n",
                string(&format!("${{{tag}_{fd}}}"))
            ));
            annotate(&format!("{tag}.z{fd}"), &mut out);
        }
        out.push_str(&step(&format!("{tag}.end checkpoint")));
        let end_key = format!("{tag}.end");
        match check {
            Some((c, d)) if d.at == end_key || c.expects_at(&end_key).is_some() => {
                annotate(&end_key, &mut out)
            }
            _ => out.push_str("expect.device = { handles = { ge = 0 } }\n"),
        }
        out
    }

    fn check(&self, seq: &[Op], tag: &str, prev: &str, obs: &Observed) -> SeqCheck {
        let base = obs.snapshots.get(prev).cloned();
        let mut m = Model {
            files: Vec::new(),
            tables: vec![BTreeMap::new()],
            shared: base.as_ref().map_or(self.shared_size, |b| b.shared_size),
            page: self.page,
            phys_start: base
                .as_ref()
                .map(|b| b.registers.phys_start)
                .filter(|p| *p != 0),
            base,
            phys_base: None,
            questions_asked: Vec::new(),
        };
        let mut cx = Ctx {
            tag,
            obs,
            check: SeqCheck::default(),
            stop: false,
        };
        self.check_ops(seq, &mut m, &mut cx);
        if !cx.stop {
            self.check_device(&format!("{tag}.live"), false, &m, &mut cx);
        }
        if !cx.stop {
            for fd in left_open(seq) {
                let key = format!("{tag}.z{fd}");
                let Some(r) = obs.call(&key) else {
                    self.missing(&key, &mut cx);
                    break;
                };
                cx.check.calls += 1;
                let fdn = r.fd.map(i64::from).unwrap_or(-1);
                let outcome = if m.file_of(fdn).is_some() {
                    Outcome::Ok
                } else {
                    Outcome::fails(&["EBADF"])
                };
                cx.expect(&key, vec![outcome.expect_toml()]);
                if let (true, Some(f)) = (r.errno.is_none(), m.file_of(fdn)) {
                    m.table().remove(&fdn);
                    m.release(f);
                }
            }
        }
        if !cx.stop {
            self.check_device(&format!("{tag}.end"), true, &m, &mut cx);
        }
        if let Some(d) = kernel_log_divergence(tag, obs) {
            cx.diverge(d);
        }
        cx.check
    }

    fn last_checkpoint(&self, tag: &str) -> String {
        format!("{tag}.end")
    }

    fn first_checkpoint(&self) -> String {
        "setup.start".into()
    }

    fn shrink(&self, seq: &[Op]) -> Vec<Vec<Op>> {
        shrink_ops(seq)
    }

    fn size(&self, seq: &[Op]) -> usize {
        seq.iter()
            .map(|o| match o {
                Op::Fork { ops, .. } => 1 + ops.len(),
                _ => 1,
            })
            .sum()
    }
}

/// Remove the ops with ids in `gone`, and every op that uses one of them
/// (transitively); a fork left empty goes too.
pub fn without(seq: &[Op], gone: &[u32]) -> Vec<Op> {
    let mut gone: Vec<u32> = gone.to_vec();
    loop {
        let before = gone.len();
        collect_dependents(seq, &mut gone);
        if gone.len() == before {
            break;
        }
    }
    filter_ops(seq, &gone)
}

fn collect_dependents(seq: &[Op], gone: &mut Vec<u32>) {
    for op in seq {
        if !gone.contains(&op.id()) && op.uses().iter().any(|u| gone.contains(u)) {
            if let Op::Fork { ops, .. } = op {
                // A fork only depends through its children: drop those.
                collect_dependents(ops, gone);
                continue;
            }
            gone.push(op.id());
        }
        if let Op::Fork { ops, .. } = op {
            collect_dependents(ops, gone);
        }
    }
}

fn filter_ops(seq: &[Op], gone: &[u32]) -> Vec<Op> {
    seq.iter()
        .filter(|o| !gone.contains(&o.id()))
        .filter_map(|o| match o {
            Op::Fork { id, ops } => {
                let ops = filter_ops(ops, gone);
                (!ops.is_empty()).then_some(Op::Fork { id: *id, ops })
            }
            other => Some(other.clone()),
        })
        .collect()
}

fn all_ids(seq: &[Op], out: &mut Vec<u32>) {
    for op in seq {
        out.push(op.id());
        if let Op::Fork { ops, .. } = op {
            all_ids(ops, out);
        }
    }
}

/// Candidates: chunks of ops removed (halves, quarters, … single ops, with
/// what depends on them), then simpler arguments (an ordinary pointer, a
/// fork's calls made by the parent).
pub fn shrink_ops(seq: &[Op]) -> Vec<Vec<Op>> {
    let mut ids = Vec::new();
    all_ids(seq, &mut ids);
    let mut out: Vec<Vec<Op>> = Vec::new();
    let push = |c: Vec<Op>, out: &mut Vec<Vec<Op>>| {
        if c != seq && !out.contains(&c) {
            out.push(c);
        }
    };
    let n = ids.len();
    let mut chunk = n / 2;
    while chunk > 1 {
        let mut start = 0;
        while start < n {
            let end = (start + chunk).min(n);
            push(without(seq, &ids[start..end]), &mut out);
            start = end;
        }
        chunk /= 2;
    }
    for id in &ids {
        push(without(seq, &[*id]), &mut out);
    }
    // Simpler arguments, one op at a time.
    for (i, op) in seq.iter().enumerate() {
        let simpler: Option<Op> = match op {
            Op::Alloc { id, fd, size, ptr }
                if *ptr != ArgPtr::Buffer && *ptr != ArgPtr::Readonly =>
            {
                Some(Op::Alloc {
                    id: *id,
                    fd: *fd,
                    size: *size,
                    ptr: ArgPtr::Buffer,
                })
            }
            Op::Alloc { id, fd, size, ptr } if *size > 4096 && *size < (1 << 30) => {
                Some(Op::Alloc {
                    id: *id,
                    fd: *fd,
                    size: 4096,
                    ptr: *ptr,
                })
            }
            Op::Fork { ops, .. } => {
                // The same calls made by the parent.
                let mut c = seq.to_vec();
                c.splice(i..=i, ops.iter().cloned());
                push(c, &mut out);
                None
            }
            _ => None,
        };
        if let Some(s) = simpler {
            let mut c = seq.to_vec();
            c[i] = s;
            push(c, &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_sequences_compile_as_scenarios() {
        let d = Goldfish::default();
        let mut rng = fastrand::Rng::with_seed(7);
        let mut body = String::new();
        for k in 0..30 {
            let seq = d.generate(&mut rng);
            body.push_str(&d.render(&seq, &format!("x{k}"), None));
        }
        let text = format!("{}{}{}", d.header("t", "t"), d.prologue(), body);
        let c = gasbench_scenario::compile("t.toml", &text);
        if let Err(p) = &c {
            let msgs: Vec<String> = p.problems.iter().map(|x| x.message.clone()).collect();
            panic!("{msgs:?}");
        }
    }

    #[test]
    fn removing_an_open_removes_what_uses_it() {
        let seq = vec![
            Op::Open { id: 1 },
            Op::Alloc {
                id: 2,
                fd: 1,
                size: 4096,
                ptr: ArgPtr::Buffer,
            },
            Op::Dealloc {
                id: 3,
                fd: 1,
                offset: Val::Out {
                    of: 2,
                    field: "offset",
                    add: 0,
                },
                ptr: ArgPtr::Buffer,
            },
            Op::Open { id: 4 },
            Op::Fork {
                id: 5,
                ops: vec![Op::Alloc {
                    id: 6,
                    fd: 1,
                    size: 1,
                    ptr: ArgPtr::Buffer,
                }],
            },
        ];
        assert_eq!(without(&seq, &[1]), vec![Op::Open { id: 4 }]);
        assert_eq!(without(&seq, &[2]).len(), 3);
        assert!(shrink_ops(&seq).iter().all(|c| c.len() <= seq.len() + 1));
    }
}
