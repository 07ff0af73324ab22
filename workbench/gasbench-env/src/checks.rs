//! The requirements gasbench has of its runtime, and checking them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Serialize;

use crate::runtime::{HostProgram, Runtime, RuntimeKind};
use crate::toolroot::RootState;
use crate::version::Version;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Fail,
    /// Not required, or not fatal: the run adapts (KVM → TCG).
    Warn,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "FAIL",
            Status::Warn => "warn",
        }
    }
}

/// One line of `gasbench doctor`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    /// What is needed, e.g. `>= 10.1 with vfio-user-pci`.
    pub needs: String,
    pub required: bool,
    /// What was found: a version, a path, or nothing.
    pub found: Option<String>,
    /// `host` or `toolroot`.
    pub from: &'static str,
    pub status: Status,
    /// Why it failed, or a note.
    pub detail: String,
    /// The command that fixes a failure.
    pub fix: Option<String>,
}

impl Check {
    pub fn failed_required(&self) -> bool {
        self.required && self.status == Status::Fail
    }
}

/// Run `cmd`, return stdout + stderr if it could be started.
fn output_of(mut cmd: Command) -> Result<String, String> {
    cmd.stdin(Stdio::null());
    match crate::process::output(&mut cmd, crate::process::OnParentDeath::Kill) {
        Ok(out) => {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            Ok(text)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// A build tool checked by its `--version` output against a minimum.
struct ToolSpec {
    name: &'static str,
    program: &'static str,
    args: &'static [&'static str],
    /// Minimum version (from the kernel's scripts/min-tool-version.sh and
    /// Documentation/process/changes.rst where it says).
    min: Option<&'static str>,
    /// The Debian package that provides it, for the fix hint.
    package: &'static str,
}

const BUILD_TOOLS: &[ToolSpec] = &[
    ToolSpec {
        name: "rustc",
        program: "rustc",
        args: &["--version"],
        min: Some("1.85.0"),
        package: "rustc",
    },
    ToolSpec {
        name: "bindgen",
        program: "bindgen",
        args: &["--version"],
        min: Some("0.71.1"),
        package: "bindgen",
    },
    ToolSpec {
        name: "clang",
        program: "clang",
        args: &["--version"],
        min: Some("17.0.1"),
        package: "clang",
    },
    ToolSpec {
        name: "lld",
        program: "ld.lld",
        args: &["--version"],
        min: Some("17.0.1"),
        package: "lld",
    },
    ToolSpec {
        name: "llvm",
        program: "llvm-ar",
        args: &["--version"],
        min: Some("17.0.1"),
        package: "llvm",
    },
    ToolSpec {
        name: "make",
        program: "make",
        args: &["--version"],
        min: Some("4.0"),
        package: "make",
    },
    ToolSpec {
        name: "gcc",
        program: "gcc",
        args: &["--version"],
        min: Some("8.1.0"),
        package: "gcc",
    },
    ToolSpec {
        name: "flex",
        program: "flex",
        args: &["--version"],
        min: Some("2.5.35"),
        package: "flex",
    },
    ToolSpec {
        name: "bison",
        program: "bison",
        args: &["--version"],
        min: Some("2.0"),
        package: "bison",
    },
    ToolSpec {
        name: "bc",
        program: "bc",
        args: &["--version"],
        min: None,
        package: "bc",
    },
    ToolSpec {
        name: "perl",
        program: "perl",
        args: &["--version"],
        min: None,
        package: "perl",
    },
    ToolSpec {
        name: "cpio",
        program: "cpio",
        args: &["--version"],
        min: None,
        package: "cpio",
    },
];

/// Header files a kernel build compiles against.
const HEADERS: &[(&str, &str, &str)] = &[
    ("libelf", "/usr/include/gelf.h", "libelf-dev"),
    ("libssl", "/usr/include/openssl/ssl.h", "libssl-dev"),
];

/// The kernel sources gasbench can base on.
pub const KERNEL_SOURCES: &[(&str, &str)] = &[
    ("linux-source-7.2", "/usr/src/linux-source-7.2.tar.xz"),
    ("linux-source-7.3", "/usr/src/linux-source-7.3.tar.xz"),
];

pub const QEMU_MIN: &str = "10.1";
pub const VIRTIOFSD_MIN: &str = "1.10";

struct Ctx<'a> {
    runtime: &'a Runtime,
    from: &'static str,
}

impl Ctx<'_> {
    fn fix(&self, package: &str) -> String {
        match self.runtime.kind() {
            RuntimeKind::Toolroot => "gasbench setup".into(),
            RuntimeKind::Host => {
                format!("apt-get install {package}   (or: gasbench setup --runtime toolroot)")
            }
        }
    }

    fn check(&self, name: &str, needs: String, required: bool) -> Check {
        Check {
            name: name.into(),
            needs,
            required,
            found: None,
            from: self.from,
            status: Status::Fail,
            detail: String::new(),
            fix: None,
        }
    }

    fn versioned(
        &self,
        mut c: Check,
        text: Result<String, String>,
        min: Option<&str>,
        package: &str,
    ) -> Check {
        match text {
            Err(e) => {
                c.detail = format!("not runnable: {e}");
                c.fix = Some(self.fix(package));
            }
            Ok(text) => match Version::find_in(&text) {
                None => {
                    c.detail = format!("no version in {:?}", text.lines().next().unwrap_or(""));
                    c.fix = Some(self.fix(package));
                }
                Some(v) => {
                    c.found = Some(v.to_string());
                    let min_v = min.map(|m| m.parse::<Version>().expect("constant"));
                    if min_v.as_ref().is_some_and(|m| &v < m) {
                        c.detail = format!("too old (need >= {})", min.unwrap_or_default());
                        c.fix = Some(self.fix(package));
                    } else {
                        c.status = Status::Pass;
                    }
                }
            },
        }
        c
    }
}

