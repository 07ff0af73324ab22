//! The device: config space, BAR0 registers and commands, BAR1 contents,
//! contexts and their host services, fault plans.
//!
//! The transport calls [`Device::read`] and [`Device::write`] for every
//! access it receives and carries out the [`Effects`] they return (hold the
//! reply back, drop the connection, raise INTx). Guest RAM is reached
//! through [`GuestRam`], passed in on each write: only PING writes use it.

use std::collections::BTreeMap;
use std::time::Duration;

use gasbench_abi::goldfish::{CommandKind, PING_DATA_MAX, PING_INFO_LEN, PingInfo, Register};
use gasbench_events::device::{
    Access, BlockOwner, CommandDone, Counters, DeviceEvent, DeviceState, FaultFired, HandleInfo,
    HostMapping, OpCount, PingDone, RegAccess, RegisterFile, ServiceKind, Space,
};

use crate::allocator::{Allocator, FreeError, round_size};
use crate::config_space::{self, CONFIG_SIZE, ConfigSpace};
use crate::faults::{FaultAction, FaultPlan, FaultState, Fired, Trigger};
use crate::memory::GuestRam;
use crate::services::{self, OP_ALLOCATE, OP_FREE, REPLY_ERR, REPLY_OK};
use crate::shared_area::SharedArea;
use crate::trace::DeviceTrace;
use crate::{BAR0_SIZE, DEFAULT_GUEST_PAGE_SIZE, DeviceConfig, INVALID_HANDLE, errno};

/// More live contexts than this and GEN_HANDLE fails (ENOSPC, handle
/// 0xffffffff): a guest looping on GEN_HANDLE must not exhaust the host.
pub const MAX_HANDLES: usize = 1 << 16;
/// Likewise for host-memory-allocator mappings.
pub const MAX_MAPPINGS: usize = 1 << 12;

/// The address spaces the transport forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Region {
    Config,
    Bar0,
    Bar1,
}

impl std::fmt::Display for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Region::Config => "config space",
            Region::Bar0 => "BAR0",
            Region::Bar1 => "BAR1",
        })
    }
}

impl Region {
    fn space(self) -> Space {
        match self {
            Region::Config => Space::Config,
            Region::Bar0 => Space::Bar0,
            Region::Bar1 => Space::Bar1,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("{region} access at {offset:#x} of {len} bytes runs past its end ({size:#x})")]
    OutOfRange {
        region: Region,
        offset: u64,
        len: usize,
        size: u64,
    },
}

/// What the transport must do besides replying.
#[must_use]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// Hold the reply back this long (a `delay` fault).
    pub delay: Option<Duration>,
    /// Close the connection instead of replying (a `drop_connection`
    /// fault). The access was not performed.
    pub disconnect: bool,
    /// Pulse INTx (`DeviceConfig::irq_on_command`).
    pub irq: bool,
}

impl Effects {
    fn merge(&mut self, other: Effects) {
        self.delay = match (self.delay, other.delay) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        self.disconnect |= other.disconnect;
        self.irq |= other.irq;
    }
}

/// BAR0's registers, kept as the 32-bit halves the guest writes.
#[derive(Clone, Copy, Debug)]
struct Regs {
    status: u32,
    guest_page_size: u32,
    size_lo: u32,
    size_hi: u32,
    offset_lo: u32,
    offset_hi: u32,
    ping: u32,
    ping_info_lo: u32,
    ping_info_hi: u32,
    handle: u32,
    phys_lo: u32,
    phys_hi: u32,
}

impl Default for Regs {
    fn default() -> Self {
        Regs {
            status: 0,
            guest_page_size: DEFAULT_GUEST_PAGE_SIZE,
            size_lo: 0,
            size_hi: 0,
            offset_lo: 0,
            offset_hi: 0,
            ping: 0,
            ping_info_lo: 0,
            ping_info_hi: 0,
            handle: 0,
            phys_lo: 0,
            phys_hi: 0,
        }
    }
}

fn join(lo: u32, hi: u32) -> u64 {
    u64::from(lo) | (u64::from(hi) << 32)
}

fn split(v: u64) -> (u32, u32) {
    (v as u32, (v >> 32) as u32)
}

impl Regs {
    fn block_size(&self) -> u64 {
        join(self.size_lo, self.size_hi)
    }
    fn set_block_size(&mut self, v: u64) {
        (self.size_lo, self.size_hi) = split(v);
    }
    fn block_offset(&self) -> u64 {
        join(self.offset_lo, self.offset_hi)
    }
    fn set_block_offset(&mut self, v: u64) {
        (self.offset_lo, self.offset_hi) = split(v);
    }
    fn ping_info_addr(&self) -> u64 {
        join(self.ping_info_lo, self.ping_info_hi)
    }
    fn phys_start(&self) -> u64 {
        join(self.phys_lo, self.phys_hi)
    }
}

/// One context (a handle), created by GEN_HANDLE.
#[derive(Clone, Debug, Default)]
struct Context {
    ping_page: Option<u64>,
    service: Option<ServiceKind>,
    pings: u64,
    /// Pings served by the bound service (the echo's sequence number).
    served: u32,
}

/// Host memory backing a guest block (host memory allocator service).
#[derive(Clone, Copy, Debug)]
struct Mapping {
    handle: u32,
    /// Offset in the shared area.
    offset: u64,
    /// Guest-physical address the guest named.
    phys: u64,
    size: u64,
}

/// A command's result, before it is reported.
struct Outcome {
    status: u32,
    decoded: String,
    changed: bool,
}

