//! PCI configuration space as data: 256 bytes of registers plus a mask of
//! the bits the guest may write. BAR sizing falls out of the masks (a BAR's
//! low bits are read-only zeros, so writing all ones reads back the size).

use crate::{BAR0_SIZE, CLASS_CODE, DEVICE_ID, REVISION, VENDOR_ID};

pub const CONFIG_SIZE: usize = 256;

/// Offsets of the standard type 0 header fields.
pub mod offset {
    pub const VENDOR_ID: usize = 0x00;
    pub const DEVICE_ID: usize = 0x02;
    pub const COMMAND: usize = 0x04;
    pub const STATUS: usize = 0x06;
    pub const REVISION: usize = 0x08;
    pub const CLASS_PROG: usize = 0x09;
    pub const CACHE_LINE: usize = 0x0c;
    pub const LATENCY: usize = 0x0d;
    pub const HEADER_TYPE: usize = 0x0e;
    pub const BAR0: usize = 0x10;
    pub const BAR1: usize = 0x14;
    pub const BAR2: usize = 0x18;
    pub const SUBSYSTEM_VENDOR: usize = 0x2c;
    pub const ROM: usize = 0x30;
    pub const CAP_PTR: usize = 0x34;
    pub const INTERRUPT_LINE: usize = 0x3c;
    pub const INTERRUPT_PIN: usize = 0x3d;
}

/// PCI command register bits the device implements: I/O space, memory
/// space, bus master, parity error response, SERR#, INTx disable.
const COMMAND_WRITABLE: u16 = 0x0001 | 0x0002 | 0x0004 | 0x0040 | 0x0100 | 0x0400;
/// BAR flag bits: memory space, 64-bit (type 0b10), not prefetchable —
/// the Android emulator registers BAR1 this way.
const BAR_MEM_64: u32 = 0x4;

#[derive(Clone, Debug)]
pub struct ConfigSpace {
    regs: [u8; CONFIG_SIZE],
    writable: [u8; CONFIG_SIZE],
    defaults: [u8; CONFIG_SIZE],
}

impl ConfigSpace {
    /// The header for a device whose BAR1 is `bar1_size` bytes (a power of
    /// two, checked by `DeviceConfig::validate`).
    pub fn new(bar1_size: u64) -> Self {
        let mut regs = [0u8; CONFIG_SIZE];
        let mut writable = [0u8; CONFIG_SIZE];
        put16(&mut regs, offset::VENDOR_ID, VENDOR_ID);
        put16(&mut regs, offset::DEVICE_ID, DEVICE_ID);
        put16(&mut writable, offset::COMMAND, COMMAND_WRITABLE);
        regs[offset::REVISION] = REVISION;
        regs[offset::CLASS_PROG] = (CLASS_CODE & 0xff) as u8;
        regs[offset::CLASS_PROG + 1] = ((CLASS_CODE >> 8) & 0xff) as u8;
        regs[offset::CLASS_PROG + 2] = ((CLASS_CODE >> 16) & 0xff) as u8;
        writable[offset::CACHE_LINE] = 0xff;
        writable[offset::LATENCY] = 0xff;
        // BAR0: 32-bit memory, BAR0_SIZE bytes.
        put32(&mut writable, offset::BAR0, !(BAR0_SIZE as u32 - 1));
        // BAR1 (+ BAR2 as its upper half): 64-bit memory.
        let mask = !(bar1_size.max(16) - 1);
        put32(&mut regs, offset::BAR1, BAR_MEM_64);
        put32(&mut writable, offset::BAR1, (mask as u32) & !0xf);
        put32(&mut writable, offset::BAR2, (mask >> 32) as u32);
        writable[offset::INTERRUPT_LINE] = 0xff;
        regs[offset::INTERRUPT_PIN] = 1; // INTA#
        ConfigSpace {
            regs,
            writable,
            defaults: regs,
        }
    }

    /// Copy `buf.len()` bytes from `offset`. The caller checks bounds.
    pub fn read(&self, offset: usize, buf: &mut [u8]) {
        buf.copy_from_slice(&self.regs[offset..offset + buf.len()]);
    }