/// Check every requirement against `runtime`. `kvm_kernel` is the kernel
/// to prove KVM with (gasbench's own build when there is one); the KVM
/// verdict itself is passed in by the caller, which may have cached it.
pub fn check_runtime(runtime: &Runtime) -> Vec<Check> {
    let from = runtime.kind().name();
    let ctx = Ctx { runtime, from };
    let mut checks = Vec::new();

    if let Runtime::Toolroot(root) = runtime {
        let mut c = ctx.check(
            "toolroot",
            format!("Debian 13 root at {}", root.path().display()),
            true,
        );
        let state = root.state();
        c.found = Some(state.describe());
        if state.is_ready() {
            c.status = Status::Pass;
        } else {
            c.detail = match state {
                RootState::Absent => "not provisioned yet".into(),
                _ => "needs repair".into(),
            };
            c.fix = Some("gasbench setup".into());
        }
        checks.push(c);
    }

    checks.push(check_qemu(&ctx));
    checks.push(check_virtiofsd(&ctx));
    for spec in BUILD_TOOLS {
        let c = ctx.check(
            spec.name,
            spec.min.map_or("present".into(), |m| format!(">= {m}")),
            true,
        );
        let mut cmd = runtime.probe_command(spec.program);
        cmd.args(spec.args);
        let c = ctx.versioned(c, output_of(cmd), spec.min, spec.package);
        checks.push(c);
        if spec.name == "rustc" {
            let rustc = checks.last().and_then(|c| c.found.clone());
            checks.push(check_rust_src(&ctx, rustc.as_deref()));
        }
    }
    for (name, header, package) in HEADERS {
        let mut c = ctx.check(name, header.to_string(), true);
        if runtime.file(header).exists() {
            c.status = Status::Pass;
            c.found = Some((*header).into());
        } else {
            c.detail = "header missing".into();
            c.fix = Some(ctx.fix(package));
        }
        checks.push(c);
    }
    for (package, tarball) in KERNEL_SOURCES {
        let mut c = ctx.check(package, (*tarball).into(), true);
        let path = runtime.file(tarball);
        if path.exists() {
            c.status = Status::Pass;
            c.found = Some(match runtime {
                Runtime::Toolroot(root) => root
                    .packages()
                    .and_then(|db| db.get(*package).map(|p| p.version.clone()))
                    .unwrap_or_else(|| "present".into()),
                Runtime::Host => "present".into(),
            });
        } else {
            c.detail = "kernel source tarball missing".into();
            c.fix = Some(ctx.fix(package));
        }
        checks.push(c);
    }
    checks.push(check_busybox(&ctx));
    checks
}

