//! Every command and error path, driven through register accesses.

mod common;

use std::time::Duration;

use common::*;
use gasbench_abi::goldfish::{PING_INFO_LEN, PingInfo};
use gasbench_device::services::{ECHO, REPLY_ERR};
use gasbench_device::{
    AccessError, DeviceConfig, Effects, FaultPlan, GuestRam, MAX_HANDLES, NoRam, Region,
};
use gasbench_events::device::{CommandKind, DeviceEvent, Register, ServiceKind, Space};

const EINVAL: u32 = 22;
const ENOMEM: u32 = 12;
const ENOSYS: u32 = 38;
const ENOSPC: u32 = 28;

fn last_command(events: &[DeviceEvent]) -> gasbench_events::device::CommandDone {
    events
        .iter()
        .rev()
        .find_map(|e| match e {
            DeviceEvent::Command(c) => Some(c.clone()),
            _ => None,
        })
        .expect("a command event")
}

#[test]
fn allocate_rounds_carves_and_reports() {
    let mut r = Rig::new(0x10000);
    assert_eq!(r.allocate(1), (0, 0xf000, 0x1000));
    assert_eq!(r.allocate(0x1001), (0, 0xd000, 0x2000));
    let c = last_command(&r.events());
    assert_eq!(c.command, CommandKind::AllocateBlock);
    assert_eq!(c.status, 0);
    assert!(
        c.decoded.contains("0x1001 → 0x2000 at offset 0xd000"),
        "{}",
        c.decoded
    );
    // Size 0: EINVAL, registers untouched.
    let (status, off, size) = r.allocate(0);
    assert_eq!((status, off, size), (EINVAL, 0xd000, 0));
    // Too big: ENOMEM, offset ~0, the rounded size written back.
    let (status, off, size) = r.allocate(0x10000);
    assert_eq!((status, off, size), (ENOMEM, u64::MAX, 0x11000));
    // Rounding past 64 bits: ENOMEM.
    let (status, off, _) = r.allocate(u64::MAX);
    assert_eq!((status, off), (ENOMEM, u64::MAX));
    // A zero page size cannot divide anything: EINVAL.
    let _ = r.write(Register::GuestPageSize, 0);
    assert_eq!(r.allocate(0x10).0, EINVAL);
    // Another page size rounds with it.
    let _ = r.write(Register::GuestPageSize, 0x100);
    assert_eq!(r.allocate(0x101), (0, 0xce00, 0x200));
    r.dev.check_invariants().unwrap();
}

#[test]
fn deallocate_needs_the_exact_offset_and_merges() {
    let mut r = Rig::new(0x8000);
    let a = r.allocate(0x800).1;
    let b = r.allocate(0x800).1;
    assert_eq!((a, b), (0x6000, 0x4000), "0x800 bytes round to 0x2000");
    assert_eq!(r.deallocate(a + 0x10), EINVAL);
    assert!(
        last_command(&r.events())
            .decoded
            .contains("no block starts")
    );
    assert_eq!(r.deallocate(0), EINVAL, "free space is not a block");
    assert!(last_command(&r.events()).decoded.contains("is free"));
    assert_eq!(r.deallocate(a), 0);
    assert_eq!(r.deallocate(a), EINVAL, "twice");
    assert_eq!(r.deallocate(b), 0);
    let s = r.dev.state();
    assert_eq!(s.blocks.len(), 1, "merged back into one free block");
    assert!(s.is_idle());
}

#[test]
fn handles_count_from_one_and_die() {
    let mut r = Rig::new(0x4000);
    assert_eq!(r.gen_handle(), 1);
    assert_eq!(r.gen_handle(), 2);
    assert_eq!(r.destroy(1), 0);
    assert_eq!(r.destroy(1), EINVAL, "already gone");
    assert!(last_command(&r.events()).decoded.contains("no handle 1"));
    assert_eq!(
        r.gen_handle(),
        3,
        "handles are not reused while the counter runs"
    );
    assert_eq!(r.tell(7, RAM_BASE), EINVAL, "telling an unknown handle");
    assert_eq!(r.tell(3, RAM_BASE), 0);
    // The echo of TELL_PING_INFO_ADDR is the address itself.
    assert_eq!(
        r.read64(Register::PingInfoAddrLow, Register::PingInfoAddrHigh),
        RAM_BASE
    );
    let s = r.dev.state();
    let handles: Vec<u32> = s.handles.iter().map(|h| h.handle).collect();
    assert_eq!(handles, vec![2, 3]);
    assert_eq!(s.handles[1].ping_page, Some(RAM_BASE));
    assert_eq!(r.destroy(2), 0);
    assert_eq!(r.destroy(3), 0);
    assert!(r.dev.state().is_idle());
}

