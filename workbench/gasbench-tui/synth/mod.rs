//! Synthetic runs for the TUI's fixtures and its benchmark, until the
//! pipeline records real ones.
//!
//! What is real: every device event comes from the real device model
//! (gasbench-device), driven with the posted driver's register sequences
//! for each goldfish ioctl (RFC 6/6: `generate_handle`,
//! `tell_ping_info_addr`, `allocate_block`, `deallocate_block`, `ping`
//! with its ping page, `destroy_handle`; probe's `GUEST_PAGE_SIZE` and
//! `PHYS_START`), with a real fault plan. Every device event sits between
//! the `CallBegin` and `CallEnd` of the call that caused it, as the engine
//! orders them on the bus. What is made up: the agent's call records
//! (shaped like gasbench-agent's), the timings, the console (a Linux boot),
//! the build log and the stage/verdict frame.
//!
//! Included by `examples/write_fixtures.rs` and `benches/frame_time.rs`.

#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use gasbench_abi::protocol::{AgentMsg, CallRecord, KtapResult, KtapStatus, LogLevel, Ready};
use gasbench_device::faults::Errno;
use gasbench_device::{
    Collect, Device, DeviceConfig, DmaError, FaultAction, FaultPlan, FaultRule, GuestRam, Region,
    Trigger,
};
use gasbench_events::device::{DeviceEvent, Register};
use gasbench_events::kernel::{ApplyStatus, KernelEvent, PatchApplied, PatchRole};
use gasbench_events::run::{AccelChoice, Outcome, RunEvent, Stage};
use gasbench_events::vm::{ConsoleSeverity, VmEvent};
use gasbench_events::{Event, EventBody};
use serde_json::json;

const PAGE: u64 = 0x1000;
/// BAR1 of the emulated device in these runs: 1 MiB.
pub const SHARED_SIZE: u64 = 0x10_0000;
/// Where the guest's PCI code put BAR1 (see the boot log below).
const SHARED_PHYS: u64 = 0xfe00_0000;
/// Guest-physical pages the driver allocates for ping pages.
const PING_PAGES: u64 = 0x3340_0000;

/// The request number as the agent prints it.
fn request(name: &str) -> String {
    let r = gasbench_abi::uapi::Ioctl::from_name(name).map_or(0, |i| i.request());
    format!("{r:#010x}")
}

fn errno_name(status: u32) -> String {
    match status {
        12 => "ENOMEM".into(),
        22 => "EINVAL".into(),
        28 => "ENOSPC".into(),
        38 => "ENOSYS".into(),
        n => format!("E{n}"),
    }
}

/// Guest RAM as the device sees it: only the pages touched exist.
#[derive(Default)]
struct Ram(RefCell<HashMap<u64, Vec<u8>>>);

impl Ram {
    fn byte(&self, gpa: u64) -> u8 {
        self.0
            .borrow()
            .get(&(gpa / PAGE))
            .map_or(0, |p| p[(gpa % PAGE) as usize])
    }
    fn set(&self, gpa: u64, b: u8) {
        self.0
            .borrow_mut()
            .entry(gpa / PAGE)
            .or_insert_with(|| vec![0; PAGE as usize])[(gpa % PAGE) as usize] = b;
    }
}

impl GuestRam for Ram {
    fn dma_read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = self.byte(gpa + i as u64);
        }
        Ok(())
    }
    fn dma_write(&self, gpa: u64, data: &[u8]) -> Result<(), DmaError> {
        for (i, b) in data.iter().enumerate() {
            self.set(gpa + i as u64, *b);
        }
        Ok(())
    }
}

/// The ping page header as the driver lays it out (PingInfoHeader).
#[derive(Clone, Copy, Debug, Default)]
pub struct PingHeader {
    pub offset: u64,
    pub size: u64,
    pub metadata: u64,
    pub version: u32,
    pub wait_fd: u32,
    pub wait_flags: u32,
    pub direction: u32,
}

