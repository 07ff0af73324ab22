//! Thin wrappers around the few libc calls the agent makes outside of
//! scenario steps, and the counters it shares with its forked children.

use std::ffi::CString;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The calling thread's errno, read right after a failed call.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `EINVAL` for 22, `E999` for values without a name.
pub fn errno_name(e: i32) -> String {
    gasbench_abi::consts::errno_name(e)
        .map(str::to_string)
        .unwrap_or_else(|| format!("E{e}"))
}

/// A failed call's description: `mount /proc: EPERM (Operation not permitted)`.
pub fn describe_errno(what: &str, e: i32) -> String {
    format!(
        "{what}: {} ({})",
        errno_name(e),
        std::io::Error::from_raw_os_error(e)
    )
}

pub fn cstring(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{s:?} holds a NUL byte"))
}

pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 { v as usize } else { 4096 }
}

pub fn getpid() -> u32 {
    // SAFETY: getpid cannot fail and touches no memory of ours.
    unsafe { libc::getpid() as u32 }
}

/// `uname -r`.
pub fn kernel_release() -> String {
    // SAFETY: utsname is plain old data; all-zero is a valid value.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return "unknown".into();
    }
    let bytes: Vec<u8> = u
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Monotonic clock in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The value of `key=value` on a kernel command line.
pub fn cmdline_value<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// Call and thread numbers, unique across the agent and its forked
/// children: they live in a shared anonymous mapping that `fork` keeps
/// shared.
struct Counters {
    call: &'static AtomicU64,
    thread: &'static AtomicU32,
}

static COUNTERS: OnceLock<Counters> = OnceLock::new();

fn counters() -> &'static Counters {
    COUNTERS.get_or_init(|| {
        // SAFETY: a fresh anonymous shared mapping; we check the result.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page_size(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            // Without the shared page numbers could repeat across forked
            // children; leaking a heap counter keeps single-process runs
            // correct, and the agent says so.
            eprintln!(
                "gasbench-agent: shared counter page unavailable; ids may repeat across forks"
            );
            return Counters {
                call: Box::leak(Box::new(AtomicU64::new(1))),
                thread: Box::leak(Box::new(AtomicU32::new(0))),
            };
        }
        // SAFETY: the mapping is page-aligned, zero-filled, at least 16
        // bytes, never unmapped, and atomics are valid at all-zero bytes.
        unsafe {
            let call = &*(p as *const AtomicU64);
            let thread = &*((p as *const u8).add(8) as *const AtomicU32);
            call.store(1, Ordering::SeqCst);
            Counters { call, thread }
        }
    })
}

/// Set up the shared counters; call before the first fork.
pub fn init_counters() {
    let _ = counters();
}

pub fn next_call_id() -> u64 {
    counters().call.fetch_add(1, Ordering::SeqCst)
}

pub fn next_thread_id() -> u32 {
    counters().thread.fetch_add(1, Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_values() {
        let c = "console=ttyS0 gasbench.mkdirat2=473 quiet reboot=t";
        assert_eq!(cmdline_value(c, "gasbench.mkdirat2"), Some("473"));
        assert_eq!(cmdline_value(c, "reboot"), Some("t"));
        assert_eq!(cmdline_value(c, "quiet"), None);
        assert_eq!(cmdline_value("", "x"), None);
    }

    #[test]
    fn ids_are_unique_across_fork() {
        init_counters();
        let before = next_call_id();
        // SAFETY: the child only bumps the counter and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            next_call_id();
            next_call_id();
            // SAFETY: leaving the child without running the parent's
            // destructors or test harness.
            unsafe { libc::_exit(0) };
        }
        assert!(pid > 0);
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(
            next_call_id(),
            before + 3,
            "the child's ids were seen by the parent"
        );
    }

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(25), "ENOTTY");
        assert_eq!(errno_name(9999), "E9999");
        assert!(describe_errno("x", 2).starts_with("x: ENOENT ("));
    }
}