#[test]
fn too_many_handles_is_enospc_with_an_invalid_handle() {
    let mut r = Rig::new(0x4000);
    r.dev.set_trace(Box::new(gasbench_device::NoTrace));
    for _ in 0..MAX_HANDLES {
        let _ = r.write(Register::Command, GEN_HANDLE);
    }
    assert_eq!(r.command(GEN_HANDLE), ENOSPC);
    assert_eq!(r.read(Register::Handle), u32::MAX);
    assert_eq!(r.destroy(5), 0);
    assert_eq!(r.command(GEN_HANDLE), 0, "room again");
}

#[test]
fn unknown_commands_are_enosys() {
    let mut r = Rig::new(0x4000);
    for code in [0, 6, 0xffff_ffff] {
        assert_eq!(r.command(code), ENOSYS);
        let c = last_command(&r.events());
        assert_eq!((c.command, c.code), (CommandKind::Unknown, code));
    }
    assert_eq!(r.dev.state().counters.unknown_command.failed, 3);
}

#[test]
fn register_file_semantics() {
    let mut r = Rig::new(0x4000);
    assert_eq!(r.read(Register::GuestPageSize), 4096, "default page size");
    let _ = r.write(Register::Status, 99);
    assert_eq!(r.read(Register::Status), 0, "STATUS is read-only");
    assert_eq!(r.read(Register::Command), 0, "COMMAND is write-only");
    assert_eq!(r.read(Register::PingWithData), 0);
    r.write64(Register::PhysStartLow, Register::PhysStartHigh, PHYS_START);
    assert_eq!(
        r.read64(Register::PhysStartLow, Register::PhysStartHigh),
        PHYS_START
    );
    // PING is readable: the last handle pinged (even an unknown one).
    let _ = r.write(Register::Ping, 42);
    assert_eq!(r.read(Register::Ping), 42);
    // Offsets between and past the registers read 0 and ignore writes.
    let mut b = [0xffu8; 4];
    let _ = r
        .dev
        .write(Region::Bar0, 0x38, &[1, 2, 3, 4], &NoRam)
        .unwrap();
    let _ = r.dev.read(Region::Bar0, 0x38, &mut b).unwrap();
    assert_eq!(b, [0; 4]);
    let _ = r.dev.read(Region::Bar0, 0xffc, &mut b).unwrap();
    // Odd widths and misaligned accesses are ignored, not acted on.
    let _ = r.dev.write(Region::Bar0, 0, &[3], &NoRam).unwrap();
    let _ = r.dev.write(Region::Bar0, 1, &[3, 0, 0, 0], &NoRam).unwrap();
    let _ = r.dev.write(Region::Bar0, 0, &[3, 0], &NoRam).unwrap();
    assert_eq!(r.dev.state().handles.len(), 0, "no GEN_HANDLE happened");
    let mut two = [0xffu8; 2];
    let _ = r.dev.read(Region::Bar0, 40, &mut two).unwrap();
    assert_eq!(two, [0, 0]);
    let ev = r.events();
    assert!(ev.iter().any(
        |e| matches!(e, DeviceEvent::Reg(a) if a.decoded.starts_with("ignored: 1-byte write"))
    ));
    // A 64-bit access is two 32-bit ones: BLOCK_SIZE lo/hi in one go.
    let _ = r
        .dev
        .write(Region::Bar0, 12, &0x1_0000_2000u64.to_le_bytes(), &NoRam)
        .unwrap();
    assert_eq!(
        r.read64(Register::BlockSizeLow, Register::BlockSizeHigh),
        0x1_0000_2000
    );
    let mut eight = [0u8; 8];
    let _ = r.dev.read(Region::Bar0, 12, &mut eight).unwrap();
    assert_eq!(u64::from_le_bytes(eight), 0x1_0000_2000);
    assert!(r.dev.state().counters.ignored >= 6);
}

#[test]
fn accesses_past_a_region_are_errors_not_panics() {
    let mut r = Rig::new(0x4000);
    let mut b = [0u8; 8];
    for (region, size) in [
        (Region::Config, 256u64),
        (Region::Bar0, 0x1000),
        (Region::Bar1, 0x4000),
    ] {
        let err = r.dev.read(region, size - 4, &mut b).unwrap_err();
        assert_eq!(
            err,
            AccessError::OutOfRange {
                region,
                offset: size - 4,
                len: 8,
                size
            }
        );
        assert!(r.dev.write(region, u64::MAX, &b, &NoRam).is_err());
        assert!(r.dev.read(region, size, &mut b[..1]).is_err());
        // Empty accesses at the end are fine and do nothing.
        assert_eq!(r.dev.read(region, size, &mut []), Ok(Effects::default()));
    }
    assert!(
        r.events()
            .iter()
            .any(|e| matches!(e, DeviceEvent::Anomaly { text } if text.contains("past its end")))
    );
}