impl Outcome {
    fn ok(decoded: String, changed: bool) -> Self {
        Outcome {
            status: 0,
            decoded,
            changed,
        }
    }
    fn err(errno: u32, decoded: String) -> Self {
        Outcome {
            status: errno,
            decoded: format!("{}: {decoded}", errno::describe(errno)),
            changed: false,
        }
    }
}

/// The goldfish address space device.
pub struct Device {
    cfg: DeviceConfig,
    config: ConfigSpace,
    regs: Regs,
    contexts: BTreeMap<u32, Context>,
    next_handle: u32,
    alloc: Allocator,
    mappings: Vec<Mapping>,
    shared: SharedArea,
    faults: FaultState,
    counters: Counters,
    trace: Box<dyn DeviceTrace>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("cfg", &self.cfg)
            .field("handles", &self.contexts.len())
            .field("blocks", &self.alloc.blocks().len())
            .finish_non_exhaustive()
    }
}

impl Device {
    pub fn new(
        cfg: DeviceConfig,
        trace: Box<dyn DeviceTrace>,
    ) -> Result<Device, crate::ConfigError> {
        cfg.validate()?;
        Ok(Device {
            config: ConfigSpace::new(cfg.bar1_size),
            regs: Regs::default(),
            contexts: BTreeMap::new(),
            next_handle: 1,
            alloc: Allocator::new(cfg.bar1_size),
            mappings: Vec::new(),
            shared: SharedArea::new(cfg.bar1_size),
            faults: FaultState::default(),
            counters: Counters::default(),
            trace,
            cfg,
        })
    }

    pub fn config(&self) -> &DeviceConfig {
        &self.cfg
    }

    pub fn region_size(&self, region: Region) -> u64 {
        match region {
            Region::Config => CONFIG_SIZE as u64,
            Region::Bar0 => BAR0_SIZE,
            Region::Bar1 => self.cfg.bar1_size,
        }
    }

    /// Replace where events go.
    pub fn set_trace(&mut self, trace: Box<dyn DeviceTrace>) {
        self.trace = trace;
    }

    /// Report an event through the model's trace (the transport's own
    /// events take the same path, so they interleave in order).
    pub fn emit(&mut self, ev: DeviceEvent) {
        if self.trace.enabled() {
            self.trace.emit(ev);
        }
    }

    pub fn tracing(&self) -> bool {
        self.trace.enabled()
    }

    /// Pass on events the trace holds back.
    pub fn flush_trace(&mut self) {
        self.trace.flush();
    }

    /// Install a fault plan; occurrences are counted from now.
    pub fn set_fault_plan(&mut self, plan: FaultPlan) {
        self.faults = FaultState::new(plan);
    }

    pub fn fault_plan(&self) -> &FaultPlan {
        self.faults.plan()
    }

    fn check_range(&mut self, region: Region, offset: u64, len: usize) -> Result<(), AccessError> {
        let size = self.region_size(region);
        let ok = offset
            .checked_add(len as u64)
            .is_some_and(|end| end <= size);
        if ok {
            return Ok(());
        }
        self.counters.ignored += 1;
        let err = AccessError::OutOfRange {
            region,
            offset,
            len,
            size,
        };
        if self.trace.enabled() {
            self.trace.emit(DeviceEvent::Anomaly {
                text: err.to_string(),
            });
        }
        Err(err)
    }

