//! mkdirat2(): random calls checked against what mkdirat(2) followed by
//! openat(O_DIRECTORY | O_CLOEXEC) does, on every filesystem the guest
//! can mount.
//!
//! The model is the composition the cover letter describes ("creates a
//! directory and returns an O_DIRECTORY fd", "the returned fd gets
//! O_CLOEXEC by default", AT_* flags with `VALID_MKDIRAT2_FLAGS` =
//! AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT), and the kernel's own mkdirat
//! and openat are its executable half: every call runs on a twin tree.
//! Side A gets `mkdirat2(dir, path, mode, flags)`; side B, built by the
//! same setup steps, gets `mkdirat(dir, path, mode)` and
//! `openat(dir, path, O_DIRECTORY | O_CLOEXEC)`. The model then says:
//!
//! - flags outside the valid set: EINVAL, and nothing is created;
//! - otherwise the errno is mkdirat's, and on success the fd is what
//!   openat returned: a directory with the same type, permissions, owner
//!   and link count, the same status flags (F_GETFL), close-on-exec, and
//!   it is the directory that was created (its inode is the one the path
//!   now names);
//! - at the end both trees hold the same names.
//!
//! What the flags change is not specified beyond their names: a call with
//! AT_SYMLINK_NOFOLLOW that walked through a symlink and succeeded is put
//! as a question.
//!
//! Filesystems where nothing can be created (proc, sysfs, the read-only
//! share) have no twin: both sides name the same place, and everything
//! must fail there alike.

use gasbench_abi::consts::{AT_FDCWD, MKDIRAT2_VALID_FLAGS};
use gasbench_abi::protocol::CallRecord;

use crate::explorer::Domain;
use crate::model::{Divergence, Kind, Outcome, SeqCheck};
use crate::observe::{Observed, errno_name, field};
use crate::toml_out::{comment, num, step, string};

const AT_SYMLINK_NOFOLLOW: u32 = 0x100;
const AT_NO_AUTOMOUNT: u32 = 0x800;

/// Where the calls run: a filesystem mounted for the batch, or one that is
/// there already.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    /// `tmpfs`, `overlayfs`, `proc`, …: the row of the matrix.
    pub name: String,
    /// The directory the sequences work in.
    pub root: String,
    /// Mount steps of the prologue (scenario TOML), and the unmounts of
    /// the epilogue.
    pub mount: String,
    pub unmount: String,
    /// Directories can be made here: each sequence gets twin trees.
    pub writable: bool,
    /// A second filesystem mounted at `<twin>/../sub` on each side
    /// (cross-mount paths).
    pub cross: bool,
    /// A directory from overlayfs's lower layer at `<twin>/../low`.
    pub lower: bool,
}

const BASE: &str = "/tmp/gasbench-fs";

fn mkdir_steps(key: &str, path: &str) -> String {
    let mut s = step(&format!("{key} mkdir {path}"));
    s.push_str(&format!(
        "mkdirat = {{ path = {}, mode = 0o755 }}\nexpect.ok = \"any\"\n",
        string(path)
    ));
    s
}

fn mount_step(key: &str, fstype: &str, source: &str, target: &str, data: &str) -> String {
    let mut s = step(&format!("{key} mount {fstype} on {target}"));
    s.push_str(&format!(
        "mount = {{ fstype = {}, source = {}, target = {}, data = {} }}\n",
        string(fstype),
        string(source),
        string(target),
        string(data)
    ));
    s
}

fn umount_step(key: &str, target: &str) -> String {
    let mut s = step(&format!("{key} umount {target}"));
    s.push_str(&format!(
        "umount = {{ target = {}, flags = [\"MNT_DETACH\"] }}\nexpect.ok = \"any\"\n",
        string(target)
    ));
    s
}

impl Place {
    /// Every filesystem of the matrix.
    pub fn all() -> Vec<Place> {
        let mut v = vec![
            Place::mounted("tmpfs", "tmpfs", "size=8m"),
            Place::mounted("ramfs", "ramfs", ""),
            Place::cross_tmpfs(),
            Place::overlay(),
            Place::mounted("cgroup2", "cgroup2", ""),
            Place::pseudo("proc", "proc"),
            Place::pseudo("sysfs", "sysfs"),
        ];
        v.push(Place {
            name: "virtiofs-ro".into(),
            root: gasbench_abi::protocol::SHARE_MOUNT.into(),
            mount: String::new(),
            unmount: String::new(),
            writable: false,
            cross: false,
            lower: false,
        });
        v
    }

    pub fn by_name(name: &str) -> Option<Place> {
        Place::all().into_iter().find(|p| p.name == name)
    }

    fn mounted(name: &str, fstype: &str, data: &str) -> Place {
        let dir = format!("{BASE}/{name}");
        let mut mount = mkdir_steps("setup.m0", BASE);
        mount.push_str(&mkdir_steps("setup.m1", &dir));
        mount.push_str(&mount_step("setup.m2", fstype, "none", &dir, data));
        mount.push_str(&mkdir_steps("setup.m3", &format!("{dir}/A")));
        mount.push_str(&mkdir_steps("setup.m4", &format!("{dir}/B")));
        Place {
            name: name.into(),
            root: dir.clone(),
            mount,
            unmount: umount_step("setup.u0", &dir),
            writable: true,
            cross: false,
            lower: false,
        }
    }

    fn pseudo(name: &str, fstype: &str) -> Place {
        let dir = format!("{BASE}/{name}");
        let mut mount = mkdir_steps("setup.m0", BASE);
        mount.push_str(&mkdir_steps("setup.m1", &dir));
        mount.push_str(&mount_step("setup.m2", fstype, fstype, &dir, ""));
        Place {
            name: name.into(),
            root: dir.clone(),
            mount,
            unmount: umount_step("setup.u0", &dir),
            writable: false,
            cross: false,
            lower: false,
        }
    }

