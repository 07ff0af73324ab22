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

// Children of this module, so they reach the device's private state.
mod commands;
mod pings;

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