    /// An access to config space or a BAR: fill `buf`.
    pub fn read(
        &mut self,
        region: Region,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<Effects, AccessError> {
        self.check_range(region, offset, buf.len())?;
        if buf.is_empty() {
            return Ok(Effects::default());
        }
        match region {
            Region::Config => {
                self.config.read(offset as usize, buf);
                self.counters.reads += 1;
                self.trace_plain(Access::Read, region, offset, buf);
                Ok(Effects::default())
            }
            Region::Bar1 => {
                self.shared.read(offset, buf);
                self.counters.reads += 1;
                self.trace_plain(Access::Read, region, offset, buf);
                Ok(Effects::default())
            }
            Region::Bar0 => Ok(self.bar0_read(offset, buf)),
        }
    }

    /// An access to config space or a BAR: store `data`.
    pub fn write(
        &mut self,
        region: Region,
        offset: u64,
        data: &[u8],
        ram: &dyn GuestRam,
    ) -> Result<Effects, AccessError> {
        self.check_range(region, offset, data.len())?;
        if data.is_empty() {
            return Ok(Effects::default());
        }
        match region {
            Region::Config => {
                self.config.write(offset as usize, data);
                self.counters.writes += 1;
                self.trace_plain(Access::Write, region, offset, data);
                Ok(Effects::default())
            }
            Region::Bar1 => {
                self.shared.write(offset, data);
                self.counters.writes += 1;
                self.trace_plain(Access::Write, region, offset, data);
                Ok(Effects::default())
            }
            Region::Bar0 => Ok(self.bar0_write(offset, data, ram)),
        }
    }

    /// Back to power-on state: registers, contexts, the shared area and
    /// config space. Counters and the fault plan's counts carry on.
    pub fn reset(&mut self, by: &str) {
        self.regs = Regs::default();
        self.contexts.clear();
        self.next_handle = 1;
        self.alloc.reset();
        self.mappings.clear();
        self.shared.clear();
        self.config.reset();
        if self.trace.enabled() {
            self.trace.emit(DeviceEvent::Reset { by: by.to_string() });
            let s = self.state();
            self.trace.emit(DeviceEvent::State(s));
        }
    }

    /// A snapshot of everything inspectable.
    pub fn state(&self) -> DeviceState {
        DeviceState {
            handles: self
                .contexts
                .iter()
                .map(|(&handle, c)| HandleInfo {
                    handle,
                    ping_page: c.ping_page,
                    service: c.service,
                    pings: c.pings,
                })
                .collect(),
            blocks: self.alloc.blocks().to_vec(),
            mappings: self
                .mappings
                .iter()
                .map(|m| HostMapping {
                    handle: m.handle,
                    phys: m.phys,
                    size: m.size,
                })
                .collect(),
            shared_size: self.cfg.bar1_size,
            registers: RegisterFile {
                status: self.regs.status,
                guest_page_size: self.regs.guest_page_size,
                block_size: self.regs.block_size(),
                block_offset: self.regs.block_offset(),
                ping: self.regs.ping,
                ping_info_addr: self.regs.ping_info_addr(),
                handle: self.regs.handle,
                phys_start: self.regs.phys_start(),
            },
            counters: self.counters,
        }
    }

    /// The model's internal invariants; the first violation.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.alloc.check()?;
        if self.contexts.contains_key(&0) {
            return Err("handle 0 is live".into());
        }
        if self.contexts.len() > MAX_HANDLES {
            return Err(format!("{} live handles", self.contexts.len()));
        }
        for b in self.alloc.blocks() {
            if let BlockOwner::Host { handle } = b.owner
                && !self.contexts.contains_key(&handle)
            {
                return Err(format!(
                    "claim at {:#x} belongs to dead handle {handle}",
                    b.offset
                ));
            }
        }
        let mut spans: Vec<(u64, u64)> = Vec::new();
        for m in &self.mappings {
            if !self.contexts.contains_key(&m.handle) {
                return Err(format!(
                    "mapping at {:#x} of dead handle {}",
                    m.phys, m.handle
                ));
            }
            let Some(b) = self.alloc.containing(m.offset) else {
                return Err(format!("mapping at {:#x} outside the area", m.offset));
            };
            if b.owner != BlockOwner::Guest || m.offset + m.size > b.offset + b.size {
                return Err(format!(
                    "mapping {:#x}+{:#x} is not inside one guest block",
                    m.offset, m.size
                ));
            }
            spans.push((m.offset, m.size));
        }
        spans.sort_unstable();
        for w in spans.windows(2) {
            if w[0].0 + w[0].1 > w[1].0 {
                return Err(format!(
                    "mappings at {:#x} and {:#x} overlap",
                    w[0].0, w[1].0
                ));
            }
        }
        Ok(())
    }

    // ── tracing helpers ────────────────────────────────────────────────

    fn trace_plain(&mut self, access: Access, region: Region, offset: u64, bytes: &[u8]) {
        if !self.trace.enabled() {
            return;
        }
        let decoded = match region {
            Region::Config => {
                let name = config_space::field_name(offset as usize);
                if name.is_empty() {
                    String::new()
                } else {
                    name.to_string()
                }
            }
            _ => String::new(),
        };
        let ev = RegAccess {
            access,
            space: region.space(),
            offset,
            width: bytes.len() as u32,
            reg: None,
            value: le_value(bytes),
            decoded,
            handle: self.regs.handle,
            status: self.regs.status,
        };
        self.trace.emit(DeviceEvent::Reg(ev));
    }

    fn trace_reg(
        &mut self,
        access: Access,
        offset: u64,
        width: usize,
        reg: Option<Register>,
        value: u64,
        decoded: String,
    ) {
        let ev = RegAccess {
            access,
            space: Space::Bar0,
            offset,
            width: width as u32,
            reg,
            value,
            decoded,
            handle: self.regs.handle,
            status: self.regs.status,
        };
        self.trace.emit(DeviceEvent::Reg(ev));
    }

    fn trace_fault(&mut self, f: &Fired) {
        self.counters.faults += 1;
        if self.trace.enabled() {
            self.trace.emit(DeviceEvent::Fault(FaultFired {
                rule: f.rule,
                trigger: f.trigger.name().to_string(),
                occurrence: f.occurrence,
                action: f.action.describe(),
            }));
        }
    }

    fn trace_state(&mut self) {
        if self.trace.enabled() {
            let s = self.state();
            self.trace.emit(DeviceEvent::State(s));
        }
    }

    // ── BAR0 ───────────────────────────────────────────────────────────

    /// A fault on "any register access", checked before the access.
    fn access_fault(&mut self) -> Effects {
        let mut fx = Effects::default();
        if let Some(f) = self.faults.observe(Trigger::Access) {
            self.trace_fault(&f);
            match f.action {
                FaultAction::Delay { ms } => fx.delay = Some(Duration::from_millis(ms)),
                FaultAction::DropConnection => fx.disconnect = true,
                // Validation keeps other actions off `access`.
                _ => {}
            }
        }
        fx
    }

