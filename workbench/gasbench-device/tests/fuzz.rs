//! A million random operations against the model: register accesses of
//! every width and offset (valid, misaligned, past the end), commands in
//! any order, ping pages scribbled with random headers, DMA to memory that
//! is not there, resets and fault plans. The model must never panic, its
//! invariants must hold throughout, and its snapshot must stay consistent.
//!
//! `GASBENCH_FUZZ_OPS` and `GASBENCH_FUZZ_SEED` override the defaults.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use gasbench_abi::goldfish::PingInfo;
use gasbench_device::services::{ECHO, HOST_MEMORY_ALLOCATOR, OP_ALLOCATE, OP_FREE, SHARED_SLOTS};
use gasbench_device::{
    Device, DeviceConfig, DeviceTrace, FaultAction, FaultPlan, FaultRule, GuestRam, Region, Trigger,
};
use gasbench_events::device::{BlockOwner, DeviceEvent, Register, ServiceKind};
use vm_memory::{GuestAddress, GuestMemoryMmap};

const RAM_BASE: u64 = 0x10_0000;
const RAM_SIZE: u64 = 0x4_0000;
const PHYS: u64 = 0xe000_0000;

/// SplitMix64: small, fast, good enough to explore.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// Builds every event (so decoding runs) and notes what they showed.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<SeenInner>>);

#[derive(Default, Debug)]
struct SeenInner {
    events: u64,
    mappings: bool,
    claims: bool,
    services: [bool; 3],
}

impl DeviceTrace for Seen {
    fn emit(&mut self, ev: DeviceEvent) {
        let mut s = self.0.lock().unwrap();
        s.events += 1;
        if let DeviceEvent::State(st) = &ev {
            s.mappings |= !st.mappings.is_empty();
            s.claims |= st.claims().count() > 0;
            for h in &st.handles {
                match h.service {
                    Some(ServiceKind::Echo) => s.services[0] = true,
                    Some(ServiceKind::HostMemoryAllocator) => s.services[1] = true,
                    Some(ServiceKind::SharedSlots) => s.services[2] = true,
                    None => {}
                }
            }
        }
    }
}

struct Fuzz {
    rng: Rng,
    dev: Device,
    ram: GuestMemoryMmap,
    bar1: u64,
}

impl Fuzz {
    fn handle(&mut self) -> u32 {
        let s = self.dev.state();
        if !s.handles.is_empty() && self.rng.chance(80) {
            let i = self.rng.below(s.handles.len() as u64) as usize;
            return s.handles[i].handle;
        }
        self.rng.pick(&[0, 1, 2, 3, u32::MAX, self.rng.0 as u32])
    }

    fn block_offset(&mut self) -> u64 {
        let s = self.dev.state();
        if self.rng.chance(70) {
            let i = self.rng.below(s.blocks.len() as u64) as usize;
            return s.blocks[i].offset;
        }
        self.rng.pick(&[0, 1, self.bar1, u64::MAX, self.rng.0])
    }

    fn page(&mut self) -> u64 {
        match self.rng.below(10) {
            0..=6 => RAM_BASE + self.rng.below(RAM_SIZE / 4096) * 4096,
            7 => RAM_BASE + RAM_SIZE - self.rng.below(64), // straddles the end
            8 => self.rng.pick(&[0, u64::MAX - 10, RAM_BASE - 8]),
            _ => self.rng.next(),
        }
    }

    fn size(&mut self) -> u64 {
        match self.rng.below(8) {
            0 => 0,
            1 => self.rng.pick(&[u64::MAX, u64::MAX - 4096, 1 << 63]),
            2 => self.bar1,
            3..=6 => 1 + self.rng.below(0x4000),
            _ => self.rng.next(),
        }
    }

    fn reg_value(&mut self, reg: Register) -> u32 {
        if self.rng.chance(5) {
            return self.rng.next() as u32;
        }
        match reg {
            Register::Command => self.rng.pick(&[1, 1, 2, 2, 3, 3, 4, 5, 0, 6]),
            Register::Handle | Register::Ping | Register::PingWithData => self.handle(),
            Register::BlockSizeLow => self.size() as u32,
            Register::BlockSizeHigh => (self.size() >> 32) as u32,
            Register::BlockOffsetLow => self.block_offset() as u32,
            Register::BlockOffsetHigh => (self.block_offset() >> 32) as u32,
            Register::PingInfoAddrLow => self.page() as u32,
            Register::PingInfoAddrHigh => (self.page() >> 32) as u32,
            Register::GuestPageSize => self.rng.pick(&[4096, 4096, 4096, 0x100, 1, 0, 3, 1 << 20]),
            Register::PhysStartLow => PHYS as u32,
            Register::PhysStartHigh => 0,
            Register::Status => self.rng.next() as u32,
        }
    }

