//! The shared area's allocator, with the Android emulator's policy: best
//! fit (the smallest free block that is large enough; the first of equals),
//! carved from the *end* of that block; freeing needs the exact offset and
//! merges the block with free neighbours.
//!
//! Blocks tile the area in offset order. Invariants (checked by
//! [`Allocator::check`]): no gaps, no overlaps, no empty block, no two
//! adjacent free blocks.

use gasbench_events::device::{BlockInfo, BlockOwner};

/// More blocks than this and allocations fail with ENOMEM: a guest that
/// sets a one-byte page size must not make the model quadratic.
pub const MAX_BLOCKS: usize = 1 << 16;

#[derive(Clone, Debug)]
pub struct Allocator {
    blocks: Vec<BlockInfo>,
    total: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// No block starts at that offset.
    NoBlock,
    /// The block there is already free.
    AlreadyFree,
    /// The block belongs to someone else.
    WrongOwner(BlockOwner),
}

impl Allocator {
    pub fn new(total: u64) -> Self {
        let mut a = Allocator {
            blocks: Vec::new(),
            total,
        };
        a.reset();
        a
    }

    pub fn reset(&mut self) {
        self.blocks.clear();
        if self.total > 0 {
            self.blocks.push(BlockInfo {
                offset: 0,
                size: self.total,
                owner: BlockOwner::Free,
            });
        }
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn blocks(&self) -> &[BlockInfo] {
        &self.blocks
    }

    /// The largest free block, for error messages.
    pub fn largest_free(&self) -> u64 {
        self.blocks
            .iter()
            .filter(|b| b.owner == BlockOwner::Free)
            .map(|b| b.size)
            .max()
            .unwrap_or(0)
    }

    /// Allocate exactly `size` bytes for `owner`; the offset, or None.
    pub fn allocate(&mut self, size: u64, owner: BlockOwner) -> Option<u64> {
        if size == 0 || owner == BlockOwner::Free {
            return None;
        }
        let mut best: Option<usize> = None;
        for (i, b) in self.blocks.iter().enumerate() {
            if b.owner == BlockOwner::Free
                && b.size >= size
                && best.is_none_or(|j| b.size < self.blocks[j].size)
            {
                best = Some(i);
            }
        }
        let i = best?;
        let block = self.blocks[i];
        if block.size == size {
            self.blocks[i].owner = owner;
            return Some(block.offset);
        }
        if self.blocks.len() >= MAX_BLOCKS {
            return None;
        }
        let offset = block.offset + (block.size - size);
        self.blocks[i].size -= size;
        self.blocks.insert(
            i + 1,
            BlockInfo {
                offset,
                size,
                owner,
            },
        );
        Some(offset)
    }

    /// The block starting exactly at `offset`.
    pub fn at(&self, offset: u64) -> Option<&BlockInfo> {
        self.index_at(offset).map(|i| &self.blocks[i])
    }

    /// The block covering `offset`.
    pub fn containing(&self, offset: u64) -> Option<&BlockInfo> {
        let i = self.blocks.partition_point(|b| b.offset <= offset);
        let b = self.blocks.get(i.checked_sub(1)?)?;
        (offset - b.offset < b.size).then_some(b)
    }

    fn index_at(&self, offset: u64) -> Option<usize> {
        self.blocks.binary_search_by_key(&offset, |b| b.offset).ok()
    }

    /// Free the block at exactly `offset` if `may_free` accepts its owner;
    /// merge it with free neighbours. Returns the freed block.
    pub fn free(
        &mut self,
        offset: u64,
        may_free: impl Fn(BlockOwner) -> bool,
    ) -> Result<BlockInfo, FreeError> {
        let i = self.index_at(offset).ok_or(FreeError::NoBlock)?;
        let block = self.blocks[i];
        if block.owner == BlockOwner::Free {
            return Err(FreeError::AlreadyFree);
        }
        if !may_free(block.owner) {
            return Err(FreeError::WrongOwner(block.owner));
        }
        self.blocks[i].owner = BlockOwner::Free;
        let mut i = i;
        if i + 1 < self.blocks.len() && self.blocks[i + 1].owner == BlockOwner::Free {
            self.blocks[i].size += self.blocks[i + 1].size;
            self.blocks.remove(i + 1);
        }
        if i > 0 && self.blocks[i - 1].owner == BlockOwner::Free {
            self.blocks[i - 1].size += self.blocks[i].size;
            self.blocks.remove(i);
            i -= 1;
        }
        let _ = i;
        Ok(block)
    }

    /// Offsets of every block `owner` holds.
    pub fn owned_by(&self, owner: BlockOwner) -> Vec<u64> {
        self.blocks
            .iter()
            .filter(|b| b.owner == owner)
            .map(|b| b.offset)
            .collect()
    }

    /// The tiling invariants; a description of the first violation.
    pub fn check(&self) -> Result<(), String> {
        let mut expect = 0u64;
        let mut prev_free = false;
        for (i, b) in self.blocks.iter().enumerate() {
            if b.offset != expect {
                return Err(format!(
                    "block {i} starts at {:#x}, expected {expect:#x}",
                    b.offset
                ));
            }
            if b.size == 0 {
                return Err(format!("block {i} at {:#x} is empty", b.offset));
            }
            let free = b.owner == BlockOwner::Free;
            if free && prev_free {
                return Err(format!(
                    "blocks {} and {i} are both free and were not merged",
                    i - 1
                ));
            }
            prev_free = free;
            expect = b
                .offset
                .checked_add(b.size)
                .ok_or_else(|| format!("block {i} overflows"))?;
        }
        if expect != self.total {
            return Err(format!(
                "blocks cover {expect:#x} bytes, the area has {:#x}",
                self.total
            ));
        }
        Ok(())
    }
}

/// The emulator's rounding: enough whole pages to cover `size` bytes at
/// any offset, `((size + 2*ps - 2) / ps) * ps`. None when `size` or `ps` is
/// 0 or the result does not fit in 64 bits.
pub fn round_size(size: u64, page_size: u32) -> Option<u64> {
    if size == 0 || page_size == 0 {
        return None;
    }
    let ps = u128::from(page_size);
    let rounded = (u128::from(size) + 2 * ps - 2) / ps * ps;
    u64::try_from(rounded).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: BlockOwner = BlockOwner::Guest;

    #[test]
    fn rounding_follows_the_emulator() {
        // ((size + 2*ps - 2) / ps) * ps with ps = 4096.
        assert_eq!(round_size(1, 4096), Some(4096));
        assert_eq!(
            round_size(2, 4096),
            Some(8192),
            "2 bytes may straddle a page"
        );
        assert_eq!(round_size(4096, 4096), Some(8192));
        assert_eq!(round_size(4097, 4096), Some(8192));
        assert_eq!(round_size(4098, 4096), Some(12288));
        assert_eq!(round_size(0x3000, 4096), Some(0x4000));
        assert_eq!(round_size(1, 1), Some(1));
        assert_eq!(round_size(0, 4096), None);
        assert_eq!(round_size(1, 0), None);
        assert_eq!(round_size(u64::MAX, 4096), None, "overflows 64 bits");
        assert_eq!(round_size(u64::MAX - 4000, 4096), None);
        assert_eq!(round_size(u64::MAX - 8192, 4096), Some(u64::MAX - 4095));
    }

    #[test]
    fn carves_from_the_end_of_the_smallest_fitting_block() {
        let mut a = Allocator::new(0x10000);
        assert_eq!(a.allocate(0x1000, G), Some(0xf000));
        assert_eq!(a.allocate(0x2000, G), Some(0xd000));
        a.check().unwrap();
        // Free the first: now free = [0, 0xd000) and [0xf000, 0x10000).
        a.free(0xf000, |_| true).unwrap();
        a.check().unwrap();
        // A 0x1000 request takes the smaller free block (at the end).
        assert_eq!(a.allocate(0x1000, G), Some(0xf000));
        // A 0x800 request now must split the big block, from its end.
        assert_eq!(a.allocate(0x800, G), Some(0xc800));
        a.check().unwrap();
    }

    #[test]
    fn ties_go_to_the_first_block() {
        let mut a = Allocator::new(0x5000);
        let x = a.allocate(0x1000, G).unwrap(); // 0x4000
        let y = a.allocate(0x1000, G).unwrap(); // 0x3000
        let z = a.allocate(0x1000, G).unwrap(); // 0x2000
        assert_eq!((x, y, z), (0x4000, 0x3000, 0x2000));
        a.free(y, |_| true).unwrap();
        // Free blocks: [0,0x2000) (size 0x2000) and [0x3000,0x4000) (0x1000).
        assert_eq!(a.allocate(0x1000, G), Some(0x3000));
        a.free(0x3000, |_| true).unwrap();
        a.free(x, |_| true).unwrap();
        // Free: [0,0x2000), [0x3000,0x5000) both 0x2000: the first wins.
        assert_eq!(a.allocate(0x2000, G), Some(0));
        a.check().unwrap();
    }

    #[test]
    fn freeing_merges_both_neighbours() {
        let mut a = Allocator::new(0x4000);
        let offs: Vec<u64> = (0..4).map(|_| a.allocate(0x1000, G).unwrap()).collect();
        assert_eq!(offs, vec![0x3000, 0x2000, 0x1000, 0]);
        assert_eq!(a.blocks().len(), 4);
        a.free(0x1000, |_| true).unwrap();
        a.free(0x3000, |_| true).unwrap();
        assert_eq!(a.blocks().len(), 4);
        // Freeing the middle one merges left and right into one block.
        a.free(0x2000, |_| true).unwrap();
        assert_eq!(a.blocks().len(), 2);
        assert_eq!(a.blocks()[1].offset, 0x1000);
        assert_eq!(a.blocks()[1].size, 0x3000);
        a.free(0, |_| true).unwrap();
        assert_eq!(a.blocks().len(), 1);
        a.check().unwrap();
    }

    #[test]
    fn free_needs_the_exact_offset_and_an_allocated_block() {
        let mut a = Allocator::new(0x4000);
        let off = a.allocate(0x2000, G).unwrap();
        assert_eq!(a.free(off + 1, |_| true), Err(FreeError::NoBlock));
        assert_eq!(a.free(0, |_| true), Err(FreeError::AlreadyFree));
        assert_eq!(
            a.free(off, |o| o != G),
            Err(FreeError::WrongOwner(BlockOwner::Guest))
        );
        assert!(a.free(off, |_| true).is_ok());
        assert_eq!(a.free(off, |_| true), Err(FreeError::NoBlock));
    }

    #[test]
    fn exhaustion_and_lookups() {
        let mut a = Allocator::new(0x2000);
        assert_eq!(a.allocate(0x3000, G), None);
        assert_eq!(a.allocate(0, G), None);
        assert_eq!(a.allocate(0x2000, G), Some(0));
        assert_eq!(a.allocate(1, G), None);
        assert_eq!(a.largest_free(), 0);
        assert_eq!(a.containing(0x1fff).map(|b| b.offset), Some(0));
        assert!(a.containing(0x2000).is_none());
        assert_eq!(a.owned_by(G), vec![0]);
        let mut empty = Allocator::new(0);
        assert_eq!(empty.allocate(1, G), None);
        empty.check().unwrap();
    }
}