/// QEMU's version as `--version` reports it, if QEMU runs.
pub fn qemu_version(runtime: &Runtime) -> Option<String> {
    let mut cmd = runtime.host_program(HostProgram::Qemu);
    cmd.arg("--version");
    Version::find_in(&output_of(cmd).ok()?).map(|v| v.to_string())
}

fn check_qemu(ctx: &Ctx) -> Check {
    let c = ctx.check("qemu", format!(">= {QEMU_MIN} with vfio-user-pci"), true);
    let mut cmd = ctx.runtime.host_program(HostProgram::Qemu);
    cmd.arg("--version");
    let mut c = ctx.versioned(c, output_of(cmd), Some(QEMU_MIN), "qemu-system-x86");
    if c.status == Status::Pass {
        let mut cmd = ctx.runtime.host_program(HostProgram::Qemu);
        cmd.args(["-device", "help"]);
        let has_vfio_user = output_of(cmd).is_ok_and(|t| t.contains("\"vfio-user-pci\""));
        if has_vfio_user {
            c.found = c.found.map(|v| format!("{v} (vfio-user-pci)"));
        } else {
            c.status = Status::Fail;
            c.detail = "this QEMU has no vfio-user-pci device".into();
            c.fix = Some(ctx.fix("qemu-system-x86"));
        }
    }
    c
}

fn check_virtiofsd(ctx: &Ctx) -> Check {
    let c = ctx.check("virtiofsd", format!(">= {VIRTIOFSD_MIN}"), true);
    let mut cmd = ctx.runtime.host_program(HostProgram::Virtiofsd);
    cmd.arg("--version");
    ctx.versioned(c, output_of(cmd), Some(VIRTIOFSD_MIN), "virtiofsd")
}

/// rust-src must be exactly the compiler's version: the kernel builds
/// `core` from it with that compiler.
fn check_rust_src(ctx: &Ctx, rustc: Option<&str>) -> Check {
    let mut c = ctx.check("rust-src", "== rustc's version".into(), true);
    let found = match ctx.runtime {
        Runtime::Toolroot(root) => root.package_version("rust-src").map(|v| v.to_string()),
        Runtime::Host => host_rust_src_version(rustc),
    };
    c.found = found.clone();
    match (found, rustc) {
        (None, _) => {
            c.detail = "rust-src not found".into();
            c.fix = Some(ctx.fix("rust-src"));
        }
        (Some(_), None) => c.detail = "rustc missing, nothing to compare with".into(),
        (Some(src), Some(rustc)) if src == rustc => c.status = Status::Pass,
        (Some(src), Some(rustc)) => {
            c.detail = format!("rust-src {src} does not match rustc {rustc}");
            c.fix = Some(ctx.fix("rust-src"));
        }
    }
    c
}

