//! The uapi headers and the posted kselftest, built static for the guest.

use std::path::{Path, PathBuf};

use gasbench_events::EventSink;
use gasbench_events::run::Stage;

use crate::KbuildError;
use crate::make::{Make, run_streaming};

/// The selftest the mkdirat2 series posts.
pub const SELFTEST_DIR: &str = "tools/testing/selftests/filesystems";
pub const SELFTEST: &str = "mkdirat_fd_test";

/// Whether the tree has the selftest's source (the mkdirat2 series adds
/// it; a build of other series alone has none).
pub fn present(src: &Path) -> bool {
    src.join(SELFTEST_DIR)
        .join(format!("{SELFTEST}.c"))
        .is_file()
}

/// `make headers_install` into `dest` (`dest/include/...`).
pub fn install_headers(
    make: &Make,
    dest: &Path,
    log: &Path,
    sink: &EventSink,
) -> Result<(), KbuildError> {
    let arg = format!("INSTALL_HDR_PATH={}", dest.display());
    let run = make.run_logged(&["headers_install", &arg], log, sink, Stage::Selftests, 0)?;
    if run.disk_full {
        return Err(KbuildError::DiskFull {
            what: "installing headers".into(),
            path: dest.to_path_buf(),
            available_mib: crate::disk::free_mib(dest).unwrap_or(0),
            needed_mib: 50,
        });
    }
    if !run.ok {
        return Err(KbuildError::SelftestFailed {
            what: "headers_install".into(),
            first_error: run.first_error.unwrap_or_else(|| run.tail.join("\n")),
            log: log.to_path_buf(),
        });
    }
    Ok(())
}

/// Build the posted selftest with the posted Makefile (its CFLAGS:
/// KHDR_INCLUDES for the installed headers, TOOLS_INCLUDES), statically
/// linked, into `out_dir`. Returns the binary.
pub fn build_selftest(
    make: &Make,
    headers: &Path,
    out_dir: &Path,
    log: &Path,
    sink: &EventSink,
) -> Result<PathBuf, KbuildError> {
    std::fs::create_dir_all(out_dir).map_err(|e| KbuildError::io("create", out_dir, e))?;
    let dir = make.src.join(SELFTEST_DIR);
    let target = out_dir.join(SELFTEST);
    let _ = std::fs::remove_file(&target);
    let argv: Vec<String> = vec![
        "make".into(),
        "-C".into(),
        dir.display().to_string(),
        format!("OUTPUT={}", out_dir.display()),
        format!(
            "KHDR_INCLUDES=-isystem {}",
            headers.join("include").display()
        ),
        // The guest has no libc: link everything in.
        "LDFLAGS=-static".into(),
        "CC=gcc".into(),
        target.display().to_string(),
    ];
    let mut cmd = make.rt.build_command(&argv, &make.binds, &make.src);
    cmd.env("LC_ALL", "C.UTF-8");
    let run = run_streaming(cmd, log, sink, Stage::Selftests, 0)?;
    if !run.ok || !target.is_file() {
        return Err(KbuildError::SelftestFailed {
            what: SELFTEST.into(),
            first_error: run.first_error.unwrap_or_else(|| run.tail.join("\n")),
            log: log.to_path_buf(),
        });
    }
    let kind = elf_kind(&target).map_err(|e| KbuildError::io("read", &target, e))?;
    if kind != ElfKind::Static {
        return Err(KbuildError::SelftestFailed {
            what: SELFTEST.into(),
            first_error: format!("{} is {kind:?}, not a static executable", target.display()),
            log: log.to_path_buf(),
        });
    }
    Ok(target)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfKind {
    NotElf,
    /// Has a program interpreter (`PT_INTERP`): needs ld.so and libc.
    Dynamic,
    /// No interpreter: runs on a bare initramfs.
    Static,
}

/// Whether `path` is a static ELF executable (no `PT_INTERP`).
pub fn elf_kind(path: &Path) -> std::io::Result<ElfKind> {
    let data = std::fs::read(path)?;
    Ok(elf_kind_of(&data))
}

pub fn elf_kind_of(data: &[u8]) -> ElfKind {
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 || data[5] != 1 {
        // Not a little-endian ELF64 (all gasbench guests are x86_64).
        return ElfKind::NotElf;
    }
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&data[o..o + 8]);
        u64::from_le_bytes(b) as usize
    };
    let phoff = u64_at(0x20);
    let phentsize = u16_at(0x36);
    let phnum = u16_at(0x38);
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        if o + 4 > data.len() {
            return ElfKind::NotElf;
        }
        let p_type = u32::from_le_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]);
        if p_type == 3 {
            return ElfKind::Dynamic;
        }
    }
    ElfKind::Static
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(phdrs: &[u32]) -> Vec<u8> {
        let mut d = vec![0u8; 64 + 56 * phdrs.len()];
        d[..4].copy_from_slice(b"\x7fELF");
        d[4] = 2;
        d[5] = 1;
        d[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        d[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        d[0x38..0x3a].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
        for (i, t) in phdrs.iter().enumerate() {
            let o = 64 + 56 * i;
            d[o..o + 4].copy_from_slice(&t.to_le_bytes());
        }
        d
    }

    #[test]
    fn static_and_dynamic_executables() {
        // PT_LOAD only: static. PT_PHDR, PT_INTERP, PT_LOAD: dynamic.
        assert_eq!(elf_kind_of(&elf(&[1, 1])), ElfKind::Static);
        assert_eq!(elf_kind_of(&elf(&[6, 3, 1])), ElfKind::Dynamic);
        assert_eq!(elf_kind_of(b"#!/bin/sh\necho hi\n"), ElfKind::NotElf);
        let mut truncated = elf(&[1, 3]);
        truncated.truncate(80);
        assert_eq!(elf_kind_of(&truncated), ElfKind::NotElf);
    }
}
