//! A minimal vfio-user client written from the protocol document (QEMU
//! docs/interop/vfio-user.rst), independent of the server's own wire code:
//! raw bytes on a unix socket, little-endian fields at the documented
//! offsets. Used by the fast tier, the benchmark and the end-to-end test.

#![allow(dead_code)]

use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

pub const VERSION: u16 = 1;
pub const DMA_MAP: u16 = 2;
pub const DMA_UNMAP: u16 = 3;
pub const DEVICE_GET_INFO: u16 = 4;
pub const DEVICE_GET_REGION_INFO: u16 = 5;
pub const DEVICE_GET_IRQ_INFO: u16 = 7;
pub const DEVICE_SET_IRQS: u16 = 8;
pub const REGION_READ: u16 = 9;
pub const REGION_WRITE: u16 = 10;
pub const DEVICE_RESET: u16 = 13;

pub const NO_REPLY: u32 = 0x10;
pub const REPLY: u32 = 0x1;
pub const ERROR: u32 = 0x20;

pub const BAR0: u32 = 0;
pub const BAR1: u32 = 1;
pub const CONFIG: u32 = 7;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hdr {
    pub id: u16,
    pub command: u16,
    pub size: u32,
    pub flags: u32,
    pub error: u32,
}

pub struct RawClient {
    pub sock: UnixStream,
    next_id: u16,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

impl RawClient {
    pub fn connect(path: &Path) -> io::Result<RawClient> {
        let sock = UnixStream::connect(path)?;
        sock.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(RawClient { sock, next_id: 1 })
    }

    /// Send one message, with `fds` as SCM_RIGHTS. Returns its id.
    pub fn send(
        &mut self,
        command: u16,
        flags: u32,
        payload: &[u8],
        fds: &[RawFd],
    ) -> io::Result<u16> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let mut msg = Vec::with_capacity(16 + payload.len());
        msg.extend_from_slice(&id.to_le_bytes());
        msg.extend_from_slice(&command.to_le_bytes());
        msg.extend_from_slice(&((16 + payload.len()) as u32).to_le_bytes());
        msg.extend_from_slice(&flags.to_le_bytes());
        msg.extend_from_slice(&0u32.to_le_bytes());
        msg.extend_from_slice(payload);
        send_with_fds(&self.sock, &msg, fds)?;
        Ok(id)
    }

