//! Synthetic runs, written with the real event types, for the TUI's
//! fixtures and its benchmark until recorded runs exist.
//!
//! The shapes follow what the real parts will emit: the posted driver's
//! register sequences for each goldfish ioctl (from the RFC's 6/6:
//! `generate_handle`, `tell_ping_info_addr`, `allocate_block`,
//! `deallocate_block`, `ping`, `destroy_handle`), the device model's
//! allocator (best fit from the end of the smallest free block, sizes
//! rounded as the emulator does), a Linux boot on the console, kbuild's
//! output. Every device event sits between the `CallBegin` and `CallEnd`
//! of the call that caused it, as the engine orders them on the bus.
//!
//! Device events are built only in the `dev_*` helpers below, so when the
//! device's event types change only those helpers change.

use std::collections::BTreeMap;

use gasbench_abi::protocol::{AgentMsg, CallRecord, KtapResult, KtapStatus, LogLevel, Ready};
use gasbench_events::device::{Access, CommandDone, DeviceEvent, DeviceState, RegAccess};
use gasbench_events::kernel::{ApplyStatus, KernelEvent, PatchApplied};
use gasbench_events::run::{AccelChoice, Outcome, RunEvent, Stage};
use gasbench_events::vm::{ConsoleSeverity, VmEvent};
use gasbench_events::{Event, EventBody};
use serde_json::json;

const PAGE: u64 = 0x1000;
/// BAR1 of the emulated device in these runs: 1 MiB.
pub const SHARED_SIZE: u64 = 0x10_0000;
const SHARED_PHYS: u64 = 0xfe00_0000;

/// The request number as the agent prints it.
fn request(name: &str) -> String {
    let r = gasbench_abi::uapi::Ioctl::from_name(name).map_or(0, |i| i.request());
    format!("{r:#010x}")
}

/// Builds an event log, stamping sequence numbers and times.
pub struct Synth {
    pub events: Vec<Event>,
    next_seq: u64,
    t_us: u64,
    next_call: u64,
    // Device model state, so snapshots and register values agree.
    next_handle: u32,
    handles: Vec<(u32, u64)>,
    blocks: Vec<(u64, u64)>,
    free: Vec<(u64, u64)>,
    /// A deterministic jitter source (no rand dependency, same file every
    /// time).
    rng: u64,
}

impl Default for Synth {
    fn default() -> Self {
        Synth::new()
    }
}

impl Synth {
    pub fn new() -> Synth {
        Synth {
            events: Vec::new(),
            next_seq: 0,
            t_us: 0,
            next_call: 1,
            next_handle: 1,
            handles: Vec::new(),
            blocks: Vec::new(),
            free: vec![(0, SHARED_SIZE)],
            rng: 0x9e37_79b9_7f4a_7c15,
        }
    }