    fn bar0_read(&mut self, offset: u64, buf: &mut [u8]) -> Effects {
        let fx = self.access_fault();
        if fx.disconnect {
            buf.fill(0);
            return fx;
        }
        match (buf.len(), offset % 4) {
            (4, 0) => {
                let v = self.read_reg(offset);
                buf.copy_from_slice(&v.to_le_bytes());
            }
            (8, 0) => {
                // A 64-bit access is two 32-bit ones, low half first, as
                // QEMU's memory core would split it for the emulator.
                let lo = self.read_reg(offset);
                let hi = self.read_reg(offset + 4);
                buf[..4].copy_from_slice(&lo.to_le_bytes());
                buf[4..].copy_from_slice(&hi.to_le_bytes());
            }
            (width, _) => {
                buf.fill(0);
                self.counters.reads += 1;
                self.counters.ignored += 1;
                if self.trace.enabled() {
                    let d = format!(
                        "ignored: {width}-byte read at {offset:#x} (registers are 32-bit, aligned)"
                    );
                    self.trace_reg(Access::Read, offset, width, None, 0, d);
                }
            }
        }
        fx
    }

    fn bar0_write(&mut self, offset: u64, data: &[u8], ram: &dyn GuestRam) -> Effects {
        let mut fx = self.access_fault();
        if fx.disconnect {
            return fx;
        }
        match (data.len(), offset % 4) {
            (4, 0) => {
                let v = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                fx.merge(self.write_reg(offset, v, ram));
            }
            (8, 0) => {
                let lo = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                let hi = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
                fx.merge(self.write_reg(offset, lo, ram));
                if !fx.disconnect {
                    fx.merge(self.write_reg(offset + 4, hi, ram));
                }
            }
            (width, _) => {
                self.counters.writes += 1;
                self.counters.ignored += 1;
                if self.trace.enabled() {
                    let d = format!(
                        "ignored: {width}-byte write at {offset:#x} (registers are 32-bit, aligned)"
                    );
                    self.trace_reg(Access::Write, offset, width, None, le_value(data), d);
                }
            }
        }
        fx
    }

    fn read_reg(&mut self, offset: u64) -> u32 {
        self.counters.reads += 1;
        let reg = Register::at(offset);
        let r = &self.regs;
        let value = match reg {
            Some(Register::Command) | Some(Register::PingWithData) | None => 0,
            Some(Register::Status) => r.status,
            Some(Register::GuestPageSize) => r.guest_page_size,
            Some(Register::BlockSizeLow) => r.size_lo,
            Some(Register::BlockSizeHigh) => r.size_hi,
            Some(Register::BlockOffsetLow) => r.offset_lo,
            Some(Register::BlockOffsetHigh) => r.offset_hi,
            Some(Register::Ping) => r.ping,
            Some(Register::PingInfoAddrLow) => r.ping_info_lo,
            Some(Register::PingInfoAddrHigh) => r.ping_info_hi,
            Some(Register::Handle) => r.handle,
            Some(Register::PhysStartLow) => r.phys_lo,
            Some(Register::PhysStartHigh) => r.phys_hi,
        };
        if reg.is_none() {
            self.counters.ignored += 1;
        }
        if self.trace.enabled() {
            let decoded = self.decode_read(reg, offset, value);
            self.trace_reg(Access::Read, offset, 4, reg, u64::from(value), decoded);
        }
        value
    }

    fn decode_read(&self, reg: Option<Register>, offset: u64, value: u32) -> String {
        let r = &self.regs;
        match reg {
            None => format!("ignored: no register at {offset:#x}"),
            Some(Register::Status) if value == 0 => "ok".into(),
            Some(Register::Status) => errno::describe(value),
            Some(Register::Command) | Some(Register::PingWithData) => "write-only, reads 0".into(),
            Some(Register::Handle) if value == INVALID_HANDLE => "invalid handle".into(),
            Some(Register::Handle) => format!("handle {value}"),
            Some(Register::BlockSizeLow) | Some(Register::BlockSizeHigh) => {
                format!("size {:#x}", r.block_size())
            }
            Some(Register::BlockOffsetLow) | Some(Register::BlockOffsetHigh) => {
                format!("offset {:#x}", r.block_offset())
            }
            Some(Register::PingInfoAddrLow) | Some(Register::PingInfoAddrHigh) => {
                format!("ping info {:#x}", r.ping_info_addr())
            }
            Some(Register::PhysStartLow) | Some(Register::PhysStartHigh) => {
                format!("phys start {:#x}", r.phys_start())
            }
            Some(Register::GuestPageSize) => format!("page size {value}"),
            Some(Register::Ping) => format!("last ping {value}"),
        }
    }

