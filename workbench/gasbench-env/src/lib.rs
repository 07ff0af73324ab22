//! Where gasbench's tools come from, and making sure they are there.
//!
//! - [`cache`]: the cache directory (default `/var/cache/gasbench`).
//! - [`runtime`]: the host or the Debian 13 [`toolroot`]; every other crate
//!   gets its commands (QEMU, virtiofsd, the kernel build) from a
//!   [`Runtime`], never by spelling tool paths.
//! - [`checks`]: the requirements and `gasbench doctor`'s report.
//! - [`kvm`]: the KVM probe (a real guest kernel, not just /dev/kvm).
//! - [`process`]: children that cannot outlive gasbench (own process
//!   group, a death signal, a registry of running tools to stop).
//! - [`setup`]: provisioning, idempotent and resumable.
//!
//! **Architecture invariant:** this crate knows nothing about kernels
//! being patched, VMs being run or events: it answers "which command runs
//! tool X" and "is everything there".

pub mod apt;
pub mod cache;
pub mod checks;
pub mod kvm;
pub mod process;
pub mod runtime;
pub mod setup;
pub mod toolroot;
pub mod version;

pub use cache::CacheDir;
pub use runtime::{HostProgram, Runtime, RuntimeChoice, RuntimeKind, RuntimePref};
pub use toolroot::Toolroot;

/// Resolve the runtime to use: the host if it meets every requirement (or
/// if asked), else the toolroot under `cache`.
pub fn resolve_runtime(cache: &CacheDir, pref: RuntimePref) -> (Runtime, RuntimeChoice) {
    let choice = choose(pref);
    let rt = match choice.kind {
        RuntimeKind::Host => Runtime::Host,
        RuntimeKind::Toolroot => Runtime::Toolroot(Toolroot::new(cache.toolroot())),
    };
    (rt, choice)
}

/// The runtime `pref` resolves to, and why: for `Auto`, the host's own
/// tools are checked (spawning each for its version).
pub fn choose(pref: RuntimePref) -> RuntimeChoice {
    let missing: Vec<String> = if pref == RuntimePref::Auto {
        checks::check_runtime(&Runtime::Host)
            .into_iter()
            .filter(|c| c.failed_required())
            .map(|c| c.name)
            .collect()
    } else {
        Vec::new()
    };
    runtime::choose_runtime(pref, &missing)
}

/// A kernel image to prove KVM with: `preferred` (gasbench's own build)
/// if it exists, else the newest stock kernel the runtime has in /boot.
pub fn probe_kernel(
    runtime: &Runtime,
    preferred: Option<&std::path::Path>,
) -> Option<std::path::PathBuf> {
    if let Some(p) = preferred.filter(|p| p.exists()) {
        return Some(p.to_path_buf());
    }
    let boot = runtime.file("/boot");
    let mut kernels: Vec<_> = std::fs::read_dir(boot)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .collect();
    kernels.sort();
    kernels.pop()
}