    fn cross_tmpfs() -> Place {
        let mut p = Place::mounted("tmpfs-cross", "tmpfs", "size=8m");
        for (i, side) in ["A", "B"].iter().enumerate() {
            let sub = format!("{}/{side}sub", p.root);
            p.mount.push_str(&mkdir_steps(&format!("setup.c{i}"), &sub));
            p.mount.push_str(&mount_step(
                &format!("setup.d{i}"),
                "tmpfs",
                "none",
                &sub,
                "size=4m",
            ));
            p.unmount
                .insert_str(0, &umount_step(&format!("setup.v{i}"), &sub));
        }
        p.cross = true;
        p
    }

    fn overlay() -> Place {
        let base = format!("{BASE}/overlay-layers");
        let dir = format!("{BASE}/overlayfs");
        let mut mount = mkdir_steps("setup.m0", BASE);
        mount.push_str(&mkdir_steps("setup.m1", &base));
        mount.push_str(&mount_step("setup.m2", "tmpfs", "none", &base, "size=8m"));
        for (i, d) in [
            "lower",
            "upper",
            "work",
            "lower/A",
            "lower/B",
            "lower/Alow",
            "lower/Blow",
        ]
        .iter()
        .enumerate()
        {
            mount.push_str(&mkdir_steps(&format!("setup.l{i}"), &format!("{base}/{d}")));
        }
        mount.push_str(&mkdir_steps("setup.m3", &dir));
        mount.push_str(&mount_step(
            "setup.m4",
            "overlay",
            "overlay",
            &dir,
            &format!("lowerdir={base}/lower,upperdir={base}/upper,workdir={base}/work"),
        ));
        let mut unmount = umount_step("setup.u0", &dir);
        unmount.push_str(&umount_step("setup.u1", &base));
        Place {
            name: "overlayfs".into(),
            root: dir,
            mount,
            unmount,
            writable: true,
            cross: false,
            lower: true,
        }
    }

    /// The directory side `s` ("A" or "B") of sequence `tag` works in.
    fn twin(&self, tag: &str, s: &str) -> String {
        if self.writable {
            format!("{}/{s}/{tag}", self.root)
        } else {
            self.root.clone()
        }
    }
}

/// A directory argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dir {
    /// The sequence's twin directory.
    Root,
    /// The fd an earlier Mkdir2 (side A) and its openat (side B) returned.
    Made(u32),
    /// An O_PATH fd of a setup directory.
    Path(u32),
    /// A regular file's fd (ENOTDIR).
    File(u32),
    /// AT_FDCWD with the path made absolute.
    Cwd,
    /// A number that is no descriptor.
    Bad(i32),
    /// The other filesystem mounted beside the twin (`tmpfs-cross`).
    Sub,
}