    /// Send raw bytes (for malformed messages).
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        send_with_fds(&self.sock, bytes, &[])
    }

    pub fn recv(&mut self) -> io::Result<(Hdr, Vec<u8>)> {
        let mut h = [0u8; 16];
        self.sock.read_exact(&mut h)?;
        let hdr = Hdr {
            id: le16(&h, 0),
            command: le16(&h, 2),
            size: le32(&h, 4),
            flags: le32(&h, 8),
            error: le32(&h, 12),
        };
        if hdr.size < 16 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("reply size {}", hdr.size),
            ));
        }
        let mut payload = vec![0u8; hdr.size as usize - 16];
        self.sock.read_exact(&mut payload)?;
        Ok((hdr, payload))
    }

    /// Send and wait for the matching reply: its payload, or its errno.
    pub fn call(&mut self, command: u16, payload: &[u8]) -> io::Result<Result<Vec<u8>, u32>> {
        self.call_with_fds(command, payload, &[])
    }

    pub fn call_with_fds(
        &mut self,
        command: u16,
        payload: &[u8],
        fds: &[RawFd],
    ) -> io::Result<Result<Vec<u8>, u32>> {
        let id = self.send(command, 0, payload, fds)?;
        let (h, p) = self.recv()?;
        if h.id != id || h.command != command || h.flags & 0xf != REPLY {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected reply {h:?} to {command}#{id}"),
            ));
        }
        if h.flags & ERROR != 0 {
            return Ok(Err(h.error));
        }
        Ok(Ok(p))
    }

    /// VERSION 0.1 with capabilities: (major, minor, server JSON).
    pub fn version(&mut self) -> io::Result<(u16, u16, String)> {
        let caps = br#"{"capabilities":{"max_msg_fds":16,"max_data_xfer_size":1048576,"pgsizes":4096,"max_dma_maps":65535,"migration":{"pgsize":4096,"max_bitmap_size":1048576},"write_multiple":false}}"#;
        let mut p = Vec::new();
        p.extend_from_slice(&0u16.to_le_bytes());
        p.extend_from_slice(&1u16.to_le_bytes());
        p.extend_from_slice(caps);
        p.push(0);
        let r = self
            .call(VERSION, &p)?
            .map_err(|e| io::Error::other(format!("VERSION errno {e}")))?;
        if r.len() < 5 || *r.last().unwrap() != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "VERSION reply without NUL-terminated JSON",
            ));
        }
        let json = String::from_utf8_lossy(&r[4..r.len() - 1]).into_owned();
        Ok((le16(&r, 0), le16(&r, 2), json))
    }

    /// DEVICE_GET_INFO: (argsz, flags, num_regions, num_irqs).
    pub fn device_info(&mut self) -> io::Result<(u32, u32, u32, u32)> {
        let mut p = vec![0u8; 16];
        p[0..4].copy_from_slice(&16u32.to_le_bytes());
        let r = self
            .call(DEVICE_GET_INFO, &p)?
            .map_err(|e| io::Error::other(format!("errno {e}")))?;
        Ok((le32(&r, 0), le32(&r, 4), le32(&r, 8), le32(&r, 12)))
    }

    /// DEVICE_GET_REGION_INFO: (flags, size) or errno.
    pub fn region_info(&mut self, index: u32) -> io::Result<Result<(u32, u64), u32>> {
        let mut p = vec![0u8; 32];
        p[0..4].copy_from_slice(&32u32.to_le_bytes());
        p[8..12].copy_from_slice(&index.to_le_bytes());
        Ok(self.call(DEVICE_GET_REGION_INFO, &p)?.map(|r| {
            assert_eq!(le32(&r, 8), index, "index echoed");
            (le32(&r, 4), le64(&r, 16))
        }))
    }

    /// DEVICE_GET_IRQ_INFO: (flags, count) or errno.
    pub fn irq_info(&mut self, index: u32) -> io::Result<Result<(u32, u32), u32>> {
        let mut p = vec![0u8; 16];
        p[0..4].copy_from_slice(&16u32.to_le_bytes());
        p[8..12].copy_from_slice(&index.to_le_bytes());
        Ok(self
            .call(DEVICE_GET_IRQ_INFO, &p)?
            .map(|r| (le32(&r, 4), le32(&r, 12))))
    }

    fn rw_payload(region: u32, offset: u64, count: u32) -> Vec<u8> {
        let mut p = Vec::with_capacity(16);
        p.extend_from_slice(&offset.to_le_bytes());
        p.extend_from_slice(&region.to_le_bytes());
        p.extend_from_slice(&count.to_le_bytes());
        p
    }

    pub fn region_read(
        &mut self,
        region: u32,
        offset: u64,
        count: u32,
    ) -> io::Result<Result<Vec<u8>, u32>> {
        Ok(self
            .call(REGION_READ, &Self::rw_payload(region, offset, count))?
            .map(|r| r[16..].to_vec()))
    }

    pub fn region_write(
        &mut self,
        region: u32,
        offset: u64,
        data: &[u8],
    ) -> io::Result<Result<(), u32>> {
        let mut p = Self::rw_payload(region, offset, data.len() as u32);
        p.extend_from_slice(data);
        Ok(self.call(REGION_WRITE, &p)?.map(|_| ()))
    }

    pub fn read32(&mut self, offset: u64) -> u32 {
        let r = self.region_read(BAR0, offset, 4).unwrap().unwrap();
        le32(&r, 0)
    }

    pub fn write32(&mut self, offset: u64, v: u32) {
        self.region_write(BAR0, offset, &v.to_le_bytes())
            .unwrap()
            .unwrap();
    }

    /// DMA_MAP a window backed by `fd` from `file_offset`.
    pub fn dma_map(
        &mut self,
        gpa: u64,
        size: u64,
        fd: RawFd,
        file_offset: u64,
    ) -> io::Result<Result<(), u32>> {
        let mut p = Vec::with_capacity(32);
        p.extend_from_slice(&32u32.to_le_bytes());
        p.extend_from_slice(&3u32.to_le_bytes()); // read | write
        p.extend_from_slice(&file_offset.to_le_bytes());
        p.extend_from_slice(&gpa.to_le_bytes());
        p.extend_from_slice(&size.to_le_bytes());
        Ok(self.call_with_fds(DMA_MAP, &p, &[fd])?.map(|_| ()))
    }
}

/// sendmsg with SCM_RIGHTS.
pub fn send_with_fds(sock: &UnixStream, bytes: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let mut sent = 0;
    let mut first = true;
    while sent < bytes.len() {
        let mut iov = libc::iovec {
            iov_base: bytes[sent..].as_ptr() as *mut _,
            iov_len: bytes.len() - sent,
        };
        let mut control = [0u64; 16];
        // SAFETY: zeroed msghdr is valid; pointers point at live locals.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if first && !fds.is_empty() {
            let len = std::mem::size_of_val(fds);
            // SAFETY: CMSG_* compute sizes and pointers inside `control`,
            // which is large enough for 16 fds.
            unsafe {
                msg.msg_control = control.as_mut_ptr().cast();
                msg.msg_controllen = libc::CMSG_SPACE(len as u32) as _;
                let c = libc::CMSG_FIRSTHDR(&msg);
                (*c).cmsg_level = libc::SOL_SOCKET;
                (*c).cmsg_type = libc::SCM_RIGHTS;
                (*c).cmsg_len = libc::CMSG_LEN(len as u32) as _;
                std::ptr::copy_nonoverlapping(fds.as_ptr().cast::<u8>(), libc::CMSG_DATA(c), len);
            }
        }
        // SAFETY: `msg` describes live buffers.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        sent += n as usize;
        first = false;
    }
    Ok(())
}

/// A sealed memfd of `size` bytes, like QEMU's memory-backend-memfd.
pub fn memfd(size: u64) -> std::fs::File {
    use std::os::fd::FromRawFd;
    // SAFETY: memfd_create with a NUL-terminated name.
    let fd = unsafe {
        libc::memfd_create(
            c"gasbench-guest-ram".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    assert!(fd >= 0, "memfd_create: {}", io::Error::last_os_error());
    // SAFETY: a new fd nobody else owns.
    let f = unsafe { std::fs::File::from_raw_fd(fd) };
    f.set_len(size).unwrap();
    // SAFETY: fcntl on our fd.
    unsafe {
        libc::fcntl(
            fd,
            libc::F_ADD_SEALS,
            libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL,
        );
    }
    f
}
