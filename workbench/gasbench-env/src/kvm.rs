//! Does KVM really work here? Only a real guest kernel can tell.
//!
//! `/dev/kvm` can exist and answer its API version while being unable to
//! run a normal kernel (on the machines gasbench was developed on, a
//! software hypervisor runs SeaBIOS under KVM but stops the kernel's
//! decompressor with "KVM internal error"). So the probe opens /dev/kvm,
//! then boots a kernel under `-accel kvm` and waits for its first console
//! line. The verdict is cached per host boot, kernel and QEMU (a few
//! kernels side by side).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::runtime::{HostProgram, Runtime};

/// The outcome of a probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvmVerdict {
    pub usable: bool,
    /// Why: what the guest printed, or what stopped it.
    pub reason: String,
}

impl KvmVerdict {
    fn usable(reason: impl Into<String>) -> Self {
        Self {
            usable: true,
            reason: reason.into(),
        }
    }
    fn unusable(reason: impl Into<String>) -> Self {
        Self {
            usable: false,
            reason: reason.into(),
        }
    }

    /// The accelerator to use: `kvm` or `tcg`.
    pub fn accel(&self) -> &'static str {
        if self.usable { "kvm" } else { "tcg" }
    }
}

const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
const KVM_API_VERSION: libc::c_int = 12;

/// Can this process open /dev/kvm and does it speak the stable API?
pub fn check_dev_kvm(dev: &Path) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev)
        .map_err(|e| format!("cannot open {}: {e}", dev.display()))?;
    // SAFETY: KVM_GET_API_VERSION takes no argument and only returns an
    // int; the fd is valid for the duration of the call.
    let version = unsafe { libc::ioctl(file.as_raw_fd(), KVM_GET_API_VERSION, 0) };
    if version != KVM_API_VERSION {
        return Err(format!(
            "{} answers KVM_GET_API_VERSION with {version}, expected {KVM_API_VERSION}",
            dev.display()
        ));
    }
    Ok(())
}

/// How a line of QEMU output bears on the verdict.
fn classify(line: &str) -> Option<KvmVerdict> {
    if line.contains("Linux version") {
        return Some(KvmVerdict::usable("a guest kernel booted under KVM"));
    }
    const FATAL: &[&str] = &[
        "KVM internal error",
        "failed to initialize kvm",
        "Could not access KVM kernel module",
        "kvm run failed",
        "KVM_RUN",
    ];
    FATAL
        .iter()
        .any(|f| line.contains(f))
        .then(|| KvmVerdict::unusable(format!("QEMU under KVM: {}", line.trim())))
}

