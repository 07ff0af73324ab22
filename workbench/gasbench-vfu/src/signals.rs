//! For running the server as a process (`gasbench device serve`): block
//! the termination signals in every thread, then wait for one, so the
//! socket is removed on Ctrl-C or `kill` instead of being left behind.

/// Block SIGINT, SIGTERM and SIGHUP in the calling thread and every thread
/// it starts afterwards. Call before starting the server.
pub fn block_termination_signals() -> std::io::Result<()> {
    let set = termination_set();
    // SAFETY: pthread_sigmask with a valid set and a null old-set pointer.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(std::io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// Wait for one of the blocked termination signals; its number.
pub fn wait_termination_signal() -> std::io::Result<i32> {
    let set = termination_set();
    let mut sig: libc::c_int = 0;
    // SAFETY: sigwait with a valid set and a pointer to a live int.
    let r = unsafe { libc::sigwait(&set, &mut sig) };
    if r != 0 {
        return Err(std::io::Error::from_raw_os_error(r));
    }
    Ok(sig)
}

pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

fn termination_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        set
    }
}
