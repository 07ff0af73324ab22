//! A synthetic trace for the frame-time benchmark: a million goldfish
//! calls do not come from a real run in reasonable time, so they are made
//! here. (The snapshot tests use a run recorded by the real pipeline,
//! tests/fixtures/recorded-run.)
//!
//! What is real: every device event comes from the real device model
//! (gasbench-device), driven with the posted driver's register sequences
//! for each goldfish ioctl (RFC 6/6), and sits between the `CallBegin` and
//! `CallEnd` of the call that caused it, as the engine orders them on the
//! bus. What is made up: the agent's call records and the timings.
//!
//! Included by `benches/frame_time.rs`.

use std::cell::RefCell;
use std::collections::HashMap;

use gasbench_abi::protocol::{AgentMsg, CallRecord};
use gasbench_device::{Collect, Device, DeviceConfig, DmaError, GuestRam, Region};
use gasbench_events::device::Register;
use gasbench_events::run::RunEvent;
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

/// The ping page header as the driver lays it out: gasbench-abi's one
/// layout.
pub use gasbench_abi::goldfish::PingInfo as PingHeader;

/// The header's fields as the PING ioctl's struct shows them in a call
/// record (the uapi struct has no `data_size`).
fn ping_json(p: &PingHeader) -> serde_json::Value {
    json!({"offset": p.offset, "size": p.size, "metadata": p.metadata,
           "version": p.version, "wait_fd": p.wait_fd,
           "wait_flags": p.wait_flags, "direction": p.direction})
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

    /// probe(): program_host_visible_state.
    fn probe(&mut self) {
        self.w(Register::GuestPageSize, PAGE as u32);
        self.w64(Register::PhysStartLow, Register::PhysStartHigh, SHARED_PHYS);
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
                fault: None,
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
        let mut args_in = ping_json(&req);
        args_in["request"] = json!(request("PING"));
        self.call_end(
            c,
            step,
            thread,
            name,
            Some(fd),
            args_in,
            ping_json(&reply),
            0,
            None,
        );
        reply
    }
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
