//! File access that trusts nothing it finds.
//!
//! The guest writes into its share (virtiofs) as root, so whatever the
//! host finds there may be a symlink aimed at a host file, a FIFO that
//! blocks an `open` for ever, a device node, or a file without end.
//! [`GuestDir`] is a directory the host opened itself; every path beneath
//! it is resolved against that descriptor with `openat2` and
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV` — or, on a
//! kernel without `openat2`, one component at a time with `O_NOFOLLOW`
//! ([`Resolver::Walk`]) — so no symlink is followed and nothing outside
//! is reached. New files are created with `O_EXCL` (a name the guest
//! planted is never written through), and reads open regular files only:
//! the type is checked on an `O_PATH` descriptor, which opens nothing, so
//! a FIFO or a device is never really opened. Reads are bounded.
//!
//! [`read_regular_file`] and [`read_tail`] take the same care with a path
//! the user named (a mail, a fault plan, a log in the run directory): the
//! user's own symlinks are followed, but only a regular file is read, and
//! at most so many bytes of it.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

#[derive(Debug, thiserror::Error)]
pub enum SafeFsError {
    #[error("{path}: not a plain relative path (no `..`, no leading `/`)")]
    BadPath { path: String },
    #[error("{path} is a symbolic link or lies behind one; it is not followed")]
    Symlink { path: PathBuf },
    #[error("{path} is {kind}, not a regular file")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("{path} is {kind}, not a directory")]
    NotADirectory { path: PathBuf, kind: &'static str },
    #[error("{path} is larger than {limit} bytes")]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{path} already exists")]
    Exists { path: PathBuf },
    #[error("{path} leads out of {dir}")]
    Escapes { path: PathBuf, dir: PathBuf },
    #[error("{path} changed while it was being opened")]
    Changed { path: PathBuf },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = SafeFsError> = std::result::Result<T, E>;

/// How paths beneath a [`GuestDir`] are resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolver {
    /// One `openat2` call with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
    /// RESOLVE_NO_XDEV` (Linux 5.6 and later).
    Openat2,
    /// One `openat` per component, each with `O_NOFOLLOW`, each checked
    /// to be a directory on the same filesystem.
    Walk,
}

impl Resolver {
    /// `openat2` where the kernel has it, else the walk. Asked once.
    pub fn detect() -> Resolver {
        static FOUND: OnceLock<Resolver> = OnceLock::new();
        *FOUND.get_or_init(|| {
            match rfs::openat2(
                rfs::CWD,
                ".",
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::BENEATH,
            ) {
                // Not in this kernel, or filtered by a seccomp policy.
                Err(Errno::NOSYS) | Err(Errno::PERM) => Resolver::Walk,
                _ => Resolver::Openat2,
            }
        })
    }
}

/// A directory the guest can write into, opened by the host. Paths
/// beneath it are plain relative paths (`bundles/3.json`).
#[derive(Debug)]
pub struct GuestDir {
    fd: OwnedFd,
    /// For messages only; never opened again by path.
    shown: PathBuf,
    dev: u64,
    resolver: Resolver,
}

/// What kind of file a mode describes, as said in a message.
pub fn kind_name(t: FileType) -> &'static str {
    match t {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symbolic link",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Unknown => "an unknown kind of file",
    }
}

fn io_err(op: &'static str, path: &Path, e: impl Into<std::io::Error>) -> SafeFsError {
    SafeFsError::Io {
        op,
        path: path.to_path_buf(),
        source: e.into(),
    }
}

/// The components of a plain relative path, or why it is not one.
fn components(rel: &str) -> Result<Vec<&str>> {
    let bad = || SafeFsError::BadPath { path: rel.into() };
    if rel.is_empty() || rel.contains('\0') {
        return Err(bad());
    }
    let p = Path::new(rel);
    let mut out = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s.to_str().ok_or_else(bad)?),
            _ => return Err(bad()),
        }
    }
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

impl GuestDir {
    /// Open `path`, a directory the host made (its path is trusted, what
    /// is in it is not), resolving beneath it the way [`Resolver::detect`]
    /// says.
    pub fn open(path: &Path) -> Result<GuestDir> {
        GuestDir::open_with(path, Resolver::detect())
    }

