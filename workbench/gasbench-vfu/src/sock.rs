//! Socket calls std does not offer: receiving SCM_RIGHTS file descriptors
//! and sending without SIGPIPE. Every fd that arrives becomes an
//! `OwnedFd` at once, so none leaks whatever happens next.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::wire::MAX_RECV_FDS;

/// What one receive produced.
pub enum Received {
    /// The whole buffer arrived.
    Full,
    /// The peer closed before the first byte.
    Closed,
}

/// Fill `buf` completely, collecting the fds that arrive with it (they
/// come with the first bytes of the message that carried them). EOF after
/// the first byte is an `UnexpectedEof` error: the client left mid-message.
pub fn recv_exact_with_fds(
    sock: &impl AsRawFd,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<Received> {
    recv_exact_with_fds_then(sock, buf, fds, || {})
}

/// [`recv_exact_with_fds`] that calls `started` once the first bytes have
/// come (to bound the wait for the rest). A receive timeout before the
/// first byte is the socket's `WouldBlock`; after it, a `TimedOut` error
/// saying how much of the buffer came.
pub fn recv_exact_with_fds_then(
    sock: &impl AsRawFd,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    mut started: impl FnMut(),
) -> io::Result<Received> {
    let fd = sock.as_raw_fd();
    let mut got = 0usize;
    while got < buf.len() {
        let n = match recv_once(fd, &mut buf[got..], fds) {
            Ok(n) => n,
            Err(e)
                if got > 0
                    && matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
            {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{got} of {} bytes came", buf.len()),
                ));
            }
            Err(e) => return Err(e),
        };
        if got == 0 && n > 0 {
            started();
        }
        if n == 0 {
            if got == 0 {
                return Ok(Received::Closed);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the client disconnected mid-message ({got} of {} bytes)",
                    buf.len()
                ),
            ));
        }
        got += n;
    }
    Ok(Received::Full)
}

/// One recvmsg(2): data into `buf`, fds appended to `fds`.
fn recv_once(fd: RawFd, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    // Room for MAX_RECV_FDS descriptors, aligned for cmsghdr.
    let mut control = [0u64; 16];
    debug_assert!(
        // SAFETY: CMSG_SPACE only computes a size.
        unsafe { libc::CMSG_SPACE((MAX_RECV_FDS * size_of::<RawFd>()) as u32) } as usize
            <= size_of_val(&control)
    );
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    loop {
        // SAFETY: zeroed msghdr is a valid "empty" value; the pointers set
        // below point into `iov` and `control`, which outlive the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of_val(&control) as _;
        // SAFETY: `fd` is a socket we own; `msg` describes writable buffers
        // of the stated lengths.
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        take_fds(&msg, fds);
        if msg.msg_flags & libc::MSG_CTRUNC != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the client sent more than {MAX_RECV_FDS} file descriptors"),
            ));
        }
        return Ok(n as usize);
    }
}

/// Move every SCM_RIGHTS fd in `msg` into `fds`.
fn take_fds(msg: &libc::msghdr, fds: &mut Vec<OwnedFd>) {
    // SAFETY: `msg` was filled by recvmsg; CMSG_FIRSTHDR/NXTHDR walk its
    // control buffer within msg_controllen, and CMSG_DATA points at the
    // payload of a header they returned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c);
                let bytes = (*c).cmsg_len as usize - (data as usize - c as usize);
                let n = bytes / size_of::<RawFd>();
                for i in 0..n {
                    let raw = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    if raw >= 0 {
                        fds.push(OwnedFd::from_raw_fd(raw));
                    }
                }
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
}

/// Send every byte of `parts`, in order, without raising SIGPIPE when the
/// client is gone.
pub fn send_all(sock: &impl AsRawFd, parts: &[&[u8]]) -> io::Result<()> {
    let fd = sock.as_raw_fd();
    let mut part = 0usize;
    let mut off = 0usize;
    while part < parts.len() {
        if off == parts[part].len() {
            part += 1;
            off = 0;
            continue;
        }
        let mut iovs: Vec<libc::iovec> = Vec::with_capacity(parts.len() - part);
        iovs.push(libc::iovec {
            iov_base: parts[part][off..].as_ptr() as *mut _,
            iov_len: parts[part].len() - off,
        });
        for p in &parts[part + 1..] {
            iovs.push(libc::iovec {
                iov_base: p.as_ptr() as *mut _,
                iov_len: p.len(),
            });
        }
        // SAFETY: zeroed msghdr is valid; msg_iov points at `iovs`, whose
        // entries point into `parts`, all alive for the call. The kernel
        // only reads them.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iovs.as_mut_ptr();
        msg.msg_iovlen = iovs.len() as _;
        // SAFETY: `fd` is our socket; `msg` describes readable buffers.
        let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let mut n = n as usize;
        while n > 0 && part < parts.len() {
            let left = parts[part].len() - off;
            if n >= left {
                n -= left;
                part += 1;
                off = 0;
            } else {
                off += n;
                n = 0;
            }
        }
    }
    Ok(())
}

/// shutdown(2) both directions: wakes a thread blocked in accept or recv
/// on the same socket.
pub fn shutdown(sock: &impl AsRawFd) {
    // SAFETY: shutdown on a valid socket fd has no memory effects; errors
    // (already shut down, not connected) are irrelevant here.
    unsafe {
        libc::shutdown(sock.as_raw_fd(), libc::SHUT_RDWR);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn short_reads_are_completed_and_eof_is_told_apart() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let writer = std::thread::spawn(move || {
            b.write_all(b"ab").unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
            b.write_all(b"cd").unwrap();
            b.write_all(b"e").unwrap();
        });
        let mut buf = [0u8; 4];
        let mut fds = Vec::new();
        assert!(matches!(
            recv_exact_with_fds(&a, &mut buf, &mut fds).unwrap(),
            Received::Full
        ));
        assert_eq!(&buf, b"abcd");
        writer.join().unwrap();
        let err = match recv_exact_with_fds(&a, &mut buf, &mut fds) {
            Err(e) => e,
            Ok(_) => panic!("EOF after one byte must be an error"),
        };
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(matches!(
            recv_exact_with_fds(&a, &mut buf, &mut fds).unwrap(),
            Received::Closed
        ));
    }

    #[test]
    fn send_all_survives_a_gone_peer() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(b);
        let err = send_all(&a, &[b"x", b"yz"]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        let (a, b) = UnixStream::pair().unwrap();
        let big = vec![7u8; 1 << 20];
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut &b, &mut got).unwrap();
            got
        });
        send_all(&a, &[b"head", &big, b"tail"]).unwrap();
        drop(a);
        let got = reader.join().unwrap();
        assert_eq!(got.len(), 8 + (1 << 20));
        assert_eq!(&got[..4], b"head");
        assert_eq!(&got[got.len() - 4..], b"tail");
    }
}