    fn scribble_ping_page(&mut self) {
        let s = self.dev.state();
        let pages: Vec<u64> = s.handles.iter().filter_map(|h| h.ping_page).collect();
        let page = if pages.is_empty() || self.rng.chance(10) {
            self.page()
        } else {
            pages[self.rng.below(pages.len() as u64) as usize]
        };
        let guest = s
            .guest_blocks()
            .map(|b| PHYS + b.offset)
            .collect::<Vec<_>>();
        let claims = s.claims().map(|b| PHYS + b.offset).collect::<Vec<_>>();
        let offset = match self.rng.below(4) {
            0 if !guest.is_empty() => guest[self.rng.below(guest.len() as u64) as usize],
            1 if !claims.is_empty() => claims[self.rng.below(claims.len() as u64) as usize],
            2 => PHYS + self.rng.below(self.bar1 + 0x1000),
            _ => self.rng.next(),
        };
        let p = PingInfo {
            offset,
            size: self.size(),
            metadata: self.rng.pick(&[
                ECHO,
                HOST_MEMORY_ALLOCATOR,
                SHARED_SLOTS,
                OP_ALLOCATE,
                OP_ALLOCATE,
                OP_FREE,
                0,
                u64::MAX,
                self.rng.0,
            ]),
            version: self.rng.next() as u32,
            wait_fd: 0,
            wait_flags: 0,
            direction: 0,
            data_size: self.rng.pick(&[0, 1, 16, 4048, 4049, u64::MAX]),
        };
        let _ = self.ram.dma_write(page, &p.encode());
    }

    fn random_plan(&mut self) -> FaultPlan {
        let mut faults = Vec::new();
        for _ in 0..self.rng.below(4) {
            let on = self.rng.pick(&[
                Trigger::AllocateBlock,
                Trigger::DeallocateBlock,
                Trigger::GenHandle,
                Trigger::DestroyHandle,
                Trigger::TellPingInfoAddr,
                Trigger::Ping,
                Trigger::PingWithData,
                Trigger::Access,
            ]);
            let action = match self.rng.below(5) {
                0 => FaultAction::Fail {
                    errno: gasbench_device::faults::Errno(1 + self.rng.below(4095) as u32),
                },
                1 => FaultAction::InvalidHandle,
                2 => FaultAction::CorruptEcho {
                    xor: self.rng.next() | 1,
                },
                3 => FaultAction::Delay {
                    ms: self.rng.below(10),
                },
                _ => FaultAction::DropConnection,
            };
            // Invalid combinations are refused by validation; keep the rest.
            if let Ok(mut rule) = FaultRule::new(on, 1 + self.rng.below(20), action) {
                rule.times = self.rng.below(3);
                faults.push(rule);
            }
        }
        FaultPlan { faults }
    }

    fn step(&mut self) {
        let ram = &self.ram;
        match self.rng.below(100) {
            // Register writes, mostly well-formed.
            0..=39 => {
                let reg = self.rng.pick(&Register::ALL);
                let v = self.reg_value(reg);
                let fx = self
                    .dev
                    .write(Region::Bar0, reg.offset(), &v.to_le_bytes(), &self.ram)
                    .expect("in range");
                assert!(fx.delay.is_none_or(|d| d.as_millis() <= 60_000));
            }
            40..=54 => {
                let reg = self.rng.pick(&Register::ALL);
                let mut b = [0u8; 4];
                let _ = self
                    .dev
                    .read(Region::Bar0, reg.offset(), &mut b)
                    .expect("in range");
            }
            // Anything at all, anywhere.
            55..=69 => {
                let region = self.rng.pick(&[Region::Config, Region::Bar0, Region::Bar1]);
                let size = self.dev.region_size(region);
                let offset = match self.rng.below(4) {
                    0 => self.rng.below(size + 16),
                    1 => size.wrapping_sub(self.rng.below(8)),
                    2 => self.rng.next(),
                    _ => self.rng.below(64),
                };
                let width = self.rng.pick(&[0usize, 1, 2, 3, 4, 4, 4, 8, 8, 16, 300]);
                let mut buf = vec![0u8; width];
                let in_range = offset.checked_add(width as u64).is_some_and(|e| e <= size);
                let result = if self.rng.chance(50) {
                    for b in buf.iter_mut() {
                        *b = self.rng.next() as u8;
                    }
                    self.dev.write(region, offset, &buf, ram)
                } else {
                    self.dev.read(region, offset, &mut buf)
                };
                assert_eq!(result.is_ok(), in_range, "{region} {offset:#x}+{width}");
            }
            70..=89 => self.scribble_ping_page(),
            90..=97 => {
                // Ping a live context (the interesting case).
                let h = self.handle();
                let reg = if self.rng.chance(80) {
                    Register::Ping
                } else {
                    Register::PingWithData
                };
                let _ = self
                    .dev
                    .write(Region::Bar0, reg.offset(), &h.to_le_bytes(), &self.ram)
                    .unwrap();
            }
            98 => {
                if self.rng.chance(3) {
                    self.dev.reset("fuzz");
                }
            }
            _ => {
                if self.rng.chance(10) {
                    let plan = self.random_plan();
                    self.dev.set_fault_plan(plan);
                }
            }
        }
    }