    /// [`GuestDir::open`] with a chosen resolver (tests use both).
    pub fn open_with(path: &Path, resolver: Resolver) -> Result<GuestDir> {
        let fd = rfs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::LOOP | Errno::NOTDIR => match rfs::lstat(path) {
                Ok(st) => SafeFsError::NotADirectory {
                    path: path.into(),
                    kind: kind_name(FileType::from_raw_mode(st.st_mode)),
                },
                Err(e) => io_err("open", path, e),
            },
            e => io_err("open", path, e),
        })?;
        let st = rfs::fstat(&fd).map_err(|e| io_err("stat", path, e))?;
        Ok(GuestDir {
            fd,
            shown: path.to_path_buf(),
            dev: st.st_dev,
            resolver,
        })
    }

    pub fn path(&self) -> &Path {
        &self.shown
    }

    pub fn resolver(&self) -> Resolver {
        self.resolver
    }

    fn shown(&self, rel: &str) -> PathBuf {
        self.shown.join(rel)
    }

    /// Open `rel` beneath this directory with `flags` (`O_NOFOLLOW` and
    /// `O_CLOEXEC` are always added). Errors are mapped to say what was
    /// in the way.
    fn open_beneath(&self, rel: &str, flags: OFlags, mode: Mode) -> Result<OwnedFd> {
        let comps = components(rel)?;
        let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let r = match self.resolver {
            Resolver::Openat2 => {
                let how = ResolveFlags::BENEATH
                    | ResolveFlags::NO_SYMLINKS
                    | ResolveFlags::NO_MAGICLINKS
                    | ResolveFlags::NO_XDEV;
                // EAGAIN: a rename raced the lookup; the kernel asks for
                // a retry rather than risk a wrong answer.
                let mut tries = 0;
                loop {
                    match rfs::openat2(&self.fd, rel, flags, mode, how) {
                        Err(Errno::AGAIN) if tries < 16 => tries += 1,
                        r => break r,
                    }
                }
            }
            Resolver::Walk => self.walk(&comps, flags, mode),
        };
        r.map_err(|e| self.explain(rel, &comps, e))
    }

    /// The fallback: each directory on the way opened with `O_NOFOLLOW`
    /// and checked to be a directory on this filesystem.
    fn walk(&self, comps: &[&str], flags: OFlags, mode: Mode) -> rustix::io::Result<OwnedFd> {
        let (last, dirs) = comps.split_last().ok_or(Errno::INVAL)?;
        let mut cur: Option<OwnedFd> = None;
        for name in dirs {
            let at: BorrowedFd<'_> = cur.as_ref().map_or(self.fd.as_fd(), |f| f.as_fd());
            let next = rfs::openat(
                at,
                *name,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let st = rfs::fstat(&next)?;
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => {}
                FileType::Symlink => return Err(Errno::LOOP),
                _ => return Err(Errno::NOTDIR),
            }
            if st.st_dev != self.dev {
                return Err(Errno::XDEV);
            }
            cur = Some(next);
        }
        let at: BorrowedFd<'_> = cur.as_ref().map_or(self.fd.as_fd(), |f| f.as_fd());
        let fd = rfs::openat(at, *last, flags, mode)?;
        if rfs::fstat(&fd)?.st_dev != self.dev {
            return Err(Errno::XDEV);
        }
        Ok(fd)
    }

    /// Turn a failed open into the error that says what was in the way.
    fn explain(&self, rel: &str, comps: &[&str], e: Errno) -> SafeFsError {
        let path = self.shown(rel);
        match e {
            Errno::LOOP => SafeFsError::Symlink { path },
            Errno::XDEV => SafeFsError::Escapes {
                path,
                dir: self.shown.clone(),
            },
            Errno::EXIST => SafeFsError::Exists { path },
            Errno::NOTDIR => {
                // Which component is not a directory, and what it is.
                let mut at = String::new();
                for c in comps {
                    if !at.is_empty() {
                        at.push('/');
                    }
                    at.push_str(c);
                    if let Ok(st) = rfs::statat(&self.fd, at.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
                        let t = FileType::from_raw_mode(st.st_mode);
                        if t == FileType::Symlink {
                            return SafeFsError::Symlink {
                                path: self.shown(&at),
                            };
                        }
                        if t != FileType::Directory {
                            return SafeFsError::NotADirectory {
                                path: self.shown(&at),
                                kind: kind_name(t),
                            };
                        }
                    }
                }
                io_err("open", &path, e)
            }
            e => io_err("open", &path, e),
        }
    }

    /// The directory `rel` beneath this one.
    pub fn subdir(&self, rel: &str) -> Result<GuestDir> {
        let fd = self.open_beneath(rel, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
        let st = rfs::fstat(&fd).map_err(|e| io_err("stat", &self.shown(rel), e))?;
        let t = FileType::from_raw_mode(st.st_mode);
        if t != FileType::Directory {
            return Err(SafeFsError::NotADirectory {
                path: self.shown(rel),
                kind: kind_name(t),
            });
        }
        Ok(GuestDir {
            fd,
            shown: self.shown(rel),
            dev: self.dev,
            resolver: self.resolver,
        })
    }

    /// The directory `name` (one component) in this one, made if absent.
    /// Whatever else has that name (a symlink, a file, a FIFO) is an
    /// error: [`GuestDir::remove`] it first to replace it.
    pub fn make_dir(&self, name: &str, mode: u32) -> Result<GuestDir> {
        if components(name)?.len() != 1 {
            return Err(SafeFsError::BadPath { path: name.into() });
        }
        // mkdirat never follows a symlink in its last component, and
        // `name` has no other.
        match rfs::mkdirat(&self.fd, name, Mode::from_raw_mode(mode)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(io_err("mkdir", &self.shown(name), e)),
        }
        self.subdir(name)
    }

    /// Create the new file `rel` holding `bytes`. A name that exists in
    /// any form (a symlink or FIFO the guest planted included) is
    /// [`SafeFsError::Exists`]: nothing is written through it.
    pub fn create_new(&self, rel: &str, bytes: &[u8]) -> Result<()> {
        let fd = self.open_beneath(
            rel,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
            Mode::from_raw_mode(0o644),
        )?;
        let mut f = std::fs::File::from(fd);
        f.write_all(bytes)
            .and_then(|()| f.flush())
            .map_err(|e| io_err("write", &self.shown(rel), e))
    }

    /// Create a file named `<stem>-<random>.<ext>` holding `bytes`, a name
    /// the guest cannot guess ahead; returns the name.
    pub fn create_fresh(&self, stem: &str, ext: &str, bytes: &[u8]) -> Result<String> {
        let mut last = None;
        for _ in 0..16 {
            let name = format!("{stem}-{:016x}.{ext}", random_u64());
            match self.create_new(&name, bytes) {
                Ok(()) => return Ok(name),
                Err(e @ SafeFsError::Exists { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| SafeFsError::Exists {
            path: self.shown(stem),
        }))
    }

    /// The bytes of the regular file `rel`, at most `limit` of them.
    /// A symlink, FIFO, socket or device is refused without being opened.
    pub fn read(&self, rel: &str, limit: u64) -> Result<Vec<u8>> {
        let path = self.shown(rel);
        let pathfd = self.open_beneath(rel, OFlags::PATH, Mode::empty())?;
        let file = reopen_regular(&path, pathfd, || {
            self.open_beneath(
                rel,
                OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
                Mode::empty(),
            )
        })?;
        read_limited(&path, file, limit)
    }

    /// What `rel` is, without following it; `None` if there is nothing.
    pub fn kind(&self, rel: &str) -> Result<Option<&'static str>> {
        match self.open_beneath(rel, OFlags::PATH, Mode::empty()) {
            Ok(fd) => {
                let st = rfs::fstat(&fd).map_err(|e| io_err("stat", &self.shown(rel), e))?;
                Ok(Some(kind_name(FileType::from_raw_mode(st.st_mode))))
            }
            Err(SafeFsError::Io { source, .. })
                if source.raw_os_error() == Some(Errno::NOENT.raw_os_error()) =>
            {
                Ok(None)
            }
            Err(SafeFsError::Symlink { .. }) => Ok(Some("a symbolic link")),
            Err(e) => Err(e),
        }
    }

    /// Remove the entry `name` (one component) itself: a symlink is
    /// removed, never what it points to. Directories are not removed.
    pub fn remove(&self, name: &str) -> Result<()> {
        if components(name)?.len() != 1 {
            return Err(SafeFsError::BadPath { path: name.into() });
        }
        rfs::unlinkat(&self.fd, name, AtFlags::empty())
            .map_err(|e| io_err("remove", &self.shown(name), e))
    }
}

/// Open for reading the regular file behind `pathfd` (an `O_PATH`
/// descriptor, which opened nothing). Through `/proc/self/fd` the very
/// inode that was checked is opened; without /proc, `fallback` opens the
/// path again and the inode is compared.
fn reopen_regular(
    path: &Path,
    pathfd: OwnedFd,
    fallback: impl FnOnce() -> Result<OwnedFd>,
) -> Result<std::fs::File> {
    let st = rfs::fstat(&pathfd).map_err(|e| io_err("stat", path, e))?;
    let t = FileType::from_raw_mode(st.st_mode);
    // O_PATH | O_NOFOLLOW opens a symlink itself rather than failing.
    if t == FileType::Symlink {
        return Err(SafeFsError::Symlink { path: path.into() });
    }
    if t != FileType::RegularFile {
        return Err(SafeFsError::NotRegular {
            path: path.into(),
            kind: kind_name(t),
        });
    }
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let magic = format!("/proc/self/fd/{}", pathfd.as_raw_fd());
    let fd = match rfs::open(magic.as_str(), flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => {
            let fd = fallback()?;
            let again = rfs::fstat(&fd).map_err(|e| io_err("stat", path, e))?;
            if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino) {
                return Err(SafeFsError::Changed { path: path.into() });
            }
            fd
        }
        Err(e) => return Err(io_err("open", path, e)),
    };
    Ok(std::fs::File::from(fd))
}