impl PingHeader {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(48);
        b.extend(self.offset.to_ne_bytes());
        b.extend(self.size.to_ne_bytes());
        b.extend(self.metadata.to_ne_bytes());
        b.extend(self.version.to_ne_bytes());
        b.extend(self.wait_fd.to_ne_bytes());
        b.extend(self.wait_flags.to_ne_bytes());
        b.extend(self.direction.to_ne_bytes());
        b.extend(0u64.to_ne_bytes());
        b
    }
    fn decode(b: &[u8]) -> PingHeader {
        let u64_at = |i: usize| u64::from_ne_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |i: usize| u32::from_ne_bytes(b[i..i + 4].try_into().unwrap_or([0; 4]));
        PingHeader {
            offset: u64_at(0),
            size: u64_at(8),
            metadata: u64_at(16),
            version: u32_at(24),
            wait_fd: u32_at(28),
            wait_flags: u32_at(32),
            direction: u32_at(36),
        }
    }
    fn json(&self) -> serde_json::Value {
        json!({"offset": self.offset, "size": self.size, "metadata": self.metadata,
               "version": self.version, "wait_fd": self.wait_fd,
               "wait_flags": self.wait_flags, "direction": self.direction})
    }
}

/// Builds an event log, stamping sequence numbers and times, with the real
/// device model behind the register accesses.
pub struct Synth {
    pub events: Vec<Event>,
    next_seq: u64,
    t_us: u64,
    next_call: u64,
    dev: Device,
    trace: Collect,
    ram: Ram,
    /// Ping page of each open handle.
    pages: HashMap<u32, u64>,
    /// A deterministic jitter source (the same file every time).
    rng: u64,
}

impl Default for Synth {
    fn default() -> Self {
        Synth::new()
    }
}

