//! Is this file a whole x86 bzImage? Checked before QEMU is given it, so
//! an empty or truncated image is an error that says so rather than a
//! guest that never prints a line.
//!
//! The boot protocol (the kernel's Documentation/arch/x86/boot.rst) puts
//! a setup header in the first sectors: `setup_sects` at 0x1F1 (0 means
//! 4), `syssize` at 0x1F4 (the protected-mode code in 16-byte
//! paragraphs), the boot flag 0xAA55 at 0x1FE, the magic "HdrS" at 0x202
//! and the protocol version at 0x206. The image is the setup sectors, the
//! boot sector and the protected-mode code: a file shorter than that was
//! cut short. (Signed distribution kernels carry a signature after it.)

use std::io::Read;
use std::path::{Path, PathBuf};

/// What the header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BzImage {
    /// The boot protocol version (0x020f is 2.15).
    pub protocol: u16,
    /// Bytes the header says the image has.
    pub expected_len: u64,
    /// Bytes the file has.
    pub len: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BzImageError {
    #[error("{}: cannot read it: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: the file is empty, not a kernel image", path.display())]
    Empty { path: PathBuf },
    #[error("{}: not an x86 bzImage ({why})", path.display())]
    NotBzImage { path: PathBuf, why: String },
    #[error(
        "{}: the image is truncated: {len} bytes, its header says {expected} (setup {setup} sectors + {system} bytes of kernel)",
        path.display()
    )]
    Truncated {
        path: PathBuf,
        len: u64,
        expected: u64,
        setup: u64,
        system: u64,
    },
}

const HEADER_END: usize = 0x208;

/// Check the file at `path`.
pub fn check(path: &Path) -> Result<BzImage, BzImageError> {
    let read = |source| BzImageError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(read)?;
    let meta = f.metadata().map_err(read)?;
    if !meta.is_file() {
        return Err(BzImageError::NotBzImage {
            path: path.to_path_buf(),
            why: "not a regular file".into(),
        });
    }
    let mut head = Vec::with_capacity(HEADER_END);
    (&mut f)
        .take(HEADER_END as u64)
        .read_to_end(&mut head)
        .map_err(read)?;
    check_header(path, &head, meta.len())
}

/// [`check`] on the first bytes of a file `len` bytes long.
pub fn check_header(path: &Path, head: &[u8], len: u64) -> Result<BzImage, BzImageError> {
    let not = |why: String| BzImageError::NotBzImage {
        path: path.to_path_buf(),
        why,
    };
    if len == 0 {
        return Err(BzImageError::Empty {
            path: path.to_path_buf(),
        });
    }
    if head.len() < HEADER_END {
        return Err(not(format!(
            "{len} bytes, shorter than the boot sector and setup header"
        )));
    }
    if &head[0x202..0x206] != b"HdrS" {
        return Err(not("no \"HdrS\" setup header at 0x202".into()));
    }
    let boot_flag = u16::from_le_bytes([head[0x1fe], head[0x1ff]]);
    if boot_flag != 0xaa55 {
        return Err(not(format!("boot flag {boot_flag:#06x}, not 0xaa55")));
    }
    let protocol = u16::from_le_bytes([head[0x206], head[0x207]]);
    if protocol < 0x0200 {
        return Err(not(format!(
            "boot protocol {protocol:#06x} is older than 2.0"
        )));
    }
    let setup = match head[0x1f1] {
        0 => 4,
        n => u64::from(n),
    };
    let system = u64::from(u32::from_le_bytes([
        head[0x1f4],
        head[0x1f5],
        head[0x1f6],
        head[0x1f7],
    ])) * 16;
    let expected = (setup + 1) * 512 + system;
    if len < expected {
        return Err(BzImageError::Truncated {
            path: path.to_path_buf(),
            len,
            expected,
            setup,
            system,
        });
    }
    Ok(BzImage {
        protocol,
        expected_len: expected,
        len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header as the kernel's build writes it: `setup` sectors, `paras`
    /// paragraphs of kernel.
    fn image(setup: u8, paras: u32) -> Vec<u8> {
        let setup_len = (if setup == 0 { 4 } else { setup as usize } + 1) * 512;
        let mut b = vec![0u8; setup_len + paras as usize * 16];
        b[0x1f1] = setup;
        b[0x1f4..0x1f8].copy_from_slice(&paras.to_le_bytes());
        b[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        b
    }

    fn on_disk(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bzImage");
        std::fs::write(&p, bytes).unwrap();
        (dir, p)
    }

    #[test]
    fn a_whole_image_passes_and_a_signed_one_may_be_longer() {
        let img = image(31, 1000);
        let (_d, p) = on_disk(&img);
        let ok = check(&p).unwrap();
        assert_eq!(ok.protocol, 0x020f);
        assert_eq!(ok.expected_len, img.len() as u64);
        let mut signed = img.clone();
        signed.extend_from_slice(&[7u8; 1472]);
        let (_d, p) = on_disk(&signed);
        assert!(check(&p).is_ok());
        // setup_sects 0 means 4.
        let (_d, p) = on_disk(&image(0, 10));
        assert_eq!(check(&p).unwrap().expected_len, 5 * 512 + 160);
    }

    #[test]
    fn empty_short_foreign_and_truncated_files_each_say_what_is_wrong() {
        let (_d, p) = on_disk(b"");
        assert!(matches!(check(&p), Err(BzImageError::Empty { .. })));
        let (_d, p) = on_disk(&[0u8; 100]);
        let e = check(&p).unwrap_err().to_string();
        assert!(e.contains("shorter than the boot sector"), "{e}");
        let mut elf = image(31, 1000);
        elf[0x202..0x206].copy_from_slice(b"\x7fELF");
        let (_d, p) = on_disk(&elf);
        let e = check(&p).unwrap_err().to_string();
        assert!(e.contains("no \"HdrS\""), "{e}");
        let img = image(31, 1000);
        let (_d, p) = on_disk(&img[..img.len() - 4096]);
        let e = check(&p).unwrap_err();
        assert!(matches!(e, BzImageError::Truncated { .. }), "{e}");
        assert!(
            e.to_string().contains(&format!(
                "the image is truncated: {} bytes, its header says {}",
                img.len() - 4096,
                img.len()
            )),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let e = check(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("not a regular file") || e.contains("cannot read"),
            "{e}"
        );
    }
}