/// Boot `kernel` under KVM and watch. `timeout` bounds the whole probe.
pub fn probe_kvm(runtime: &Runtime, kernel: Option<&Path>, timeout: Duration) -> KvmVerdict {
    if let Err(e) = check_dev_kvm(Path::new("/dev/kvm")) {
        return KvmVerdict::unusable(e);
    }
    let Some(kernel) = kernel else {
        return KvmVerdict::unusable(
            "/dev/kvm opens, but no kernel was available to prove that it runs one",
        );
    };
    let mut cmd = runtime.host_program(HostProgram::Qemu);
    // The probe boots a kernel like any VM: confined like one.
    if crate::checks::qemu_seccomp(runtime).is_ok() {
        cmd.args(["-sandbox", crate::checks::QEMU_SANDBOX]);
    }
    probe_confinement(kernel).apply(&mut cmd);
    cmd.args(["-accel", "kvm", "-cpu", "host", "-M", "q35", "-m", "256"])
        .args([
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
            "-serial",
            "stdio",
        ])
        .arg("-kernel")
        .arg(kernel)
        .args(["-append", "console=ttyS0 earlyprintk=serial,ttyS0 panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    watch(cmd, timeout)
}

/// The probe's QEMU runs as the VM user (with /dev/kvm's group) when it
/// can read the kernel, in a network of its own, with a VM's rlimits.
fn probe_confinement(kernel: &Path) -> gasbench_confine::Confinement {
    use gasbench_confine::{Confinement, Limits, identity};
    let groups: Vec<u32> = std::fs::metadata("/dev/kvm")
        .map(|m| vec![std::os::unix::fs::MetadataExt::gid(&m)])
        .unwrap_or_default();
    let identity = identity::vm_identity()
        .identity
        .filter(|id| identity::readable_by(kernel, id, &groups).is_ok());
    Confinement {
        identity,
        extra_groups: groups,
        limits: Limits::qemu(256, 1),
        own_network: gasbench_confine::running_as_root(),
        inherit: Vec::new(),
    }
}

fn watch(mut cmd: Command, timeout: Duration) -> KvmVerdict {
    // Killed with us, and by Drop on every way out of here.
    let mut tool = match crate::process::Tool::spawn(&mut cmd, crate::process::OnParentDeath::Kill)
    {
        Ok(c) => c,
        Err(e) => return KvmVerdict::unusable(format!("cannot start QEMU: {e}")),
    };
    let child = tool.child_mut();
    let (tx, rx) = mpsc::channel::<Option<String>>();
    let readers: Vec<Box<dyn Read + Send>> = vec![
        Box::new(child.stdout.take().expect("piped")),
        Box::new(child.stderr.take().expect("piped")),
    ];
    for r in readers {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                // Console output can carry odd bytes; lines() gives up on
                // invalid UTF-8, which simply ends this reader.
                let Ok(line) = line else { break };
                if tx.send(Some(line)).is_err() {
                    return;
                }
            }
            let _ = tx.send(None);
        });
    }
    drop(tx);
    let deadline = Instant::now() + timeout;
    let mut closed = 0;
    let mut last_lines: Vec<String> = Vec::new();
    let verdict = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Some(line)) => {
                if let Some(v) = classify(&line) {
                    break v;
                }
                last_lines.push(line);
                if last_lines.len() > 3 {
                    last_lines.remove(0);
                }
            }
            Ok(None) => {
                closed += 1;
                if closed == 2 {
                    let status = tool.wait().map(|s| s.to_string()).unwrap_or_default();
                    break KvmVerdict::unusable(format!(
                        "QEMU exited ({status}) before the kernel printed anything: {}",
                        last_lines.join(" | ")
                    ));
                }
            }
            Err(_) => {
                break KvmVerdict::unusable(format!(
                    "no kernel output under KVM within {} s",
                    timeout.as_secs()
                ));
            }
        }
    };
    tool.kill();
    let _ = tool.wait();
    verdict
}

/// What the cached verdict is keyed on: a new host boot, kernel or QEMU
/// invalidates it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct CacheKey {
    boot_id: String,
    kernel: String,
    kernel_len: u64,
    kernel_mtime: i64,
    qemu: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct CacheEntry {
    key: CacheKey,
    verdict: KvmVerdict,
}

fn cache_key(kernel: &Path, qemu_version: &str) -> Option<CacheKey> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(kernel).ok()?;
    Some(CacheKey {
        boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        kernel: kernel.display().to_string(),
        kernel_len: meta.len(),
        kernel_mtime: meta.mtime(),
        qemu: qemu_version.to_owned(),
    })
}

/// How many verdicts `kvm.json` keeps (one per kernel probed with; the
/// kernel stage keeps a build per set of series, and doctor probes with the
/// runtime's stock kernel).
const CACHE_ENTRIES: usize = 8;