/// On a host: Debian's package if dpkg knows it, else a rustup toolchain's
/// component (which rustup keeps in lockstep with its rustc).
fn host_rust_src_version(rustc: Option<&str>) -> Option<String> {
    if let Ok(text) = std::fs::read_to_string("/var/lib/dpkg/status") {
        let db = crate::apt::parse_dpkg_status(&text);
        if let Some(p) = db.get("rust-src").filter(|p| p.is_installed()) {
            return Version::from_debian(&p.version).map(|v| v.to_string());
        }
    }
    let sysroot = output_of({
        let mut c = Command::new("rustc");
        c.args(["--print", "sysroot"]);
        c
    })
    .ok()?;
    let sysroot = PathBuf::from(sysroot.trim());
    let components = std::fs::read_to_string(sysroot.join("lib/rustlib/components")).ok()?;
    let has_src = components.lines().any(|l| l.trim() == "rust-src")
        && sysroot
            .join("lib/rustlib/src/rust/library/core/src/lib.rs")
            .exists();
    has_src.then(|| rustc.map(str::to_owned)).flatten()
}

fn check_busybox(ctx: &Ctx) -> Check {
    let mut c = ctx.check(
        "busybox",
        "static, for an optional guest shell".into(),
        false,
    );
    // Named as the runtime sees it (the origin column says where).
    let path = ["/usr/bin/busybox", "/bin/busybox"]
        .into_iter()
        .map(|p| (p, ctx.runtime.file(p)))
        .find(|(_, p)| p.exists());
    match path {
        None => {
            c.status = Status::Warn;
            c.detail = "absent: guests get no interactive shell".into();
            c.fix = Some(ctx.fix("busybox-static"));
        }
        Some((name, p)) if !is_static_elf(&p) => {
            c.status = Status::Warn;
            c.found = Some(name.to_string());
            c.detail = "dynamically linked: unusable in the initramfs".into();
            c.fix = Some(ctx.fix("busybox-static"));
        }
        Some((name, _)) => {
            c.status = Status::Pass;
            c.found = Some(name.to_string());
        }
    }
    c
}

