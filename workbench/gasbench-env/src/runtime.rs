//! The runtime: where each tool gasbench needs comes from.
//!
//! - [`Runtime::Host`]: the host's own tools, on a workstation that already
//!   has QEMU >= 10.1, virtiofsd and a Rust-enabled kernel toolchain.
//! - [`Runtime::Toolroot`]: a Debian 13 root under the cache directory.
//!
//! Everything else in gasbench asks the runtime for a [`Command`] and never
//! spells a tool path itself, so both runtimes serve the same code.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::toolroot::Toolroot;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Runtime {
    Host,
    Toolroot(Toolroot),
}

/// Which runtime the user asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimePref {
    /// The host when it meets every requirement, else the toolroot.
    #[default]
    Auto,
    Host,
    Toolroot,
}

impl std::str::FromStr for RuntimePref {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "host" => Ok(Self::Host),
            "toolroot" => Ok(Self::Toolroot),
            other => Err(format!("unknown runtime {other:?} (auto, host, toolroot)")),
        }
    }
}

/// The decision and why it was made, for doctor and run headers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuntimeChoice {
    pub kind: RuntimeKind,
    pub reason: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeKind {
    Host,
    Toolroot,
}

impl RuntimeKind {
    pub fn name(self) -> &'static str {
        match self {
            RuntimeKind::Host => "host",
            RuntimeKind::Toolroot => "toolroot",
        }
    }
}

/// Decide the runtime. `host_missing` lists the required checks the host
/// fails (empty: the host can do everything).
pub fn choose_runtime(pref: RuntimePref, host_missing: &[String]) -> RuntimeChoice {
    match pref {
        RuntimePref::Host => RuntimeChoice {
            kind: RuntimeKind::Host,
            reason: "asked for the host runtime".into(),
        },
        RuntimePref::Toolroot => RuntimeChoice {
            kind: RuntimeKind::Toolroot,
            reason: "asked for the toolroot runtime".into(),
        },
        RuntimePref::Auto if host_missing.is_empty() => RuntimeChoice {
            kind: RuntimeKind::Host,
            reason: "the host's own tools meet every requirement".into(),
        },
        RuntimePref::Auto => RuntimeChoice {
            kind: RuntimeKind::Toolroot,
            reason: format!("the host lacks {}", host_missing.join(", ")),
        },
    }
}

/// Programs that run on the host side of a VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostProgram {
    Qemu,
    QemuImg,
    Virtiofsd,
}

impl Runtime {
    pub fn kind(&self) -> RuntimeKind {
        match self {
            Runtime::Host => RuntimeKind::Host,
            Runtime::Toolroot(_) => RuntimeKind::Toolroot,
        }
    }

    /// A file of the runtime, as a host path (`/usr/bin/busybox` →
    /// `<toolroot>/usr/bin/busybox`).
    pub fn file(&self, path: impl AsRef<Path>) -> PathBuf {
        match self {
            Runtime::Host => path.as_ref().to_path_buf(),
            Runtime::Toolroot(root) => root.host_path(path),
        }
    }

    /// Where a host program lives inside the runtime.
    fn program_path(&self, program: HostProgram) -> PathBuf {
        match (self, program) {
            (Runtime::Toolroot(_), HostProgram::Qemu) => {
                PathBuf::from("/usr/bin/qemu-system-x86_64")
            }
            (Runtime::Toolroot(_), HostProgram::QemuImg) => PathBuf::from("/usr/bin/qemu-img"),
            // On the host, whatever PATH finds.
            (Runtime::Host, HostProgram::Qemu) => PathBuf::from("qemu-system-x86_64"),
            (Runtime::Host, HostProgram::QemuImg) => PathBuf::from("qemu-img"),
            (Runtime::Toolroot(_), HostProgram::Virtiofsd) => {
                PathBuf::from("/usr/libexec/virtiofsd")
            }
            (Runtime::Host, HostProgram::Virtiofsd) => {
                // Debian and Fedora put it in libexec, Arch in /usr/lib.
                [
                    "/usr/libexec/virtiofsd",
                    "/usr/lib/virtiofsd",
                    "/usr/lib/qemu/virtiofsd",
                ]
                .into_iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
                .unwrap_or_else(|| PathBuf::from("virtiofsd"))
            }
        }
    }