impl Dir {
    fn uses(&self) -> Option<u32> {
        match self {
            Dir::Made(i) | Dir::Path(i) | Dir::File(i) => Some(*i),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Setup, on both sides alike: a directory, a file (kept open), a
    /// symlink, an O_PATH directory fd.
    Dir {
        id: u32,
        name: String,
    },
    File {
        id: u32,
        name: String,
    },
    Symlink {
        id: u32,
        target: String,
        name: String,
    },
    OpenPath {
        id: u32,
        name: String,
    },
    /// The call under test.
    Mkdir2 {
        id: u32,
        dir: Dir,
        path: String,
        mode: u32,
        flags: u32,
    },
}

impl Op {
    pub fn id(&self) -> u32 {
        match self {
            Op::Dir { id, .. }
            | Op::File { id, .. }
            | Op::Symlink { id, .. }
            | Op::OpenPath { id, .. }
            | Op::Mkdir2 { id, .. } => *id,
        }
    }

    fn uses(&self) -> Option<u32> {
        match self {
            Op::Mkdir2 { dir, .. } => dir.uses(),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Mkdirat2 {
    pub place: Place,
}

impl Mkdirat2 {
    pub fn new(place: Place) -> Mkdirat2 {
        Mkdirat2 { place }
    }

    /// The fixed cases every filesystem runs first: the posted kselftest's
    /// and the review's, as sequences.
    pub fn cases(&self) -> Vec<(&'static str, Vec<Op>)> {
        let m = |id, dir, path: &str, mode, flags| Op::Mkdir2 {
            id,
            dir,
            path: path.into(),
            mode,
            flags,
        };
        let mut v = vec![
            ("returns_fd", vec![m(1, Dir::Root, "newdir", 0o700, 0)]),
            (
                "enoent_missing_parent",
                vec![m(1, Dir::Root, "nonexistent/child", 0o700, 0)],
            ),
            ("ebadf", vec![m(1, Dir::Bad(-42), "badfdir", 0o700, 0)]),
            (
                "einval_unknown_flags",
                vec![m(
                    1,
                    Dir::Root,
                    "flagsdir",
                    0o700,
                    !(MKDIRAT2_VALID_FLAGS as u32),
                )],
            ),
            ("eexist_dot", vec![m(1, Dir::Root, ".", 0o700, 0)]),
            ("mode_750", vec![m(1, Dir::Root, "mode750", 0o750, 0)]),
            ("at_fdcwd_absolute", vec![m(1, Dir::Cwd, "abs", 0o700, 0)]),
            ("empty_path", vec![m(1, Dir::Root, "", 0o700, 0)]),
            (
                "fd_usable_as_dfd",
                vec![
                    m(1, Dir::Root, "parent", 0o700, 0),
                    m(2, Dir::Made(1), "child", 0o700, 0),
                ],
            ),
        ];
        if self.place.writable {
            v.push((
                "enotdir_dfd",
                vec![
                    Op::File {
                        id: 1,
                        name: "file".into(),
                    },
                    m(2, Dir::File(1), "subdir", 0o700, 0),
                ],
            ));
            v.push(("trailing_slash", vec![m(1, Dir::Root, "slash/", 0o700, 0)]));
            v.push((
                "nofollow_through_symlink",
                vec![
                    Op::Dir {
                        id: 1,
                        name: "real".into(),
                    },
                    Op::Symlink {
                        id: 2,
                        target: "real".into(),
                        name: "link".into(),
                    },
                    m(3, Dir::Root, "link/child", 0o700, AT_SYMLINK_NOFOLLOW),
                ],
            ));
            v.push((
                "dangling_symlink",
                vec![
                    Op::Symlink {
                        id: 1,
                        target: "missing".into(),
                        name: "dangling".into(),
                    },
                    m(2, Dir::Root, "dangling", 0o700, 0),
                ],
            ));
        }
        if self.place.cross {
            v.push((
                "cross_mount",
                vec![m(1, Dir::Root, "../{side}sub/{tag}x", 0o700, 0)],
            ));
            v.push((
                "from_the_other_mount",
                vec![m(1, Dir::Sub, "../{side}/{tag}/y", 0o700, 0)],
            ));
        }
        if self.place.lower {
            v.push((
                "in_a_lower_dir",
                vec![m(1, Dir::Root, "../../{side}low/{tag}z", 0o700, 0)],
            ));
        }
        v
    }
}

// ---------------------------------------------------------------------
// Generation

struct Gen<'a> {
    rng: &'a mut fastrand::Rng,
    next: u32,
    place: &'a Place,
    dirs: Vec<String>,
    files: Vec<(u32, String)>,
    links: Vec<String>,
    made: Vec<u32>,
    paths: Vec<u32>,
}

impl Gen<'_> {
    fn id(&mut self) -> u32 {
        self.next += 1;
        self.next
    }

    fn pick<T: Clone>(&mut self, v: &[T]) -> T {
        v[self.rng.usize(..v.len())].clone()
    }

    fn path(&mut self, id: u32) -> String {
        let fresh = format!("n{id}");
        let roll = self.rng.u32(..100);
        match roll {
            0..=39 => fresh,
            40..=49 if !self.dirs.is_empty() => {
                let d = self.pick(&self.dirs.clone());
                format!("{d}/{fresh}")
            }
            50..=54 if !self.dirs.is_empty() => self.pick(&self.dirs.clone()),
            55..=59 if !self.files.is_empty() => {
                let (_, f) = self.pick(&self.files.clone());
                if self.rng.bool() {
                    f
                } else {
                    format!("{f}/{fresh}")
                }
            }
            60..=64 if !self.links.is_empty() => {
                let l = self.pick(&self.links.clone());
                if self.rng.bool() {
                    l
                } else {
                    format!("{l}/{fresh}")
                }
            }
            65..=69 if self.place.cross => format!("../{{side}}sub/{{tag}}{fresh}"),
            70..=72 if self.place.lower => format!("../../{{side}}low/{{tag}}{fresh}"),
            _ => {
                let edge = [
                    ".".to_string(),
                    "..".to_string(),
                    String::new(),
                    format!("{fresh}/"),
                    format!("{fresh}//"),
                    format!("missing{id}/child"),
                    format!("./{fresh}"),
                    "a".repeat(255),
                    "a".repeat(256),
                    format!("{fresh}/."),
                ];
                self.pick(&edge)
            }
        }
    }

    fn dir(&mut self) -> Dir {
        match self.rng.u32(..100) {
            0..=54 => Dir::Root,
            55..=74 if !self.made.is_empty() => Dir::Made(self.pick(&self.made.clone())),
            75..=79 if !self.paths.is_empty() => Dir::Path(self.pick(&self.paths.clone())),
            80..=83 if !self.files.is_empty() => Dir::File(self.pick(&self.files.clone()).0),
            84..=89 => Dir::Cwd,
            90..=92 => Dir::Bad(self.pick(&[-42, -1, 9999, i32::MAX])),
            93..=96 if self.place.cross => Dir::Sub,
            _ => Dir::Root,
        }
    }

    fn mode(&mut self) -> u32 {
        if self.rng.u32(..100) < 60 {
            self.pick(&[0o700, 0o755, 0o777])
        } else {
            {
                let r = self.rng.u32(0..=0o7777);
                self.pick(&[0, 0o1777, 0o2755, 0o4755, 0o7777, 0o070, 0o500, r])
            }
        }
    }

    fn flags(&mut self) -> u32 {
        match self.rng.u32(..100) {
            0..=59 => 0,
            60..=69 => AT_SYMLINK_NOFOLLOW,
            70..=77 => AT_NO_AUTOMOUNT,
            78..=84 => AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT,
            _ => {
                let bit = 1 << self.rng.u32(0..32);
                self.pick(&[0x200, 0x400, 0x1000, 1, 0x8000_0000, 0x80000, bit, !0])
            }
        }
    }

    fn seq(&mut self) -> Vec<Op> {
        let n = self.rng.usize(2..=10);
        let mut ops = Vec::new();
        while ops.len() < n {
            let id = self.id();
            let setup = self.place.writable && self.rng.u32(..100) < 30;
            if setup {
                let name = format!("s{id}");
                let op = match self.rng.u32(..4) {
                    0 => {
                        self.dirs.push(name.clone());
                        Op::Dir { id, name }
                    }
                    1 => {
                        self.files.push((id, name.clone()));
                        Op::File { id, name }
                    }
                    2 => {
                        let target = if !self.dirs.is_empty() && self.rng.bool() {
                            self.pick(&self.dirs.clone())
                        } else {
                            format!("missing{id}")
                        };
                        self.links.push(name.clone());
                        Op::Symlink { id, target, name }
                    }
                    _ => {
                        if self.dirs.is_empty() {
                            self.dirs.push(name.clone());
                            Op::Dir { id, name }
                        } else {
                            let d = self.pick(&self.dirs.clone());
                            self.paths.push(id);
                            Op::OpenPath { id, name: d }
                        }
                    }
                };
                ops.push(op);
                continue;
            }
            let dir = self.dir();
            let path = self.path(id);
            let mode = self.mode();
            let flags = self.flags();
            if (flags as i64) & !MKDIRAT2_VALID_FLAGS == 0 {
                self.made.push(id);
            }
            if !path.contains('/')
                && !path.is_empty()
                && !path.starts_with('.')
                && matches!(dir, Dir::Root)
            {
                self.dirs.push(path.clone());
            }
            ops.push(Op::Mkdir2 {
                id,
                dir,
                path,
                mode,
                flags,
            });
        }
        ops
    }
}

// ---------------------------------------------------------------------
// Rendering

/// `{side}` and `{tag}` in generated paths name each side's own things.
fn subst(path: &str, tag: &str, side: &str) -> String {
    path.replace("{side}", side).replace("{tag}", tag)
}

impl Mkdirat2 {
    fn dir_expr(&self, dir: &Dir, tag: &str, side: &str) -> String {
        let s = side.to_ascii_lowercase();
        match dir {
            Dir::Root => string(&format!("${{{tag}_r{s}}}")),
            Dir::Made(i) => string(&format!(
                "${{{tag}_{i}{}}}",
                if side == "A" { "" } else { "_b" }
            )),
            Dir::Path(i) | Dir::File(i) => string(&format!("${{{tag}_{i}_{s}}}")),
            Dir::Cwd => string("AT_FDCWD"),
            Dir::Bad(n) => n.to_string(),
            Dir::Sub => string(&format!("${{{tag}_sub{s}}}")),
        }
    }

    fn path_for(&self, dir: &Dir, path: &str, tag: &str, side: &str) -> String {
        let p = subst(path, tag, side);
        match dir {
            Dir::Cwd => format!("{}/{p}", self.place.twin(tag, side)),
            _ => p,
        }
    }

    fn call(
        &self,
        key: &str,
        what: &str,
        body: &str,
        capture: Option<&str>,
        annotate: &dyn Fn(&str, &mut String),
        out: &mut String,
    ) {
        out.push_str(&step(&format!("{key} {what}")));
        out.push_str(body);
        out.push('\n');
        if let Some(c) = capture {
            out.push_str(&format!("capture = \"{c}\"\n"));
        }
        annotate(key, out);
    }

    fn render_op(
        &self,
        op: &Op,
        tag: &str,
        annotate: &dyn Fn(&str, &mut String),
        out: &mut String,
    ) {
        let k = format!("{tag}.{}", op.id());
        let id = op.id();
        match op {
            Op::Dir { name, .. } => {
                for s in ["A", "B"] {
                    self.call(
                        &format!("{k}.{}", s.to_ascii_lowercase()),
                        "setup mkdirat",
                        &format!(
                            "mkdirat = {{ dir = \"${{{tag}_r{}}}\", path = {}, mode = 0o755 }}",
                            s.to_ascii_lowercase(),
                            string(name)
                        ),
                        None,
                        annotate,
                        out,
                    );
                }
            }
            Op::File { name, .. } => {
                for s in ["a", "b"] {
                    self.call(&format!("{k}.{s}"), "setup file", &format!("openat = {{ dir = \"${{{tag}_r{s}}}\", path = {}, flags = [\"O_CREAT\", \"O_RDWR\"], mode = 0o644 }}", string(name)), Some(&format!("{tag}_{id}_{s}")), annotate, out);
                }
            }
            Op::Symlink { target, name, .. } => {
                for s in ["a", "b"] {
                    self.call(
                        &format!("{k}.{s}"),
                        "setup symlink",
                        &format!(
                            "symlinkat = {{ target = {}, dir = \"${{{tag}_r{s}}}\", path = {} }}",
                            string(target),
                            string(name)
                        ),
                        None,
                        annotate,
                        out,
                    );
                }
            }
            Op::OpenPath { name, .. } => {
                for s in ["a", "b"] {
                    self.call(&format!("{k}.{s}"), "setup O_PATH dir", &format!("openat = {{ dir = \"${{{tag}_r{s}}}\", path = {}, flags = [\"O_PATH\", \"O_DIRECTORY\"] }}", string(name)), Some(&format!("{tag}_{id}_{s}")), annotate, out);
                }
            }
            Op::Mkdir2 {
                dir,
                path,
                mode,
                flags,
                ..
            } => {
                let (da, db) = (self.dir_expr(dir, tag, "A"), self.dir_expr(dir, tag, "B"));
                let (pa, pb) = (
                    self.path_for(dir, path, tag, "A"),
                    self.path_for(dir, path, tag, "B"),
                );
                let valid = (*flags as i64) & !MKDIRAT2_VALID_FLAGS == 0;
                // The model's half first, on side B: mkdirat then openat.
                if valid {
                    self.call(
                        &format!("{k}.b"),
                        "model: mkdirat",
                        &format!(
                            "mkdirat = {{ dir = {db}, path = {}, mode = 0o{mode:o} }}",
                            string(&pb)
                        ),
                        Some(&format!("{tag}_{id}_mk")),
                        annotate,
                        out,
                    );
                    self.call(&format!("{k}.bo"), "model: openat O_DIRECTORY|O_CLOEXEC", &format!("openat = {{ dir = {db}, path = {}, flags = [\"O_DIRECTORY\", \"O_CLOEXEC\"] }}", string(&pb)), Some(&format!("{tag}_{id}_b")), annotate, out);
                }
                self.call(
                    &k,
                    "mkdirat2",
                    &format!(
                        "mkdirat2 = {{ dir = {da}, path = {}, mode = 0o{mode:o}, flags = {} }}",
                        string(&pa),
                        num(u64::from(*flags))
                    ),
                    Some(&format!("{tag}_{id}")),
                    annotate,
                    out,
                );
                if valid {
                    let fa = format!("\"${{{tag}_{id}}}\"");
                    let fb = format!("\"${{{tag}_{id}_b}}\"");
                    self.call(
                        &format!("{k}.fa"),
                        "fstat mkdirat2's fd",
                        &format!("fstat = {{ fd = {fa} }}"),
                        None,
                        annotate,
                        out,
                    );
                    self.call(
                        &format!("{k}.fb"),
                        "model: fstat openat's fd",
                        &format!("fstat = {{ fd = {fb} }}"),
                        None,
                        annotate,
                        out,
                    );
                    self.call(
                        &format!("{k}.la"),
                        "F_GETFL of mkdirat2's fd",
                        &format!("fcntl = {{ fd = {fa}, cmd = \"F_GETFL\" }}"),
                        None,
                        annotate,
                        out,
                    );
                    self.call(
                        &format!("{k}.lb"),
                        "model: F_GETFL of openat's fd",
                        &format!("fcntl = {{ fd = {fb}, cmd = \"F_GETFL\" }}"),
                        None,
                        annotate,
                        out,
                    );
                    self.call(
                        &format!("{k}.da"),
                        "F_GETFD of mkdirat2's fd",
                        &format!("fcntl = {{ fd = {fa}, cmd = \"F_GETFD\" }}"),
                        None,
                        annotate,
                        out,
                    );
                    self.call(
                        &format!("{k}.ia"),
                        "fstatat the path mkdirat2 made",
                        &format!("fstatat = {{ dir = {da}, path = {} }}", string(&pa)),
                        None,
                        annotate,
                        out,
                    );
                } else {
                    for (s, d, p) in [("a", &da, &pa), ("b", &db, &pb)] {
                        self.call(&format!("{k}.s{s}"), "what the path names now", &format!("fstatat = {{ dir = {d}, path = {}, flags = [\"AT_SYMLINK_NOFOLLOW\"] }}", string(p)), None, annotate, out);
                    }
                }
            }
        }
    }

    /// Descriptors a sequence opened, closed at its end.
    fn fds(&self, seq: &[Op], tag: &str) -> Vec<String> {
        let mut v = Vec::new();
        for op in seq {
            let id = op.id();
            match op {
                Op::File { .. } | Op::OpenPath { .. } => {
                    v.push(format!("{tag}_{id}_a"));
                    v.push(format!("{tag}_{id}_b"));
                }
                Op::Mkdir2 { flags, .. } => {
                    v.push(format!("{tag}_{id}"));
                    if (*flags as i64) & !MKDIRAT2_VALID_FLAGS == 0 {
                        v.push(format!("{tag}_{id}_b"));
                    }
                }
                _ => {}
            }
        }
        v
    }
}

impl Domain for Mkdirat2 {
    type Op = Op;

    fn name(&self) -> String {
        format!("mkdirat2-{}", self.place.name)
    }

    fn header(&self, scenario: &str, description: &str) -> String {
        format!(
            "[scenario]\nname = {}\ndescription = {}\nrequires = [\"mkdirat2\"]\ntimeout = \"10m\"\n",
            string(scenario),
            string(description)
        )
    }

    fn prologue(&self) -> String {
        self.place.mount.clone()
    }

    fn epilogue(&self) -> String {
        self.place.unmount.clone()
    }

    fn generate(&self, rng: &mut fastrand::Rng) -> Vec<Op> {
        let mut g = Gen {
            rng,
            next: 0,
            place: &self.place,
            dirs: Vec::new(),
            files: Vec::new(),
            links: Vec::new(),
            made: Vec::new(),
            paths: Vec::new(),
        };
        g.seq()
    }

    fn cost(&self, seq: &[Op]) -> usize {
        8 * seq.len() + 8
    }

    fn render(&self, seq: &[Op], tag: &str, check: Option<(&SeqCheck, &Divergence)>) -> String {
        let annotate = |key: &str, out: &mut String| match check {
            None => out.push_str("expect.ok = \"any\"\n"),
            Some((_, d)) if d.at == key => {
                out.push_str(&comment(&format!(
                    "explorer: {} ({}). Model: {}. Observed: {}.",
                    d.title,
                    d.kind.as_str(),
                    d.model,
                    d.observed
                )));
                for e in &d.expect {
                    out.push_str(e);
                    out.push('\n');
                }
            }
            Some((c, _)) => match c.expects_at(key) {
                Some(lines) => {
                    for e in lines {
                        out.push_str(e);
                        out.push('\n');
                    }
                }
                None => out.push_str("expect.ok = \"any\"\n"),
            },
        };
        let mut out = String::new();
        // The twin directories, and a descriptor of each.
        for s in ["a", "b"] {
            let path = self.place.twin(tag, &s.to_ascii_uppercase());
            if self.place.writable {
                self.call(
                    &format!("{tag}.m{s}"),
                    "twin directory",
                    &format!("mkdirat = {{ path = {}, mode = 0o755 }}", string(&path)),
                    None,
                    &annotate,
                    &mut out,
                );
            }
            self.call(
                &format!("{tag}.r{s}"),
                "twin descriptor",
                &format!(
                    "open = {{ path = {}, flags = [\"O_DIRECTORY\"] }}",
                    string(&path)
                ),
                Some(&format!("{tag}_r{s}")),
                &annotate,
                &mut out,
            );
            if self.place.cross {
                let sub = format!("{}/{}sub", self.place.root, s.to_ascii_uppercase());
                self.call(
                    &format!("{tag}.q{s}"),
                    "the other mount",
                    &format!(
                        "open = {{ path = {}, flags = [\"O_DIRECTORY\"] }}",
                        string(&sub)
                    ),
                    Some(&format!("{tag}_sub{s}")),
                    &annotate,
                    &mut out,
                );
            }
        }
        for op in seq {
            self.render_op(op, tag, &annotate, &mut out);
        }
        if self.place.writable {
            for s in ["a", "b"] {
                let path = self.place.twin(tag, &s.to_ascii_uppercase());
                self.call(
                    &format!("{tag}.t{s}"),
                    "what the twin holds",
                    &format!("list_dir = {{ path = {} }}", string(&path)),
                    None,
                    &annotate,
                    &mut out,
                );
            }
        }
        let mut fds = self.fds(seq, tag);
        fds.push(format!("{tag}_ra"));
        fds.push(format!("{tag}_rb"));
        if self.place.cross {
            fds.push(format!("{tag}_suba"));
            fds.push(format!("{tag}_subb"));
        }
        for (i, fd) in fds.iter().enumerate() {
            out.push_str(&step(&format!("{tag}.z{i} close")));
            out.push_str(&format!(
                "close = {{ fd = {} }}\nexpect.ok = \"any\"\n",
                string(&format!("${{{fd}}}"))
            ));
        }
        out
    }

    fn check(&self, seq: &[Op], tag: &str, _prev: &str, obs: &Observed) -> SeqCheck {
        let mut c = SeqCheck::default();
        let prefix = format!("{tag}.");
        c.calls = obs.calls_under(&prefix);
        let mut void: Vec<u32> = Vec::new();
        for op in seq {
            let Op::Mkdir2 {
                id,
                dir,
                path,
                flags,
                ..
            } = op
            else {
                continue;
            };
            let k = format!("{tag}.{id}");
            if dir.uses().is_some_and(|u| void.contains(&u)) {
                void.push(*id);
                continue;
            }
            let Some(a) = obs.call(&k) else {
                c.incomplete = Some(match obs.step_errors.get(&k) {
                    Some(_) => format!("the agent could not run step {k}"),
                    None => format!("the run ended before step {k}"),
                });
                break;
            };
            let valid = (*flags as i64) & !MKDIRAT2_VALID_FLAGS == 0;
            if !valid {
                let outcome = Outcome::fails(&["EINVAL"]);
                c.expects.push((k.clone(), vec![outcome.expect_toml()]));
                let ea = errno_name(a);
                if !outcome.admits(ea.as_deref()) {
                    c.divergences.push(self.div("mkdirat2.flags", &k, format!("mkdirat2 with flags {flags:#x} {}", if ea.is_none() { "succeeds" } else { "fails with another errno" }), "flags outside AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT (the posted VALID_MKDIRAT2_FLAGS) are refused with EINVAL".into(), format!("{} ({})", outcome_of(a), args(a)), vec![outcome.expect_toml()]));
                    return c;
                }
                let (sa, sb) = (obs.call(&format!("{k}.sa")), obs.call(&format!("{k}.sb")));
                if let (Some(sa), Some(sb)) = (sa, sb)
                    && (errno_name(sa) != errno_name(sb)
                        || field(&sa.args_out, "ino").is_some()
                            != field(&sb.args_out, "ino").is_some())
                {
                    c.divergences.push(self.div(
                        "mkdirat2.flags-created",
                        &format!("{k}.sa"),
                        "mkdirat2 refused with EINVAL yet changed what the path names".into(),
                        "a call refused for its flags creates nothing".into(),
                        format!(
                            "after it, fstatat of the path {}; on the twin it {}",
                            outcome_of(sa),
                            outcome_of(sb)
                        ),
                        vec![match errno_name(sb) {
                            Some(e) => format!("expect.errno = \"{e}\""),
                            None => "expect.ok = true".into(),
                        }],
                    ));
                    return c;
                }
                void.push(*id);
                continue;
            }
            let Some(b) = obs.call(&format!("{k}.b")) else {
                c.incomplete = Some(format!("no model call for {k}"));
                break;
            };
            let (ea, eb) = (errno_name(a), errno_name(b));
            let model = match &eb {
                Some(e) => Outcome::Fails(vec![leak(e)]),
                None => Outcome::Ok,
            };
            c.expects.push((
                k.clone(),
                vec![match &eb {
                    Some(e) => format!("expect.errno = \"{e}\""),
                    None => "expect.ok = true".into(),
                }],
            ));
            if !model.admits(ea.as_deref()) {
                let title = match (&ea, &eb) {
                    (None, Some(e)) => format!("mkdirat2 succeeds where mkdirat fails with {e}"),
                    (Some(e), None) => format!("mkdirat2 fails with {e} where mkdirat succeeds"),
                    (Some(x), Some(y)) => {
                        format!("mkdirat2 fails with {x} where mkdirat fails with {y}")
                    }
                    (None, None) => unreachable!(),
                };
                let sig = match (&ea, &eb) {
                    (None, Some(_)) => "mkdirat2.accepted",
                    (Some(_), None) => "mkdirat2.refused",
                    _ => "mkdirat2.errno",
                };
                c.divergences.push(self.div(sig, &k, title, "mkdirat2(dir, path, mode, flags) with valid flags fails exactly as mkdirat(dir, path, mode) does on the same tree".into(), format!("{} ({}); mkdirat on the twin {}", outcome_of(a), args(a), outcome_of(b)), vec![match &eb {
                    Some(e) => format!("expect.errno = \"{e}\""),
                    None => "expect.ok = true".into(),
                }]));
                return c;
            }
            if ea.is_some() {
                void.push(*id);
                continue;
            }
            // Both made the directory: the fd against openat's.
            let get = |s: &str| obs.call(&format!("{k}.{s}"));
            let (Some(fa), Some(fb), Some(la), Some(lb), Some(da), Some(ia)) = (
                get("fa"),
                get("fb"),
                get("la"),
                get("lb"),
                get("da"),
                get("ia"),
            ) else {
                c.incomplete = Some(format!("the checks of {k} did not all run"));
                break;
            };
            if errno_name(get("bo").unwrap_or(b)).is_some() {
                // openat failed on the model's side: nothing to compare.
                continue;
            }
            for f in ["type", "perm", "uid", "gid", "nlink"] {
                let (x, y) = (fa.args_out.get(f), fb.args_out.get(f));
                if x != y {
                    let (xs, ys) = (show(x), show(y));
                    c.divergences.push(self.div(&format!("mkdirat2.fstat-{f}"), &format!("{k}.fa"), format!("the directory mkdirat2 made differs from mkdirat's in `{f}`"), "mkdirat2 makes the directory mkdirat would (mode less the umask, same owner)".into(), format!("{f} {xs} via mkdirat2, {ys} via mkdirat + openat"), vec![format!("expect.out = {{ {f} = {ys} }}")]));
                    return c;
                }
            }
            if la.ret != lb.ret {
                c.divergences.push(self.div("mkdirat2.status-flags", &format!("{k}.la"), "mkdirat2's fd has other file status flags (F_GETFL) than openat(O_DIRECTORY | O_CLOEXEC) gives".into(), "the returned fd is the one open(O_DIRECTORY) would return (cover letter: \"returns an O_DIRECTORY fd\")".into(), format!("F_GETFL {:#x} ({}) via mkdirat2, {:#x} ({}) via openat", la.ret, flags_text(la), lb.ret, flags_text(lb)), vec![format!("expect.ret = {}", lb.ret)]));
                return c;
            }
            if da.args_out.get("cloexec").and_then(|v| v.as_bool()) != Some(true) {
                c.divergences.push(self.div(
                    "mkdirat2.cloexec",
                    &format!("{k}.da"),
                    "mkdirat2's fd is not close-on-exec".into(),
                    "v2's changelog: the returned fd gets O_CLOEXEC by default".into(),
                    "F_GETFD shows FD_CLOEXEC clear".into(),
                    vec!["expect.out = { cloexec = true }".into()],
                ));
                return c;
            }
            if field(&ia.args_out, "ino") != field(&fa.args_out, "ino")
                || field(&ia.args_out, "dev") != field(&fa.args_out, "dev")
            {
                c.divergences.push(self.div(
                    "mkdirat2.other-dir",
                    &format!("{k}.ia"),
                    "mkdirat2's fd is not the directory the path names".into(),
                    "the fd refers to the directory just created".into(),
                    format!(
                        "fd ino {:?}, path ino {:?}",
                        field(&fa.args_out, "ino"),
                        field(&ia.args_out, "ino")
                    ),
                    vec![],
                ));
                return c;
            }
            if *flags & AT_SYMLINK_NOFOLLOW != 0 && self.walks_symlink(seq, path) {
                c.divergences.push(Divergence {
                    signature: "mkdirat2.nofollow-walks-symlinks".into(),
                    kind: Kind::Question,
                    at: k.clone(),
                    title: "with AT_SYMLINK_NOFOLLOW, mkdirat2 still follows a symlink in the path".into(),
                    model: "unspecified: the posting accepts AT_SYMLINK_NOFOLLOW but does not say what it means for mkdirat2 (mkdir never follows the last component; intermediate ones are followed as ever)".into(),
                    observed: format!("mkdirat2 of {:?} with flags {flags:#x} succeeded through a symlink", sanitize_path(path)),
                    expect: vec!["expect.ok = true".into()],
                });
            }
        }
        if self.place.writable
            && c.divergences.iter().all(|d| d.kind == Kind::Question)
            && c.incomplete.is_none()
        {
            let (ta, tb) = (
                obs.call(&format!("{tag}.ta")),
                obs.call(&format!("{tag}.tb")),
            );
            if let (Some(ta), Some(tb)) = (ta, tb)
                && ta.args_out.get("names") != tb.args_out.get("names")
            {
                c.divergences.push(self.div(
                    "mkdirat2.tree",
                    &format!("{tag}.ta"),
                    "after the sequence, the twin trees hold different names".into(),
                    "mkdirat2 creates what mkdirat creates and nothing else".into(),
                    "the directory listings differ".into(),
                    vec![],
                ));
            }
        }
        if let Some(d) = crate::goldfish::kernel_log_divergence(tag, obs) {
            c.divergences.push(d);
        }
        c
    }

    fn last_checkpoint(&self, tag: &str) -> String {
        format!("{tag}.z0")
    }

    fn first_checkpoint(&self) -> String {
        "setup.m0".into()
    }

    fn cases(&self) -> Vec<(String, Vec<Op>)> {
        Mkdirat2::cases(self)
            .into_iter()
            .map(|(n, s)| (n.to_string(), s))
            .collect()
    }

    fn shrink(&self, seq: &[Op]) -> Vec<Vec<Op>> {
        let mut out = Vec::new();
        let n = seq.len();
        let mut chunk = n / 2;
        let without = |gone: &[u32]| -> Vec<Op> {
            let mut gone = gone.to_vec();
            for op in seq {
                if op.uses().is_some_and(|u| gone.contains(&u)) {
                    gone.push(op.id());
                }
            }
            seq.iter()
                .filter(|o| !gone.contains(&o.id()))
                .cloned()
                .collect()
        };
        let ids: Vec<u32> = seq.iter().map(Op::id).collect();
        while chunk > 1 {
            for w in ids.chunks(chunk) {
                let c = without(w);
                if !c.is_empty() && c.len() < n && !out.contains(&c) {
                    out.push(c);
                }
            }
            chunk /= 2;
        }
        for id in &ids {
            let c = without(&[*id]);
            if !c.is_empty() && !out.contains(&c) {
                out.push(c);
            }
        }
        // Simpler values: mode 0o700, no flags.
        for (i, op) in seq.iter().enumerate() {
            if let Op::Mkdir2 {
                id,
                dir,
                path,
                mode,
                flags,
            } = op
            {
                for (m, f) in [(0o700, *flags), (*mode, 0)] {
                    if (m, f) != (*mode, *flags) {
                        let mut c = seq.to_vec();
                        c[i] = Op::Mkdir2 {
                            id: *id,
                            dir: dir.clone(),
                            path: path.clone(),
                            mode: m,
                            flags: f,
                        };
                        if !out.contains(&c) {
                            out.push(c);
                        }
                    }
                }
            }
        }
        out
    }

    fn size(&self, seq: &[Op]) -> usize {
        seq.len()
    }
}

impl Mkdirat2 {
    fn div(
        &self,
        sig: &str,
        at: &str,
        title: String,
        model: String,
        observed: String,
        expect: Vec<String>,
    ) -> Divergence {
        Divergence {
            signature: sig.to_string(),
            kind: Kind::Defect,
            at: at.to_string(),
            title: format!("{title} ({})", self.place.name),
            model,
            observed,
            expect,
        }
    }

    /// Whether `path` walks through a symlink the sequence made.
    fn walks_symlink(&self, seq: &[Op], path: &str) -> bool {
        let mut comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        comps.pop();
        comps.iter().any(|c| {
            seq.iter()
                .any(|o| matches!(o, Op::Symlink { name, .. } if name == c))
        })
    }
}

/// An errno name the model got from the guest, as a `'static` str (the
/// known ones; anything else is "E?").
fn leak(e: &str) -> &'static str {
    gasbench_abi::consts::ERRNOS
        .iter()
        .find(|(n, _)| *n == e)
        .map_or("E?", |(n, _)| n)
}

fn outcome_of(r: &CallRecord) -> String {
    match errno_name(r) {
        Some(e) => format!("failed with {e}"),
        None => format!("returned {}", r.ret),
    }
}

fn args(r: &CallRecord) -> String {
    let dir = r.args_in.get("dir").and_then(|v| v.as_i64()).unwrap_or(0);
    let dir = if dir == i64::from(AT_FDCWD) {
        "AT_FDCWD".to_string()
    } else {
        format!("fd {dir}")
    };
    let path = r
        .args_in
        .get("path")
        .and_then(|v| v.as_str())
        .map(sanitize_path)
        .unwrap_or_default();
    let mode = field(&r.args_in, "mode").unwrap_or(0);
    format!(
        "{dir}, {path:?}, mode {mode:#o}, flags {:#x}",
        field(&r.args_in, "flags").unwrap_or(0)
    )
}

fn sanitize_path(p: &str) -> String {
    let s: String = p
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect();
    if s.len() > 80 {
        format!("{}… ({} bytes)", &s[..40], s.len())
    } else {
        s
    }
}

fn flags_text(r: &CallRecord) -> String {
    r.args_out
        .get("flags")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str())
                .filter(|s| s.len() < 20 && s.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
                .collect::<Vec<_>>()
                .join("|")
        })
        .unwrap_or_default()
}

fn show(v: Option<&serde_json::Value>) -> String {
    match v {
        Some(serde_json::Value::String(s))
            if s.len() < 16 && s.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            format!("\"{s}\"")
        }
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => "?".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_place_renders_scenarios_that_compile() {
        for place in Place::all() {
            let d = Mkdirat2::new(place.clone());
            let mut rng = fastrand::Rng::with_seed(3);
            let mut body = String::new();
            for k in 0..10 {
                body.push_str(&d.render(&d.generate(&mut rng), &format!("x{k}"), None));
            }
            for (i, (_, seq)) in d.cases().iter().enumerate() {
                body.push_str(&d.render(seq, &format!("k{i}"), None));
            }
            let text = format!(
                "{}{}{}{}",
                d.header("t", "t"),
                d.prologue(),
                body,
                d.epilogue()
            );
            if let Err(p) = gasbench_scenario::compile("t.toml", &text) {
                let msgs: Vec<String> = p.problems.iter().map(|x| x.message.clone()).collect();
                panic!("{}: {msgs:?}", place.name);
            }
        }
    }
}
