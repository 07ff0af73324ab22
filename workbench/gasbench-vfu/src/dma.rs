//! Guest RAM as QEMU shares it: DMA_MAP windows, each mapped from the
//! memfd that came with it (`memory-backend-memfd,share=on`).
//!
//! A window that came without an fd, or whose fd could not be mapped
//! safely, is remembered but unreachable: accesses to it fail with a
//! message saying why, instead of going over the socket (DMA_READ/WRITE,
//! which this server does not implement).
//!
//! SIGBUS guard: a mapping past the end of its file, or of a file the
//! client later shrinks, would crash the server on access. The fd's size is
//! checked against the window, and only a memfd sealed against shrinking
//! is mapped (QEMU seals its memfds; if the seal is missing we add it).
//! Any other fd (a plain file, a memfd that cannot be sealed) is reached
//! with pread/pwrite instead: a client that truncates it makes the access
//! fail, not the server crash.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;

use gasbench_device::{DmaError, GuestRam};
use vm_memory::{
    Bytes, FileOffset, GuestAddress, GuestRegionMmap, MemoryRegionAddress, MmapRegion,
};

use crate::wire::vfio;

struct Window {
    gpa: u64,
    size: u64,
    writable: bool,
    map: Option<Access>,
}

/// How a window's bytes are reached.
enum Access {
    /// Mapped: a memfd that cannot shrink.
    Mapped(GuestRegionMmap),
    /// pread/pwrite at `offset` + the offset in the window.
    File { file: File, offset: u64 },
}

impl Access {
    fn read(&self, at: u64, buf: &mut [u8]) -> bool {
        match self {
            Access::Mapped(m) => m.read_slice(buf, MemoryRegionAddress(at)).is_ok(),
            Access::File { file, offset } => file.read_exact_at(buf, offset + at).is_ok(),
        }
    }

    fn write(&self, at: u64, data: &[u8]) -> bool {
        match self {
            Access::Mapped(m) => m.write_slice(data, MemoryRegionAddress(at)).is_ok(),
            Access::File { file, offset } => file.write_all_at(data, offset + at).is_ok(),
        }
    }
}

impl Window {
    fn end(&self) -> u64 {
        self.gpa + self.size
    }
}

/// How much guest memory a client may ask the server to track and map: a
/// client (QEMU, or anything that connects to the socket) cannot make it
/// hold unbounded mappings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaLimits {
    /// Windows at once.
    pub max_windows: usize,
    /// Bytes of all windows together.
    pub max_bytes: u64,
}

impl Default for DmaLimits {
    /// Far above what a guest gasbench starts asks for (its RAM, at most
    /// 64 GiB, and a few ROMs in a dozen or so windows).
    fn default() -> Self {
        DmaLimits {
            max_windows: 1024,
            max_bytes: 256 << 30,
        }
    }
}

#[derive(Default)]
pub struct DmaSpace {
    /// Sorted by `gpa`, never overlapping.
    windows: Vec<Window>,
    limits: DmaLimits,
}

#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error("window {gpa:#x}+{size:#x} is empty or wraps around")]
    BadRange { gpa: u64, size: u64 },
    #[error("window {gpa:#x}+{size:#x} overlaps one already mapped")]
    Overlap { gpa: u64, size: u64 },
    #[error("no window matches {gpa:#x}+{size:#x}")]
    NoSuchWindow { gpa: u64, size: u64 },
    #[error("unmap would split the window at {gpa:#x}")]
    Split { gpa: u64 },
    #[error("window {gpa:#x}+{size:#x} would make {windows} windows (at most {max})")]
    TooManyWindows {
        gpa: u64,
        size: u64,
        windows: usize,
        max: usize,
    },
    #[error("window {gpa:#x}+{size:#x} would make {total:#x} bytes mapped (at most {max:#x})")]
    TooManyBytes {
        gpa: u64,
        size: u64,
        total: u64,
        max: u64,
    },
}

impl MapError {
    pub fn errno(&self) -> u32 {
        match self {
            MapError::Overlap { .. } => libc::EEXIST as u32,
            // As the kernel's vfio does when its DMA mappings run out.
            MapError::TooManyWindows { .. } | MapError::TooManyBytes { .. } => libc::ENOSPC as u32,
            _ => libc::EINVAL as u32,
        }
    }
}

/// What DMA_MAP did with a window.
#[derive(Debug)]
pub struct Mapped {
    /// The device can reach it.
    pub reachable: bool,
    /// Why not, or a warning about it.
    pub note: Option<String>,
}