    fn check(&self) {
        if let Err(e) = self.dev.check_invariants() {
            panic!("invariant broken: {e}");
        }
        let s = self.dev.state();
        let mut prev = 0;
        for h in &s.handles {
            assert!(h.handle > prev, "handles sorted and unique");
            assert_ne!(h.handle, u32::MAX);
            prev = h.handle;
        }
        let covered: u64 = s.blocks.iter().map(|b| b.size).sum();
        assert_eq!(covered, s.shared_size);
        for b in &s.blocks {
            if let BlockOwner::Host { handle } = b.owner {
                assert!(s.handles.iter().any(|h| h.handle == handle));
            }
        }
        assert!(s.mappings.len() <= gasbench_device::MAX_MAPPINGS);
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn a_million_random_operations_keep_the_model_sound() {
    let ops = env_u64("GASBENCH_FUZZ_OPS", 1_000_000);
    let seed = env_u64("GASBENCH_FUZZ_SEED", 0x6761_7362_656e_6368);
    let mut total = 0u64;
    let start = Instant::now();
    // Several devices with different BAR1 sizes share the budget.
    let sizes = [0x1000u64, 0x10000, 1 << 20, 16 << 20];
    for (i, &bar1) in sizes.iter().enumerate() {
        let seen = Seen::default();
        let mut f = Fuzz {
            rng: Rng(seed ^ (i as u64 + 1).wrapping_mul(0x5851_f42d_4c95_7f2d)),
            dev: Device::new(
                DeviceConfig {
                    bar1_size: bar1,
                    irq_on_command: i % 2 == 1,
                },
                Box::new(seen.clone()),
            )
            .unwrap(),
            ram: GuestMemoryMmap::from_ranges(&[(GuestAddress(RAM_BASE), RAM_SIZE as usize)])
                .unwrap(),
            bar1,
        };
        let n = ops / sizes.len() as u64;
        for k in 0..n {
            f.step();
            if k % 512 == 0 {
                f.check();
            }
        }
        f.check();
        let s = f.dev.state();
        eprintln!(
            "bar1 {bar1:#x}: {} handles, {} blocks, {} mappings, counters {:?}",
            s.handles.len(),
            s.blocks.len(),
            s.mappings.len(),
            s.counters
        );
        // The run exercised what it claims to.
        assert!(s.counters.allocate_block.ok > 0, "allocations succeeded");
        assert!(s.counters.allocate_block.failed > 0, "allocations failed");
        assert!(s.counters.deallocate_block.ok > 0);
        assert!(s.counters.ping.ok > 0 && s.counters.ping.failed > 0);
        assert!(s.counters.tell_ping_info_addr.ok > 0);
        assert!(s.counters.faults > 0, "fault plans fired");
        assert!(s.counters.ignored > 0);
        let seen = seen.0.lock().unwrap();
        eprintln!("  events {}; seen {seen:?}", seen.events);
        assert_eq!(seen.services, [true; 3], "every service was bound");
        assert!(seen.claims, "shared slots carved claims");
        if bar1 > 0x1000 {
            assert!(seen.mappings, "host memory was mapped");
        }
        total += n;
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "fuzz: {total} operations in {secs:.2} s = {:.0} ops/s",
        total as f64 / secs
    );
    assert!(total >= ops - sizes.len() as u64);
}