    fn jitter(&mut self, max: u64) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) % max.max(1)
    }

    /// Emit `body` `dt_us` after the previous event.
    pub fn emit(&mut self, dt_us: u64, body: impl Into<EventBody>) -> u64 {
        self.t_us += dt_us;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.events.push(Event {
            seq,
            t_us: self.t_us,
            body: body.into(),
        });
        seq
    }

    pub fn now_us(&self) -> u64 {
        self.t_us
    }

    // --- device events (the only place that builds them) ---

    fn dev_reg(&mut self, access: Access, reg: &str, offset: u64, value: u64) {
        let dt = 1 + self.jitter(3);
        self.emit(
            dt,
            DeviceEvent::Reg(RegAccess {
                access,
                bar: Some(0),
                offset,
                width: 4,
                reg: Some(reg.into()),
                value,
            }),
        );
    }

    fn dev_command(
        &mut self,
        command: &str,
        code: u32,
        handle: Option<u32>,
        decoded: String,
        status: u32,
        fault: Option<String>,
    ) {
        let dt = 2 + self.jitter(4);
        self.emit(
            dt,
            DeviceEvent::Command(CommandDone {
                command: command.into(),
                code,
                handle,
                decoded,
                status,
                fault,
            }),
        );
    }

    fn dev_ping(&mut self, handle: u32, decoded: String) {
        let dt = 3 + self.jitter(8);
        self.emit(
            dt,
            DeviceEvent::Ping {
                handle,
                service: "echo".into(),
                decoded,
            },
        );
    }

    fn dev_state(&mut self) {
        let s = DeviceState {
            handles: self.handles.iter().map(|h| h.0).collect(),
            blocks: self.blocks.clone(),
            free: self.free.clone(),
            ping_pages: self.handles.clone(),
            shared_size: SHARED_SIZE,
        };
        self.emit(1, DeviceEvent::State(s));
    }

    fn dev_connected(&mut self) {
        self.emit(150, DeviceEvent::Connected);
    }

    // --- the device model's allocator ---

    fn allocate(&mut self, size: u64) -> Option<(u64, u64)> {
        if size == 0 {
            return None;
        }
        // The reference device's rounding (it adds up to a page).
        let size = (size + 2 * PAGE - 2) / PAGE * PAGE;
        let (i, _) = self
            .free
            .iter()
            .enumerate()
            .filter(|(_, f)| f.1 >= size)
            .min_by_key(|(_, f)| f.1)?;
        let (off, len) = self.free[i];
        let at = off + len - size;
        if len == size {
            self.free.remove(i);
        } else {
            self.free[i].1 = len - size;
        }
        self.blocks.push((at, size));
        self.blocks.sort();
        Some((at, size))
    }

    fn deallocate(&mut self, offset: u64) -> bool {
        let Some(i) = self.blocks.iter().position(|b| b.0 == offset) else {
            return false;
        };
        let b = self.blocks.remove(i);
        self.free.push(b);
        self.free.sort();
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for f in self.free.drain(..) {
            match merged.last_mut() {
                Some(last) if last.0 + last.1 == f.0 => last.1 += f.1,
                _ => merged.push(f),
            }
        }
        self.free = merged;
        true
    }

    // --- agent calls ---

    fn call_begin(&mut self, step: u32, thread: u32, name: &str) -> u64 {
        let call = self.next_call;
        self.next_call += 1;
        let dt = 20 + self.jitter(40);
        self.emit(
            dt,
            AgentMsg::CallBegin {
                call,
                step,
                thread,
                name: name.into(),
            },
        );
        call
    }

    #[allow(clippy::too_many_arguments)]
    fn call_end(
        &mut self,
        call: u64,
        step: u32,
        thread: u32,
        name: &str,
        fd: Option<i32>,
        args_in: serde_json::Value,
        args_out: serde_json::Value,
        ret: i64,
        errno: Option<&str>,
    ) {
        let dt = 5 + self.jitter(10);
        let began = self
            .events
            .iter()
            .rev()
            .find_map(|e| match &e.body {
                EventBody::Agent(AgentMsg::CallBegin { call: c, .. }) if *c == call => Some(e.t_us),
                _ => None,
            })
            .unwrap_or(self.t_us);
        let duration_ns = (self.t_us + dt - began) * 1000 + self.jitter(900);
        self.emit(
            dt,
            AgentMsg::CallEnd(CallRecord {
                call,
                step,
                thread,
                iteration: 0,
                name: name.into(),
                fd,
                args_in,
                args_out,
                ret,
                errno: errno.map(Into::into),
                duration_ns,
            }),
        );
    }

    /// `open("/dev/goldfish_address_space")`: the driver's open generates a
    /// handle and tells the device where its ping page is.
    pub fn open_goldfish(&mut self, step: u32, thread: u32, fd: i32) -> u32 {
        let call = self.call_begin(step, thread, "open");
        let handle = self.next_handle;
        self.next_handle += 1;
        // generate_handle: COMMAND=GEN_HANDLE, then HANDLE read back.
        self.dev_reg(Access::Write, "COMMAND", 0, 3);
        self.dev_command(
            "GEN_HANDLE",
            3,
            Some(handle),
            format!("handle {handle}"),
            0,
            None,
        );
        self.dev_reg(Access::Read, "HANDLE", 40, handle as u64);
        // tell_ping_info_addr: HANDLE, PING_INFO_ADDR lo/hi, COMMAND, echo read back.
        let page = 0x0000_0001_0340_0000 + handle as u64 * PAGE;
        self.dev_reg(Access::Write, "HANDLE", 40, handle as u64);
        self.dev_reg(Access::Write, "PING_INFO_ADDR_LOW", 32, page & 0xffff_ffff);
        self.dev_reg(Access::Write, "PING_INFO_ADDR_HIGH", 36, page >> 32);
        self.dev_reg(Access::Write, "COMMAND", 0, 5);
        self.dev_command(
            "TELL_PING_INFO_ADDR",
            5,
            Some(handle),
            format!("handle {handle} ping page {page:#x}"),
            0,
            None,
        );
        self.dev_reg(Access::Read, "PING_INFO_ADDR_LOW", 32, page & 0xffff_ffff);
        self.dev_reg(Access::Read, "PING_INFO_ADDR_HIGH", 36, page >> 32);
        self.handles.push((handle, page));
        self.dev_state();
        self.call_end(
            call,
            step,
            thread,
            "open",
            Some(fd),
            json!({"path": "/dev/goldfish_address_space", "flags": 2, "mode": 0}),
            serde_json::Value::Null,
            fd as i64,
            None,
        );
        handle
    }

    /// `close(fd)`: release frees the file's blocks and destroys its handle.
    pub fn close_goldfish(
        &mut self,
        step: u32,
        thread: u32,
        fd: i32,
        handle: u32,
        leftover: &[u64],
    ) {
        let call = self.call_begin(step, thread, "close");
        self.dev_reg(Access::Write, "HANDLE", 40, handle as u64);
        self.dev_reg(Access::Write, "COMMAND", 0, 4);
        self.dev_command(
            "DESTROY_HANDLE",
            4,
            Some(handle),
            format!("handle {handle}"),
            0,
            None,
        );
        self.handles.retain(|h| h.0 != handle);
        for &off in leftover {
            self.dev_reg(Access::Write, "BLOCK_OFFSET_LOW", 20, off & 0xffff_ffff);
            self.dev_reg(Access::Write, "BLOCK_OFFSET_HIGH", 24, off >> 32);
            self.dev_reg(Access::Write, "COMMAND", 0, 2);
            self.deallocate(off);
            self.dev_command(
                "DEALLOCATE_BLOCK",
                2,
                Some(handle),
                format!("free {off:#x}"),
                0,
                None,
            );
            self.dev_reg(Access::Read, "STATUS", 4, 0);
        }
        self.dev_state();
        self.call_end(
            call,
            step,
            thread,
            "close",
            Some(fd),
            json!({"fd": fd}),
            serde_json::Value::Null,
            0,
            None,
        );
    }

    /// ALLOCATE_BLOCK; `fault` makes the device fail it with ENOMEM.
    pub fn allocate_block(
        &mut self,
        step: u32,
        thread: u32,
        fd: i32,
        handle: u32,
        size: u64,
        fault: bool,
    ) -> Option<u64> {
        let name = "ioctl:ALLOCATE_BLOCK";
        let call = self.call_begin(step, thread, name);
        self.dev_reg(Access::Write, "BLOCK_SIZE_LOW", 12, size & 0xffff_ffff);
        self.dev_reg(Access::Write, "BLOCK_SIZE_HIGH", 16, size >> 32);
        self.dev_reg(Access::Write, "COMMAND", 0, 1);
        let got = if fault { None } else { self.allocate(size) };
        let (status, errno) = match (size, got, fault) {
            (0, _, _) => (22, Some("EINVAL")),
            (_, None, _) => (12, Some("ENOMEM")),
            _ => (0, None),
        };
        let decoded = match got {
            Some((off, len)) => format!("allocate {size:#x} → offset {off:#x} size {len:#x}"),
            None if size == 0 => "size 0 is invalid".into(),
            None => format!("allocate {size:#x}: no space"),
        };
        self.dev_command(
            "ALLOCATE_BLOCK",
            1,
            Some(handle),
            decoded,
            status,
            fault.then(|| "rule 0: fail the 2nd allocate_block with ENOMEM".into()),
        );
        self.dev_reg(Access::Read, "STATUS", 4, status as u64);
        let args_in = json!({"size": size, "offset": 0, "phys_addr": 0, "request": request("ALLOCATE_BLOCK")});
        match got {
            Some((off, len)) => {
                self.dev_reg(Access::Read, "BLOCK_OFFSET_LOW", 20, off & 0xffff_ffff);
                self.dev_reg(Access::Read, "BLOCK_OFFSET_HIGH", 24, off >> 32);
                self.dev_reg(Access::Read, "BLOCK_SIZE_LOW", 12, len & 0xffff_ffff);
                self.dev_reg(Access::Read, "BLOCK_SIZE_HIGH", 16, len >> 32);
                self.dev_state();
                self.call_end(
                    call,
                    step,
                    thread,
                    name,
                    Some(fd),
                    args_in,
                    json!({"size": len, "offset": off, "phys_addr": SHARED_PHYS + off}),
                    0,
                    None,
                );
                Some(off)
            }
            None => {
                self.call_end(
                    call,
                    step,
                    thread,
                    name,
                    Some(fd),
                    args_in,
                    json!({"size": size, "offset": 0, "phys_addr": 0}),
                    -1,
                    errno,
                );
                None
            }
        }
    }

    /// DEALLOCATE_BLOCK of `offset`; an offset the file never allocated is
    /// refused by the driver before the device is asked.
    pub fn deallocate_block(&mut self, step: u32, thread: u32, fd: i32, handle: u32, offset: u64) {
        let name = "ioctl:DEALLOCATE_BLOCK";
        let call = self.call_begin(step, thread, name);
        let known = self.blocks.iter().any(|b| b.0 == offset);
        let args_in = json!({"offset": offset, "request": request("DEALLOCATE_BLOCK")});
        if known {
            self.dev_reg(Access::Write, "BLOCK_OFFSET_LOW", 20, offset & 0xffff_ffff);
            self.dev_reg(Access::Write, "BLOCK_OFFSET_HIGH", 24, offset >> 32);
            self.dev_reg(Access::Write, "COMMAND", 0, 2);
            self.deallocate(offset);
            self.dev_command(
                "DEALLOCATE_BLOCK",
                2,
                Some(handle),
                format!("free {offset:#x}"),
                0,
                None,
            );
            self.dev_reg(Access::Read, "STATUS", 4, 0);
            self.dev_state();
            self.call_end(
                call,
                step,
                thread,
                name,
                Some(fd),
                args_in.clone(),
                args_in,
                0,
                None,
            );
        } else {
            self.call_end(
                call,
                step,
                thread,
                name,
                Some(fd),
                args_in.clone(),
                args_in,
                -1,
                Some("ENXIO"),
            );
        }
    }

    /// PING: one register write, the device serves the ping page.
    pub fn ping(&mut self, step: u32, thread: u32, fd: i32, handle: u32, n: u64) {
        let name = "ioctl:PING";
        let call = self.call_begin(step, thread, name);
        self.dev_reg(Access::Write, "PING", 28, handle as u64);
        self.dev_ping(
            handle,
            format!("echo offset {:#x} size {:#x} metadata {n}", n * PAGE, PAGE),
        );
        let args = json!({"offset": n * PAGE, "size": PAGE, "metadata": n, "version": 1, "wait_fd": 0, "wait_flags": 0, "direction": 0, "request": request("PING")});
        let mut out = args.clone();
        out["version"] = json!(2);
        out.as_object_mut().map(|o| o.remove("request"));
        self.call_end(call, step, thread, name, Some(fd), args, out, 0, None);
    }

    /// CLAIM_SHARED: bookkeeping in the driver, no register access.
    pub fn claim_shared(&mut self, step: u32, thread: u32, fd: i32, offset: u64, size: u64) {
        let name = "ioctl:CLAIM_SHARED";
        let call = self.call_begin(step, thread, name);
        let args = json!({"offset": offset, "size": size});
        let mut with_req = args.clone();
        with_req["request"] = json!(request("CLAIM_SHARED"));
        self.call_end(call, step, thread, name, Some(fd), with_req, args, 0, None);
    }

    /// A plain syscall with no device activity.
    #[allow(clippy::too_many_arguments)]
    pub fn syscall(
        &mut self,
        step: u32,
        thread: u32,
        name: &str,
        fd: Option<i32>,
        args_in: serde_json::Value,
        args_out: serde_json::Value,
        ret: i64,
        errno: Option<&str>,
    ) {
        let call = self.call_begin(step, thread, name);
        self.call_end(call, step, thread, name, fd, args_in, args_out, ret, errno);
    }

    fn step(&mut self, bundle: u64, step: u32, thread: u32, name: &str) {
        self.emit(
            5,
            AgentMsg::StepBegin {
                bundle,
                step,
                thread,
                name: name.into(),
            },
        );
    }

    fn step_end(&mut self, bundle: u64, step: u32, thread: u32) {
        self.emit(
            2,
            AgentMsg::StepEnd {
                bundle,
                step,
                thread,
                error: None,
            },
        );
    }

    fn expect(&mut self, scenario: &str, step: u32, what: &str, expected: &str, actual: &str) {
        self.emit(
            3,
            RunEvent::Expectation {
                scenario: scenario.into(),
                step,
                what: what.into(),
                expected: expected.into(),
                actual: actual.into(),
                held: expected == actual,
            },
        );
    }

    fn console(&mut self, dt: u64, line: &str) {
        let severity = if line.contains("WARNING:") {
            ConsoleSeverity::Warn
        } else if line.contains("Call Trace:") || line.contains("BUG:") {
            ConsoleSeverity::Bug
        } else {
            ConsoleSeverity::Normal
        };
        self.emit(
            dt,
            VmEvent::Console {
                line: line.into(),
                severity,
            },
        );
    }
}