/// An ELF executable without a PT_INTERP program header needs no dynamic
/// loader.
pub fn is_static_elf(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    let u16_at = |o: usize| {
        bytes
            .get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u64_at = |o: usize| {
        bytes
            .get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    // 64-bit little-endian ELF only: that is all gasbench ships.
    if bytes.get(0..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    const PT_INTERP: u32 = 3;
    (0..phnum as usize).all(|i| {
        let at = phoff as usize + i * phentsize as usize;
        bytes
            .get(at..at + 4)
            .is_some_and(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) != PT_INTERP)
    })
}

/// The host tool needed to make a toolroot.
pub fn check_debootstrap() -> Check {
    let mut c = Check {
        name: "debootstrap".into(),
        needs: "on the host, to create the toolroot".into(),
        required: true,
        found: None,
        from: "host",
        status: Status::Fail,
        detail: String::new(),
        fix: Some("apt-get install debootstrap".into()),
    };
    let found = ["/usr/sbin/debootstrap", "/usr/bin/debootstrap"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    if let Some(p) = found {
        c.status = Status::Pass;
        c.found = Some(p.into());
        c.fix = None;
    } else {
        c.detail = "missing".into();
    }
    c
}

/// The KVM line of the doctor report.
pub fn kvm_check(verdict: &crate::kvm::KvmVerdict, cached: bool) -> Check {
    let cached = if cached {
        " (cached for this boot)"
    } else {
        ""
    };
    Check {
        name: "kvm".into(),
        needs: "optional: a guest kernel boots under -accel kvm".into(),
        required: false,
        found: Some(if verdict.usable { "KVM" } else { "TCG" }.into()),
        from: "host",
        status: if verdict.usable {
            Status::Pass
        } else {
            Status::Warn
        },
        detail: if verdict.usable {
            format!("KVM works: {}{cached}", verdict.reason)
        } else {
            format!("KVM unusable, TCG will be used: {}{cached}", verdict.reason)
        },
        fix: None,
    }
}

/// Default bound on the KVM probe: a working KVM prints in well under a
/// second; a broken one fails within one or two.
pub const KVM_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The seccomp filter every QEMU gasbench starts runs under: obsolete
/// system calls, set*id, fork/exec and resource control denied (the set
/// libvirt uses).
pub const QEMU_SANDBOX: &str =
    "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

/// Does this QEMU accept [`QEMU_SANDBOX`]? (`-sandbox … -version` exits
/// 1 with the reason when QEMU was built without seccomp.) Asked once per
/// QEMU per process.
pub fn qemu_seccomp(runtime: &Runtime) -> Result<(), String> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static SEEN: OnceLock<Mutex<HashMap<String, Result<(), String>>>> = OnceLock::new();
    let mut cmd = runtime.host_program(HostProgram::Qemu);
    let key = format!("{cmd:?}");
    let seen = SEEN.get_or_init(Default::default);
    if let Some(r) = seen.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return r.clone();
    }
    cmd.args(["-sandbox", QEMU_SANDBOX, "-version"]);
    let r = match cmd.stdin(Stdio::null()).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(String::from_utf8_lossy(&out.stderr)
            .lines()
            .next()
            .unwrap_or("no reason given")
            .chars()
            .take(200)
            .collect()),
        Err(e) => Err(format!("cannot run QEMU: {e}")),
    };
    seen.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, r.clone());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_elf_detection_reads_program_headers() {
        // The test binary itself is dynamically linked.
        let me = std::env::current_exe().unwrap();
        assert!(!is_static_elf(&me));
        let dir = tempfile::tempdir().unwrap();
        let not_elf = dir.path().join("x");
        std::fs::write(&not_elf, b"#!/bin/sh\n").unwrap();
        assert!(!is_static_elf(&not_elf));
        // A minimal 64-bit ELF header with one PT_LOAD and no PT_INTERP.
        let mut elf = vec![0u8; 0x40 + 0x38];
        elf[..6].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1]);
        elf[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        elf[0x40..0x44].copy_from_slice(&1u32.to_le_bytes());
        let path = dir.path().join("static");
        std::fs::write(&path, &elf).unwrap();
        assert!(is_static_elf(&path));
        elf[0x40..0x44].copy_from_slice(&3u32.to_le_bytes());
        std::fs::write(&path, &elf).unwrap();
        assert!(!is_static_elf(&path));
        // Truncated program header table: not trusted as static.
        std::fs::write(&path, &elf[..0x50]).unwrap();
        assert!(!is_static_elf(&path));
    }

    #[test]
    fn versioned_checks_fail_old_missing_and_unparsable_tools() {
        let ctx = Ctx {
            runtime: &Runtime::Host,
            from: "host",
        };
        let mk = || ctx.check("bindgen", ">= 0.71.1".into(), true);
        let ok = ctx.versioned(mk(), Ok("bindgen 0.71.1".into()), Some("0.71.1"), "bindgen");
        assert_eq!(ok.status, Status::Pass);
        assert_eq!(ok.found.as_deref(), Some("0.71.1"));
        let old = ctx.versioned(mk(), Ok("bindgen 0.69.4".into()), Some("0.71.1"), "bindgen");
        assert_eq!(old.status, Status::Fail);
        assert!(
            old.fix
                .as_deref()
                .unwrap()
                .starts_with("apt-get install bindgen")
        );
        let gone = ctx.versioned(mk(), Err("No such file".into()), Some("0.71.1"), "bindgen");
        assert!(gone.failed_required());
        let odd = ctx.versioned(
            mk(),
            Ok("bindgen nightly".into()),
            Some("0.71.1"),
            "bindgen",
        );
        assert!(odd.detail.contains("no version"));
    }

    #[test]
    fn kvm_line_says_tcg_with_the_reason() {
        let v = crate::kvm::KvmVerdict {
            usable: false,
            reason: "QEMU under KVM: KVM internal error. Suberror: 1".into(),
        };
        let c = kvm_check(&v, false);
        assert_eq!(c.status, Status::Warn);
        assert!(!c.failed_required());
        assert!(
            c.detail.starts_with("KVM unusable, TCG will be used: "),
            "{}",
            c.detail
        );
    }
}
