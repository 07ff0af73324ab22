//! The posted Rust driver's register sequences (RFC v3 6/6), replayed
//! against the model: the driver must work, and fault plans must drive
//! its error paths.

mod common;

use common::*;
use gasbench_abi::goldfish::{PING_INFO_LEN, PingInfo};
use gasbench_device::services::{
    ECHO, HOST_MEMORY_ALLOCATOR, OP_ALLOCATE, OP_FREE, REPLY_ERR, SHARED_SLOTS,
};
use gasbench_device::{FaultPlan, GuestRam};
use gasbench_events::device::{Access, BlockOwner, DeviceEvent, Register, Space};

const EINVAL: i32 = 22;
const ENOMEM: i32 = 12;
const PAGE: u64 = 4096;

/// What the driver's `DeviceRuntime` does, register by register.
struct Driver {
    rig: Rig,
    next_page: u64,
}

/// One open file: its handle, ping page and blocks.
struct File {
    handle: u32,
    page: u64,
    blocks: Vec<(u64, u64)>,
}

impl Driver {
    /// probe(): program_host_visible_state().
    fn probe(bar1_size: u64) -> Driver {
        let mut rig = Rig::new(bar1_size);
        let _ = rig.write(Register::GuestPageSize, PAGE as u32);
        rig.write64(Register::PhysStartLow, Register::PhysStartHigh, PHYS_START);
        Driver {
            rig,
            next_page: RAM_BASE,
        }
    }

    /// open(): PingState::new, generate_handle, tell_ping_info_addr; the
    /// ScopeGuard destroys the handle if telling fails.
    fn open(&mut self) -> Result<File, i32> {
        let page = self.next_page;
        self.next_page += PAGE;
        self.rig.ram.dma_write(page, &[0u8; PAGE as usize]).unwrap();
        // generate_handle: COMMAND, then read HANDLE (status not checked).
        let _ = self.rig.write(Register::Command, GEN_HANDLE);
        let handle = self.rig.read(Register::Handle);
        if handle == u32::MAX {
            return Err(EINVAL);
        }
        // tell_ping_info_addr: HANDLE, PING_INFO_ADDR lo/hi, COMMAND, read back.
        let _ = self.rig.write(Register::Handle, handle);
        self.rig
            .write64(Register::PingInfoAddrLow, Register::PingInfoAddrHigh, page);
        let _ = self.rig.write(Register::Command, TELL_PING_INFO_ADDR);
        let returned = self
            .rig
            .read64(Register::PingInfoAddrLow, Register::PingInfoAddrHigh);
        if returned != page {
            self.destroy_handle(handle);
            return Err(EINVAL);
        }
        Ok(File {
            handle,
            page,
            blocks: Vec::new(),
        })
    }

    fn destroy_handle(&mut self, handle: u32) {
        let _ = self.rig.write(Register::Handle, handle);
        let _ = self.rig.write(Register::Command, DESTROY_HANDLE);
    }

    /// run_command_locked: write COMMAND, read STATUS, negate.
    fn run_command(&mut self, code: u32) -> Result<(), i32> {
        let _ = self.rig.write(Register::Command, code);
        let status = self.rig.read(Register::Status) as i32;
        if status == 0 { Ok(()) } else { Err(status) }
    }

    fn allocate(&mut self, f: &mut File, size: u64) -> Result<(u64, u64), i32> {
        self.rig
            .write64(Register::BlockSizeLow, Register::BlockSizeHigh, size);
        self.run_command(ALLOCATE_BLOCK)?;
        let offset = self
            .rig
            .read64(Register::BlockOffsetLow, Register::BlockOffsetHigh);
        let size = self
            .rig
            .read64(Register::BlockSizeLow, Register::BlockSizeHigh);
        f.blocks.push((offset, size));
        Ok((offset, size))
    }

    fn deallocate(&mut self, f: &mut File, offset: u64) -> Result<(), i32> {
        let i = f
            .blocks
            .iter()
            .position(|b| b.0 == offset)
            .ok_or(6 /* ENXIO */)?;
        self.rig
            .write64(Register::BlockOffsetLow, Register::BlockOffsetHigh, offset);
        self.run_command(DEALLOCATE_BLOCK)?;
        f.blocks.remove(i);
        Ok(())
    }

    /// ping(): prepare_ping (offset += phys start, zero-filled page),
    /// write PING, finish_ping (read the header back).
    fn ping(&mut self, f: &File, req: PingInfo) -> PingInfo {
        let header = PingInfo {
            offset: req.offset + PHYS_START,
            data_size: 0,
            ..req
        };
        self.rig
            .ram
            .dma_write(f.page, &[0u8; PAGE as usize])
            .unwrap();
        self.rig.ram.dma_write(f.page, &header.encode()).unwrap();
        let _ = self.rig.write(Register::Ping, f.handle);
        let mut back = [0u8; PING_INFO_LEN];
        self.rig.ram.dma_read(f.page, &mut back).unwrap();
        PingInfo::decode(&back)
    }