const BOOT: &[&str] = &[
    "[    0.000000] Linux version 7.2.12-gasbench (root@gasbench) (Debian clang version 19.1.7 (3+b1), Debian LLD 19.1.7) #1 SMP PREEMPT_DYNAMIC",
    "[    0.000000] Command line: console=ttyS0 reboot=t panic=-1 rdinit=/init gasbench.mkdirat2=472",
    "[    0.000000] BIOS-provided physical RAM map:",
    "[    0.000000] BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable",
    "[    0.000000] BIOS-e820: [mem 0x0000000000100000-0x000000003ffdffff] usable",
    "[    0.000000] NX (Execute Disable) protection: active",
    "[    0.000000] tsc: Fast TSC calibration using PIT",
    "[    0.004000] Memory: 1000412K/1048056K available (10240K kernel code, 1240K rwdata)",
    "[    0.012000] Dynamic Preempt: voluntary",
    "[    0.016000] rcu: Hierarchical RCU implementation.",
    "[    0.040000] Calibrating delay loop (skipped), value calculated using timer frequency.. 5199.99 BogoMIPS",
    "[    0.052000] smpboot: CPU0: QEMU Virtual CPU version 2.5+ (family: 0xf, model: 0x6b, stepping: 0x1)",
    "[    0.104000] PCI: Using configuration type 1 for base access",
    "[    0.188000] pci 0000:00:00.0: [8086:29c0] type 00 class 0x060000 conventional PCI endpoint",
    "[    0.196000] pci 0000:00:02.0: [607d:f153] type 00 class 0xff0000 conventional PCI endpoint",
    "[    0.196000] pci 0000:00:02.0: BAR 0 [mem 0xfebf1000-0xfebf1fff]",
    "[    0.196000] pci 0000:00:02.0: BAR 1 [mem 0xfe000000-0xfe0fffff 64bit pref]",
    "[    0.204000] pci 0000:00:03.0: [1af4:1043] type 00 class 0x078000 conventional PCI endpoint",
    "[    0.276000] virtio-pci 0000:00:03.0: enabling device (0000 -> 0003)",
    "[    0.288000] Serial: 8250/16550 driver, 4 ports, IRQ sharing disabled",
    "[    0.292000] 00:04: ttyS0 at I/O 0x3f8 (irq = 4, base_baud = 115200) is a 16550A",
    "[    0.300000] goldfish_address_space 0000:00:02.0: enabling device (0000 -> 0002)",
    "[    0.304000] virtiofs virtio1: discovered new tag: gasbench",
    "[    0.320000] Freeing unused kernel image (initmem) memory: 1236K",
    "[    0.320000] Run /init as init process",
];

