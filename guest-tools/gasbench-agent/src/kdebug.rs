//! The kernel's debugging interfaces the agent drives: systematic fault
//! injection (`/proc/thread-self/fail-nth`, Documentation/fault-injection/
//! fault-injection.rst), kmemleak scans (Documentation/dev-tools/
//! kmemleak.rst) and the call markers in the kernel log.

use std::ffi::CStr;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::time::Duration;

use gasbench_abi::bundle::{FaultKind, limits};

use crate::sys::{describe_errno, errno};

const DEBUGFS: &str = "/sys/kernel/debug";

/// Keep every fault kind but `kind` from counting under fail-nth: their
/// stack-trace filter requires an address no stack has (fail-nth honours
/// it before it counts), while `kind`'s admits every address and fails
/// sleeping allocations too.
pub fn select_fault(kind: FaultKind) -> Result<(), String> {
    let dir = format!("{DEBUGFS}/{}", kind.debugfs_dir());
    if !std::path::Path::new(&dir).is_dir() {
        return Err(format!(
            "this kernel has no {} fault injection ({dir} is missing; the debug profile has it)",
            kind.name()
        ));
    }
    for k in FaultKind::ALL {
        let d = format!("{DEBUGFS}/{}", k.debugfs_dir());
        if !std::path::Path::new(&d).is_dir() {
            continue;
        }
        let chosen = k == kind;
        write_attr(&d, "require-start", "0")?;
        write_attr(
            &d,
            "require-end",
            if chosen { "18446744073709551615" } else { "1" },
        )?;
        write_attr(&d, "stacktrace-depth", "32")?;
        // One console line per injected fault, without a stack.
        write_attr(&d, "verbose", if chosen { "1" } else { "0" })?;
        if chosen {
            // By default sleeping allocations, highmem and order-0 pages
            // never fail; a driver's error paths are mostly behind them.
            for (attr, v) in [
                ("ignore-gfp-wait", "N"),
                ("ignore-gfp-highmem", "N"),
                ("min-order", "0"),
            ] {
                if std::path::Path::new(&d).join(attr).exists() {
                    write_attr(&d, attr, v)?;
                }
            }
        }
    }
    Ok(())
}

fn write_attr(dir: &str, attr: &str, value: &str) -> Result<(), String> {
    let path = format!("{dir}/{attr}");
    std::fs::write(&path, value).map_err(|e| format!("writing {value} to {path}: {e}"))
}

/// The calling thread's fail-nth file, open for one attempt.
pub struct FailNth {
    file: std::fs::File,
}

impl FailNth {
    pub fn open() -> Result<FailNth, String> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/proc/thread-self/fail-nth")
            .map_err(|e| {
                format!("/proc/thread-self/fail-nth: {e} (the kernel lacks CONFIG_FAULT_INJECTION)")
            })?;
        Ok(FailNth { file })
    }

    /// Fail the `nth` fault point this thread reaches from now on.
    pub fn arm(&mut self, nth: u32) -> Result<(), String> {
        self.file
            .write_all(nth.to_string().as_bytes())
            .map_err(|e| format!("arming fail-nth {nth}: {e}"))
    }

    /// Whether the armed fault was injected (fail-nth reads back 0), and
    /// disarm it.
    pub fn consumed(&mut self) -> Result<bool, String> {
        let mut buf = [0u8; 32];
        // SAFETY: pread into a local buffer of its length.
        let n =
            unsafe { libc::pread(self.file.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        let left = if n > 0 {
            String::from_utf8_lossy(&buf[..n as usize])
                .trim()
                .parse::<i64>()
                .map_err(|e| format!("fail-nth read back {:?}: {e}", &buf[..n as usize]))?
        } else if n < 0 && errno() == libc::EFAULT {
            // Under user-copy faults this read's own copy_to_user is a
            // fault point: it failing means the armed fault came after
            // the call (the call had fewer), and it is spent now.
            1
        } else {
            return Err(describe_errno("reading fail-nth", errno()));
        };
        // Disarm. Under user-copy faults this write's own copy may be the
        // fault point the count reaches; then the count is spent (0) too.
        let _ = self.file.write_all(b"0");
        Ok(left == 0)
    }

    /// The lowest descriptor free now (the next open would get it).
    pub fn lowest_free_fd(&self) -> Option<i32> {
        // SAFETY: F_DUPFD on our own descriptor; the copy is closed at once.
        let fd = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_DUPFD, 0) };
        if fd < 0 {
            return None;
        }
        // SAFETY: closing the descriptor just made.
        unsafe { libc::close(fd) };
        Some(fd)
    }
}

/// Whether `path` (relative to `dir`) exists, without following a last
/// symlink.
pub fn path_exists(dir: i32, path: &CStr) -> bool {
    // SAFETY: stat is plain old data; all-zero is valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid NUL-terminated path and a writable stat buffer.
    unsafe { libc::fstatat(dir, path.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) == 0 }
}

/// What a kmemleak scan found.
pub struct Scan {
    pub text: String,
    pub truncated: bool,
}

const KMEMLEAK: &str = "/sys/kernel/debug/kmemleak";

/// kmemleak ignores objects younger than 5 s (mm/kmemleak.c,
/// MSECS_MIN_AGE): a scan right after a step would miss its leaks.
const MIN_AGE: Duration = Duration::from_millis(5_500);

/// Forget what kmemleak found so far: scan, then mark everything
/// reported as seen.
pub fn kmemleak_forget() -> Result<(), String> {
    kmemleak_command("scan")?;
    kmemleak_command("clear")
}

/// Wait out kmemleak's minimum object age, scan twice (an object whose
/// only reference sat in a register or on a stack during the first scan
/// is found by the second), read what it reports, then clear it so the
/// next scan reports only new objects.
pub fn kmemleak_scan() -> Result<Scan, String> {
    if !std::path::Path::new(KMEMLEAK).exists() {
        return Err(
            "this kernel has no kmemleak (CONFIG_DEBUG_KMEMLEAK; the debug profile has it)".into(),
        );
    }
    std::thread::sleep(MIN_AGE);
    kmemleak_command("scan")?;
    kmemleak_command("scan")?;
    let mut data = Vec::new();
    let f = std::fs::File::open(KMEMLEAK).map_err(|e| format!("{KMEMLEAK}: {e}"))?;
    f.take(limits::MAX_KMEMLEAK_BYTES as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|e| format!("reading {KMEMLEAK}: {e}"))?;
    let truncated = data.len() > limits::MAX_KMEMLEAK_BYTES;
    data.truncate(limits::MAX_KMEMLEAK_BYTES);
    kmemleak_command("clear")?;
    Ok(Scan {
        text: String::from_utf8_lossy(&data).into_owned(),
        truncated,
    })
}

fn kmemleak_command(cmd: &str) -> Result<(), String> {
    std::fs::write(KMEMLEAK, cmd).map_err(|e| {
        // kmemleak turns itself off after an internal error; writes then
        // fail with EPERM or EBUSY.
        format!("echo {cmd} > {KMEMLEAK}: {e} (kmemleak may have disabled itself; see the console)")
    })
}

/// The kernel log, for call markers; `None` when it cannot be opened
/// (the markers are then missing, which the host notices).
pub fn open_kmsg() -> Option<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/kmsg")
        .ok()
}

/// The kernel's id of the calling thread.
pub fn gettid() -> u32 {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::gettid() as u32 }
}
