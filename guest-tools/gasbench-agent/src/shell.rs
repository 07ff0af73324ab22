//! `gasbench shell`: busybox `sh` on the console (ttyS0) as the user's
//! interactive session, in a session of its own with the console as its
//! controlling terminal (so Ctrl-C and job control reach it, not the
//! agent). The agent waits for it and says how it ended.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Command;

/// The console the host relays to the user's terminal.
pub const CONSOLE: &str = "/dev/ttyS0";
/// The shell busybox provides in the initramfs (`--busybox`).
pub const SHELL: &str = "/bin/sh";

/// Run the shell on `console` until it exits; its exit status (128 +
/// the signal's number when one ended it).
pub fn run(console: &str) -> Result<i32, String> {
    if !std::path::Path::new(SHELL).exists() {
        return Err(format!(
            "{SHELL} is not in the initramfs: the guest needs busybox for a shell"
        ));
    }
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(console)
        .map_err(|e| format!("cannot open {console}: {e}"))?;
    let mut cmd = Command::new(SHELL);
    cmd.arg("-i")
        .env_clear()
        .env("PATH", "/bin:/sbin:/usr/bin:/usr/sbin")
        .env("HOME", "/tmp")
        .env("TERM", "linux")
        .env("PS1", "gasbench-guest# ")
        .current_dir("/tmp")
        .stdin(tty.try_clone().map_err(|e| e.to_string())?)
        .stdout(tty.try_clone().map_err(|e| e.to_string())?)
        .stderr(tty);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The console becomes the new session's controlling terminal
            // (stolen from the agent if need be: arg 1).
            if libc::ioctl(0, libc::TIOCSCTTY, 1) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start {SHELL}: {e}"))?;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_console_that_cannot_be_opened_is_a_clear_error() {
        // The shell path is checked first; where there is a /bin/sh (the
        // host running the tests), the console is what fails.
        let err = run("/nonexistent/ttyS0").unwrap_err();
        assert!(
            err.contains("/nonexistent/ttyS0") || err.contains("busybox"),
            "{err}"
        );
    }
}