/// A whole run: apply, build, initramfs, boot, six scenarios (one fails),
/// teardown. About 1,500 events.
pub fn demo_run() -> Vec<Event> {
    let mut s = Synth::new();
    s.emit(
        0,
        RunEvent::Started {
            run_dir: "/var/cache/gasbench/runs/1795770000-tui".into(),
            command: "gasbench".into(),
        },
    );
    s.emit(
        800,
        RunEvent::StageBegin {
            stage: Stage::Setup,
            detail: "toolroot".into(),
        },
    );
    s.emit(
        41_000,
        RunEvent::StageEnd {
            stage: Stage::Setup,
            outcome: Outcome::Cached,
            detail: "toolroot ready".into(),
            elapsed_ms: 41,
        },
    );

    // Apply: both series, as posted, then gasbench's port.
    s.emit(
        900,
        RunEvent::StageBegin {
            stage: Stage::Apply,
            detail: "linux 7.2.12".into(),
        },
    );
    let g = "goldfish-address-space v3";
    let patches: &[(&str, u32, u32, &str, bool, ApplyStatus, &str)] = &[
        (
            g,
            1,
            6,
            "uapi: goldfish_address_space.h (reconstructed from the quote in 0/6)",
            true,
            ApplyStatus::Applied,
            "1/6 is not in the digest",
        ),
        (
            g,
            2,
            6,
            "rust: bindings: expose goldfish address-space headers",
            false,
            ApplyStatus::Applied,
            "",
        ),
        (
            g,
            3,
            6,
            "rust: page: add helpers for page-backed ping state",
            false,
            ApplyStatus::AppliedWithFuzz,
            "hunk #2 succeeded at 118 with fuzz 2 (imports reformatted)",
        ),
        (
            g,
            4,
            6,
            "rust: pci: add shared BAR memremap support",
            false,
            ApplyStatus::AppliedWithFuzz,
            "hunk #3 succeeded at 402 (offset 17 lines)",
        ),
        (
            g,
            5,
            6,
            "rust: miscdevice: harden registration and safe file_operations invariants",
            false,
            ApplyStatus::Applied,
            "",
        ),
        (
            g,
            6,
            6,
            "platform/goldfish: add Rust goldfish_address_space driver",
            false,
            ApplyStatus::Applied,
            "",
        ),
        (
            g,
            7,
            6,
            "port to 7.2.12: pci::Bar<'a>, pci_device_table! without MODULE_PCI_TABLE",
            true,
            ApplyStatus::Applied,
            "gasbench port",
        ),
        (
            "mkdirat2 v2",
            1,
            2,
            "vfs: syscalls: add mkdirat2() that returns an O_DIRECTORY fd",
            false,
            ApplyStatus::Applied,
            "",
        ),
        (
            "mkdirat2 v2",
            2,
            2,
            "selftest: add tests for mkdirat2()",
            false,
            ApplyStatus::Applied,
            "",
        ),
    ];
    for (i, &(series, index, total, subject, fixup, status, detail)) in patches.iter().enumerate() {
        s.emit(
            90_000,
            KernelEvent::Patch(PatchApplied {
                series: series.into(),
                index,
                total,
                subject: subject.into(),
                fixup,
                status,
                files: vec![],
                detail: detail.into(),
            }),
        );
        s.emit(
            10,
            RunEvent::StageProgress {
                stage: Stage::Apply,
                done: i as u64 + 1,
                total: patches.len() as u64,
                detail: subject.into(),
            },
        );
    }
    s.emit(
        2_000,
        RunEvent::StageEnd {
            stage: Stage::Apply,
            outcome: Outcome::Ok,
            detail: "9 patches, 2 with fuzz".into(),
            elapsed_ms: 812,
        },
    );

    // Build, with kbuild's lines and progress.
    s.emit(
        500,
        RunEvent::StageBegin {
            stage: Stage::Build,
            detail: "make LLVM=1 -j2 bzImage".into(),
        },
    );
    let objs = [
        "init/main.o",
        "init/version.o",
        "kernel/fork.o",
        "kernel/exit.o",
        "kernel/sched/core.o",
        "mm/page_alloc.o",
        "mm/slub.o",
        "fs/namei.o",
        "fs/open.o",
        "fs/file.o",
        "drivers/pci/probe.o",
        "drivers/pci/pci.o",
        "drivers/char/misc.o",
        "drivers/tty/serial/8250/8250_core.o",
        "drivers/virtio/virtio_pci_common.o",
        "fs/fuse/virtio_fs.o",
        "arch/x86/kernel/setup.o",
        "arch/x86/entry/syscalls/syscall_64.o",
    ];
    let total = 1480u64;
    let mut done = 0u64;
    s.emit(
        30_000,
        KernelEvent::BuildLine {
            line: "  SYNC    include/config/auto.conf".into(),
        },
    );
    s.emit(
        400_000,
        KernelEvent::BuildLine {
            line: "  RUSTC L rust/core.o".into(),
        },
    );
    s.emit(
        9_000_000,
        KernelEvent::BuildLine {
            line: "  RUSTC L rust/kernel.o".into(),
        },
    );
    for round in 0..12 {
        for o in objs {
            done += 7;
            s.emit(
                150_000,
                KernelEvent::BuildLine {
                    line: format!("  CC      {o}"),
                },
            );
            if done.is_multiple_of(21) {
                s.emit(
                    10,
                    KernelEvent::BuildProgress {
                        done,
                        total,
                        current: o.into(),
                    },
                );
            }
        }
        if round == 6 {
            s.emit(
                300_000,
                KernelEvent::BuildLine {
                    line: "  RUSTC [M] drivers/platform/goldfish/goldfish_address_space.o".into(),
                },
            );
            s.emit(
                2_000_000,
                KernelEvent::BuildLine {
                    line: "warning: unused import: `ArcBorrow`".into(),
                },
            );
            s.emit(
                10,
                KernelEvent::BuildLine {
                    line: "  --> drivers/platform/goldfish/goldfish_address_space.rs:21:19".into(),
                },
            );
        }
    }
    for line in [
        "  LD      vmlinux.o",
        "  MODPOST vmlinux.symvers",
        "  LD      vmlinux",
        "  BUILD   arch/x86/boot/bzImage",
        "Kernel: arch/x86/boot/bzImage is ready  (#1)",
    ] {
        s.emit(1_500_000, KernelEvent::BuildLine { line: line.into() });
    }
    s.emit(
        10,
        KernelEvent::BuildProgress {
            done: total,
            total,
            current: "bzImage".into(),
        },
    );
    for (idx, subject, builds, err) in [
        (
            2,
            "rust: bindings: expose goldfish address-space headers",
            true,
            None,
        ),
        (
            6,
            "platform/goldfish: add Rust goldfish_address_space driver",
            false,
            Some("error[E0107]: missing generics for struct `pci::Bar` (before the port)"),
        ),
    ] {
        s.emit(
            100,
            KernelEvent::PatchBuild {
                series: g.into(),
                index: idx,
                subject: subject.into(),
                builds,
                first_error: err.map(Into::into),
            },
        );
    }
    s.emit(
        100,
        KernelEvent::Artifact {
            kind: "bzImage".into(),
            path: "/var/cache/gasbench/kernels/7.2.12-ab12/bzImage".into(),
        },
    );
    s.emit(
        200,
        RunEvent::StageEnd {
            stage: Stage::Build,
            outcome: Outcome::Ok,
            detail: "bzImage 1.4 MiB".into(),
            elapsed_ms: 505_211,
        },
    );
    s.emit(
        300,
        RunEvent::StageBegin {
            stage: Stage::Selftests,
            detail: "mkdirat_fd_test".into(),
        },
    );
    s.emit(
        3_100_000,
        RunEvent::StageEnd {
            stage: Stage::Selftests,
            outcome: Outcome::Ok,
            detail: "1 binary".into(),
            elapsed_ms: 3100,
        },
    );
    s.emit(
        300,
        RunEvent::StageBegin {
            stage: Stage::Initramfs,
            detail: "agent + busybox".into(),
        },
    );
    s.emit(
        180_000,
        RunEvent::StageEnd {
            stage: Stage::Initramfs,
            outcome: Outcome::Ok,
            detail: "1.9 MiB".into(),
            elapsed_ms: 180,
        },
    );

    // Boot.
    s.emit(
        200,
        RunEvent::Accel(AccelChoice {
            accel: "tcg".into(),
            reason: "KVM_RUN failed (software hypervisor): using TCG".into(),
        }),
    );
    s.emit(
        100,
        RunEvent::StageBegin {
            stage: Stage::Boot,
            detail: "q35, TCG, 1 GiB".into(),
        },
    );
    s.emit(
        2_000,
        VmEvent::ProcessStarted {
            name: "virtiofsd".into(),
            pid: 4811,
        },
    );
    s.dev_connected();
    s.emit(
        3_000,
        VmEvent::ProcessStarted {
            name: "qemu-system-x86_64".into(),
            pid: 4812,
        },
    );
    s.emit(
        60_000,
        VmEvent::State {
            status: "running".into(),
        },
    );
    s.dev_state();
    for (i, l) in BOOT.iter().enumerate() {
        s.console(if i == 0 { 250_000 } else { 30_000 }, l);
        if l.contains("goldfish_address_space 0000:00:02.0: enabling") {
            // probe: program_host_visible_state.
            s.dev_reg(Access::Write, "GUEST_PAGE_SIZE", 8, PAGE);
            s.dev_reg(
                Access::Write,
                "PHYS_START_LOW",
                44,
                SHARED_PHYS & 0xffff_ffff,
            );
            s.dev_reg(Access::Write, "PHYS_START_HIGH", 48, SHARED_PHYS >> 32);
        }
    }
    let mut syscalls = BTreeMap::new();
    syscalls.insert("mkdirat2".to_string(), 472);
    s.emit(
        90_000,
        AgentMsg::Ready(Ready {
            protocol: 2,
            kernel_release: "7.2.12-gasbench".into(),
            syscalls,
            missing: vec![],
            monotonic_ns: 412_000_000,
        }),
    );
    s.emit(
        100,
        RunEvent::StageEnd {
            stage: Stage::Boot,
            outcome: Outcome::Ok,
            detail: "agent ready".into(),
            elapsed_ms: 1_520,
        },
    );

    s.emit(
        200,
        RunEvent::StageBegin {
            stage: Stage::Run,
            detail: "6 scenarios".into(),
        },
    );
    let mut bundle = 0u64;
    let mut scenario =
        |s: &mut Synth, name: &str, steps: u32, body: &dyn Fn(&mut Synth, u64) -> bool| {
            bundle += 1;
            let start = s.now_us();
            s.emit(
                2_000,
                RunEvent::ScenarioBegin {
                    scenario: name.into(),
                    steps,
                },
            );
            s.emit(
                3_000,
                AgentMsg::BundleBegin {
                    bundle,
                    scenario: name.into(),
                    steps,
                },
            );
            s.emit(
                5,
                AgentMsg::Thread {
                    thread: 0,
                    parent: None,
                    step: None,
                    pid: 1,
                },
            );
            let passed = body(s, bundle);
            s.emit(
                20,
                AgentMsg::BundleEnd {
                    bundle,
                    error: None,
                },
            );
            let elapsed_ms = (s.now_us() - start) / 1000 + 1;
            s.emit(
                50,
                RunEvent::ScenarioEnd {
                    scenario: name.into(),
                    passed,
                    elapsed_ms,
                },
            );
        };

    scenario(&mut s, "goldfish-open-close", 2, &|s, b| {
        s.step(b, 1, 0, "open the device");
        let h = s.open_goldfish(1, 0, 3);
        s.step_end(b, 1, 0);
        s.expect("goldfish-open-close", 1, "ret", ">= 0", ">= 0");
        s.step(b, 2, 0, "close it");
        s.close_goldfish(2, 0, 3, h, &[]);
        s.step_end(b, 2, 0);
        s.expect(
            "goldfish-open-close",
            2,
            "device: no handle left",
            "0 handles",
            "0 handles",
        );
        true
    });

    scenario(&mut s, "goldfish-allocate-ping", 5, &|s, b| {
        s.step(b, 1, 0, "open");
        let h = s.open_goldfish(1, 0, 3);
        s.step_end(b, 1, 0);
        s.step(b, 2, 0, "allocate 12 KiB");
        let off = s.allocate_block(2, 0, 3, h, 0x3000, false).unwrap_or(0);
        s.step_end(b, 2, 0);
        let size = s.blocks.iter().find(|b| b.0 == off).map_or(0, |b| b.1);
        s.expect(
            "goldfish-allocate-ping",
            2,
            "out.size",
            "0x4000",
            &format!("{size:#x}"),
        );
        s.step(b, 3, 0, "ping x40");
        for n in 0..40 {
            s.ping(3, 0, 3, h, n);
        }
        s.step_end(b, 3, 0);
        s.expect("goldfish-allocate-ping", 3, "every ping ret", "0", "0");
        s.step(b, 4, 0, "claim the block");
        s.claim_shared(4, 0, 3, off, 0x4000);
        s.step_end(b, 4, 0);
        s.step(b, 5, 0, "free and close");
        s.deallocate_block(5, 0, 3, h, off);
        s.close_goldfish(5, 0, 3, h, &[]);
        s.step_end(b, 5, 0);
        s.expect(
            "goldfish-allocate-ping",
            5,
            "device idle after close",
            "idle",
            "idle",
        );
        true
    });

    scenario(&mut s, "goldfish-errors", 4, &|s, b| {
        s.step(b, 1, 0, "open");
        let h = s.open_goldfish(1, 0, 3);
        s.step_end(b, 1, 0);
        s.step(b, 2, 0, "allocate size 0");
        s.allocate_block(2, 0, 3, h, 0, false);
        s.step_end(b, 2, 0);
        s.expect("goldfish-errors", 2, "errno", "EINVAL", "EINVAL");
        s.step(b, 3, 0, "allocate twice, the 2nd fails (fault plan)");
        let first = s.allocate_block(3, 0, 3, h, 0x2000, false).unwrap_or(0);
        s.allocate_block(3, 0, 3, h, 0x2000, true);
        s.step_end(b, 3, 0);
        s.expect("goldfish-errors", 3, "errno of the 2nd", "ENOMEM", "ENOMEM");
        s.step(b, 4, 0, "free an offset never allocated");
        s.deallocate_block(4, 0, 3, h, 0x1234_0000);
        s.step_end(b, 4, 0);
        s.expect("goldfish-errors", 4, "errno", "EINVAL", "ENXIO");
        s.console(400, "[    4.912000] goldfish_address_space: deallocate of unknown offset 0x12340000 by handle 3");
        s.close_goldfish(4, 0, 3, h, &[first]);
        false
    });

    scenario(&mut s, "goldfish-threads", 3, &|s, b| {
        s.step(b, 1, 0, "open");
        let h = s.open_goldfish(1, 0, 3);
        s.step_end(b, 1, 0);
        s.step(b, 2, 0, "two threads: ping / allocate");
        s.emit(
            5,
            AgentMsg::Thread {
                thread: 1,
                parent: Some(0),
                step: Some(2),
                pid: 2,
            },
        );
        s.emit(
            5,
            AgentMsg::Thread {
                thread: 2,
                parent: Some(0),
                step: Some(2),
                pid: 3,
            },
        );
        for n in 0..6 {
            // Thread 1 pings while thread 2 allocates: the calls overlap,
            // so the register accesses between them are shared.
            let c1 = s.call_begin(2, 1, "ioctl:PING");
            let c2 = s.call_begin(2, 2, "ioctl:ALLOCATE_BLOCK");
            s.dev_reg(Access::Write, "PING", 28, h as u64);
            s.dev_ping(h, format!("echo metadata {n}"));
            s.dev_reg(Access::Write, "BLOCK_SIZE_LOW", 12, 0x1000);
            s.dev_reg(Access::Write, "BLOCK_SIZE_HIGH", 16, 0);
            s.dev_reg(Access::Write, "COMMAND", 0, 1);
            let (off, len) = s.allocate(0x1000).unwrap_or_default();
            s.dev_command(
                "ALLOCATE_BLOCK",
                1,
                Some(h),
                format!("allocate 0x1000 → offset {off:#x} size {len:#x}"),
                0,
                None,
            );
            s.dev_reg(Access::Read, "STATUS", 4, 0);
            let ping = json!({"offset": 0, "size": PAGE, "metadata": n, "version": 1, "wait_fd": 0, "wait_flags": 0, "direction": 0});
            s.call_end(c1, 2, 1, "ioctl:PING", Some(3), ping.clone(), ping, 0, None);
            s.dev_reg(Access::Read, "BLOCK_OFFSET_LOW", 20, off);
            s.dev_reg(Access::Read, "BLOCK_OFFSET_HIGH", 24, 0);
            s.dev_reg(Access::Read, "BLOCK_SIZE_LOW", 12, len);
            s.dev_reg(Access::Read, "BLOCK_SIZE_HIGH", 16, 0);
            s.dev_state();
            s.call_end(
                c2,
                2,
                2,
                "ioctl:ALLOCATE_BLOCK",
                Some(3),
                json!({"size": 0x1000, "offset": 0, "phys_addr": 0}),
                json!({"size": len, "offset": off, "phys_addr": SHARED_PHYS + off}),
                0,
                None,
            );
        }
        s.step_end(b, 2, 0);
        s.expect("goldfish-threads", 2, "all calls ret", "0", "0");
        s.step(b, 3, 0, "close frees everything");
        let left: Vec<u64> = s.blocks.iter().map(|b| b.0).collect();
        s.close_goldfish(3, 0, 3, h, &left);
        s.step_end(b, 3, 0);
        s.expect(
            "goldfish-threads",
            3,
            "device idle after close",
            "idle",
            "idle",
        );
        true
    });

    scenario(&mut s, "mkdirat2-cloexec", 2, &|s, b| {
        s.step(b, 1, 0, "mkdirat2(AT_FDCWD, \"/tmp/d\", 0755)");
        s.syscall(
            1,
            0,
            "mkdirat2",
            Some(4),
            json!({"nr": 472, "dir": -100, "path": "/tmp/d", "mode": 493, "flags": 0}),
            serde_json::Value::Null,
            4,
            None,
        );
        s.step_end(b, 1, 0);
        s.step(b, 2, 0, "fcntl(F_GETFD)");
        s.syscall(
            2,
            0,
            "fcntl",
            Some(4),
            json!({"fd": 4, "cmd": "F_GETFD", "arg": 0}),
            json!({"cloexec": true}),
            1,
            None,
        );
        s.step_end(b, 2, 0);
        s.expect("mkdirat2-cloexec", 2, "out.cloexec", "true", "true");
        s.syscall(
            3,
            0,
            "mkdirat2",
            None,
            json!({"nr": 472, "dir": -100, "path": "/tmp/d", "mode": 493, "flags": 0}),
            serde_json::Value::Null,
            -1,
            Some("EEXIST"),
        );
        s.expect("mkdirat2-cloexec", 3, "errno", "EEXIST", "EEXIST");
        true
    });

    scenario(&mut s, "mkdirat2-kselftest", 1, &|s, b| {
        s.step(b, 1, 0, "run mkdirat_fd_test");
        let call = s.call_begin(1, 0, "kselftest");
        let tests = [
            ("mkdirat_fd.basic", KtapStatus::Ok, None),
            ("mkdirat_fd.o_cloexec", KtapStatus::Ok, None),
            ("mkdirat_fd.eexist", KtapStatus::Ok, None),
            ("mkdirat_fd.enotdir", KtapStatus::Ok, None),
            ("mkdirat_fd.bad_flags", KtapStatus::Ok, None),
            (
                "mkdirat_fd.idmapped",
                KtapStatus::Skip,
                Some("SKIP idmapped mounts not configured"),
            ),
        ];
        s.emit(
            8_000,
            AgentMsg::Output {
                step: 1,
                thread: 0,
                line: "TAP version 13".into(),
            },
        );
        s.emit(
            100,
            AgentMsg::Output {
                step: 1,
                thread: 0,
                line: "1..6".into(),
            },
        );
        for (i, (name, status, directive)) in tests.iter().enumerate() {
            let line = match directive {
                Some(d) => format!("ok {} {name} # {d}", i + 1),
                None => format!("ok {} {name}", i + 1),
            };
            s.emit(
                2_000,
                AgentMsg::Output {
                    step: 1,
                    thread: 0,
                    line,
                },
            );
            s.emit(
                5,
                AgentMsg::Ktap(KtapResult {
                    step: 1,
                    thread: 0,
                    binary: "mkdirat_fd_test".into(),
                    depth: 0,
                    number: i as u32 + 1,
                    name: (*name).into(),
                    status: *status,
                    directive: directive.map(Into::into),
                }),
            );
        }
        s.emit(
            100,
            AgentMsg::Output {
                step: 1,
                thread: 0,
                line: "# Totals: pass:5 fail:0 xfail:0 xpass:0 skip:1 error:0".into(),
            },
        );
        s.call_end(
            call,
            1,
            0,
            "kselftest",
            None,
            json!({"path": "/mnt/gasbench/selftests/mkdirat_fd_test", "args": []}),
            json!({"exit_code": 0}),
            0,
            None,
        );
        s.step_end(b, 1, 0);
        s.expect("mkdirat2-kselftest", 1, "exit code", "0", "0");
        true
    });

    // A kernel warning the fault scenario provoked, on the console.
    let warn = [
        "[    6.104000] ------------[ cut here ]------------",
        "[    6.104000] WARNING: CPU: 0 PID: 58 at drivers/platform/goldfish/goldfish_address_space.rs:533 goldfish_address_space::release+0x1f4/0x230",
        "[    6.104000] CPU: 0 UID: 0 PID: 58 Comm: gasbench-agent Not tainted 7.2.12-gasbench #1",
        "[    6.104000] Call Trace:",
        "[    6.104000]  <TASK>",
        "[    6.104000]  __fput+0xe3/0x2a0",
        "[    6.104000]  task_work_run+0x59/0x90",
        "[    6.104000]  </TASK>",
        "[    6.104000] ---[ end trace 0000000000000000 ]---",
    ];
    for l in warn {
        s.console(200, l);
    }
    s.emit(
        500,
        RunEvent::StageEnd {
            stage: Stage::Run,
            outcome: Outcome::Failed,
            detail: "5 of 6 passed".into(),
            elapsed_ms: 3_900,
        },
    );

    // Teardown.
    s.emit(
        300,
        RunEvent::StageBegin {
            stage: Stage::Teardown,
            detail: "agent shutdown, QMP quit".into(),
        },
    );
    s.emit(
        1_000,
        AgentMsg::Log {
            level: LogLevel::Info,
            text: "shutdown: syncing, powering off".into(),
        },
    );
    s.console(20_000, "[    7.020000] reboot: Restarting system");
    s.emit(
        30_000,
        VmEvent::Qmp {
            name: "SHUTDOWN".into(),
            data: json!({"guest": true, "reason": "guest-reset"}),
        },
    );
    s.emit(
        10_000,
        DeviceEvent::Disconnected {
            reason: "QEMU closed the socket".into(),
        },
    );
    s.emit(
        5_000,
        VmEvent::ProcessExited {
            name: "qemu-system-x86_64".into(),
            status: "exit status 0".into(),
            expected: true,
        },
    );
    s.emit(
        5_000,
        VmEvent::ProcessExited {
            name: "virtiofsd".into(),
            status: "exit status 0".into(),
            expected: true,
        },
    );
    s.emit(
        1_000,
        RunEvent::StageEnd {
            stage: Stage::Teardown,
            outcome: Outcome::Ok,
            detail: String::new(),
            elapsed_ms: 72,
        },
    );
    let total_ms = s.now_us() / 1000 + 1;
    s.emit(
        100,
        RunEvent::Finished {
            passed: false,
            elapsed_ms: total_ms,
        },
    );
    s.events
}

