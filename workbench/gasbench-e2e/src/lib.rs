//! Helpers shared by the end-to-end tests in `tests/`.
//!
//! These tests use the real runtime: the cache directory gasbench setup
//! provisioned (`GASBENCH_CACHE` or /var/cache/gasbench). When something
//! they need is missing they fail with what to run, never skip.

use gasbench_env::{CacheDir, Runtime, RuntimePref};

/// The checkout these tests were built from (its scenarios, kernel/ and
/// the agent's sources).
pub fn checkout() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The runtime the e2e tests use, resolved the way `gasbench` resolves it.
pub fn runtime() -> (CacheDir, Runtime) {
    let cache = CacheDir::from_env(None);
    let (rt, _) = gasbench_env::resolve_runtime(&cache, RuntimePref::Auto);
    if let Runtime::Toolroot(root) = &rt {
        let state = root.state();
        assert!(
            state.is_ready(),
            "the toolroot at {} is {}: run `gasbench setup` (cargo xtask setup) first",
            root.path().display(),
            state.describe()
        );
    }
    (cache, rt)
}

/// The guest agent built static and packed alone into an initramfs at
/// `dir/initramfs.cpio` (no selftests, no busybox).
pub fn agent_initramfs(cache: &CacheDir, dir: &std::path::Path) -> std::path::PathBuf {
    use gasbench_engine::agent_build::build_agent;
    let agent =
        build_agent(&crate::checkout(), &cache.root().join("agent-target")).expect("agent builds");
    let initramfs = dir.join("initramfs.cpio");
    gasbench_engine::guest_image::GuestImage {
        agent,
        selftests: vec![],
        busybox: None,
    }
    .write(&initramfs)
    .expect("the initramfs is written");
    initramfs
}

/// The release a stock kernel image reports, from its Debian file name
/// (`/boot/vmlinuz-7.3.4+deb13-amd64` → `7.3.4+deb13-amd64`): the stock
/// kernel is whatever the toolroot's linux-image-amd64 is today.
pub fn release_of(kernel: &std::path::Path) -> String {
    kernel
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .unwrap_or_else(|| panic!("{} is not a /boot/vmlinuz-RELEASE", kernel.display()))
        .to_string()
}
