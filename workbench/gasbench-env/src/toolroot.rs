//! The toolroot: a Debian 13 (trixie) root under the cache directory that
//! provides QEMU, virtiofsd and the Rust-enabled kernel toolchain on a host
//! that lacks them.
//!
//! Host-side programs (QEMU, virtiofsd) run on the host through the root's
//! own dynamic loader; the kernel build runs inside the root under chroot,
//! in a private mount namespace so that nothing stays mounted when it ends.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::apt::{InstalledPackage, parse_dpkg_status};
use crate::version::Version;

/// Suite debootstrap creates.
pub const SUITE: &str = "trixie";
/// Suite preferred at install time (QEMU >= 10.1 and rustc 1.96 live here).
pub const BACKPORTS: &str = "trixie-backports";

/// What the toolroot must hold. Installed with `-t trixie-backports
/// --no-install-recommends`: backports wins where it has the package
/// (qemu, virtiofsd, rustc/rust-src/cargo, linux-source-7.x), trixie
/// provides the rest (bindgen 0.71, clang/lld/llvm 19).
pub const PACKAGES: &[&str] = &[
    // VM side.
    "qemu-system-x86",
    "qemu-utils",
    "virtiofsd",
    "busybox-static",
    // A stock kernel to probe KVM with before gasbench has built its own.
    "linux-image-amd64",
    // Rust-enabled kernel toolchain (LLVM=1).
    "rustc",
    "rust-src",
    "cargo",
    "bindgen",
    "clang",
    "lld",
    "llvm",
    "libclang-dev",
    // Classic kernel build dependencies.
    "make",
    "gcc",
    "libc6-dev",
    "flex",
    "bison",
    "bc",
    "libelf-dev",
    "libssl-dev",
    "cpio",
    "perl",
    "kmod",
    "python3",
    "rsync",
    "xz-utils",
    "git",
    "ca-certificates",
    // Kernel sources: both candidate bases.
    "linux-source-7.2",
    "linux-source-7.3",
];

/// Where the root's dynamic loader and libraries are.
const LOADER: &str = "usr/lib64/ld-linux-x86-64.so.2";
const LIB_DIRS: &[&str] = &["usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu"];

/// The PATH used inside the root.
pub const ROOT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What state a toolroot directory is in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootState {
    /// Nothing there yet.
    Absent,
    /// A debootstrap was interrupted: never use, remove and redo.
    HalfBootstrapped(String),
    /// dpkg reports packages that are not fully installed (an interrupted
    /// apt or dpkg run): repair with `dpkg --configure -a`, `apt-get -f install`.
    Broken(Vec<String>),
    /// The base system is fine; these required packages are missing.
    Incomplete(Vec<String>),
    /// Every required package is installed and configured.
    Ready,
}

impl RootState {
    pub fn is_ready(&self) -> bool {
        matches!(self, RootState::Ready)
    }

    pub fn describe(&self) -> String {
        match self {
            RootState::Absent => "absent".into(),
            RootState::HalfBootstrapped(why) => format!("half-made ({why})"),
            RootState::Broken(p) => format!("interrupted install: {}", p.join(", ")),
            RootState::Incomplete(p) => format!("missing packages: {}", p.join(", ")),
            RootState::Ready => "ready".into(),
        }
    }
}

/// A Debian 13 root at a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Toolroot {
    path: PathBuf,
}