impl Synth {
    pub fn new() -> Synth {
        let trace = Collect::default();
        let dev = Device::new(
            DeviceConfig {
                bar1_size: SHARED_SIZE,
                irq_on_command: false,
            },
            Box::new(trace.clone()),
        )
        .expect("a valid device config");
        Synth {
            events: Vec::new(),
            next_seq: 0,
            t_us: 0,
            next_call: 1,
            dev,
            trace,
            ram: Ram::default(),
            pages: HashMap::new(),
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

    // --- the device, through its registers ---

    /// Put what the device traced on the bus, an MMIO round trip apart.
    fn pump(&mut self) {
        for ev in self.trace.take() {
            let dt = 1 + self.jitter(3);
            self.emit(dt, ev);
        }
    }

    fn w(&mut self, reg: Register, v: u32) {
        let _ = self
            .dev
            .write(Region::Bar0, reg.offset(), &v.to_le_bytes(), &self.ram);
        self.pump();
    }

    fn r(&mut self, reg: Register) -> u32 {
        let mut b = [0u8; 4];
        let _ = self.dev.read(Region::Bar0, reg.offset(), &mut b);
        self.pump();
        u32::from_le_bytes(b)
    }

    fn w64(&mut self, lo: Register, hi: Register, v: u64) {
        self.w(lo, v as u32);
        self.w(hi, (v >> 32) as u32);
    }

    fn r64(&mut self, lo: Register, hi: Register) -> u64 {
        u64::from(self.r(lo)) | (u64::from(self.r(hi)) << 32)
    }

    /// The transport's own events around the model's.
    fn dev_event(&mut self, dt: u64, ev: DeviceEvent) {
        self.emit(dt, ev);
    }

    /// probe(): program_host_visible_state.
    fn probe(&mut self) {
        self.w(Register::GuestPageSize, PAGE as u32);
        self.w64(Register::PhysStartLow, Register::PhysStartHigh, SHARED_PHYS);
    }

    fn fault_plan(&mut self, rules: Vec<FaultRule>) {
        self.dev.set_fault_plan(FaultPlan { faults: rules });
    }

    pub fn state(&self) -> gasbench_events::device::DeviceState {
        self.dev.state()
    }

    // --- agent calls ---

    fn call_begin(&mut self, step: u32, thread: u32, name: &str) -> (u64, u64) {
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
        (call, self.t_us)
    }

    #[allow(clippy::too_many_arguments)]
    fn call_end(
        &mut self,
        (call, began): (u64, u64),
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

    /// The driver's `open`: generate a handle, then tell the device where
    /// the file's ping page is (validated by reading it back).
    fn drv_open(&mut self) -> Result<u32, &'static str> {
        self.w(Register::Command, 3);
        let h = self.r(Register::Handle);
        if h == u32::MAX {
            return Err("EINVAL");
        }
        let page = PING_PAGES + u64::from(h) * PAGE;
        self.w(Register::Handle, h);
        self.w64(Register::PingInfoAddrLow, Register::PingInfoAddrHigh, page);
        self.w(Register::Command, 5);
        let back = self.r64(Register::PingInfoAddrLow, Register::PingInfoAddrHigh);
        if back != page {
            return Err("EINVAL");
        }
        self.pages.insert(h, page);
        Ok(h)
    }

    /// `open("/dev/goldfish_address_space")`.
    pub fn open_goldfish(&mut self, step: u32, thread: u32, fd: i32) -> u32 {
        let c = self.call_begin(step, thread, "open");
        let r = self.drv_open();
        let args = json!({"path": "/dev/goldfish_address_space", "flags": 2, "mode": 0});
        match r {
            Ok(h) => {
                self.call_end(
                    c,
                    step,
                    thread,
                    "open",
                    Some(fd),
                    args,
                    serde_json::Value::Null,
                    fd as i64,
                    None,
                );
                h
            }
            Err(e) => {
                self.call_end(
                    c,
                    step,
                    thread,
                    "open",
                    None,
                    args,
                    serde_json::Value::Null,
                    -1,
                    Some(e),
                );
                0
            }
        }
    }

    /// `close(fd)`: release destroys the handle, then frees the file's
    /// blocks, in the driver's order.
    pub fn close_goldfish(&mut self, step: u32, thread: u32, fd: i32, handle: u32, blocks: &[u64]) {
        let c = self.call_begin(step, thread, "close");
        self.w(Register::Handle, handle);
        self.w(Register::Command, 4);
        for &off in blocks {
            self.w64(Register::BlockOffsetLow, Register::BlockOffsetHigh, off);
            self.w(Register::Command, 2);
            self.r(Register::Status);
        }
        self.pages.remove(&handle);
        self.call_end(
            c,
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

    fn drv_allocate(&mut self, size: u64) -> Result<(u64, u64), u32> {
        self.w64(Register::BlockSizeLow, Register::BlockSizeHigh, size);
        self.w(Register::Command, 1);
        let status = self.r(Register::Status);
        if status != 0 {
            return Err(status);
        }
        let off = self.r64(Register::BlockOffsetLow, Register::BlockOffsetHigh);
        let len = self.r64(Register::BlockSizeLow, Register::BlockSizeHigh);
        Ok((off, len))
    }

    /// ALLOCATE_BLOCK of `size`.
    pub fn allocate_block(&mut self, step: u32, thread: u32, fd: i32, size: u64) -> Option<u64> {
        let name = "ioctl:ALLOCATE_BLOCK";
        let c = self.call_begin(step, thread, name);
        let args_in = json!({"size": size, "offset": 0, "phys_addr": 0, "request": request("ALLOCATE_BLOCK")});
        match self.drv_allocate(size) {
            Ok((off, len)) => {
                let out = json!({"size": len, "offset": off, "phys_addr": SHARED_PHYS + off});
                self.call_end(c, step, thread, name, Some(fd), args_in, out, 0, None);
                Some(off)
            }
            Err(status) => {
                let out = json!({"size": size, "offset": 0, "phys_addr": 0});
                let e = errno_name(status);
                self.call_end(c, step, thread, name, Some(fd), args_in, out, -1, Some(&e));
                None
            }
        }
    }

    /// DEALLOCATE_BLOCK; an offset this file never allocated is refused by
    /// the driver (ENXIO) before the device is asked.
    pub fn deallocate_block(&mut self, step: u32, thread: u32, fd: i32, offset: u64, known: bool) {
        let name = "ioctl:DEALLOCATE_BLOCK";
        let c = self.call_begin(step, thread, name);
        let args = json!({"offset": offset, "request": request("DEALLOCATE_BLOCK")});
        if !known {
            self.call_end(
                c,
                step,
                thread,
                name,
                Some(fd),
                args.clone(),
                args,
                -1,
                Some("ENXIO"),
            );
            return;
        }
        self.w64(Register::BlockOffsetLow, Register::BlockOffsetHigh, offset);
        self.w(Register::Command, 2);
        let status = self.r(Register::Status);
        let (ret, e) = if status == 0 {
            (0, None)
        } else {
            (-1, Some(errno_name(status)))
        };
        self.call_end(
            c,
            step,
            thread,
            name,
            Some(fd),
            args.clone(),
            args,
            ret,
            e.as_deref(),
        );
    }

    /// PING: the driver fills the ping page (adding PHYS_START to the
    /// offset), writes the handle to PING, and copies the page back.
    pub fn ping(
        &mut self,
        step: u32,
        thread: u32,
        fd: i32,
        handle: u32,
        req: PingHeader,
    ) -> PingHeader {
        let name = "ioctl:PING";
        let c = self.call_begin(step, thread, name);
        let page = self.pages.get(&handle).copied().unwrap_or(PING_PAGES);
        let mut header = req;
        header.offset = req.offset + SHARED_PHYS;
        let _ = self.ram.dma_write(page, &header.encode());
        self.w(Register::Ping, handle);
        let mut back = [0u8; 48];
        let _ = self.ram.dma_read(page, &mut back);
        let reply = PingHeader::decode(&back);
        let mut args_in = req.json();
        args_in["request"] = json!(request("PING"));
        self.call_end(
            c,
            step,
            thread,
            name,
            Some(fd),
            args_in,
            reply.json(),
            0,
            None,
        );
        reply
    }

    /// CLAIM_SHARED: bookkeeping in the driver, no register access.
    pub fn claim_shared(&mut self, step: u32, thread: u32, fd: i32, offset: u64, size: u64) {
        let name = "ioctl:CLAIM_SHARED";
        let c = self.call_begin(step, thread, name);
        let args = json!({"offset": offset, "size": size});
        let mut with_req = args.clone();
        with_req["request"] = json!(request("CLAIM_SHARED"));
        self.call_end(c, step, thread, name, Some(fd), with_req, args, 0, None);
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
        let c = self.call_begin(step, thread, name);
        self.call_end(c, step, thread, name, fd, args_in, args_out, ret, errno);
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
                posted_index: (!fixup).then_some(index),
                subject: subject.into(),
                fixup,
                role: if fixup {
                    PatchRole::Fixup
                } else {
                    PatchRole::Posted
                },
                status,
                files: vec![],
                hunks: vec![],
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
                cross_arch: None,
                cross_error: None,
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
    s.dev_event(
        1_500,
        DeviceEvent::Listening {
            socket: "/var/cache/gasbench/runs/1795770000-tui/goldfish.sock".into(),
            bar1_size: SHARED_SIZE,
        },
    );
    s.emit(
        3_000,
        VmEvent::ProcessStarted {
            name: "qemu-system-x86_64".into(),
            pid: 4812,
        },
    );
    s.dev_event(
        40_000,
        DeviceEvent::Connected {
            client_version: "0.1".into(),
            client_caps: r#"{"capabilities":{"max_msg_fds":8,"max_data_xfer_size":1048576}}"#
                .into(),
        },
    );
    s.dev_event(
        200,
        DeviceEvent::DmaMap {
            gpa: 0,
            size: 1 << 30,
            mapped: true,
        },
    );
    s.emit(
        60_000,
        VmEvent::State {
            status: "running".into(),
        },
    );
    for (i, l) in BOOT.iter().enumerate() {
        s.console(if i == 0 { 250_000 } else { 30_000 }, l);
        if l.contains("goldfish_address_space 0000:00:02.0: enabling") {
            s.probe();
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
            detail: "7 scenarios".into(),
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
        let left = s.state().handles.len();
        s.expect(
            "goldfish-open-close",
            2,
            "device: handles left",
            "0",
            &left.to_string(),
        );
        true
    });

    scenario(&mut s, "goldfish-allocate-ping", 5, &|s, b| {
        s.step(b, 1, 0, "open");
        let h = s.open_goldfish(1, 0, 3);
        s.step_end(b, 1, 0);
        s.step(b, 2, 0, "allocate 12 KiB");
        let off = s.allocate_block(2, 0, 3, 0x3000).unwrap_or(0);
        s.step_end(b, 2, 0);
        let size = s
            .state()
            .blocks
            .iter()
            .find(|x| x.offset == off)
            .map_or(0, |x| x.size);
        s.expect(
            "goldfish-allocate-ping",
            2,
            "out.size",
            "0x4000",
            &format!("{size:#x}"),
        );
        s.step(b, 3, 0, "bind the echo service, ping x40");
        let bind = s.ping(
            3,
            0,
            3,
            h,
            PingHeader {
                metadata: 100,
                version: 1,
                ..Default::default()
            },
        );
        s.expect(
            "goldfish-allocate-ping",
            3,
            "bind reply metadata",
            "0",
            &bind.metadata.to_string(),
        );
        for n in 0..40u64 {
            s.ping(
                3,
                0,
                3,
                h,
                PingHeader {
                    offset: n * PAGE,
                    size: PAGE,
                    metadata: n,
                    version: 1,
                    ..Default::default()
                },
            );
        }
        s.step_end(b, 3, 0);
        s.step(b, 4, 0, "free and close");
        s.deallocate_block(4, 0, 3, off, true);
        s.close_goldfish(4, 0, 3, h, &[]);
        s.step_end(b, 4, 0);
        let idle = if s.state().is_idle() { "idle" } else { "busy" };
        s.expect(
            "goldfish-allocate-ping",
            4,
            "device idle after close",
            "idle",
            idle,
        );
        true
    });

    scenario(&mut s, "goldfish-shared-slots", 3, &|s, b| {
        s.step(b, 1, 0, "open, bind shared slots");
        let h = s.open_goldfish(1, 0, 3);
        s.ping(
            1,
            0,
            3,
            h,
            PingHeader {
                metadata: 6,
                version: 1,
                ..Default::default()
            },
        );
        s.step_end(b, 1, 0);
        s.step(b, 2, 0, "carve 32 KiB, claim it");
        let carved = s.ping(
            2,
            0,
            3,
            h,
            PingHeader {
                metadata: 1,
                size: 0x8000,
                version: 1,
                ..Default::default()
            },
        );
        s.claim_shared(2, 0, 3, carved.offset, carved.size);
        s.step_end(b, 2, 0);
        let claims = s.state().claims().count();
        s.expect(
            "goldfish-shared-slots",
            2,
            "device: claims",
            "1",
            &claims.to_string(),
        );
        s.step(b, 3, 0, "close: the claim dies with the context");
        s.close_goldfish(3, 0, 3, h, &[]);
        s.step_end(b, 3, 0);
        let idle = if s.state().is_idle() { "idle" } else { "busy" };
        s.expect(
            "goldfish-shared-slots",
            3,
            "device idle after close",
            "idle",
            idle,
        );
        true
    });

    scenario(&mut s, "goldfish-errors", 4, &|s, b| {
        s.step(b, 1, 0, "open");
        let h = s.open_goldfish(1, 0, 3);
        s.step_end(b, 1, 0);
        s.step(b, 2, 0, "allocate size 0");
        s.allocate_block(2, 0, 3, 0);
        s.step_end(b, 2, 0);
        s.expect("goldfish-errors", 2, "errno", "EINVAL", "EINVAL");
        s.step(b, 3, 0, "allocate twice, the 2nd fails (fault plan)");
        s.fault_plan(vec![
            FaultRule::new(
                Trigger::AllocateBlock,
                2,
                FaultAction::Fail { errno: Errno(12) },
            )
            .expect("a valid rule"),
        ]);
        let first = s.allocate_block(3, 0, 3, 0x2000);
        let second = s.allocate_block(3, 0, 3, 0x2000);
        s.step_end(b, 3, 0);
        s.expect(
            "goldfish-errors",
            3,
            "2nd allocate",
            "ENOMEM",
            if second.is_none() { "ENOMEM" } else { "ok" },
        );
        s.step(b, 4, 0, "free an offset never allocated");
        s.deallocate_block(4, 0, 3, 0x1234_0000, false);
        s.step_end(b, 4, 0);
        s.expect("goldfish-errors", 4, "errno", "EINVAL", "ENXIO");
        s.close_goldfish(4, 0, 3, h, &first.into_iter().collect::<Vec<_>>());
        s.fault_plan(vec![]);
        false
    });

    scenario(&mut s, "goldfish-threads", 3, &|s, b| {
        s.step(b, 1, 0, "open, bind echo");
        let h = s.open_goldfish(1, 0, 3);
        s.ping(
            1,
            0,
            3,
            h,
            PingHeader {
                metadata: 100,
                version: 1,
                ..Default::default()
            },
        );
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
        let mut blocks = Vec::new();
        for n in 0..6u64 {
            // Thread 1 pings while thread 2 allocates: both calls are open
            // when the device sees the accesses, so their attribution is
            // shared.
            let req = PingHeader {
                size: PAGE,
                metadata: n,
                version: 1,
                ..Default::default()
            };
            let c1 = s.call_begin(2, 1, "ioctl:PING");
            let c2 = s.call_begin(2, 2, "ioctl:ALLOCATE_BLOCK");
            let page = s.pages.get(&h).copied().unwrap_or(PING_PAGES);
            let mut header = req;
            header.offset = SHARED_PHYS;
            let _ = s.ram.dma_write(page, &header.encode());
            s.w(Register::Ping, h);
            let got = s.drv_allocate(0x1000);
            let mut back = [0u8; 48];
            let _ = s.ram.dma_read(page, &mut back);
            let mut ping_in = req.json();
            ping_in["request"] = json!(request("PING"));
            s.call_end(
                c1,
                2,
                1,
                "ioctl:PING",
                Some(3),
                ping_in,
                PingHeader::decode(&back).json(),
                0,
                None,
            );
            let args_in = json!({"size": 0x1000, "offset": 0, "phys_addr": 0, "request": request("ALLOCATE_BLOCK")});
            match got {
                Ok((off, len)) => {
                    blocks.push(off);
                    s.call_end(
                        c2,
                        2,
                        2,
                        "ioctl:ALLOCATE_BLOCK",
                        Some(3),
                        args_in,
                        json!({"size": len, "offset": off, "phys_addr": SHARED_PHYS + off}),
                        0,
                        None,
                    );
                }
                Err(st) => {
                    let e = errno_name(st);
                    s.call_end(
                        c2,
                        2,
                        2,
                        "ioctl:ALLOCATE_BLOCK",
                        Some(3),
                        args_in,
                        serde_json::Value::Null,
                        -1,
                        Some(&e),
                    );
                }
            }
        }
        s.step_end(b, 2, 0);
        s.expect("goldfish-threads", 2, "all calls ret", "0", "0");
        s.step(b, 3, 0, "close frees everything");
        s.close_goldfish(3, 0, 3, h, &blocks);
        s.step_end(b, 3, 0);
        let idle = if s.state().is_idle() { "idle" } else { "busy" };
        s.expect(
            "goldfish-threads",
            3,
            "device idle after close",
            "idle",
            idle,
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
            detail: "6 of 7 passed".into(),
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
/// ioctls against the device model, PING (echo) with an
/// ALLOCATE/DEALLOCATE pair every 16, each with its register accesses and
/// the device's events. Returns the event count.
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
    s.probe();
    let h = s.open_goldfish(1, 0, 3);
    s.ping(
        1,
        0,
        3,
        h,
        PingHeader {
            metadata: 100,
            version: 1,
            ..Default::default()
        },
    );
    let mut n = 2;
    while n < calls {
        if n % 16 == 0 {
            if let Some(off) = s.allocate_block(1, 0, 3, 0x1000) {
                s.deallocate_block(1, 0, 3, off, true);
            }
            n += 2;
        } else {
            s.ping(
                1,
                0,
                3,
                h,
                PingHeader {
                    size: PAGE,
                    metadata: n,
                    version: 1,
                    ..Default::default()
                },
            );
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