    /// release(): destroy the handle, then deallocate every block.
    fn release(&mut self, f: File) {
        self.destroy_handle(f.handle);
        for (off, _) in f.blocks {
            self.rig
                .write64(Register::BlockOffsetLow, Register::BlockOffsetHigh, off);
            let _ = self.run_command(DEALLOCATE_BLOCK);
        }
    }

    fn faults(&mut self, toml: &str) {
        self.rig
            .dev
            .set_fault_plan(FaultPlan::from_toml(toml).unwrap());
    }
}

#[test]
fn the_posted_driver_opens_allocates_pings_and_releases() {
    let mut d = Driver::probe(1 << 20);
    let mut f = d.open().unwrap();
    assert_eq!(f.handle, 1);
    let (off, size) = d.allocate(&mut f, 0x1800).unwrap();
    assert_eq!(size, 0x3000, "rounded to cover 0x1800 bytes at any offset");
    assert_eq!(off, (1 << 20) - 0x3000, "carved from the end");

    // First ping binds the echo service; later pings are echoed.
    let bound = d.ping(
        &f,
        PingInfo {
            metadata: ECHO,
            ..Default::default()
        },
    );
    assert_eq!(bound.metadata, 0, "bound");
    let echoed = d.ping(
        &f,
        PingInfo {
            offset: off,
            size: 0x10,
            metadata: 0x1234,
            version: 1,
            ..Default::default()
        },
    );
    assert_eq!(echoed.metadata, !0x1234u64);
    assert_eq!(echoed.wait_flags, 1, "sequence number");
    assert_eq!(
        echoed.offset,
        off + PHYS_START,
        "offset comes back as the driver sent it"
    );
    assert_eq!(echoed.version, 1);

    let s = d.rig.dev.state();
    assert_eq!(s.handles.len(), 1);
    assert_eq!(s.handles[0].ping_page, Some(f.page));
    assert_eq!(s.guest_blocks().count(), 1);

    d.deallocate(&mut f, off).unwrap();
    let (off2, _) = d.allocate(&mut f, 0x3000).unwrap();
    d.release(f);
    let s = d.rig.dev.state();
    assert!(s.is_idle(), "after the last close nothing is held: {s:?}");
    assert_eq!(s.counters.allocate_block.ok, 2);
    assert_eq!(s.counters.deallocate_block.ok, 2);
    assert_eq!(s.counters.ping.ok, 2);
    let _ = off2;
    d.rig.dev.check_invariants().unwrap();
}

