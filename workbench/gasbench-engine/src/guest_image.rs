//! The guest's initramfs: the agent as /init, the kselftest binaries, the
//! device nodes the kernel needs before devtmpfs, and busybox for a shell
//! when there is one.

use std::path::{Path, PathBuf};

use gasbench_initramfs::Initramfs;

/// Where things go inside the guest.
pub const GUEST_INIT: &str = "init";
pub const GUEST_SELFTESTS: &str = "usr/lib/gasbench/selftests";
pub const GUEST_BUSYBOX: &str = "bin/busybox";

pub struct GuestImage {
    pub agent: PathBuf,
    /// (name, host path) of kselftest binaries: `/usr/lib/gasbench/selftests/<name>`.
    pub selftests: Vec<(String, PathBuf)>,
    pub busybox: Option<PathBuf>,
}

impl GuestImage {
    pub fn build(&self) -> Result<Vec<u8>, gasbench_initramfs::Error> {
        let mut img = Initramfs::new();
        img.file_from(GUEST_INIT, 0o755, &self.agent)?;
        // Before devtmpfs is mounted, the kernel opens /dev/console for
        // init's stdio; without the node init runs with no console at all.
        img.char_dev("dev/console", 0o600, 5, 1)?;
        img.char_dev("dev/null", 0o666, 1, 3)?;
        for d in ["proc", "sys", "tmp", "mnt/gasbench", "root"] {
            img.dir(d, 0o755)?;
        }
        for (name, host) in &self.selftests {
            img.file_from(&format!("{GUEST_SELFTESTS}/{name}"), 0o755, host)?;
        }
        if let Some(bb) = &self.busybox {
            img.file_from(GUEST_BUSYBOX, 0o755, bb)?;
            img.symlink("bin/sh", "busybox")?;
        }
        Ok(img.to_bytes())
    }

    /// Build and write to `path`.
    pub fn write(&self, path: &Path) -> Result<u64, gasbench_initramfs::Error> {
        let bytes = self.build()?;
        std::fs::write(path, &bytes).map_err(gasbench_initramfs::Error::Write)?;
        Ok(bytes.len() as u64)
    }
}
