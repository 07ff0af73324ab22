//! Which kernel a run boots: the patched kernel the kernel stage builds,
//! or an image the user gives. Shared by `gasbench run` and the TUI.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use gasbench_engine::pipeline::{KernelArtifacts, KernelProfile, KernelProvider};
use gasbench_env::Runtime;
use gasbench_events::EventSink;
use gasbench_events::run::ProfileChoice;
use gasbench_kbuild::KernelRequest;

use crate::Globals;

#[derive(clap::Args, Clone, Debug, Default)]
pub struct KernelArgs {
    /// Boot this kernel image instead of building the patched one.
    #[arg(long, value_name = "BZIMAGE")]
    pub kernel: Option<PathBuf>,
    /// mkdirat2's syscall number on --kernel (472 as posted, 473 on 7.3).
    #[arg(long, value_name = "NR", requires = "kernel")]
    pub mkdirat2: Option<i64>,
    /// A static kselftest binary to put in the guest (repeatable), with --kernel.
    #[arg(long = "selftest", value_name = "BINARY", requires = "kernel")]
    pub selftests: Vec<PathBuf>,
    /// The kernel profile to build and boot: `default`, `debug` (KASAN,
    /// lockdep, kmemleak, UBSAN, fault injection) or `race` (KCSAN).
    /// [env: GASBENCH_PROFILE] [config: profile] [default: default]
    #[arg(long, value_name = "NAME", conflicts_with = "kernel")]
    pub profile: Option<String>,
}

impl KernelArgs {
    /// The given image, checked; None when the kernel stage should build.
    pub fn prebuilt(&self) -> Result<Option<KernelArtifacts>, String> {
        let Some(k) = &self.kernel else {
            return Ok(None);
        };
        if !k.is_file() {
            return Err(format!("--kernel {}: no such file", k.display()));
        }
        // Before QEMU is given it: an empty or cut-short image is said to
        // be one, not left to a guest that never prints a line.
        gasbench_kbuild::bzimage::check(k).map_err(|e| format!("--kernel {e}"))?;
        for s in &self.selftests {
            if !s.is_file() {
                return Err(format!("--selftest {}: no such file", s.display()));
            }
        }
        Ok(Some(KernelArtifacts {
            bzimage: k.clone(),
            mkdirat2: self.mkdirat2,
            selftests: self
                .selftests
                .iter()
                .map(|p| {
                    let name = p
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    (name, p.clone())
                })
                .collect(),
            description: format!("kernel {}", k.display()),
            profile: KernelProfile {
                choice: ProfileChoice {
                    name: "given".into(),
                    detectors: Vec::new(),
                    about: "a kernel image given with --kernel: its detectors are not known".into(),
                },
                cmdline: String::new(),
            },
            symbols: None,
        }))
    }

    /// The kernel for a run: the given image, or the patched kernel the
    /// kernel stage builds (cached: seconds when nothing changed), its
    /// progress on the run's bus.
    pub fn provider(&self, g: &Globals, rt: &Runtime) -> miette::Result<KernelProvider> {
        self.provider_with(g, rt, Arc::new(Mutex::new(self.profile(g))))
    }

    /// The profile to build: `--profile`, else the configuration's.
    pub fn profile(&self, g: &Globals) -> String {
        self.profile
            .clone()
            .unwrap_or_else(|| g.config.profile.value.clone())
    }

    /// [`KernelArgs::provider`] whose profile is read from `profile` at
    /// each build (the TUI switches it).
    pub fn provider_with(
        &self,
        g: &Globals,
        rt: &Runtime,
        profile: Arc<Mutex<String>>,
    ) -> miette::Result<KernelProvider> {
        let args = self.clone();
        let rt = rt.clone();
        let cache = g.cache.clone();
        // Only a build needs kernel/; a given image does not.
        let kernel_dir = match &self.kernel {
            Some(_) => None,
            None => Some(g.data()?.kernel_dir()),
        };
        Ok(Arc::new(Mutex::new(move |sink: &EventSink| {
            if let Some(k) = args.prebuilt()? {
                return Ok(k);
            }
            let req = KernelRequest {
                kernel_dir: kernel_dir.clone(),
                profile: profile.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                ..KernelRequest::default()
            };
            let a = gasbench_kbuild::ensure_kernel(&req, &rt, &cache, sink)
                .map_err(|e| format!("the kernel stage failed: {e}\n  help: {}", e.help()))?;
            let m = &a.manifest;
            let description = format!(
                "{} ({}, {} profile, {})",
                m.kernel_release,
                m.base,
                m.profile.name,
                if a.reused { "unchanged" } else { "built" }
            );
            Ok(from_build(&a, description))
        })))
    }
}

/// What a run needs from the kernel stage's result (the engine's one
/// conversion).
pub fn from_build(a: &gasbench_kbuild::KernelArtifacts, description: String) -> KernelArtifacts {
    KernelArtifacts::from_build(a, description)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_or_truncated_kernel_is_refused_before_anything_starts() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        let args = |k: &std::path::Path| KernelArgs {
            kernel: Some(k.to_path_buf()),
            ..Default::default()
        };
        let e = args(&empty).prebuilt().unwrap_err();
        assert_eq!(
            e,
            format!(
                "--kernel {}: the file is empty, not a kernel image",
                empty.display()
            )
        );
        // A whole image (a setup header as the kernel's build writes it),
        // then the same cut in half.
        let mut img = vec![0u8; 32 * 512 + 4096];
        img[0x1f1] = 31;
        img[0x1f4..0x1f8].copy_from_slice(&256u32.to_le_bytes());
        img[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        let whole = dir.path().join("bzImage");
        std::fs::write(&whole, &img).unwrap();
        assert!(args(&whole).prebuilt().unwrap().is_some());
        let cut = dir.path().join("cut");
        std::fs::write(&cut, &img[..img.len() / 2]).unwrap();
        let e = args(&cut).prebuilt().unwrap_err();
        assert!(e.contains("the image is truncated"), "{e}");
    }
}