    /// Write through the mask: read-only bits keep their value.
    pub fn write(&mut self, offset: usize, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            let at = offset + i;
            let mask = self.writable[at];
            self.regs[at] = (self.regs[at] & !mask) | (b & mask);
        }
    }

    pub fn reset(&mut self) {
        self.regs = self.defaults;
    }

    pub fn command(&self) -> u16 {
        u16::from_le_bytes([self.regs[offset::COMMAND], self.regs[offset::COMMAND + 1]])
    }

    /// BAR1's programmed base address (64-bit, flags masked off).
    pub fn bar1_address(&self) -> u64 {
        let lo = get32(&self.regs, offset::BAR1) & !0xf;
        let hi = get32(&self.regs, offset::BAR2);
        u64::from(lo) | (u64::from(hi) << 32)
    }

    pub fn bar0_address(&self) -> u32 {
        get32(&self.regs, offset::BAR0) & !0xf
    }
}

/// The header field an offset falls in, for trace decoding.
pub fn field_name(at: usize) -> &'static str {
    match at {
        0x00..=0x01 => "VENDOR_ID",
        0x02..=0x03 => "DEVICE_ID",
        0x04..=0x05 => "COMMAND",
        0x06..=0x07 => "STATUS",
        0x08 => "REVISION",
        0x09..=0x0b => "CLASS",
        0x0c => "CACHE_LINE_SIZE",
        0x0d => "LATENCY_TIMER",
        0x0e => "HEADER_TYPE",
        0x0f => "BIST",
        0x10..=0x13 => "BAR0",
        0x14..=0x17 => "BAR1",
        0x18..=0x1b => "BAR2",
        0x1c..=0x1f => "BAR3",
        0x20..=0x23 => "BAR4",
        0x24..=0x27 => "BAR5",
        0x28..=0x2b => "CARDBUS_CIS",
        0x2c..=0x2d => "SUBSYSTEM_VENDOR_ID",
        0x2e..=0x2f => "SUBSYSTEM_ID",
        0x30..=0x33 => "ROM_ADDRESS",
        0x34 => "CAPABILITIES_PTR",
        0x3c => "INTERRUPT_LINE",
        0x3d => "INTERRUPT_PIN",
        0x3e => "MIN_GNT",
        0x3f => "MAX_LAT",
        _ => "",
    }
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn get32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read32(c: &ConfigSpace, at: usize) -> u32 {
        let mut b = [0u8; 4];
        c.read(at, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn identity_fields() {
        let c = ConfigSpace::new(16 << 20);
        assert_eq!(read32(&c, 0), 0xf153_607d);
        let class_rev = read32(&c, 8);
        assert_eq!(class_rev & 0xff, 1, "revision");
        assert_eq!(class_rev >> 8, CLASS_CODE);
        assert_eq!(read32(&c, 0x3c) >> 8 & 0xff, 1, "interrupt pin A");
        assert_eq!(read32(&c, 0x34) & 0xff, 0, "no capability list");
    }

    #[test]
    fn bar_sizing_reads_back_the_size() {
        let size = 32u64 << 20;
        let mut c = ConfigSpace::new(size);
        for at in [0x10, 0x14, 0x18, 0x1c, 0x20, 0x24, 0x30] {
            c.write(at, &u32::MAX.to_le_bytes());
        }
        assert_eq!(read32(&c, 0x10), 0xffff_f000, "BAR0: 4 KiB, 32-bit");
        let lo = read32(&c, 0x14);
        let hi = read32(&c, 0x18);
        assert_eq!(lo & 0xf, 0x4, "BAR1: memory, 64-bit, not prefetchable");
        let mask = (u64::from(hi) << 32) | u64::from(lo & !0xf);
        assert_eq!((!mask).wrapping_add(1), size);
        for at in [0x1c, 0x20, 0x24, 0x30] {
            assert_eq!(read32(&c, at), 0, "unused BAR/ROM at {at:#x}");
        }
        // Program addresses, then reset restores the defaults.
        c.write(0x14, &0xfe00_0000u32.to_le_bytes());
        c.write(0x18, &0x1u32.to_le_bytes());
        assert_eq!(c.bar1_address(), 0x1_fe00_0000);
        c.reset();
        assert_eq!(c.bar1_address(), 0);
    }

    #[test]
    fn read_only_fields_ignore_writes() {
        let mut c = ConfigSpace::new(1 << 20);
        c.write(0, &[0xff; 16]);
        assert_eq!(read32(&c, 0), 0xf153_607d);
        assert_eq!(c.command(), COMMAND_WRITABLE);
        c.write(4, &[0, 0]);
        assert_eq!(c.command(), 0);
        assert_eq!(field_name(0x15), "BAR1");
        assert_eq!(field_name(0x80), "");
    }
}
