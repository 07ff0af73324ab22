//! `gasbench shell`: busybox `sh` on the console (ttyS0) as the user's
//! interactive session, in a session of its own with the console as its
//! controlling terminal (so Ctrl-C and job control reach it, not the
//! agent). The agent waits for it and says how it ended.
//!
//! Spawned with fork and execve, as the agent's other children are
//! (std's `Command` fails in the guest with ENOSYS).

use std::ffi::CString;

/// The console the host relays to the user's terminal.
pub const CONSOLE: &str = "/dev/ttyS0";
/// The shell busybox provides in the initramfs (`--busybox`).
pub const SHELL: &str = "/bin/sh";

fn cstring(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{s:?} holds a NUL byte"))
}

fn last_error() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// Run the shell on `console` until it exits; its exit status (128 +
/// the signal's number when one ended it).
pub fn run(console: &str) -> Result<i32, String> {
    let shell = cstring(SHELL)?;
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::access(shell.as_ptr(), libc::X_OK) } != 0 {
        return Err(format!(
            "{SHELL} is not in the initramfs ({}): the guest needs busybox for a shell",
            last_error()
        ));
    }
    let tty = cstring(console)?;
    // Checked here, where the error can be said; the child opens it again.
    // SAFETY: a valid NUL-terminated path; the descriptor is closed below.
    let probe = unsafe { libc::open(tty.as_ptr(), libc::O_RDWR | libc::O_NOCTTY) };
    if probe < 0 {
        return Err(format!("cannot open {console}: {}", last_error()));
    }
    // SAFETY: our own descriptor.
    unsafe { libc::close(probe) };
    let argv = [cstring("sh")?, cstring("-i")?];
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let env = [
        cstring("PATH=/bin:/sbin:/usr/bin:/usr/sbin")?,
        cstring("HOME=/tmp")?,
        cstring("TERM=linux")?,
        cstring("PS1=gasbench-guest# ")?,
    ];
    let mut env_ptrs: Vec<*const libc::c_char> = env.iter().map(|a| a.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());
    let tmp = cstring("/tmp")?;
    // SAFETY: the child only calls async-signal-safe functions (setsid,
    // open, ioctl, dup2, chdir, execve, _exit) on memory prepared before
    // the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("cannot fork the shell: {}", last_error()));
    }
    if pid == 0 {
        // SAFETY: see above; all pointers outlive the exec.
        unsafe {
            libc::setsid();
            // Opened after setsid: the console becomes the controlling
            // terminal of the new session (TIOCSCTTY makes sure, taking
            // it from another session if need be).
            let fd = libc::open(tty.as_ptr(), libc::O_RDWR);
            if fd < 0 {
                libc::_exit(126);
            }
            libc::ioctl(fd, libc::TIOCSCTTY, 1);
            libc::dup2(fd, 0);
            libc::dup2(fd, 1);
            libc::dup2(fd, 2);
            if fd > 2 {
                libc::close(fd);
            }
            libc::chdir(tmp.as_ptr());
            libc::execve(shell.as_ptr(), argv_ptrs.as_ptr(), env_ptrs.as_ptr());
            libc::_exit(127);
        }
    }
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        if r < 0 && last_error().raw_os_error() != Some(libc::EINTR) {
            return Err(format!("waiting for the shell: {}", last_error()));
        }
    }
    Ok(if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        libc::WEXITSTATUS(status)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_console_that_cannot_be_opened_is_a_clear_error() {
        // The shell is checked first; where there is a /bin/sh (the host
        // running the tests), the console is what fails.
        let err = run("/nonexistent/ttyS0").unwrap_err();
        assert!(
            err.contains("/nonexistent/ttyS0") || err.contains("busybox"),
            "{err}"
        );
    }
}