#[test]
fn the_trace_shows_opens_register_order() {
    let mut d = Driver::probe(1 << 20);
    d.rig.events();
    d.open().unwrap();
    let regs: Vec<(Access, &'static str)> = d
        .rig
        .events()
        .iter()
        .filter_map(|e| match e {
            DeviceEvent::Reg(r) if r.space == Space::Bar0 => {
                Some((r.access, r.reg.unwrap().name()))
            }
            _ => None,
        })
        .collect();
    use Access::{Read as R, Write as W};
    assert_eq!(
        regs,
        vec![
            (W, "COMMAND"),
            (R, "HANDLE"),
            (W, "HANDLE"),
            (W, "PING_INFO_ADDR_LOW"),
            (W, "PING_INFO_ADDR_HIGH"),
            (W, "COMMAND"),
            (R, "PING_INFO_ADDR_LOW"),
            (R, "PING_INFO_ADDR_HIGH"),
        ]
    );
}

#[test]
fn invalid_handle_at_open_fails_with_einval_and_leaks_nothing() {
    let mut d = Driver::probe(1 << 20);
    d.faults("[[fault]]\non = \"gen_handle\"\naction = \"invalid_handle\"\n");
    assert_eq!(d.open().err(), Some(EINVAL));
    assert!(d.rig.dev.state().is_idle());
    // The next open works.
    let f = d.open().unwrap();
    d.release(f);
    assert!(d.rig.dev.state().is_idle());
    let ev = d.rig.events();
    assert!(
        ev.iter()
            .any(|e| matches!(e, DeviceEvent::Fault(f) if f.trigger == "gen_handle"))
    );
}

#[test]
fn enomem_on_allocate_reaches_the_caller() {
    let mut d = Driver::probe(1 << 20);
    d.faults(
        "[[fault]]\non = \"allocate_block\"\nnth = 2\naction = \"fail\"\nerrno = \"ENOMEM\"\n",
    );
    let mut f = d.open().unwrap();
    d.allocate(&mut f, 0x1000).unwrap();
    assert_eq!(d.allocate(&mut f, 0x1000), Err(ENOMEM));
    assert_eq!(
        d.rig.dev.state().guest_blocks().count(),
        1,
        "the failed one was not allocated"
    );
    d.allocate(&mut f, 0x1000).unwrap();
    // A real ENOMEM too: more than the area holds.
    assert_eq!(d.allocate(&mut f, 2 << 20), Err(ENOMEM));
    d.release(f);
    assert!(d.rig.dev.state().is_idle());
}

#[test]
fn a_corrupted_echo_fails_open_and_the_guard_destroys_the_handle() {
    let mut d = Driver::probe(1 << 20);
    d.faults("[[fault]]\non = \"tell_ping_info_addr\"\naction = \"corrupt_echo\"\nxor = 0x1000\n");
    assert_eq!(d.open().err(), Some(EINVAL));
    let s = d.rig.dev.state();
    assert!(s.is_idle(), "{s:?}");
    assert_eq!(s.counters.destroy_handle.ok, 1);
    assert_eq!(s.counters.faults, 1);
}

#[test]
fn host_memory_allocator_backs_guest_blocks() {
    let mut d = Driver::probe(1 << 20);
    let mut f = d.open().unwrap();
    let (off, size) = d.allocate(&mut f, 0x2000).unwrap();
    assert_eq!(
        d.ping(
            &f,
            PingInfo {
                metadata: HOST_MEMORY_ALLOCATOR,
                ..Default::default()
            }
        )
        .metadata,
        0
    );
    let back = |d: &mut Driver, f: &File, offset: u64, size: u64, op: u64| {
        d.ping(
            f,
            PingInfo {
                offset,
                size,
                metadata: op,
                ..Default::default()
            },
        )
        .metadata
    };
    assert_eq!(back(&mut d, &f, off, size, OP_ALLOCATE), 0);
    assert_eq!(
        back(&mut d, &f, off, 0x1000, OP_ALLOCATE),
        REPLY_ERR,
        "overlaps"
    );
    assert_eq!(
        back(&mut d, &f, 0, 0x1000, OP_ALLOCATE),
        REPLY_ERR,
        "not a guest block"
    );
    assert_eq!(
        back(&mut d, &f, off, size + 1, OP_ALLOCATE),
        REPLY_ERR,
        "past the block"
    );
    assert_eq!(d.rig.dev.state().mappings.len(), 1);
    assert_eq!(d.rig.dev.state().mappings[0].phys, off + PHYS_START);
    assert_eq!(back(&mut d, &f, off, 0, OP_FREE), 0);
    assert_eq!(
        back(&mut d, &f, off, 0, OP_FREE),
        REPLY_ERR,
        "already released"
    );
    // Back it again, then free the block: the mapping goes with it.
    assert_eq!(back(&mut d, &f, off, size, OP_ALLOCATE), 0);
    d.deallocate(&mut f, off).unwrap();
    assert!(d.rig.dev.state().mappings.is_empty());
    d.release(f);
    assert!(d.rig.dev.state().is_idle());
}

#[test]
fn shared_slots_claims_die_with_the_context() {
    let mut d = Driver::probe(1 << 20);
    let f = d.open().unwrap();
    d.ping(
        &f,
        PingInfo {
            metadata: SHARED_SLOTS,
            ..Default::default()
        },
    );
    // The driver adds the phys start to `offset`; allocation ignores it.
    let claim = d.ping(
        &f,
        PingInfo {
            size: 0x1001,
            metadata: OP_ALLOCATE,
            ..Default::default()
        },
    );
    assert_eq!(claim.metadata, 0);
    assert_eq!(claim.size, 0x2000);
    assert_eq!(claim.offset, (1 << 20) - 0x2000, "a shared-area offset");
    let s = d.rig.dev.state();
    assert_eq!(s.claims().count(), 1);
    assert_eq!(
        s.claims().next().unwrap().owner,
        BlockOwner::Host { handle: f.handle }
    );
    // A second context cannot return it; the guest cannot deallocate it.
    let g = d.open().unwrap();
    d.ping(
        &g,
        PingInfo {
            metadata: SHARED_SLOTS,
            ..Default::default()
        },
    );
    let other = d.ping(
        &g,
        PingInfo {
            offset: claim.offset,
            metadata: OP_FREE,
            ..Default::default()
        },
    );
    assert_eq!(other.metadata, REPLY_ERR);
    // The owner can return it, and claim again.
    let returned = d.ping(
        &f,
        PingInfo {
            offset: claim.offset,
            metadata: OP_FREE,
            ..Default::default()
        },
    );
    assert_eq!(returned.metadata, 0);
    assert_eq!(d.rig.dev.state().claims().count(), 0);
    let claim = d.ping(
        &f,
        PingInfo {
            size: 0x1001,
            metadata: OP_ALLOCATE,
            ..Default::default()
        },
    );
    assert_eq!(claim.metadata, 0);
    assert_eq!(d.rig.deallocate(claim.offset), EINVAL as u32);
    d.release(g);
    d.release(f);
    assert!(
        d.rig.dev.state().is_idle(),
        "the claim was freed with its context"
    );
}
