//! A test rig: the device, some guest RAM, and the events it emitted.

#![allow(dead_code)]

use gasbench_device::{Collect, Device, DeviceConfig, Effects, Region};
use gasbench_events::device::{DeviceEvent, Register};
use vm_memory::{GuestAddress, GuestMemoryMmap};

/// Guest RAM in tests: 1 MiB at 1 MiB.
pub const RAM_BASE: u64 = 0x10_0000;
pub const RAM_SIZE: usize = 0x10_0000;
/// Where the tests pretend BAR1 was placed.
pub const PHYS_START: u64 = 0x8_0000_0000;

pub const ALLOCATE_BLOCK: u32 = 1;
pub const DEALLOCATE_BLOCK: u32 = 2;
pub const GEN_HANDLE: u32 = 3;
pub const DESTROY_HANDLE: u32 = 4;
pub const TELL_PING_INFO_ADDR: u32 = 5;

pub struct Rig {
    pub dev: Device,
    pub ram: GuestMemoryMmap,
    pub events: Collect,
}

impl Rig {
    pub fn new(bar1_size: u64) -> Rig {
        Rig::with_config(DeviceConfig {
            bar1_size,
            ..Default::default()
        })
    }

    pub fn with_config(cfg: DeviceConfig) -> Rig {
        let events = Collect::default();
        let dev = Device::new(cfg, Box::new(events.clone())).unwrap();
        let ram = GuestMemoryMmap::from_ranges(&[(GuestAddress(RAM_BASE), RAM_SIZE)]).unwrap();
        Rig { dev, ram, events }
    }

    pub fn write(&mut self, reg: Register, v: u32) -> Effects {
        self.dev
            .write(Region::Bar0, reg.offset(), &v.to_le_bytes(), &self.ram)
            .unwrap()
    }

    pub fn read(&mut self, reg: Register) -> u32 {
        let mut b = [0u8; 4];
        let fx = self.dev.read(Region::Bar0, reg.offset(), &mut b).unwrap();
        assert_eq!(fx, Effects::default());
        u32::from_le_bytes(b)
    }

    pub fn write64(&mut self, lo: Register, hi: Register, v: u64) {
        let _ = self.write(lo, v as u32);
        let _ = self.write(hi, (v >> 32) as u32);
    }

    pub fn read64(&mut self, lo: Register, hi: Register) -> u64 {
        u64::from(self.read(lo)) | (u64::from(self.read(hi)) << 32)
    }

    /// Write COMMAND, return STATUS.
    pub fn command(&mut self, code: u32) -> u32 {
        let _ = self.write(Register::Command, code);
        self.read(Register::Status)
    }

    pub fn gen_handle(&mut self) -> u32 {
        assert_eq!(self.command(GEN_HANDLE), 0);
        self.read(Register::Handle)
    }

    /// ALLOCATE_BLOCK: (status, offset, size).
    pub fn allocate(&mut self, size: u64) -> (u32, u64, u64) {
        self.write64(Register::BlockSizeLow, Register::BlockSizeHigh, size);
        let status = self.command(ALLOCATE_BLOCK);
        let off = self.read64(Register::BlockOffsetLow, Register::BlockOffsetHigh);
        let size = self.read64(Register::BlockSizeLow, Register::BlockSizeHigh);
        (status, off, size)
    }

    pub fn deallocate(&mut self, offset: u64) -> u32 {
        self.write64(Register::BlockOffsetLow, Register::BlockOffsetHigh, offset);
        self.command(DEALLOCATE_BLOCK)
    }

    pub fn tell(&mut self, handle: u32, page: u64) -> u32 {
        let _ = self.write(Register::Handle, handle);
        self.write64(Register::PingInfoAddrLow, Register::PingInfoAddrHigh, page);
        self.command(TELL_PING_INFO_ADDR)
    }

    pub fn destroy(&mut self, handle: u32) -> u32 {
        let _ = self.write(Register::Handle, handle);
        self.command(DESTROY_HANDLE)
    }

    pub fn events(&self) -> Vec<DeviceEvent> {
        self.events.take()
    }
}