    fn write_reg(&mut self, offset: u64, value: u32, ram: &dyn GuestRam) -> Effects {
        self.counters.writes += 1;
        let reg = Register::at(offset);
        let plain = |dev: &mut Device, decoded: &dyn Fn(&Regs) -> String| {
            if dev.trace.enabled() {
                let d = decoded(&dev.regs);
                dev.trace_reg(Access::Write, offset, 4, reg, u64::from(value), d);
            }
        };
        match reg {
            Some(Register::Command) => return self.command(offset, value),
            Some(Register::Ping) => {
                self.regs.ping = value;
                return self.ping(offset, Register::Ping, value, ram);
            }
            Some(Register::PingWithData) => {
                return self.ping(offset, Register::PingWithData, value, ram);
            }
            Some(Register::Status) => {
                self.counters.ignored += 1;
                plain(self, &|_| "ignored: STATUS is read-only".into());
            }
            Some(Register::GuestPageSize) => {
                self.regs.guest_page_size = value;
                plain(self, &|r| format!("page size {}", r.guest_page_size));
            }
            Some(Register::BlockSizeLow) => {
                self.regs.size_lo = value;
                plain(self, &|r| format!("size {:#x}", r.block_size()));
            }
            Some(Register::BlockSizeHigh) => {
                self.regs.size_hi = value;
                plain(self, &|r| format!("size {:#x}", r.block_size()));
            }
            Some(Register::BlockOffsetLow) => {
                self.regs.offset_lo = value;
                plain(self, &|r| format!("offset {:#x}", r.block_offset()));
            }
            Some(Register::BlockOffsetHigh) => {
                self.regs.offset_hi = value;
                plain(self, &|r| format!("offset {:#x}", r.block_offset()));
            }
            Some(Register::PingInfoAddrLow) => {
                self.regs.ping_info_lo = value;
                plain(self, &|r| format!("ping info {:#x}", r.ping_info_addr()));
            }
            Some(Register::PingInfoAddrHigh) => {
                self.regs.ping_info_hi = value;
                plain(self, &|r| format!("ping info {:#x}", r.ping_info_addr()));
            }
            Some(Register::Handle) => {
                self.regs.handle = value;
                plain(self, &|r| format!("handle {}", r.handle));
            }
            Some(Register::PhysStartLow) => {
                self.regs.phys_lo = value;
                plain(self, &|r| format!("phys start {:#x}", r.phys_start()));
            }
            Some(Register::PhysStartHigh) => {
                self.regs.phys_hi = value;
                plain(self, &|r| format!("phys start {:#x}", r.phys_start()));
            }
            None => {
                self.counters.ignored += 1;
                plain(self, &|_| format!("ignored: no register at {offset:#x}"));
            }
        }
        Effects::default()
    }

    // ── commands ───────────────────────────────────────────────────────

    fn command(&mut self, offset: u64, code: u32) -> Effects {
        let kind = CommandKind::from_code(code);
        let trigger = match kind {
            CommandKind::AllocateBlock => Some(Trigger::AllocateBlock),
            CommandKind::DeallocateBlock => Some(Trigger::DeallocateBlock),
            CommandKind::GenHandle => Some(Trigger::GenHandle),
            CommandKind::DestroyHandle => Some(Trigger::DestroyHandle),
            CommandKind::TellPingInfoAddr => Some(Trigger::TellPingInfoAddr),
            CommandKind::Unknown => None,
        };
        let fired = trigger.and_then(|t| self.faults.observe(t));
        let mut fx = Effects::default();
        let mut corrupt = None;
        let outcome = match fired.map(|f| f.action) {
            Some(FaultAction::DropConnection) => {
                fx.disconnect = true;
                Outcome {
                    status: self.regs.status,
                    decoded: "not executed: the connection is dropped".into(),
                    changed: false,
                }
            }
            Some(FaultAction::Fail { errno: e }) => {
                if kind == CommandKind::AllocateBlock {
                    self.regs.set_block_offset(crate::BAD_OFFSET);
                }
                Outcome {
                    status: e.0,
                    decoded: format!("{}: not executed (fault)", errno::describe(e.0)),
                    changed: false,
                }
            }
            Some(FaultAction::InvalidHandle) => {
                self.regs.handle = INVALID_HANDLE;
                Outcome {
                    status: 0,
                    decoded: "handle 0xffffffff (fault: no context created)".into(),
                    changed: false,
                }
            }
            other => {
                if let Some(FaultAction::Delay { ms }) = other {
                    fx.delay = Some(Duration::from_millis(ms));
                }
                if let Some(FaultAction::CorruptEcho { xor }) = other {
                    corrupt = Some(xor);
                }
                match kind {
                    CommandKind::AllocateBlock => self.cmd_allocate(),
                    CommandKind::DeallocateBlock => self.cmd_deallocate(),
                    CommandKind::GenHandle => self.cmd_gen_handle(),
                    CommandKind::DestroyHandle => self.cmd_destroy_handle(),
                    CommandKind::TellPingInfoAddr => self.cmd_tell_ping_info(),
                    CommandKind::Unknown => {
                        Outcome::err(errno::ENOSYS, format!("no command {code}"))
                    }
                }
            }
        };
        let mut outcome = outcome;
        if let Some(xor) = corrupt {
            let addr = self.regs.ping_info_addr() ^ xor;
            (self.regs.ping_info_lo, self.regs.ping_info_hi) = split(addr);
            outcome
                .decoded
                .push_str(&format!("; echo corrupted to {addr:#x} (fault)"));
        }
        if !fx.disconnect {
            self.regs.status = outcome.status;
        }
        let failed = outcome.status != 0
            || matches!(fired.map(|f| f.action), Some(FaultAction::InvalidHandle));
        let count = self.count_for(kind);
        if failed {
            count.failed += 1;
        } else {
            count.ok += 1;
        }
        if self.cfg.irq_on_command && !fx.disconnect {
            fx.irq = true;
        }
        if self.trace.enabled() {
            self.trace_reg(
                Access::Write,
                offset,
                4,
                Some(Register::Command),
                u64::from(code),
                kind.name().to_string(),
            );
        }
        if let Some(f) = &fired {
            self.trace_fault(f);
        }
        if self.trace.enabled() {
            self.trace.emit(DeviceEvent::Command(CommandDone {
                command: kind,
                code,
                handle: self.regs.handle,
                decoded: outcome.decoded,
                status: self.regs.status,
                fault: fired.map(|f| f.action.describe()),
            }));
        }
        if outcome.changed {
            self.trace_state();
        }
        fx
    }