fn read_limited(path: &Path, file: std::fs::File, limit: u64) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    // One byte past the limit tells a file that is too large (or still
    // growing) from one that just fits.
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| io_err("read", path, e))?;
    if bytes.len() as u64 > limit {
        return Err(SafeFsError::TooLarge {
            path: path.into(),
            limit,
        });
    }
    Ok(bytes)
}

/// Open `path` (the user's own symlinks followed) for reading if it is a
/// regular file; anything else is refused without being opened.
fn open_regular_file(path: &Path) -> Result<std::fs::File> {
    let pathfd = rfs::open(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| io_err("open", path, e))?;
    reopen_regular(path, pathfd, || {
        rfs::open(
            path,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err("open", path, e))
    })
}

/// The bytes of the regular file the user named, at most `limit` of them.
pub fn read_regular_file(path: &Path, limit: u64) -> Result<Vec<u8>> {
    read_limited(path, open_regular_file(path)?, limit)
}

/// The last `max` bytes (or fewer) of the regular file `path`: the tail
/// of a log that may have grown huge.
pub fn read_tail(path: &Path, max: u64) -> Result<Vec<u8>> {
    let mut f = open_regular_file(path)?;
    let len = f.metadata().map_err(|e| io_err("stat", path, e))?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(max)))
        .map_err(|e| io_err("seek", path, e))?;
    // At most `max` bytes even if it grows while we read.
    let mut bytes = Vec::new();
    f.take(max)
        .read_to_end(&mut bytes)
        .map_err(|e| io_err("read", path, e))?;
    Ok(bytes)
}

/// 64 random bits from the kernel, for names the guest cannot guess.
fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    if rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).is_err() {
        // No getrandom: still distinct per call and hard to predict.
        use std::hash::BuildHasher;
        return std::collections::hash_map::RandomState::new()
            .hash_one(std::time::SystemTime::now());
    }
    u64::from_ne_bytes(b)
}

#[cfg(test)]
mod tests;
