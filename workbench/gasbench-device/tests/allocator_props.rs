//! The allocator against a deliberately naive reference: a byte-granular
//! map of who owns what, with best fit and carving from the end computed
//! from scratch on every call.

use gasbench_device::allocator::{Allocator, round_size};
use gasbench_events::device::BlockOwner;
use proptest::prelude::*;

const UNIT: u64 = 0x100;
const UNITS: usize = 64;

/// One slot per UNIT: None = free, Some(id) = allocation id.
struct Reference {
    slots: Vec<Option<u32>>,
    next_id: u32,
    /// Live allocations: (start unit, units, id).
    live: Vec<(usize, usize, u32)>,
}

impl Reference {
    fn new() -> Self {
        Reference {
            slots: vec![None; UNITS],
            next_id: 1,
            live: Vec::new(),
        }
    }

    /// Free runs as (start, len) in address order, maximal.
    fn free_runs(&self) -> Vec<(usize, usize)> {
        let mut runs = Vec::new();
        let mut i = 0;
        while i < UNITS {
            if self.slots[i].is_none() {
                let start = i;
                while i < UNITS && self.slots[i].is_none() {
                    i += 1;
                }
                runs.push((start, i - start));
            } else {
                i += 1;
            }
        }
        runs
    }

    fn allocate(&mut self, units: usize) -> Option<usize> {
        let best = self
            .free_runs()
            .into_iter()
            .filter(|&(_, len)| len >= units)
            .fold(None::<(usize, usize)>, |best, run| match best {
                Some(b) if b.1 <= run.1 => Some(b),
                _ => Some(run),
            })?;
        let start = best.0 + best.1 - units;
        let id = self.next_id;
        self.next_id += 1;
        for s in &mut self.slots[start..start + units] {
            *s = Some(id);
        }
        self.live.push((start, units, id));
        Some(start)
    }

    fn free(&mut self, start: usize) -> bool {
        let Some(i) = self.live.iter().position(|l| l.0 == start) else {
            return false;
        };
        let (start, units, _) = self.live.remove(i);
        for s in &mut self.slots[start..start + units] {
            *s = None;
        }
        true
    }
}

#[derive(Clone, Debug)]
enum Op {
    Alloc(usize),
    Free(usize),
    FreeLive(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1usize..=24).prop_map(Op::Alloc),
        1 => (0usize..UNITS).prop_map(Op::Free),
        2 => any::<usize>().prop_map(Op::FreeLive),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn allocator_matches_the_reference(ops in proptest::collection::vec(op(), 1..80)) {
        let mut a = Allocator::new(UNIT * UNITS as u64);
        let mut r = Reference::new();
        for op in ops {
            match op {
                Op::Alloc(units) => {
                    let got = a.allocate(units as u64 * UNIT, BlockOwner::Guest);
                    let want = r.allocate(units).map(|s| s as u64 * UNIT);
                    prop_assert_eq!(got, want);
                }
                Op::Free(unit) => {
                    let got = a.free(unit as u64 * UNIT, |_| true).is_ok();
                    prop_assert_eq!(got, r.free(unit));
                }
                Op::FreeLive(pick) => {
                    if !r.live.is_empty() {
                        let start = r.live[pick % r.live.len()].0;
                        prop_assert!(a.free(start as u64 * UNIT, |_| true).is_ok());
                        prop_assert!(r.free(start));
                    }
                }
            }
            prop_assert!(a.check().is_ok(), "{:?}", a.check());
            // Same free runs, hence merged exactly as the reference.
            let free: Vec<(usize, usize)> = a
                .blocks()
                .iter()
                .filter(|b| b.owner == BlockOwner::Free)
                .map(|b| ((b.offset / UNIT) as usize, (b.size / UNIT) as usize))
                .collect();
            prop_assert_eq!(free, r.free_runs());
        }
    }

    #[test]
    fn rounding_covers_any_placement(size in 1u64..1 << 40, shift in 0u32..16) {
        let ps = 1u32 << shift;
        let rounded = round_size(size, ps).unwrap();
        prop_assert_eq!(rounded % u64::from(ps), 0);
        // Enough pages for `size` bytes starting at the last byte of a page.
        let worst = (u64::from(ps) - 1 + size).div_ceil(u64::from(ps)) * u64::from(ps);
        prop_assert!(rounded >= worst);
        prop_assert!(rounded < worst + u64::from(ps) || ps == 1);
    }
}