impl Toolroot {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// debootstrap works here and the result is renamed into place only on
    /// success, so `path` is never a half-made root of ours.
    pub fn staging_path(&self) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".partial");
        self.path.with_file_name(name)
    }

    /// A path inside the root, as seen from the host.
    pub fn host_path(&self, inside: impl AsRef<Path>) -> PathBuf {
        let inside = inside.as_ref();
        self.path.join(inside.strip_prefix("/").unwrap_or(inside))
    }

    /// The root's dpkg database, or `None` when it has none.
    pub fn packages(&self) -> Option<BTreeMap<String, InstalledPackage>> {
        let text = std::fs::read_to_string(self.host_path("/var/lib/dpkg/status")).ok()?;
        Some(parse_dpkg_status(&text))
    }

    /// Inspect without changing anything.
    pub fn state(&self) -> RootState {
        self.state_for(PACKAGES)
    }

    pub fn state_for(&self, required: &[&str]) -> RootState {
        if !self.path.exists() {
            return if self.staging_path().exists() {
                RootState::HalfBootstrapped(format!(
                    "{} is left from an interrupted debootstrap",
                    self.staging_path().display()
                ))
            } else {
                RootState::Absent
            };
        }
        if self.host_path("/debootstrap").exists() {
            return RootState::HalfBootstrapped(
                "debootstrap's work directory is still there".into(),
            );
        }
        let Some(db) = self.packages() else {
            return RootState::HalfBootstrapped("no dpkg status database".into());
        };
        let broken: Vec<String> = db
            .iter()
            .filter(|(_, p)| !p.is_installed() && !p.status.ends_with("not-installed"))
            .filter(|(_, p)| !p.status.starts_with("deinstall ok config-files"))
            .map(|(n, p)| format!("{n} ({})", p.status))
            .collect();
        if !broken.is_empty() {
            return RootState::Broken(broken);
        }
        let missing: Vec<String> = required
            .iter()
            .filter(|p| !db.get(**p).is_some_and(InstalledPackage::is_installed))
            .map(|p| p.to_string())
            .collect();
        if !missing.is_empty() {
            return RootState::Incomplete(missing);
        }
        RootState::Ready
    }

    /// The upstream version of an installed package.
    pub fn package_version(&self, name: &str) -> Option<Version> {
        let db = self.packages()?;
        let p = db.get(name).filter(|p| p.is_installed())?;
        Version::from_debian(&p.version)
    }

    /// Run a program from the root on the host, through the root's loader,
    /// so that it finds the root's libraries rather than the host's.
    pub fn loader_command(&self, program_in_root: impl AsRef<Path>) -> Command {
        let mut cmd = Command::new(self.host_path(LOADER));
        let lib_path: Vec<String> = LIB_DIRS
            .iter()
            .map(|d| self.host_path(d).display().to_string())
            .collect();
        cmd.arg("--library-path")
            .arg(lib_path.join(":"))
            .arg(self.host_path(program_in_root));
        cmd
    }

    /// Run `argv` inside the root under chroot, with each of `binds`
    /// visible at the same path inside, starting in `cwd`. /dev, /proc and
    /// /sys are mounted; all mounts live in a private mount namespace and
    /// vanish with the command. The environment is cleared to a known one;
    /// callers add what they need with `Command::env`.
    pub fn chroot_command<S: AsRef<OsStr>>(
        &self,
        argv: &[S],
        binds: &[PathBuf],
        cwd: &Path,
    ) -> Command {
        const SCRIPT: &str = r#"set -e
root=$1; cwd=$2; shift 2
mount --rbind /dev "$root/dev"
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
while [ "$1" != "--" ]; do
  mkdir -p "$root$1"
  mount --rbind "$1" "$root$1"
  shift
done
shift
exec chroot "$root" /bin/sh -c 'cd "$0" && exec "$@"' "$cwd" "$@"
"#;
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
            .arg(SCRIPT)
            .arg("gasbench-chroot")
            .arg(&self.path)
            .arg(cwd);
        for b in binds {
            cmd.arg(b);
        }
        cmd.arg("--");
        cmd.args(argv.iter().map(|a| OsString::from(a.as_ref())));
        cmd.env_clear()
            .env("PATH", ROOT_PATH)
            .env("HOME", "/root")
            .env("LANG", "C.UTF-8")
            .env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn status_of(pkgs: &[(&str, &str)]) -> String {
        pkgs.iter()
            .map(|(n, s)| format!("Package: {n}\nStatus: {s}\nVersion: 1.0-1\n"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn state_tells_absent_half_made_broken_incomplete_and_ready() {
        let dir = tempfile::tempdir().unwrap();
        let root = Toolroot::new(dir.path().join("toolroot"));
        assert_eq!(root.state_for(&["a"]), RootState::Absent);

        std::fs::create_dir_all(root.staging_path()).unwrap();
        assert!(matches!(
            root.state_for(&["a"]),
            RootState::HalfBootstrapped(_)
        ));
        std::fs::remove_dir_all(root.staging_path()).unwrap();

        std::fs::create_dir_all(root.host_path("/debootstrap")).unwrap();
        assert!(matches!(
            root.state_for(&["a"]),
            RootState::HalfBootstrapped(_)
        ));
        std::fs::remove_dir_all(root.host_path("/debootstrap")).unwrap();
        assert!(matches!(
            root.state_for(&["a"]),
            RootState::HalfBootstrapped(_)
        ));

        let status = root.host_path("/var/lib/dpkg/status");
        write(
            &status,
            &status_of(&[("a", "install ok installed"), ("b", "install ok unpacked")]),
        );
        assert_eq!(
            root.state_for(&["a"]),
            RootState::Broken(vec!["b (install ok unpacked)".into()])
        );

        write(
            &status,
            &status_of(&[
                ("a", "install ok installed"),
                ("old", "deinstall ok config-files"),
            ]),
        );
        assert_eq!(
            root.state_for(&["a", "c"]),
            RootState::Incomplete(vec!["c".into()])
        );
        assert_eq!(root.state_for(&["a"]), RootState::Ready);
        assert_eq!(root.package_version("a"), Some(Version::new(&[1, 0])));
        assert_eq!(root.package_version("c"), None);
    }

    #[test]
    fn commands_reach_into_the_root() {
        let root = Toolroot::new("/cache/toolroot");
        assert_eq!(
            root.host_path("/usr/bin/qemu-system-x86_64"),
            Path::new("/cache/toolroot/usr/bin/qemu-system-x86_64")
        );
        let cmd = root.loader_command("/usr/libexec/virtiofsd");
        assert_eq!(
            cmd.get_program(),
            "/cache/toolroot/usr/lib64/ld-linux-x86-64.so.2"
        );
        let args: Vec<_> = cmd.get_args().collect();
        assert_eq!(args[0], "--library-path");
        assert!(
            args[1]
                .to_str()
                .unwrap()
                .starts_with("/cache/toolroot/usr/lib/x86_64-linux-gnu")
        );
        assert_eq!(args[2], "/cache/toolroot/usr/libexec/virtiofsd");

        let cmd = root.chroot_command(
            &["make", "-j2"],
            &[PathBuf::from("/src")],
            Path::new("/src"),
        );
        assert_eq!(cmd.get_program(), "unshare");
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let tail = &args[args.len() - 6..];
        assert_eq!(
            tail,
            ["/cache/toolroot", "/src", "/src", "--", "make", "-j2"]
        );
    }
}
