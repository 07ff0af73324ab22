//! Initramfs images in the kernel's `newc` cpio format, written in Rust so
//! that building one needs no root, no `cpio` binary and no staging tree.
//!
//! The kernel unpacks an uncompressed newc archive directly; entries are
//! written in the order given, so parents must come before children
//! ([`Initramfs::file`] and friends create missing parents themselves).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writing the archive: {0}")]
    Write(#[from] std::io::Error),
    #[error("bad archive path {0:?}: must be relative, without `..`")]
    BadPath(String),
    #[error("{0} is too large for a newc archive (4 GiB limit)")]
    TooLarge(String),
}

pub type Result<T> = std::result::Result<T, Error>;

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// An archive being assembled in memory.
#[derive(Default)]
pub struct Initramfs {
    entries: Vec<Entry>,
    dirs: BTreeSet<String>,
}

struct Entry {
    name: String,
    mode: u32,
    rdev: (u32, u32),
    data: Vec<u8>,
}

fn check_path(path: &str) -> Result<String> {
    let p = path.trim_start_matches('/');
    if p.is_empty() || p.split('/').any(|c| c == ".." || c.is_empty()) {
        return Err(Error::BadPath(path.into()));
    }
    Ok(p.to_owned())
}

impl Initramfs {
    pub fn new() -> Self {
        Self::default()
    }

    fn parents(&mut self, name: &str) {
        let mut acc = String::new();
        let comps: Vec<&str> = name.split('/').collect();
        for c in &comps[..comps.len() - 1] {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(c);
            if self.dirs.insert(acc.clone()) {
                self.entries.push(Entry {
                    name: acc.clone(),
                    mode: S_IFDIR | 0o755,
                    rdev: (0, 0),
                    data: Vec::new(),
                });
            }
        }
    }

    /// A directory (and its parents).
    pub fn dir(&mut self, path: &str, perm: u32) -> Result<&mut Self> {
        let name = check_path(path)?;
        self.parents(&name);
        if self.dirs.insert(name.clone()) {
            self.entries.push(Entry {
                name,
                mode: S_IFDIR | (perm & 0o7777),
                rdev: (0, 0),
                data: Vec::new(),
            });
        }
        Ok(self)
    }

    /// A regular file with the given bytes.
    pub fn file(&mut self, path: &str, perm: u32, data: Vec<u8>) -> Result<&mut Self> {
        let name = check_path(path)?;
        if u32::try_from(data.len()).is_err() {
            return Err(Error::TooLarge(name));
        }
        self.parents(&name);
        self.entries.push(Entry {
            name,
            mode: S_IFREG | (perm & 0o7777),
            rdev: (0, 0),
            data,
        });
        Ok(self)
    }

    /// A regular file copied from the host.
    pub fn file_from(&mut self, path: &str, perm: u32, host: &Path) -> Result<&mut Self> {
        let data = std::fs::read(host).map_err(|source| Error::Read {
            path: host.display().to_string(),
            source,
        })?;
        self.file(path, perm, data)
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> Result<&mut Self> {
        let name = check_path(path)?;
        self.parents(&name);
        self.entries.push(Entry {
            name,
            mode: S_IFLNK | 0o777,
            rdev: (0, 0),
            data: target.as_bytes().to_vec(),
        });
        Ok(self)
    }

    /// A character device node (`/dev/console` must exist before devtmpfs
    /// is mounted, or the kernel starts init without a console).
    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> Result<&mut Self> {
        let name = check_path(path)?;
        self.parents(&name);
        self.entries.push(Entry {
            name,
            mode: S_IFCHR | (perm & 0o7777),
            rdev: (major, minor),
            data: Vec::new(),
        });
        Ok(self)
    }

    /// Serialize to `out`.
    pub fn write_to(&self, mut out: impl Write) -> Result<()> {
        for (i, e) in self.entries.iter().enumerate() {
            write_entry(&mut out, i as u32 + 1, e)?;
        }
        write_entry(
            &mut out,
            0,
            &Entry {
                name: "TRAILER!!!".into(),
                mode: 0,
                rdev: (0, 0),
                data: Vec::new(),
            },
        )?;
        Ok(())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v).expect("writing to a Vec cannot fail");
        v
    }
}

