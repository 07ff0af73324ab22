//! Where the agent's messages go: the virtio-serial port in the guest,
//! stdout when run on the host. One message is one line, written with
//! as few `write`s as the kernel allows and under a lock, so lines from
//! parallel threads never interleave.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Mutex;

use gasbench_abi::protocol::{AgentMsg, LogLevel, MAX_LINE_BYTES, encode_line};

pub struct Out {
    fd: Mutex<OwnedFd>,
    /// Also print `Log` messages on stderr (the console in the guest).
    echo_logs: bool,
}

impl Out {
    pub fn new(fd: OwnedFd, echo_logs: bool) -> Out {
        Out {
            fd: Mutex::new(fd),
            echo_logs,
        }
    }

    /// Stdout, duplicated so that closing it elsewhere does not matter.
    pub fn stdout() -> std::io::Result<Out> {
        let fd = std::io::stdout().as_fd_owned()?;
        Ok(Out::new(fd, false))
    }

    /// Send one message. Errors are reported on stderr: there is nowhere
    /// else to report them, and the agent must go on.
    pub fn send(&self, msg: &AgentMsg) {
        if self.echo_logs
            && let AgentMsg::Log { level, text } = msg
        {
            eprintln!("gasbench-agent: {level:?}: {text}");
        }
        let mut line = encode_line(msg);
        if line.len() > MAX_LINE_BYTES {
            line = encode_line(&over_limit(msg, line.len()));
        }
        // A poisoned lock only means another thread panicked mid-write;
        // the fd is still fine.
        let fd = self.fd.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = write_all(fd.as_raw_fd(), &line) {
            eprintln!("gasbench-agent: cannot send a message: {e}");
        }
    }

    /// Write `chunk` over and over, `size` bytes in all, onto the port as
    /// it is, then a newline (so the next message starts a line), all
    /// under the lock: a scenario's garbage never splits a message of
    /// another thread. Returns the bytes written, or how far it got.
    pub fn send_raw(&self, chunk: &[u8], size: u64) -> Result<u64, (u64, std::io::Error)> {
        let fd = self.fd.lock().unwrap_or_else(|e| e.into_inner());
        let mut written = 0u64;
        while written < size {
            let n = (size - written).min(chunk.len() as u64) as usize;
            write_all(fd.as_raw_fd(), &chunk[..n]).map_err(|e| (written, e))?;
            written += n as u64;
        }
        write_all(fd.as_raw_fd(), b"\n").map_err(|e| (written, e))?;
        Ok(written)
    }

    pub fn log(&self, level: LogLevel, text: impl Into<String>) {
        self.send(&AgentMsg::Log {
            level,
            text: text.into(),
        });
    }
}

/// What to send instead of a message that would be longer than the
/// protocol allows: a call's record without its decoded arguments (the
/// call still ends, with its return value and errno), anything else as
/// an error in the log.
fn over_limit(msg: &AgentMsg, len: usize) -> AgentMsg {
    let why = format!("{len} bytes encoded, over the protocol's {MAX_LINE_BYTES}: not sent");
    match msg {
        AgentMsg::CallEnd(rec) => {
            let mut rec = rec.clone();
            rec.args_in = serde_json::json!({ "not_sent": why });
            rec.args_out = serde_json::json!({ "not_sent": why });
            AgentMsg::CallEnd(rec)
        }
        _ => AgentMsg::Log {
            level: LogLevel::Error,
            text: format!("a message of {why}"),
        },
    }
}

fn write_all(fd: i32, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is a valid readable slice for its length.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

trait AsFdOwned {
    fn as_fd_owned(&self) -> std::io::Result<OwnedFd>;
}

impl AsFdOwned for std::io::Stdout {
    fn as_fd_owned(&self) -> std::io::Result<OwnedFd> {
        use std::os::fd::AsFd;
        self.as_fd().try_clone_to_owned()
    }
}