impl DmaSpace {
    /// An empty space that holds at most `limits`.
    pub fn with_limits(limits: DmaLimits) -> DmaSpace {
        DmaSpace {
            windows: Vec::new(),
            limits,
        }
    }

    /// Bytes of all windows together.
    pub fn bytes(&self) -> u64 {
        self.windows.iter().map(|w| w.size).sum()
    }

    /// DMA_MAP: remember the window, map its fd when there is one.
    pub fn map(
        &mut self,
        flags: u32,
        file_offset: u64,
        gpa: u64,
        size: u64,
        fd: Option<OwnedFd>,
    ) -> Result<Mapped, MapError> {
        let end = gpa.checked_add(size).filter(|_| size > 0);
        let Some(end) = end else {
            return Err(MapError::BadRange { gpa, size });
        };
        if self.windows.iter().any(|w| w.gpa < end && gpa < w.end()) {
            return Err(MapError::Overlap { gpa, size });
        }
        if self.windows.len() >= self.limits.max_windows {
            return Err(MapError::TooManyWindows {
                gpa,
                size,
                windows: self.windows.len() + 1,
                max: self.limits.max_windows,
            });
        }
        let total = self.bytes().saturating_add(size);
        if total > self.limits.max_bytes {
            return Err(MapError::TooManyBytes {
                gpa,
                size,
                total,
                max: self.limits.max_bytes,
            });
        }
        let writable = flags & vfio::DMA_MAP_FLAG_WRITE != 0;
        let (map, note) = match fd {
            // ROM, VGA memory and the like come without an fd; the
            // DmaMap event says the window is unreachable, which is normal.
            None => (None, None),
            Some(fd) => match map_fd(fd, file_offset, gpa, size, writable) {
                Ok((m, note)) => (Some(m), note),
                Err(why) => (None, Some(why)),
            },
        };
        let reachable = map.is_some();
        let at = self.windows.partition_point(|w| w.gpa < gpa);
        self.windows.insert(
            at,
            Window {
                gpa,
                size,
                writable,
                map,
            },
        );
        Ok(Mapped { reachable, note })
    }

    /// DMA_UNMAP: drop every window inside `gpa..gpa+size` (all of them
    /// with `all`). Returns how many went.
    pub fn unmap(&mut self, gpa: u64, size: u64, all: bool) -> Result<usize, MapError> {
        if all {
            let n = self.windows.len();
            self.windows.clear();
            return Ok(n);
        }
        let Some(end) = gpa.checked_add(size) else {
            return Err(MapError::BadRange { gpa, size });
        };
        if let Some(w) = self
            .windows
            .iter()
            .find(|w| w.gpa < end && gpa < w.end() && (w.gpa < gpa || w.end() > end))
        {
            return Err(MapError::Split { gpa: w.gpa });
        }
        let before = self.windows.len();
        self.windows.retain(|w| !(w.gpa >= gpa && w.end() <= end));
        let n = before - self.windows.len();
        if n == 0 {
            return Err(MapError::NoSuchWindow { gpa, size });
        }
        Ok(n)
    }

    pub fn clear(&mut self) {
        self.windows.clear();
    }

    pub fn len(&self) -> usize {
        self.windows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// Walk `gpa..gpa+len` window by window.
    fn walk(
        &self,
        gpa: u64,
        len: usize,
        write: bool,
        mut f: impl FnMut(&Access, u64, usize, usize) -> bool,
    ) -> Result<(), DmaError> {
        if gpa.checked_add(len as u64).is_none() {
            return Err(DmaError::Unmapped { gpa, len });
        }
        let mut done = 0usize;
        while done < len {
            let at = gpa + done as u64;
            let i = self.windows.partition_point(|w| w.gpa <= at);
            let w = i
                .checked_sub(1)
                .map(|i| &self.windows[i])
                .filter(|w| at < w.end())
                .ok_or(DmaError::Unmapped { gpa, len })?;
            let Some(map) = &w.map else {
                return Err(DmaError::NoFd { gpa, len });
            };
            if write && !w.writable {
                return Err(DmaError::ReadOnly { gpa, len });
            }
            let n = ((w.end() - at) as usize).min(len - done);
            if !f(map, at - w.gpa, done, n) {
                return Err(DmaError::Other {
                    gpa,
                    len,
                    reason: "the mapping refused the access".into(),
                });
            }
            done += n;
        }
        Ok(())
    }

    /// (gpa, size, reachable) of every window.
    pub fn windows(&self) -> impl Iterator<Item = (u64, u64, bool)> + '_ {
        self.windows
            .iter()
            .map(|w| (w.gpa, w.size, w.map.is_some()))
    }
}