    /// A command for a host program, ready for arguments. QEMU also gets
    /// its firmware directories (`-L`) and module directory, which in a
    /// toolroot are not where the binary was compiled to look.
    pub fn host_program(&self, program: HostProgram) -> Command {
        let path = self.program_path(program);
        match self {
            Runtime::Host => Command::new(path),
            Runtime::Toolroot(root) => {
                let mut cmd = root.loader_command(&path);
                if program == HostProgram::Qemu {
                    for dir in [
                        "/usr/share/qemu",
                        "/usr/share/seabios",
                        "/usr/lib/ipxe/qemu",
                    ] {
                        let dir = root.host_path(dir);
                        if dir.exists() {
                            cmd.arg("-L").arg(dir);
                        }
                    }
                    cmd.env(
                        "QEMU_MODULE_DIR",
                        root.host_path("/usr/lib/x86_64-linux-gnu/qemu"),
                    );
                }
                cmd
            }
        }
    }

    /// A command that runs `argv` in the build environment, with `binds`
    /// (absolute host paths) visible at the same paths, starting in `cwd`.
    pub fn build_command<S: AsRef<OsStr>>(
        &self,
        argv: &[S],
        binds: &[PathBuf],
        cwd: &Path,
    ) -> Command {
        match self {
            Runtime::Host => {
                let mut cmd = Command::new(argv[0].as_ref());
                cmd.args(&argv[1..]).current_dir(cwd);
                cmd
            }
            Runtime::Toolroot(root) => root.chroot_command(argv, binds, cwd),
        }
    }

    /// A command to ask a build tool for its version without entering the
    /// root (no mounts, no privileges): toolroot binaries run through the
    /// root's loader.
    pub(crate) fn probe_command(&self, program: &str) -> Command {
        match self {
            Runtime::Host => Command::new(program),
            Runtime::Toolroot(root) => {
                let in_root = ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
                    .iter()
                    .map(|d| Path::new(d).join(program))
                    .find(|p| root.host_path(p).exists())
                    .unwrap_or_else(|| Path::new("/usr/bin").join(program));
                root.loader_command(in_root)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_prefers_a_capable_host_and_says_why_not() {
        let c = choose_runtime(RuntimePref::Auto, &[]);
        assert_eq!(c.kind, RuntimeKind::Host);
        let c = choose_runtime(
            RuntimePref::Auto,
            &["qemu >= 10.1".into(), "bindgen".into()],
        );
        assert_eq!(c.kind, RuntimeKind::Toolroot);
        assert_eq!(c.reason, "the host lacks qemu >= 10.1, bindgen");
        // An explicit choice wins over what the host can do.
        assert_eq!(
            choose_runtime(RuntimePref::Toolroot, &[]).kind,
            RuntimeKind::Toolroot
        );
        assert_eq!(
            choose_runtime(RuntimePref::Host, &["qemu".into()]).kind,
            RuntimeKind::Host
        );
        assert_eq!("toolroot".parse::<RuntimePref>(), Ok(RuntimePref::Toolroot));
        assert!("docker".parse::<RuntimePref>().is_err());
    }

    #[test]
    fn toolroot_qemu_gets_firmware_dirs_only_when_present() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("usr/share/qemu")).unwrap();
        let rt = Runtime::Toolroot(Toolroot::new(dir.path()));
        let cmd = rt.host_program(HostProgram::Qemu);
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let l_count = args.iter().filter(|a| *a == "-L").count();
        assert_eq!(l_count, 1, "{args:?}");
        assert!(
            args.iter()
                .any(|a| a.ends_with("usr/bin/qemu-system-x86_64"))
        );
        assert_eq!(
            Runtime::Host.host_program(HostProgram::Qemu).get_program(),
            "qemu-system-x86_64"
        );
    }
}