fn pad4(out: &mut impl Write, len: usize) -> std::io::Result<()> {
    let pad = (4 - len % 4) % 4;
    out.write_all(&[0u8; 3][..pad])
}

fn write_entry(out: &mut impl Write, ino: u32, e: &Entry) -> std::io::Result<()> {
    let nlink = if e.mode & S_IFDIR != 0 && e.mode & S_IFREG == 0 {
        2
    } else {
        1
    };
    let namesize = e.name.len() + 1;
    let header = format!(
        "070701{ino:08x}{mode:08x}{uid:08x}{gid:08x}{nlink:08x}{mtime:08x}{size:08x}{dmaj:08x}{dmin:08x}{rmaj:08x}{rmin:08x}{namesize:08x}{check:08x}",
        mode = e.mode,
        uid = 0,
        gid = 0,
        // A fixed mtime keeps images reproducible.
        mtime = 0,
        size = e.data.len(),
        dmaj = 0,
        dmin = 0,
        rmaj = e.rdev.0,
        rmin = e.rdev.1,
        check = 0,
    );
    out.write_all(header.as_bytes())?;
    out.write_all(e.name.as_bytes())?;
    out.write_all(&[0])?;
    pad4(out, header.len() + namesize)?;
    out.write_all(&e.data)?;
    pad4(out, e.data.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name, mode, rdev, data) of one parsed entry.
    type Parsed = (String, u32, (u32, u32), Vec<u8>);

    /// Parse a newc archive back.
    fn parse(mut b: &[u8]) -> Vec<Parsed> {
        let mut out = Vec::new();
        let total = b.len();
        loop {
            assert_eq!(&b[..6], b"070701", "magic at offset {}", total - b.len());
            let field = |i: usize| {
                u32::from_str_radix(std::str::from_utf8(&b[6 + i * 8..14 + i * 8]).unwrap(), 16)
                    .unwrap()
            };
            let (mode, size, rmaj, rmin, namesize) =
                (field(1), field(6), field(9), field(10), field(11));
            let name_end = 110 + namesize as usize;
            let name = std::str::from_utf8(&b[110..name_end - 1])
                .unwrap()
                .to_owned();
            assert_eq!(b[name_end - 1], 0);
            let data_start = name_end.div_ceil(4) * 4;
            let data = b[data_start..data_start + size as usize].to_vec();
            let next = (data_start + size as usize).div_ceil(4) * 4;
            b = &b[next..];
            if name == "TRAILER!!!" {
                assert!(b.is_empty());
                return out;
            }
            out.push((name, mode, (rmaj, rmin), data));
        }
    }

    #[test]
    fn round_trips_files_dirs_links_and_devices_with_parents_first() {
        let mut img = Initramfs::new();
        img.file("/bin/agent", 0o755, b"\x7fELF...".to_vec())
            .unwrap();
        img.char_dev("dev/console", 0o600, 5, 1).unwrap();
        img.symlink("init", "bin/agent").unwrap();
        img.dir("mnt/share", 0o755).unwrap();
        let entries = parse(&img.to_bytes());
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "bin/agent",
                "dev",
                "dev/console",
                "init",
                "mnt",
                "mnt/share"
            ]
        );
        assert_eq!(entries[1].1, S_IFREG | 0o755);
        assert_eq!(entries[1].3, b"\x7fELF...");
        assert_eq!(entries[3].1, S_IFCHR | 0o600);
        assert_eq!(entries[3].2, (5, 1));
        assert_eq!(entries[4].3, b"bin/agent");
        // Every entry starts 4-aligned, or the kernel rejects the archive.
        assert_eq!(img.to_bytes().len() % 4, 0);
    }

    #[test]
    fn rejects_escaping_and_empty_paths() {
        let mut img = Initramfs::new();
        assert!(matches!(
            img.file("../etc/passwd", 0o644, vec![]),
            Err(Error::BadPath(_))
        ));
        assert!(matches!(img.dir("/", 0o755), Err(Error::BadPath(_))));
        assert!(matches!(img.symlink("a//b", "x"), Err(Error::BadPath(_))));
        let missing = img.file_from("x", 0o644, Path::new("/nonexistent/file"));
        assert!(matches!(missing, Err(Error::Read { .. })));
    }
}
