//! The contents of BAR1, stored sparsely: a page exists once written, so a
//! 16 GiB BAR costs nothing until the guest touches it.

use std::collections::HashMap;

const PAGE: u64 = 4096;

#[derive(Clone, Debug, Default)]
pub struct SharedArea {
    size: u64,
    pages: HashMap<u64, Box<[u8; PAGE as usize]>>,
}

impl SharedArea {
    pub fn new(size: u64) -> Self {
        SharedArea {
            size,
            pages: HashMap::new(),
        }
    }

    /// Read; the caller checked that `offset + buf.len() <= size`.
    pub fn read(&self, offset: u64, buf: &mut [u8]) {
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let (page, within) = (at / PAGE, (at % PAGE) as usize);
            let n = (PAGE as usize - within).min(buf.len() - done);
            match self.pages.get(&page) {
                Some(p) => buf[done..done + n].copy_from_slice(&p[within..within + n]),
                None => buf[done..done + n].fill(0),
            }
            done += n;
        }
    }

    /// Write; the caller checked the bounds.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        let mut done = 0usize;
        while done < data.len() {
            let at = offset + done as u64;
            let (page, within) = (at / PAGE, (at % PAGE) as usize);
            let n = (PAGE as usize - within).min(data.len() - done);
            let p = self
                .pages
                .entry(page)
                .or_insert_with(|| Box::new([0u8; PAGE as usize]));
            p[within..within + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
    }

    /// Zero `[offset, offset + len)`: drop whole pages, clear partial ones.
    pub fn zero(&mut self, offset: u64, len: u64) {
        let end = offset.saturating_add(len).min(self.size);
        if offset >= end {
            return;
        }
        let first = offset / PAGE;
        let last = (end - 1) / PAGE;
        // Visit whichever is smaller: the pages in range or the stored ones.
        let pages: Vec<u64> = if last - first > self.pages.len() as u64 {
            self.pages
                .keys()
                .copied()
                .filter(|p| (first..=last).contains(p))
                .collect()
        } else {
            (first..=last).collect()
        };
        for p in pages {
            let start = p * PAGE;
            if start >= offset && start + PAGE <= end {
                self.pages.remove(&p);
            } else if let Some(page) = self.pages.get_mut(&p) {
                let from = offset.max(start) - start;
                let to = end.min(start + PAGE) - start;
                page[from as usize..to as usize].fill(0);
            }
        }
    }

    pub fn clear(&mut self) {
        self.pages.clear();
    }

    /// Bytes of host memory the stored pages take.
    pub fn resident(&self) -> u64 {
        self.pages.len() as u64 * PAGE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_reads_writes_and_zeroing() {
        let mut s = SharedArea::new(1 << 34);
        let mut buf = [0xffu8; 10];
        s.read(5, &mut buf);
        assert_eq!(buf, [0; 10]);
        s.write(4090, b"0123456789");
        assert_eq!(s.resident(), 2 * 4096);
        s.read(4090, &mut buf);
        assert_eq!(&buf, b"0123456789");
        s.zero(4092, 4);
        s.read(4090, &mut buf);
        assert_eq!(&buf, b"01\x00\x00\x00\x006789");
        s.write((1 << 34) - 4, b"last");
        let mut last = [0u8; 4];
        s.read((1 << 34) - 4, &mut last);
        assert_eq!(&last, b"last");
        // Zeroing a range far larger than what is stored walks the stored
        // pages, and keeps bytes outside the range.
        s.write(0, b"keep");
        s.zero(2, 1 << 33);
        let mut head = [0u8; 4];
        s.read(0, &mut head);
        assert_eq!(&head, b"ke\x00\x00");
        s.zero(0, 1 << 34);
        assert_eq!(s.resident(), 0);
        s.write(0, b"x");
        s.clear();
        assert_eq!(s.resident(), 0);
    }
}
