//! The host-facing loop: announce `Ready`, then run what the host asks for
//! until it asks for a shutdown or goes away. The same loop serves the
//! guest's virtio-serial port and, for tests, stdin/stdout.

use std::collections::BTreeMap;
use std::io::{BufRead, Read};
use std::path::{Component, Path, PathBuf};

use gasbench_abi::bundle::Bundle;
use gasbench_abi::protocol::{
    AgentMsg, CMDLINE_MKDIRAT2, HostMsg, LogLevel, PROTOCOL_VERSION, Ready,
};

use crate::out::Out;
use crate::runner::{PortHost, Runner, Stop, read_host_msg};
use crate::sys;

/// Bundles larger than this are refused.
const MAX_BUNDLE_BYTES: u64 = 16 << 20;

pub struct ServeOpts {
    /// Where bundle paths are relative to (the virtiofs share).
    pub share: PathBuf,
    pub mkdirat2_nr: Option<i64>,
    /// Each bundle gets a fresh work directory under this one.
    pub workdir_base: PathBuf,
    /// End of input means the host is gone (stdio) rather than not yet
    /// connected (the virtio port).
    pub eof_is_lost: bool,
}

/// mkdirat2's number: the flag wins, then the kernel command line.
/// Problems go into `missing`.
pub fn mkdirat2_number(
    flag: Option<i64>,
    cmdline: Option<&str>,
    missing: &mut Vec<String>,
) -> Option<i64> {
    if flag.is_some() {
        return flag;
    }
    match cmdline.and_then(|c| sys::cmdline_value(c, CMDLINE_MKDIRAT2)) {
        Some(v) => match v.parse() {
            Ok(n) => Some(n),
            Err(_) => {
                missing.push(format!(
                    "{CMDLINE_MKDIRAT2}={v} on the kernel command line is not a number"
                ));
                None
            }
        },
        None => {
            missing.push(format!(
                "no {CMDLINE_MKDIRAT2}=N on the kernel command line: mkdirat2 steps cannot run"
            ));
            None
        }
    }
}

/// The `Ready` message.
pub fn ready(mkdirat2_nr: Option<i64>, missing: Vec<String>) -> AgentMsg {
    let mut syscalls: BTreeMap<String, i64> = [
        ("openat", libc::SYS_openat),
        ("close", libc::SYS_close),
        ("dup", libc::SYS_dup),
        ("ioctl", libc::SYS_ioctl),
        ("mkdirat", libc::SYS_mkdirat),
        ("unlinkat", libc::SYS_unlinkat),
        ("symlinkat", libc::SYS_symlinkat),
        ("fstat", libc::SYS_fstat),
        ("newfstatat", libc::SYS_newfstatat),
        ("fcntl", libc::SYS_fcntl),
        ("setrlimit", libc::SYS_setrlimit),
        ("getrlimit", libc::SYS_getrlimit),
        ("clone", libc::SYS_clone),
        ("execve", libc::SYS_execve),
        ("mount", libc::SYS_mount),
        ("umount2", libc::SYS_umount2),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v))
    .collect();
    if let Some(nr) = mkdirat2_nr {
        syscalls.insert("mkdirat2".into(), nr);
    }
    AgentMsg::Ready(Ready {
        protocol: PROTOCOL_VERSION,
        kernel_release: sys::kernel_release(),
        syscalls,
        missing,
        monotonic_ns: sys::monotonic_ns(),
    })
}

/// Read and check a bundle; `path` is relative to `share` (no `..`).
pub fn load_bundle(share: &Path, path: &str) -> Result<Bundle, String> {
    let rel = Path::new(path);
    if rel.is_absolute() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(format!(
            "bundle path {path:?} must be relative to the share, without `..`"
        ));
    }
    load_bundle_file(&share.join(rel))
}

/// Read and check a bundle file.
pub fn load_bundle_file(path: &Path) -> Result<Bundle, String> {
    let f = std::fs::File::open(path)
        .map_err(|e| format!("cannot open bundle {}: {e}", path.display()))?;
    let mut text = String::new();
    f.take(MAX_BUNDLE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read bundle {}: {e}", path.display()))?;
    if text.len() as u64 > MAX_BUNDLE_BYTES {
        return Err(format!("bundle {} is larger than 16 MiB", path.display()));
    }
    Bundle::from_json(&text)
}

/// A fresh work directory for one bundle.
pub fn make_workdir(base: &Path, bundle: u64) -> Result<String, String> {
    let dir = base.join(format!("gasbench.{bundle}.{}", sys::getpid()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("cannot create work directory {}: {e}", dir.display()))?;
    Ok(dir.to_string_lossy().into_owned())
}

/// Serve until shutdown (Ok) or until the host is lost (Err).
pub fn serve(input: &mut dyn BufRead, out: &Out, opts: &ServeOpts) -> Result<(), String> {
    loop {
        let msg = match read_host_msg(input, out, opts.eof_is_lost) {
            Ok(m) => m,
            Err(Stop::Shutdown) => return Ok(()),
            Err(Stop::Lost(why)) => return Err(why),
        };
        match msg {
            HostMsg::RunBundle { id, path } => {
                let prepared = load_bundle(&opts.share, &path)
                    .and_then(|b| make_workdir(&opts.workdir_base, id).map(|w| (b, w)));
                let (bundle, workdir) = match prepared {
                    Ok(x) => x,
                    Err(e) => {
                        out.log(LogLevel::Error, e.clone());
                        out.send(&AgentMsg::BundleEnd {
                            bundle: id,
                            error: Some(e),
                        });
                        continue;
                    }
                };
                let runner = Runner {
                    out,
                    bundle_id: id,
                    mkdirat2_nr: opts.mkdirat2_nr,
                    workdir,
                    kmsg: Default::default(),
                };
                let mut host = PortHost {
                    input: &mut *input,
                    out,
                    eof_is_lost: opts.eof_is_lost,
                };
                match runner.run(&bundle, &mut host) {
                    Ok(()) => {}
                    Err(Stop::Shutdown) => return Ok(()),
                    Err(Stop::Lost(why)) => return Err(why),
                }
            }
            HostMsg::Resume { bundle, sync } => out.log(
                LogLevel::Warn,
                format!("Resume for bundle {bundle} sync {sync} while no bundle waits; ignored"),
            ),
            HostMsg::Shutdown => return Ok(()),
            HostMsg::Shell => {
                let (status, error) = match crate::shell::run(crate::shell::CONSOLE) {
                    Ok(status) => (status, None),
                    Err(e) => {
                        out.log(LogLevel::Error, e.clone());
                        (127, Some(e))
                    }
                };
                out.send(&AgentMsg::ShellEnded { status, error });
            }
        }
    }
}
