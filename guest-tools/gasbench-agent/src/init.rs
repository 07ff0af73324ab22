//! Being PID 1: mount what the guest needs, find the agent's port, keep a
//! worker process serving the host, reap every orphan, and never exit.
//!
//! PID 1 itself only mounts and reaps. The work happens in a forked worker
//! so that its own children (kselftests, forked steps) are waited for by
//! the worker as usual, orphans re-parented to PID 1 are reaped here, and a
//! crash of the worker is reported instead of panicking the kernel (an
//! exiting PID 1 does). When the worker ends, PID 1 syncs and reboots: the
//! kernel runs with `reboot=t` and QEMU with `-no-reboot`, so that ends
//! the VM.

use std::ffi::CString;
use std::io::BufReader;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gasbench_abi::protocol::{LogLevel, PORT_NAME, SHARE_MOUNT, SHARE_TAG};

use crate::out::Out;
use crate::serve::{ServeOpts, mkdirat2_number, ready, serve};
use crate::sys::{self, describe_errno, errno};

fn mount(source: &str, target: &str, fstype: &str) -> Result<(), String> {
    let _ = std::fs::create_dir_all(target);
    let (s, t, f) = (
        CString::new(source).expect("static"),
        CString::new(target).expect("static"),
        CString::new(fstype).expect("static"),
    );
    // SAFETY: valid NUL-terminated strings, no mount data.
    let r = unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), 0, std::ptr::null()) };
    if r == 0 || errno() == libc::EBUSY {
        Ok(())
    } else {
        Err(describe_errno(
            &format!("mount {fstype} on {target}"),
            errno(),
        ))
    }
}

/// Mount proc, sys, devtmpfs and the share; say what failed.
fn mount_everything() -> Vec<String> {
    let mut missing = Vec::new();
    for (src, target, fs) in [
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("devtmpfs", "/dev", "devtmpfs"),
    ] {
        if let Err(e) = mount(src, target, fs) {
            missing.push(e);
        }
    }
    // debugfs, where the kernel has it: LKDTM, kmemleak, fault injection.
    if std::path::Path::new("/sys/kernel/debug").is_dir()
        && let Err(e) = mount("debugfs", "/sys/kernel/debug", "debugfs")
    {
        missing.push(e);
    }
    let _ = std::fs::create_dir_all("/tmp");
    if let Err(e) = mount(SHARE_TAG, SHARE_MOUNT, "virtiofs") {
        missing.push(format!(
            "the virtiofs share `{SHARE_TAG}` is not available ({e}): bundles cannot be read"
        ));
    }
    missing
}

/// Make sure fds 0–2 go to the console (the kernel opens it for init only
/// if the initramfs has /dev/console).
fn ensure_console() {
    // SAFETY: F_GETFD on fd 2 only queries.
    if unsafe { libc::fcntl(2, libc::F_GETFD) } >= 0 {
        return;
    }
    // SAFETY: a valid path; the descriptor is duplicated onto 0..2.
    let fd = unsafe { libc::open(c"/dev/console".as_ptr(), libc::O_RDWR) };
    if fd >= 0 {
        for target in 0..3 {
            // SAFETY: dup2 onto the standard descriptors.
            unsafe { libc::dup2(fd, target) };
        }
    }
}

/// `/dev/vportNpM` of the port named [`PORT_NAME`], if there is one.
pub fn find_port(sys_class: &Path, dev: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(sys_class).ok()?;
    for e in entries.flatten() {
        let name = std::fs::read_to_string(e.path().join("name")).unwrap_or_default();
        if name.trim() == PORT_NAME {
            return Some(dev.join(e.file_name()));
        }
    }
    None
}

fn ports_seen() -> String {
    let mut seen = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/sys/class/virtio-ports") {
        for e in rd.flatten() {
            let name = std::fs::read_to_string(e.path().join("name")).unwrap_or_default();
            seen.push(format!(
                "{} ({:?})",
                e.file_name().to_string_lossy(),
                name.trim()
            ));
        }
    }
    if seen.is_empty() {
        "none (is CONFIG_VIRTIO_CONSOLE set, and a virtserialport given to QEMU?)".into()
    } else {
        seen.join(", ")
    }
}

fn open_port(path: &Path) -> Result<OwnedFd, String> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| "bad port path".to_string())?;
    // SAFETY: a valid path.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(describe_errno(&format!("open {}", path.display()), errno()));
    }
    // SAFETY: we own the new descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The worker: find the port, announce, serve. Returns the exit code.