    fn count_for(&mut self, kind: CommandKind) -> &mut OpCount {
        let c = &mut self.counters;
        match kind {
            CommandKind::AllocateBlock => &mut c.allocate_block,
            CommandKind::DeallocateBlock => &mut c.deallocate_block,
            CommandKind::GenHandle => &mut c.gen_handle,
            CommandKind::DestroyHandle => &mut c.destroy_handle,
            CommandKind::TellPingInfoAddr => &mut c.tell_ping_info_addr,
            CommandKind::Unknown => &mut c.unknown_command,
        }
    }

    fn cmd_allocate(&mut self) -> Outcome {
        let asked = self.regs.block_size();
        let ps = self.regs.guest_page_size;
        if asked == 0 {
            return Outcome::err(errno::EINVAL, "size 0".into());
        }
        if ps == 0 {
            return Outcome::err(errno::EINVAL, "GUEST_PAGE_SIZE is 0".into());
        }
        let Some(size) = round_size(asked, ps) else {
            self.regs.set_block_offset(crate::BAD_OFFSET);
            return Outcome::err(
                errno::ENOMEM,
                format!("size {asked:#x} rounds past 64 bits"),
            );
        };
        self.regs.set_block_size(size);
        match self.alloc.allocate(size, BlockOwner::Guest) {
            Some(offset) => {
                self.regs.set_block_offset(offset);
                Outcome::ok(
                    format!("size {asked:#x} → {size:#x} at offset {offset:#x}"),
                    true,
                )
            }
            None => {
                self.regs.set_block_offset(crate::BAD_OFFSET);
                let largest = self.alloc.largest_free();
                Outcome::err(
                    errno::ENOMEM,
                    format!(
                        "no free block of {size:#x} (asked {asked:#x}; largest free {largest:#x})"
                    ),
                )
            }
        }
    }

    fn cmd_deallocate(&mut self) -> Outcome {
        let offset = self.regs.block_offset();
        match self.alloc.free(offset, |o| o == BlockOwner::Guest) {
            Ok(block) => {
                // The emulator runs "deallocation callbacks": host memory
                // backing the block goes with it.
                let before = self.mappings.len();
                let end = block.offset + block.size;
                self.mappings
                    .retain(|m| m.offset < block.offset || m.offset >= end);
                let dropped = before - self.mappings.len();
                let mut d = format!("freed {:#x} bytes at offset {offset:#x}", block.size);
                if dropped > 0 {
                    d.push_str(&format!("; dropped {dropped} host mapping(s)"));
                }
                Outcome::ok(d, true)
            }
            Err(FreeError::NoBlock) => Outcome::err(
                errno::EINVAL,
                format!("no block starts at offset {offset:#x}"),
            ),
            Err(FreeError::AlreadyFree) => Outcome::err(
                errno::EINVAL,
                format!("the block at offset {offset:#x} is free"),
            ),
            Err(FreeError::WrongOwner(owner)) => Outcome::err(
                errno::EINVAL,
                match owner {
                    BlockOwner::Host { handle } => {
                        format!(
                            "offset {offset:#x} is a claim of handle {handle}, not a guest block"
                        )
                    }
                    _ => format!("offset {offset:#x} is not a guest block"),
                },
            ),
        }
    }

    fn cmd_gen_handle(&mut self) -> Outcome {
        if self.contexts.len() >= MAX_HANDLES {
            self.regs.handle = INVALID_HANDLE;
            return Outcome::err(errno::ENOSPC, format!("{MAX_HANDLES} handles are live"));
        }
        // A counter from 1. It skips 0 and 0xffffffff (the driver's "no
        // handle"; the emulator would hand it out after 2^32 opens) and,
        // once it wraps, handles still live.
        let handle = loop {
            let h = self.next_handle;
            self.next_handle = self.next_handle.wrapping_add(1);
            if h != 0 && h != INVALID_HANDLE && !self.contexts.contains_key(&h) {
                break h;
            }
        };
        self.contexts.insert(handle, Context::default());
        self.regs.handle = handle;
        Outcome::ok(format!("handle {handle}"), true)
    }

    fn cmd_destroy_handle(&mut self) -> Outcome {
        let handle = self.regs.handle;
        let Some(ctx) = self.contexts.remove(&handle) else {
            return Outcome::err(errno::EINVAL, format!("no handle {handle}"));
        };
        let claims = self.alloc.owned_by(BlockOwner::Host { handle });
        for off in &claims {
            let _ = self.alloc.free(*off, |_| true);
        }
        let before = self.mappings.len();
        self.mappings.retain(|m| m.handle != handle);
        let dropped = before - self.mappings.len();
        let mut d = format!("handle {handle} destroyed");
        if let Some(s) = ctx.service {
            d.push_str(&format!(" ({})", services::name(s)));
        }
        if !claims.is_empty() {
            d.push_str(&format!("; freed {} claim(s)", claims.len()));
        }
        if dropped > 0 {
            d.push_str(&format!("; dropped {dropped} host mapping(s)"));
        }
        Outcome::ok(d, true)
    }

    fn cmd_tell_ping_info(&mut self) -> Outcome {
        let handle = self.regs.handle;
        let addr = self.regs.ping_info_addr();
        match self.contexts.get_mut(&handle) {
            Some(ctx) => {
                ctx.ping_page = Some(addr);
                Outcome::ok(format!("handle {handle} ping page {addr:#x}"), true)
            }
            None => Outcome::err(errno::EINVAL, format!("no handle {handle}")),
        }
    }

    // ── pings ──────────────────────────────────────────────────────────

