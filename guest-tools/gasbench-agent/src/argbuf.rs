//! Where an ioctl's argument lives: an ordinary buffer, or one of the bad
//! user pointers of [`ArgPtr`]. Buffers are whole pages from `mmap`, so the
//! agent controls exactly which bytes around the argument are mapped.

use gasbench_abi::bundle::ArgPtr;

use crate::sys::{describe_errno, errno, page_size};

/// An address in the x86-64 kernel direct map: never user-accessible.
const KERNEL_ADDRESS: usize = 0xffff_8880_0000_0000;

pub struct ArgBuf {
    kind: ArgPtr,
    addr: usize,
    len: usize,
    /// Our mappings, unmapped on drop.
    mapping: Option<(usize, usize)>,
}

fn map(len: usize) -> Result<usize, String> {
    // SAFETY: a fresh private anonymous mapping; the result is checked.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(describe_errno("mmap", errno()));
    }
    Ok(p as usize)
}

fn unmap(addr: usize, len: usize) {
    // SAFETY: only called on ranges this module mapped and no longer uses.
    unsafe { libc::munmap(addr as *mut libc::c_void, len) };
}

impl ArgBuf {
    /// Place `bytes` as `kind` says.
    pub fn place(kind: ArgPtr, bytes: &[u8]) -> Result<ArgBuf, String> {
        let ps = page_size();
        let pages = |n: usize| n.div_ceil(ps).max(1) * ps;
        let len = bytes.len();
        let copy_to = |addr: usize, data: &[u8]| {
            // SAFETY: callers pass an address inside a writable mapping of
            // ours with room for `data`.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), addr as *mut u8, data.len()) }
        };
        let buf = match kind {
            ArgPtr::Buffer | ArgPtr::Unaligned | ArgPtr::Readonly => {
                let extra = usize::from(kind == ArgPtr::Unaligned);
                let size = pages(len + extra);
                let base = map(size)?;
                copy_to(base + extra, bytes);
                if kind == ArgPtr::Readonly {
                    // SAFETY: changing the protection of our own mapping.
                    if unsafe { libc::mprotect(base as *mut libc::c_void, size, libc::PROT_READ) }
                        != 0
                    {
                        let e = errno();
                        unmap(base, size);
                        return Err(describe_errno("mprotect", e));
                    }
                }
                ArgBuf {
                    kind,
                    addr: base + extra,
                    len,
                    mapping: Some((base, size)),
                }
            }
            ArgPtr::Null => ArgBuf {
                kind,
                addr: 0,
                len,
                mapping: None,
            },
            ArgPtr::Kernel => ArgBuf {
                kind,
                addr: KERNEL_ADDRESS,
                len,
                mapping: None,
            },
            ArgPtr::Unmapped => {
                let base = map(ps)?;
                unmap(base, ps);
                ArgBuf {
                    kind,
                    addr: base,
                    len,
                    mapping: None,
                }
            }
            ArgPtr::Straddle => {
                // The first half of the argument ends a mapped region; the
                // page after it is unmapped.
                let mapped_part = len / 2;
                let first = pages(mapped_part);
                let base = map(first + ps)?;
                unmap(base + first, ps);
                let addr = base + first - mapped_part;
                copy_to(addr, &bytes[..mapped_part]);
                ArgBuf {
                    kind,
                    addr,
                    len,
                    mapping: Some((base, first)),
                }
            }
        };
        Ok(buf)
    }

    pub fn addr(&self) -> usize {
        self.addr
    }

    /// The argument's bytes after the call, where we can read them.
    pub fn read_back(&self) -> Option<Vec<u8>> {
        match self.kind {
            ArgPtr::Buffer | ArgPtr::Unaligned | ArgPtr::Readonly => {
                let mut out = vec![0u8; self.len];
                // SAFETY: the argument lies wholly inside our readable
                // mapping, which lives as long as `self`.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        self.addr as *const u8,
                        out.as_mut_ptr(),
                        self.len,
                    )
                };
                Some(out)
            }
            _ => None,
        }
    }
}

impl Drop for ArgBuf {
    fn drop(&mut self) {
        if let Some((base, size)) = self.mapping {
            unmap(base, size);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `write(2)` from the buffer into a pipe makes the kernel read it
    /// (/dev/null would not even look): EFAULT tells us the address is bad.
    fn kernel_can_read(addr: usize, len: usize) -> Result<(), i32> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the kernel validates the user pointer; that is the test.
        let n = unsafe { libc::write(fds[1], addr as *const libc::c_void, len) };
        let r = if n < 0 { Err(errno()) } else { Ok(()) };
        // SAFETY: closing the descriptors we opened.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        r
    }

    /// A pipe's read end makes the kernel write into the buffer.
    fn kernel_can_write(addr: usize, len: usize) -> Result<(), i32> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let data = vec![7u8; len];
        // SAFETY: writing our own buffer into our own pipe.
        unsafe { libc::write(fds[1], data.as_ptr().cast(), len) };
        // SAFETY: the kernel validates the user pointer; that is the test.
        let n = unsafe { libc::read(fds[0], addr as *mut libc::c_void, len) };
        let r = if n < 0 { Err(errno()) } else { Ok(()) };
        // SAFETY: closing the descriptors we opened.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        r
    }

    #[test]
    fn good_and_bad_pointers_behave_as_named() {
        let bytes: Vec<u8> = (0..24).collect();
        let buf = ArgBuf::place(ArgPtr::Buffer, &bytes).unwrap();
        assert_eq!(kernel_can_read(buf.addr(), 24), Ok(()));
        assert_eq!(kernel_can_write(buf.addr(), 24), Ok(()));
        assert_eq!(buf.read_back().unwrap(), vec![7u8; 24]);

        let un = ArgBuf::place(ArgPtr::Unaligned, &bytes).unwrap();
        assert_eq!(un.addr() % 2, 1);
        assert_eq!(un.read_back().unwrap(), bytes);

        let ro = ArgBuf::place(ArgPtr::Readonly, &bytes).unwrap();
        assert_eq!(kernel_can_read(ro.addr(), 24), Ok(()));
        assert_eq!(kernel_can_write(ro.addr(), 24), Err(libc::EFAULT));
        assert_eq!(ro.read_back().unwrap(), bytes);

        for kind in [
            ArgPtr::Null,
            ArgPtr::Unmapped,
            ArgPtr::Kernel,
            ArgPtr::Straddle,
        ] {
            let b = ArgBuf::place(kind, &bytes).unwrap();
            assert_eq!(kernel_can_read(b.addr(), 24), Err(libc::EFAULT), "{kind:?}");
            assert!(b.read_back().is_none());
        }
        // The mapped half of a straddling argument is really readable.
        let st = ArgBuf::place(ArgPtr::Straddle, &bytes).unwrap();
        assert_eq!(kernel_can_read(st.addr(), 12), Ok(()));
        assert_eq!(kernel_can_read(st.addr() + 11, 2), Err(libc::EFAULT));
    }
}