fn worker(mut missing: Vec<String>) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let port = loop {
        if let Some(p) = find_port(Path::new("/sys/class/virtio-ports"), Path::new("/dev")) {
            break p;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "gasbench-agent: no virtio-serial port named {PORT_NAME} after 10 s; ports seen: {}",
                ports_seen()
            );
            return 3;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let fd = match open_port(&port) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("gasbench-agent: {e}");
            return 3;
        }
    };
    let read_fd = match fd.try_clone() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("gasbench-agent: dup port: {e}");
            return 3;
        }
    };
    let out = Out::new(fd, true);
    let cmdline = std::fs::read_to_string("/proc/cmdline").ok();
    let nr = mkdirat2_number(None, cmdline.as_deref(), &mut missing);
    for m in &missing {
        out.log(LogLevel::Warn, m.clone());
    }
    out.send(&ready(nr, missing));
    let mut input = BufReader::new(std::fs::File::from(read_fd));
    let opts = ServeOpts {
        share: PathBuf::from(SHARE_MOUNT),
        mkdirat2_nr: nr,
        workdir_base: PathBuf::from("/tmp"),
        eof_is_lost: false,
    };
    match serve(&mut input, &out, &opts) {
        Ok(()) => {
            out.log(LogLevel::Info, "shutdown requested; powering off");
            0
        }
        Err(why) => {
            out.log(
                LogLevel::Error,
                format!("lost the host: {why}; powering off"),
            );
            1
        }
    }
}

fn power_off() -> ! {
    // SAFETY: sync and reboot take no pointers; as PID 1 we may reboot.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_AUTOBOOT);
    }
    // reboot only returns on failure; PID 1 must not exit.
    eprintln!(
        "gasbench-agent: reboot failed: {}",
        std::io::Error::last_os_error()
    );
    loop {
        // SAFETY: pause just sleeps until a signal.
        unsafe { libc::pause() };
    }
}

/// PID 1's life.
pub fn pid1() -> ! {
    let missing = mount_everything();
    ensure_console();
    for m in &missing {
        eprintln!("gasbench-agent: {m}");
    }
    sys::init_counters();
    // SAFETY: single-threaded here; the child runs the worker and exits.
    let worker_pid = unsafe { libc::fork() };
    if worker_pid < 0 {
        eprintln!(
            "gasbench-agent: cannot fork the worker: {}",
            std::io::Error::last_os_error()
        );
        power_off();
    }
    if worker_pid == 0 {
        let code = worker(missing);
        // SAFETY: leave the worker without running PID 1's state down.
        unsafe { libc::_exit(code) };
    }
    // Reap everything; stop when the worker ends.
    let status = loop {
        let mut status = 0;
        // SAFETY: waiting for any child.
        let r = unsafe { libc::waitpid(-1, &mut status, 0) };
        if r == worker_pid {
            break status;
        }
        if r < 0 && errno() != libc::EINTR {
            break -1;
        }
    };
    if status != 0 {
        let why = if status == -1 {
            "vanished".to_string()
        } else if libc::WIFSIGNALED(status) {
            format!("was killed by signal {}", libc::WTERMSIG(status))
        } else {
            format!("exited with status {}", libc::WEXITSTATUS(status))
        };
        eprintln!("gasbench-agent: the worker {why}; powering off");
        // Tell the host too, if the port is there.
        if let Some(port) = find_port(Path::new("/sys/class/virtio-ports"), Path::new("/dev"))
            && let Ok(fd) = open_port(&port)
        {
            Out::new(fd, false).log(LogLevel::Error, format!("agent worker {why}; powering off"));
        }
    }
    power_off()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_named_port_in_a_fake_sysfs() {
        let dir = tempfile::tempdir().unwrap();
        let class = dir.path().join("class");
        for (port, name) in [
            ("vport0p0", ""),
            ("vport0p1", "org.qemu.guest_agent.0"),
            ("vport1p2", "org.gasbench.agent\n"),
        ] {
            std::fs::create_dir_all(class.join(port)).unwrap();
            std::fs::write(class.join(port).join("name"), name).unwrap();
        }
        assert_eq!(
            find_port(&class, Path::new("/dev")),
            Some(PathBuf::from("/dev/vport1p2"))
        );
        std::fs::write(class.join("vport1p2").join("name"), "other").unwrap();
        assert_eq!(find_port(&class, Path::new("/dev")), None);
        assert_eq!(
            find_port(&dir.path().join("absent"), Path::new("/dev")),
            None
        );
    }
}