    fn ping(&mut self, offset: u64, reg: Register, handle: u32, ram: &dyn GuestRam) -> Effects {
        let with_data = reg == Register::PingWithData;
        let trigger = if with_data {
            Trigger::PingWithData
        } else {
            Trigger::Ping
        };
        let fired = self.faults.observe(trigger);
        let mut fx = Effects::default();
        match fired.map(|f| f.action) {
            Some(FaultAction::Delay { ms }) => fx.delay = Some(Duration::from_millis(ms)),
            Some(FaultAction::DropConnection) => fx.disconnect = true,
            _ => {}
        }
        let mut done = PingDone {
            handle,
            with_data,
            service: None,
            page: None,
            request: None,
            reply: None,
            decoded: String::new(),
            error: None,
            fault: fired.map(|f| f.action.describe()),
        };
        let mut changed = false;
        if fx.disconnect {
            done.decoded = "not served: the connection is dropped".into();
        } else {
            changed = self.serve_ping(handle, with_data, ram, &mut done);
        }
        let count = if with_data {
            &mut self.counters.ping_with_data
        } else {
            &mut self.counters.ping
        };
        if done.error.is_some() || fx.disconnect {
            count.failed += 1;
        } else {
            count.ok += 1;
        }
        if self.trace.enabled() {
            self.trace_reg(
                Access::Write,
                offset,
                4,
                Some(reg),
                u64::from(handle),
                format!("ping handle {handle}"),
            );
        }
        if let Some(f) = &fired {
            self.trace_fault(f);
        }
        if self.trace.enabled() {
            self.trace.emit(DeviceEvent::Ping(done));
        }
        if changed {
            self.trace_state();
        }
        fx
    }

    /// Read the page, run the service, write the page back. True when the
    /// device's state changed.
    fn serve_ping(
        &mut self,
        handle: u32,
        with_data: bool,
        ram: &dyn GuestRam,
        done: &mut PingDone,
    ) -> bool {
        let Some(ctx) = self.contexts.get(&handle) else {
            done.error = Some(format!("no handle {handle}"));
            return false;
        };
        done.service = ctx.service;
        let Some(page) = ctx.ping_page else {
            done.error = Some(format!(
                "handle {handle} has no ping page (TELL_PING_INFO_ADDR first)"
            ));
            return false;
        };
        done.page = Some(page);
        let mut header = [0u8; PING_INFO_LEN];
        if let Err(e) = ram.dma_read(page, &mut header) {
            done.error = Some(format!("cannot read the ping page: {e}"));
            return false;
        }
        let request = PingInfo::decode(&header);
        done.request = Some(request);
        let mut reply = request;
        let mut data = Vec::new();
        let mut changed = false;
        if with_data && request.data_size > PING_DATA_MAX as u64 {
            reply.metadata = REPLY_ERR;
            done.decoded = format!(
                "data_size {} does not fit in the ping page (at most {PING_DATA_MAX})",
                request.data_size
            );
        } else {
            if with_data {
                data = vec![0u8; request.data_size as usize];
                let at = page + PING_INFO_LEN as u64;
                if let Err(e) = ram.dma_read(at, &mut data) {
                    done.error = Some(format!("cannot read the ping data: {e}"));
                    return false;
                }
            }
            let service = self.contexts.get(&handle).and_then(|c| c.service);
            match service {
                None => {
                    let chosen = services::for_metadata(request.metadata);
                    if let Some(c) = self.contexts.get_mut(&handle) {
                        c.service = chosen;
                    }
                    match chosen {
                        Some(s) => {
                            reply.metadata = REPLY_OK;
                            done.decoded = format!("bound to {}", services::name(s));
                            changed = true;
                        }
                        None => {
                            reply.metadata = REPLY_ERR;
                            done.decoded = format!(
                                "no service {} (echo {}, host memory allocator {}, shared slots {})",
                                request.metadata,
                                services::ECHO,
                                services::HOST_MEMORY_ALLOCATOR,
                                services::SHARED_SLOTS
                            );
                        }
                    }
                }
                Some(ServiceKind::Echo) => {
                    let seq = self
                        .contexts
                        .get_mut(&handle)
                        .map(|c| {
                            c.served = c.served.wrapping_add(1);
                            c.served
                        })
                        .unwrap_or(0);
                    services::echo(&mut reply, &mut data, seq);
                    done.decoded = format!(
                        "echo #{seq}: metadata {:#x} → {:#x}",
                        request.metadata, reply.metadata
                    );
                }
                Some(ServiceKind::HostMemoryAllocator) => {
                    let (ok, d) = self.serve_host_memory(handle, &request);
                    reply.metadata = if ok { REPLY_OK } else { REPLY_ERR };
                    changed = ok;
                    done.decoded = d;
                }
                Some(ServiceKind::SharedSlots) => {
                    let (ok, d) = self.serve_shared_slots(handle, &request, &mut reply);
                    reply.metadata = if ok { REPLY_OK } else { REPLY_ERR };
                    changed = ok;
                    done.decoded = d;
                }
            }
        }
        if let Some(c) = self.contexts.get_mut(&handle) {
            c.pings += 1;
            done.service = c.service;
        }
        if let Err(e) = ram.dma_write(page, &reply.encode()) {
            done.error = Some(format!("cannot write the ping page back: {e}"));
            return changed;
        }
        if with_data
            && !data.is_empty()
            && let Err(e) = ram.dma_write(page + PING_INFO_LEN as u64, &data)
        {
            done.error = Some(format!("cannot write the ping data back: {e}"));
        }
        done.reply = Some(reply);
        changed
    }