/// [`probe_kvm`] with the verdict remembered in `state_dir/kvm.json`.
/// Returns the verdict and whether it came from the cache.
pub fn probe_kvm_cached(
    runtime: &Runtime,
    kernel: Option<&Path>,
    qemu_version: &str,
    state_dir: &Path,
    timeout: Duration,
) -> (KvmVerdict, bool) {
    let file: PathBuf = state_dir.join("kvm.json");
    let key = kernel.and_then(|k| cache_key(k, qemu_version));
    // A file from before it held a list, or a damaged one, is a miss.
    let mut entries: Vec<CacheEntry> = std::fs::read_to_string(&file)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    if let Some(key) = &key
        && let Some(hit) = entries.iter().find(|e| &e.key == key)
    {
        return (hit.verdict.clone(), true);
    }
    let verdict = probe_kvm(runtime, kernel, timeout);
    if let Some(key) = key {
        remember(&mut entries, key, verdict.clone());
        if std::fs::create_dir_all(state_dir).is_ok()
            && let Ok(text) = serde_json::to_string_pretty(&entries)
        {
            let _ = std::fs::write(&file, text);
        }
    }
    (verdict, false)
}

/// Newest first; entries of another host boot go, and at most
/// [`CACHE_ENTRIES`] stay.
fn remember(entries: &mut Vec<CacheEntry>, key: CacheKey, verdict: KvmVerdict) {
    entries.retain(|e| e.key.boot_id == key.boot_id && e.key.kernel != key.kernel);
    entries.insert(0, CacheEntry { key, verdict });
    entries.truncate(CACHE_ENTRIES);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(boot: &str, kernel: &str) -> CacheKey {
        CacheKey {
            boot_id: boot.into(),
            kernel: kernel.into(),
            kernel_len: 1,
            kernel_mtime: 1,
            qemu: "11.1.3".into(),
        }
    }

    fn verdict(usable: bool) -> KvmVerdict {
        KvmVerdict {
            usable,
            reason: String::new(),
        }
    }

    #[test]
    fn the_cache_keeps_a_verdict_per_kernel_of_this_boot() {
        let mut e = Vec::new();
        remember(&mut e, key("b1", "/k/old"), verdict(false));
        remember(&mut e, key("b2", "/k/a"), verdict(false));
        // Another boot's entries are gone.
        assert_eq!(e.len(), 1);
        remember(&mut e, key("b2", "/k/b"), verdict(true));
        // Two kernels of one boot side by side, newest first: switching
        // between them does not probe again.
        let kernels: Vec<&str> = e.iter().map(|x| x.key.kernel.as_str()).collect();
        assert_eq!(kernels, ["/k/b", "/k/a"]);
        // A kernel probed again replaces its entry.
        remember(&mut e, key("b2", "/k/a"), verdict(true));
        assert_eq!(e.len(), 2);
        assert!(e[0].verdict.usable);
        for i in 0..20 {
            remember(&mut e, key("b2", &format!("/k/{i}")), verdict(false));
        }
        assert_eq!(e.len(), CACHE_ENTRIES);
    }

    #[test]
    fn console_and_error_lines_decide_the_verdict() {
        assert!(
            classify("[    0.000000] Linux version 7.3.4 (gasbench)")
                .unwrap()
                .usable
        );
        let v = classify("KVM internal error. Suberror: 1").unwrap();
        assert!(!v.usable);
        assert_eq!(v.accel(), "tcg");
        assert!(v.reason.contains("KVM internal error"));
        assert!(classify("Probing EDD (edd=off to disable)... ok").is_none());
    }

    #[test]
    fn a_guest_that_prints_nothing_is_stopped_at_the_deadline() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30").stdout(Stdio::piped()).stderr(Stdio::piped());
        let start = Instant::now();
        let v = watch(cmd, Duration::from_millis(300));
        assert!(!v.usable);
        assert!(v.reason.contains("no kernel output"), "{}", v.reason);
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_qemu_that_exits_is_reported_with_its_last_words() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo 'qemu: no such machine' >&2; exit 1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let v = watch(cmd, Duration::from_secs(10));
        assert!(!v.usable);
        assert!(v.reason.contains("no such machine"), "{}", v.reason);
    }

    #[test]
    fn a_missing_device_node_is_unusable_with_the_os_error() {
        let e = check_dev_kvm(Path::new("/nonexistent/kvm")).unwrap_err();
        assert!(e.contains("cannot open /nonexistent/kvm"), "{e}");
    }
}