/// A run dominated by its trace, written to `out` as it is made (a
/// million calls do not fit in memory as `Event`s): `calls` goldfish
/// ioctls, PING with an ALLOCATE/DEALLOCATE pair every 16, each with its
/// register accesses. About 4.3 events per call. Returns the event count.
pub fn write_trace_heavy(calls: u64, out: &mut impl std::io::Write) -> std::io::Result<u64> {
    let mut s = Synth::new();
    let mut written = 0u64;
    let mut flush = |s: &mut Synth, out: &mut dyn std::io::Write| -> std::io::Result<()> {
        for e in s.events.drain(..) {
            serde_json::to_writer(&mut *out, &e)?;
            out.write_all(b"\n")?;
            written += 1;
        }
        Ok(())
    };
    s.emit(
        0,
        RunEvent::Started {
            run_dir: "/tmp/bench".into(),
            command: "gasbench".into(),
        },
    );
    s.emit(
        10,
        RunEvent::ScenarioBegin {
            scenario: "goldfish-ping-flood".into(),
            steps: 1,
        },
    );
    s.dev_connected();
    let h = s.open_goldfish(1, 0, 3);
    let mut n = 1;
    while n < calls {
        if n % 16 == 0 {
            if let Some(off) = s.allocate_block(1, 0, 3, h, 0x1000, false) {
                s.deallocate_block(1, 0, 3, h, off);
            }
            n += 2;
        } else {
            s.ping(1, 0, 3, h, n);
            n += 1;
        }
        if s.events.len() >= 4096 {
            flush(&mut s, out)?;
        }
    }
    flush(&mut s, out)?;
    Ok(written)
}

/// One event per line, as `events.jsonl`.
pub fn to_jsonl(events: &[Event]) -> String {
    let mut out = String::new();
    for e in events {
        // Events always serialize (no non-string map keys, no NaN).
        out.push_str(&serde_json::to_string(e).unwrap_or_default());
        out.push('\n');
    }
    out
}