impl GuestRam for DmaSpace {
    fn dma_read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        let len = buf.len();
        self.walk(gpa, len, false, |map, off, done, n| {
            map.read(off, &mut buf[done..done + n])
        })
    }

    fn dma_write(&self, gpa: u64, data: &[u8]) -> Result<(), DmaError> {
        self.walk(gpa, data.len(), true, |map, off, done, n| {
            map.write(off, &data[done..done + n])
        })
    }
}

/// Map `size` bytes of `fd` from `offset` when that is safe, else reach
/// them with pread/pwrite (see the SIGBUS guard above).
fn map_fd(
    fd: OwnedFd,
    offset: u64,
    gpa: u64,
    size: u64,
    writable: bool,
) -> Result<(Access, Option<String>), String> {
    let file = File::from(fd);
    let len = usize::try_from(size)
        .map_err(|_| format!("window of {size:#x} bytes is too large to map"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot stat the fd: {e}"))?;
    let file_end = offset
        .checked_add(size)
        .ok_or_else(|| "file offset + size wraps around".to_string())?;
    if !meta.file_type().is_file() {
        return Err("the fd is not a regular file or memfd".into());
    }
    if meta.len() < file_end {
        return Err(format!(
            "the fd holds {:#x} bytes, the window needs {file_end:#x}",
            meta.len()
        ));
    }
    if let Err(why) = ensure_no_shrink(&file) {
        let note = format!("{why}: reached with pread/pwrite, not mapped");
        return Ok((Access::File { file, offset }, Some(note)));
    }
    let prot = libc::PROT_READ | if writable { libc::PROT_WRITE } else { 0 };
    let region = MmapRegion::<()>::build(
        Some(FileOffset::new(file, offset)),
        len,
        prot,
        libc::MAP_SHARED | libc::MAP_NORESERVE,
    )
    .map_err(|e| format!("mmap failed: {e}"))?;
    let map = GuestRegionMmap::new(region, GuestAddress(gpa))
        .ok_or_else(|| "the window wraps around".to_string())?;
    Ok((Access::Mapped(map), None))
}

/// Make sure the file cannot shrink under a mapping; why not when it
/// cannot be made sure.
fn ensure_no_shrink(file: &File) -> Result<(), String> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl(F_GET_SEALS) on an fd we own reads an int, no memory.
    let seals = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
    if seals < 0 {
        // Not a memfd (EINVAL): its owner can truncate it at any time.
        return Err("not a memfd, so it could shrink under a mapping".into());
    }
    if seals & libc::F_SEAL_SHRINK != 0 {
        return Ok(());
    }
    // SAFETY: as above; F_ADD_SEALS takes an int argument.
    let r = unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, libc::F_SEAL_SHRINK) };
    if r < 0 {
        return Err(format!(
            "the memfd is not sealed against shrinking and cannot be sealed ({})",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;
    use std::os::unix::fs::FileExt;

    fn memfd(size: u64, sealable: bool) -> File {
        let flags = libc::MFD_CLOEXEC | if sealable { libc::MFD_ALLOW_SEALING } else { 0 };
        // SAFETY: memfd_create with a NUL-terminated name returns a new fd
        // or -1.
        let fd = unsafe { libc::memfd_create(c"gasbench-test".as_ptr(), flags) };
        assert!(fd >= 0);
        // SAFETY: fd was just created and is owned by nobody else.
        let f = unsafe { File::from_raw_fd(fd) };
        f.set_len(size).unwrap();
        f
    }

    fn rw() -> u32 {
        vfio::DMA_MAP_FLAG_READ | vfio::DMA_MAP_FLAG_WRITE
    }

    #[test]
    fn memfd_windows_are_read_and_written_across_boundaries() {
        let a = memfd(0x2000, true);
        let b = memfd(0x3000, true);
        let mut d = DmaSpace::default();
        let m = d
            .map(
                rw(),
                0,
                0x10000,
                0x2000,
                Some(a.try_clone().unwrap().into()),
            )
            .unwrap();
        assert!(m.reachable && m.note.is_none());
        // The second window maps the memfd from offset 0x1000.
        d.map(
            rw(),
            0x1000,
            0x12000,
            0x2000,
            Some(b.try_clone().unwrap().into()),
        )
        .unwrap();
        d.dma_write(0x11ffc, b"spanning").unwrap();
        let mut back = [0u8; 8];
        d.dma_read(0x11ffc, &mut back).unwrap();
        assert_eq!(&back, b"spanning");
        // It really is the client's memory.
        let mut head = [0u8; 4];
        a.read_exact_at(&mut head, 0x1ffc).unwrap();
        assert_eq!(&head, b"span");
        b.read_exact_at(&mut head, 0x1000).unwrap();
        assert_eq!(&head, b"ning");
        // Past the end, and before the start.
        assert!(matches!(
            d.dma_read(0x13ffe, &mut back),
            Err(DmaError::Unmapped { .. })
        ));
        assert!(d.dma_read(0xfff0, &mut back).is_err());
        assert!(d.dma_read(u64::MAX - 2, &mut back).is_err());
        assert_eq!(d.unmap(0x10000, 0x4000, false).unwrap(), 2);
        assert!(d.is_empty());
    }

    #[test]
    fn unsafe_or_missing_fds_leave_windows_unreachable() {
        let mut d = DmaSpace::default();
        let m = d.map(rw(), 0, 0x1000, 0x1000, None).unwrap();
        assert!(!m.reachable);
        let mut b = [0u8; 4];
        assert!(matches!(
            d.dma_read(0x1000, &mut b),
            Err(DmaError::NoFd { .. })
        ));
        // A window larger than its file.
        let small = memfd(0x1000, true);
        let m = d.map(rw(), 0, 0x4000, 0x2000, Some(small.into())).unwrap();
        assert!(!m.reachable);
        assert!(m.note.unwrap().contains("holds 0x1000 bytes"));
        // A memfd that cannot be sealed against shrinking: reached with
        // pread/pwrite, and a truncation makes accesses fail, not crash.
        let unsealable = memfd(0x1000, false);
        let m = d
            .map(
                rw(),
                0,
                0x8000,
                0x1000,
                Some(unsealable.try_clone().unwrap().into()),
            )
            .unwrap();
        assert!(m.reachable);
        assert!(m.note.unwrap().contains("pread/pwrite"));
        d.dma_write(0x8ff0, b"unsealed").unwrap();
        let mut back = [0u8; 8];
        d.dma_read(0x8ff0, &mut back).unwrap();
        assert_eq!(&back, b"unsealed");
        unsealable.set_len(0).unwrap();
        assert!(d.dma_read(0x8ff0, &mut back).is_err());
        // So is a plain file, truncated by its owner after the map.
        let dir = tempfile::tempdir().unwrap();
        let plain = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("ram"))
            .unwrap();
        plain.set_len(0x2000).unwrap();
        let m = d
            .map(
                rw(),
                0,
                0x20000,
                0x2000,
                Some(plain.try_clone().unwrap().into()),
            )
            .unwrap();
        assert!(m.reachable);
        assert!(m.note.unwrap().contains("not a memfd"));
        d.dma_write(0x21000, b"plain").unwrap();
        plain.set_len(0).unwrap();
        assert!(d.dma_read(0x21000, &mut back[..5]).is_err());
        // A sealable one gets the seal.
        let ok = memfd(0x1000, true);
        d.map(
            rw(),
            0,
            0x9000,
            0x1000,
            Some(ok.try_clone().unwrap().into()),
        )
        .unwrap();
        // SAFETY: F_GET_SEALS on a valid fd.
        let seals = unsafe { libc::fcntl(ok.as_raw_fd(), libc::F_GET_SEALS) };
        assert!(seals & libc::F_SEAL_SHRINK != 0);
        // Read-only windows refuse writes.
        let ro = memfd(0x1000, true);
        d.map(vfio::DMA_MAP_FLAG_READ, 0, 0xa000, 0x1000, Some(ro.into()))
            .unwrap();
        assert!(matches!(
            d.dma_write(0xa000, b"x"),
            Err(DmaError::ReadOnly { .. })
        ));
        assert!(d.dma_read(0xa000, &mut b).is_ok());
    }

    #[test]
    fn map_and_unmap_errors() {
        let mut d = DmaSpace::default();
        assert!(matches!(
            d.map(rw(), 0, 0, 0, None),
            Err(MapError::BadRange { .. })
        ));
        assert!(matches!(
            d.map(rw(), 0, u64::MAX, 2, None),
            Err(MapError::BadRange { .. })
        ));
        d.map(rw(), 0, 0x1000, 0x2000, None).unwrap();
        let e = d.map(rw(), 0, 0x2000, 0x1000, None).unwrap_err();
        assert_eq!(e.errno(), libc::EEXIST as u32);
        assert!(matches!(
            d.unmap(0x1000, 0x1000, false),
            Err(MapError::Split { .. })
        ));
        assert!(matches!(
            d.unmap(0x8000, 0x1000, false),
            Err(MapError::NoSuchWindow { .. })
        ));
        d.map(rw(), 0, 0x8000, 0x1000, None).unwrap();
        assert_eq!(d.unmap(0, 0, true).unwrap(), 2);
    }
}