    /// Host memory allocator: back (op 1) or release (op 2) guest memory
    /// inside a block the guest allocated.
    fn serve_host_memory(&mut self, handle: u32, req: &PingInfo) -> (bool, String) {
        let phys_start = self.regs.phys_start();
        match req.metadata {
            OP_ALLOCATE => {
                let (phys, size) = (req.offset, req.size);
                let fail = |why: String| (false, format!("allocate {phys:#x}+{size:#x}: {why}"));
                if size == 0 {
                    return fail("size 0".into());
                }
                let Some(rel) = phys.checked_sub(phys_start) else {
                    return fail(format!(
                        "below the shared area (phys start {phys_start:#x})"
                    ));
                };
                let Some(end) = rel.checked_add(size).filter(|&e| e <= self.cfg.bar1_size) else {
                    return fail("runs past the shared area".into());
                };
                match self.alloc.containing(rel) {
                    Some(b) if b.owner == BlockOwner::Guest && end <= b.offset + b.size => {}
                    _ => return fail("not inside one block the guest allocated".into()),
                }
                if self
                    .mappings
                    .iter()
                    .any(|m| m.offset < end && rel < m.offset + m.size)
                {
                    return fail("overlaps host memory already mapped".into());
                }
                if self.mappings.len() >= MAX_MAPPINGS {
                    return fail(format!("{MAX_MAPPINGS} mappings exist"));
                }
                self.mappings.push(Mapping {
                    handle,
                    offset: rel,
                    phys,
                    size,
                });
                (true, format!("backed {phys:#x}+{size:#x} with host memory"))
            }
            OP_FREE => {
                let phys = req.offset;
                match self
                    .mappings
                    .iter()
                    .position(|m| m.handle == handle && m.phys == phys)
                {
                    Some(i) => {
                        let m = self.mappings.remove(i);
                        (
                            true,
                            format!("released host memory at {phys:#x}+{:#x}", m.size),
                        )
                    }
                    None => (
                        false,
                        format!("release {phys:#x}: not mapped by handle {handle}"),
                    ),
                }
            }
            op => (
                false,
                format!("unknown operation {op} (1 allocate, 2 release)"),
            ),
        }
    }

    /// Shared slots: carve (op 1) or return (op 2) an area of the shared BAR
    /// for this context; offsets are relative to the shared area.
    fn serve_shared_slots(
        &mut self,
        handle: u32,
        req: &PingInfo,
        reply: &mut PingInfo,
    ) -> (bool, String) {
        let owner = BlockOwner::Host { handle };
        match req.metadata {
            OP_ALLOCATE => {
                let ps = match self.regs.guest_page_size {
                    0 => DEFAULT_GUEST_PAGE_SIZE,
                    p => p,
                };
                let size = req.size;
                let rounded = (size != 0)
                    .then(|| size.checked_next_multiple_of(u64::from(ps)))
                    .flatten();
                let Some(rounded) = rounded else {
                    return (false, format!("claim of {size:#x} bytes: bad size"));
                };
                match self.alloc.allocate(rounded, owner) {
                    Some(off) => {
                        self.shared.zero(off, rounded);
                        reply.offset = off;
                        reply.size = rounded;
                        (true, format!("claim {rounded:#x} bytes at offset {off:#x}"))
                    }
                    None => (false, format!("claim of {rounded:#x} bytes: no room")),
                }
            }
            OP_FREE => {
                // Like every offset the driver sends, this one has the
                // shared area's physical start added.
                let phys = req.offset;
                let Some(off) = phys.checked_sub(self.regs.phys_start()) else {
                    return (false, format!("return {phys:#x}: below the shared area"));
                };
                match self.alloc.free(off, |o| o == owner) {
                    Ok(b) => (
                        true,
                        format!("returned claim of {:#x} bytes at offset {off:#x}", b.size),
                    ),
                    Err(_) => (
                        false,
                        format!("return offset {off:#x}: not a claim of handle {handle}"),
                    ),
                }
            }
            op => (false, format!("unknown operation {op} (1 claim, 2 return)")),
        }
    }
}

/// The first (up to) 8 bytes, little-endian.
fn le_value(b: &[u8]) -> u64 {
    let mut x = [0u8; 8];
    let n = b.len().min(8);
    x[..n].copy_from_slice(&b[..n]);
    u64::from_le_bytes(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoTrace;

    #[test]
    fn the_handle_counter_wraps_past_reserved_and_live_handles() {
        let mut d = Device::new(DeviceConfig::default(), Box::new(NoTrace)).unwrap();
        d.next_handle = u32::MAX - 1;
        let gen_handle = |d: &mut Device| {
            let o = d.cmd_gen_handle();
            assert_eq!(o.status, 0);
            d.regs.handle
        };
        assert_eq!(gen_handle(&mut d), u32::MAX - 1);
        assert_eq!(gen_handle(&mut d), 1, "skips 0xffffffff and 0");
        assert_eq!(gen_handle(&mut d), 2);
        d.next_handle = 1;
        assert_eq!(gen_handle(&mut d), 3, "skips live 1 and 2");
        d.check_invariants().unwrap();
    }

    #[test]
    fn effects_merge_adds_delays() {
        let mut a = Effects {
            delay: Some(Duration::from_millis(2)),
            ..Default::default()
        };
        a.merge(Effects {
            delay: Some(Duration::from_millis(3)),
            disconnect: true,
            irq: false,
        });
        assert_eq!(a.delay, Some(Duration::from_millis(5)));
        assert!(a.disconnect);
    }
}