#[test]
fn config_space_through_the_device() {
    let mut r = Rig::new(1 << 20);
    let mut id = [0u8; 4];
    let _ = r.dev.read(Region::Config, 0, &mut id).unwrap();
    assert_eq!(u32::from_le_bytes(id), 0xf153_607d);
    let mut rev = [0u8; 1];
    let _ = r.dev.read(Region::Config, 8, &mut rev).unwrap();
    assert_eq!(rev[0], 1);
    let _ = r
        .dev
        .write(Region::Config, 0x14, &[0xff; 8], &NoRam)
        .unwrap();
    let mut bar = [0u8; 8];
    let _ = r.dev.read(Region::Config, 0x14, &mut bar).unwrap();
    assert_eq!(u64::from_le_bytes(bar), !((1u64 << 20) - 1) | 0x4);
    let ev = r.events();
    let names: Vec<&str> = ev
        .iter()
        .filter_map(|e| match e {
            DeviceEvent::Reg(a) if a.space == Space::Config => Some(a.decoded.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(names, vec!["VENDOR_ID", "REVISION", "BAR1", "BAR1"]);
}

#[test]
fn the_shared_bar_stores_what_the_guest_writes() {
    let mut r = Rig::new(1 << 20);
    let _ = r
        .dev
        .write(Region::Bar1, 0xfff0, b"shared bytes across a page", &NoRam)
        .unwrap();
    let mut b = [0u8; 26];
    let _ = r.dev.read(Region::Bar1, 0xfff0, &mut b).unwrap();
    assert_eq!(&b, b"shared bytes across a page");
    r.dev.reset("test");
    let _ = r.dev.read(Region::Bar1, 0xfff0, &mut b).unwrap();
    assert_eq!(b, [0; 26], "reset clears the area");
}

#[test]
fn ping_error_paths() {
    let mut r = Rig::new(1 << 20);
    let ping_errors = |r: &mut Rig| -> Vec<String> {
        r.events()
            .iter()
            .filter_map(|e| match e {
                DeviceEvent::Ping(p) => p.error.clone(),
                _ => None,
            })
            .collect()
    };
    let _ = r.write(Register::Ping, 9);
    assert!(ping_errors(&mut r)[0].contains("no handle 9"));
    let h = r.gen_handle();
    let _ = r.write(Register::Ping, h);
    assert!(ping_errors(&mut r)[0].contains("no ping page"));
    // A ping page outside guest RAM: reported, nothing panics.
    assert_eq!(r.tell(h, 0xdead_0000), 0);
    let _ = r.write(Register::Ping, h);
    assert!(ping_errors(&mut r)[0].contains("cannot read the ping page"));
    // A ping page whose header straddles the end of RAM.
    assert_eq!(r.tell(h, RAM_BASE + RAM_SIZE as u64 - 8), 0);
    let _ = r.write(Register::Ping, h);
    assert!(ping_errors(&mut r)[0].contains("cannot read"));
    // A page at the top of the address space.
    assert_eq!(r.tell(h, u64::MAX - 4), 0);
    let _ = r.write(Register::PingWithData, h);
    assert!(ping_errors(&mut r)[0].contains("cannot read"));
    let s = r.dev.state();
    assert_eq!(s.counters.ping.failed, 4);
    assert_eq!(s.counters.ping_with_data.failed, 1);
}

fn put_ping(r: &Rig, page: u64, p: PingInfo) {
    r.ram.dma_write(page, &p.encode()).unwrap();
}

fn get_ping(r: &Rig, page: u64) -> PingInfo {
    let mut b = [0u8; PING_INFO_LEN];
    r.ram.dma_read(page, &mut b).unwrap();
    PingInfo::decode(&b)
}

#[test]
fn the_first_ping_chooses_the_service() {
    let mut r = Rig::new(1 << 20);
    let h = r.gen_handle();
    let page = RAM_BASE + 0x3000;
    assert_eq!(r.tell(h, page), 0);
    put_ping(
        &r,
        page,
        PingInfo {
            metadata: 77,
            ..Default::default()
        },
    );
    let _ = r.write(Register::Ping, h);
    assert_eq!(get_ping(&r, page).metadata, REPLY_ERR, "no service 77");
    assert_eq!(r.dev.state().handles[0].service, None);
    put_ping(
        &r,
        page,
        PingInfo {
            metadata: ECHO,
            ..Default::default()
        },
    );
    let _ = r.write(Register::Ping, h);
    assert_eq!(get_ping(&r, page).metadata, 0);
    assert_eq!(r.dev.state().handles[0].service, Some(ServiceKind::Echo));
    // Echo with data: the payload comes back inverted.
    put_ping(
        &r,
        page,
        PingInfo {
            metadata: 5,
            data_size: 3,
            ..Default::default()
        },
    );
    r.ram.dma_write(page + 48, &[1, 2, 3]).unwrap();
    let _ = r.write(Register::PingWithData, h);
    let back = get_ping(&r, page);
    assert_eq!((back.metadata, back.wait_flags, back.data_size), (!5, 1, 3));
    let mut data = [0u8; 3];
    r.ram.dma_read(page + 48, &mut data).unwrap();
    assert_eq!(data, [!1, !2, !3]);
    // Too much data for the page: refused in the reply, not a crash.
    put_ping(
        &r,
        page,
        PingInfo {
            metadata: 5,
            data_size: 5000,
            ..Default::default()
        },
    );
    let _ = r.write(Register::PingWithData, h);
    assert_eq!(get_ping(&r, page).metadata, REPLY_ERR);
    assert_eq!(r.dev.state().handles[0].pings, 4);
}

#[test]
fn faults_delay_and_drop() {
    let mut r = Rig::new(1 << 20);
    r.dev.set_fault_plan(
        FaultPlan::from_toml(
            r#"
[[fault]]
on = "ping"
action = "delay"
ms = 150

[[fault]]
on = "gen_handle"
nth = 2
action = "drop_connection"

[[fault]]
on = "access"
nth = 10
action = "delay"
ms = 5
"#,
        )
        .unwrap(),
    );
    let fx = r.write(Register::Ping, 1);
    assert_eq!(fx.delay, Some(Duration::from_millis(150)));
    assert!(!fx.disconnect);
    assert_eq!(r.write(Register::Command, GEN_HANDLE), Effects::default());
    let fx = r.write(Register::Command, GEN_HANDLE);
    assert!(fx.disconnect, "the 2nd GEN_HANDLE drops the connection");
    assert_eq!(r.dev.state().handles.len(), 1, "and was not executed");
    // Accesses so far: PING, COMMAND, COMMAND = 3. The 10th is delayed.
    for _ in 0..6 {
        assert_eq!(r.write(Register::Handle, 1), Effects::default());
    }
    assert_eq!(
        r.write(Register::Handle, 1).delay,
        Some(Duration::from_millis(5))
    );
    let faults = r.dev.state().counters.faults;
    assert_eq!(faults, 3);
}

#[test]
fn an_access_fault_can_drop_before_a_read() {
    let mut r = Rig::new(1 << 20);
    r.dev.set_fault_plan(
        FaultPlan::parse(r#"{"fault":[{"on":"access","action":"drop_connection"}]}"#).unwrap(),
    );
    let mut b = [0xaau8; 4];
    let fx = r.dev.read(Region::Bar0, 4, &mut b).unwrap();
    assert!(fx.disconnect);
    assert_eq!(b, [0; 4]);
}

#[test]
fn irq_on_command_asks_for_an_interrupt() {
    let mut r = Rig::with_config(DeviceConfig {
        bar1_size: 1 << 20,
        irq_on_command: true,
    });
    assert!(r.write(Register::Command, GEN_HANDLE).irq);
    assert!(!r.write(Register::Handle, 1).irq);
    let mut quiet = Rig::new(1 << 20);
    assert!(!quiet.write(Register::Command, GEN_HANDLE).irq);
}

#[test]
fn reset_returns_to_power_on_but_keeps_counting() {
    let mut r = Rig::new(1 << 20);
    let h = r.gen_handle();
    r.allocate(0x1000);
    assert_eq!(r.tell(h, RAM_BASE), 0);
    r.dev.reset("client");
    let s = r.dev.state();
    assert!(s.is_idle());
    assert_eq!(s.registers.guest_page_size, 4096);
    assert_eq!(s.registers.handle, 0);
    assert_eq!(s.counters.gen_handle.ok, 1, "counters survive a reset");
    assert_eq!(r.gen_handle(), 1, "the handle counter restarts");
    let ev = r.events();
    assert!(
        ev.iter()
            .any(|e| matches!(e, DeviceEvent::Reset { by } if by == "client"))
    );
}

#[test]
fn state_events_follow_changes_only() {
    let mut r = Rig::new(1 << 20);
    r.events();
    let _ = r.write(Register::Handle, 3);
    let _ = r.read(Register::Status);
    assert!(
        !r.events()
            .iter()
            .any(|e| matches!(e, DeviceEvent::State(_)))
    );
    r.allocate(0x10);
    let ev = r.events();
    let states: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            DeviceEvent::State(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].guest_blocks().count(), 1);
    // The COMMAND register event carries the status after the command.
    let cmd_reg = ev
        .iter()
        .find_map(|e| match e {
            DeviceEvent::Reg(a) if a.reg == Some(Register::Command) => Some(a.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        (cmd_reg.decoded.as_str(), cmd_reg.status),
        ("ALLOCATE_BLOCK", 0)
    );
}
