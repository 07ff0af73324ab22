//! The base tree: unpacked and committed once, then reused.
//!
//! Under `<cache>/kernel/trees/<id>/`:
//! - `src/`   the git repository and the work tree that is built (O=../out);
//! - `apply/` a second work tree where patches are applied, so that the
//!   built tree only ever sees `git checkout` of a finished result, which
//!   rewrites just the files whose content changed (and so keeps the
//!   incremental build incremental);
//! - `out/`   the build directory;
//! - `ready`  written last: without it the directory is a half-made tree
//!   and is removed and made again.

use std::io::Read;
use std::path::{Path, PathBuf};

use gasbench_env::{CacheDir, Runtime};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::KbuildError;
use crate::git::Git;
use crate::layout::KernelDir;

/// Where the base comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BaseSource {
    /// The pinned Debian `linux-source` tarball in the runtime.
    Packaged,
    /// An existing kernel git checkout (cloned with `--shared`, never
    /// modified); `rev` defaults to the pin's upstream tag.
    GitTree { path: PathBuf, rev: Option<String> },
}

/// A base tree ready to apply to.
#[derive(Clone, Debug)]
pub struct BaseTree {
    pub dir: PathBuf,
    pub src: PathBuf,
    pub apply: PathBuf,
    pub out: PathBuf,
    pub base_commit: String,
    /// `7.2.12`, from the tree's Makefile.
    pub release: String,
    /// `linux-source-7.2 7.2.12-1~bpo13+1` or `git <path> <rev>`.
    pub label: String,
    /// True when the tree was already there.
    pub reused: bool,
    /// Repositories the tree borrows objects from (a `--shared` clone of
    /// a `--base-tree`): every command on the tree must see them.
    pub shared_with: Vec<PathBuf>,
}

impl BaseTree {
    /// What a command working on this tree needs bind-mounted.
    pub fn binds(&self) -> Vec<PathBuf> {
        let mut v = vec![self.dir.clone()];
        v.extend(self.shared_with.iter().cloned());
        v
    }
}

#[derive(Serialize, Deserialize)]
struct Ready {
    base_commit: String,
    release: String,
    label: String,
    #[serde(default)]
    shared_with: Vec<PathBuf>,
}

/// The tag the base commit carries in the tree's repository.
pub const BASE_TAG: &str = "gasbench/base";

/// Space a tree needs: source, apply work tree, build output.
const TREE_NEED_MIB: u64 = 6 * 1024;

/// Make (or reuse) the base tree.
pub fn prepare(
    rt: &Runtime,
    cache: &CacheDir,
    kdir: &KernelDir,
    source: &BaseSource,
    mut status: impl FnMut(&str),
) -> Result<BaseTree, KbuildError> {
    let trees = cache.kernel().join("trees");
    // A git base, resolved once: its canonical path, the revision asked
    // for (the pinned tag by default) and the commit it names.
    let git_base = match source {
        BaseSource::Packaged => None,
        BaseSource::GitTree { path, rev } => {
            let canon = path
                .canonicalize()
                .map_err(|e| KbuildError::io("open", path, e))?;
            let rev = rev
                .clone()
                .unwrap_or_else(|| kdir.base.upstream_tag.clone());
            let commit = resolve_in(rt, &canon, &rev)?;
            Some((canon, rev, commit))
        }
    };
    let (id, label) = match &git_base {
        None => {
            let pin = &kdir.base;
            (
                format!(
                    "{}-{}",
                    pin.release,
                    &pin.tarball_sha256[..12.min(pin.tarball_sha256.len())]
                ),
                format!("{} {}", pin.package, pin.package_version),
            )
        }
        Some((canon, rev, commit)) => {
            let h = hex(&Sha256::digest(canon.as_os_str().as_encoded_bytes()))[..8].to_string();
            (
                format!("git-{h}-{}", &commit[..12]),
                format!("git {} {rev} ({commit})", canon.display()),
            )
        }
    };
    let dir = trees.join(&id);
    let t = BaseTree {
        src: dir.join("src"),
        apply: dir.join("apply"),
        out: dir.join("out"),
        dir: dir.clone(),
        base_commit: String::new(),
        release: String::new(),
        label: label.clone(),
        reused: false,
        shared_with: git_base.iter().map(|(canon, _, _)| canon.clone()).collect(),
    };
    if let Ok(text) = std::fs::read_to_string(dir.join("ready"))
        && let Ok(r) = serde_json::from_str::<Ready>(&text)
        && t.src.join(".git").exists()
        && t.apply.exists()
    {
        let tree = BaseTree {
            base_commit: r.base_commit,
            release: r.release,
            reused: true,
            shared_with: r.shared_with,
            ..t
        };
        relocate_if_moved(&tree, &mut status)?;
        return Ok(tree);
    }

    // Not there, or half made by an interrupted run: start over.
    if dir.exists() {
        status("removing a half-made base tree");
        std::fs::remove_dir_all(&dir).map_err(|e| KbuildError::io("remove", &dir, e))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| KbuildError::io("create", &dir, e))?;
    crate::disk::require(&dir, TREE_NEED_MIB, "a kernel base tree")?;

    match &git_base {
        None => unpack(rt, kdir, &dir, &t.src, &mut status)?,
        Some((canon, rev, _)) => {
            status(&format!("cloning {} (shared objects)", canon.display()));
            let g = Git::new(rt, &dir, std::slice::from_ref(canon));
            g.ok(&[
                "clone",
                "--quiet",
                "--shared",
                "--no-checkout",
                &canon.display().to_string(),
                &t.src.display().to_string(),
            ])?;
            let g = Git::new(rt, &t.src, std::slice::from_ref(canon));
            g.ok(&["checkout", "--quiet", "--detach", rev])?;
            g.ok(&["tag", "-f", BASE_TAG, "HEAD"])?;
        }
    }
    let g = Git::new(rt, &t.src, &t.binds());
    let base_commit = g.rev_parse("HEAD")?.ok_or_else(|| KbuildError::Invalid {
        what: "the base tree has no commit".into(),
    })?;
    status("adding the apply work tree");
    g.ok(&[
        "worktree",
        "add",
        "--quiet",
        "--detach",
        &t.apply.display().to_string(),
        BASE_TAG,
    ])?;
    let release = release_of(&t.src)?;
    let ready = Ready {
        base_commit: base_commit.clone(),
        release: release.clone(),
        label,
        shared_with: t.shared_with.clone(),
    };
    let path = dir.join("ready");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&ready).unwrap_or_default(),
    )
    .map_err(|e| KbuildError::io("write", &path, e))?;
    Ok(BaseTree {
        base_commit,
        release,
        ..t
    })
}

/// A tree made elsewhere (the cache was moved or copied) still names its
/// old place in two spots: the apply work tree's link to its repository
/// (and the repository's link back), and kbuild's output directories
/// (their Makefile and dependency files hold absolute paths). Both links
/// are rewritten to this place (`git worktree repair` would leave a copy
/// working on the original's repository); the outputs are removed, so the
/// next build is a full one rather than one that reads the old place.
pub fn relocate_if_moved(t: &BaseTree, mut status: impl FnMut(&str)) -> Result<(), KbuildError> {
    let link_path = t.apply.join(".git");
    let link = std::fs::read_to_string(&link_path).unwrap_or_default();
    let target = link.trim().strip_prefix("gitdir: ").map(Path::new);
    let home = t.src.join(".git").join("worktrees");
    if target.is_some_and(|p| p.starts_with(&home)) {
        return Ok(());
    }
    status(&format!(
        "the base tree {} was made elsewhere (the cache was moved or copied): relinking its work tree and removing its build outputs, which name the old place",
        t.dir.display()
    ));
    let admin = target
        .and_then(|p| p.file_name())
        .map(|name| home.join(name))
        .filter(|admin| admin.is_dir())
        .ok_or_else(|| KbuildError::Base {
            what: format!(
                "the base tree {} was moved and its work tree {} cannot be relinked",
                t.dir.display(),
                t.apply.display()
            ),
            help: format!("remove {} (gasbench makes it again)", t.dir.display()),
        })?;
    let write = |path: &Path, text: String| {
        std::fs::write(path, text).map_err(|e| KbuildError::io("write", path, e))
    };
    write(&link_path, format!("gitdir: {}\n", admin.display()))?;
    write(&admin.join("gitdir"), format!("{}\n", link_path.display()))?;
    let entries = std::fs::read_dir(&t.dir).map_err(|e| KbuildError::io("read", &t.dir, e))?;
    for e in entries.flatten() {
        let is_out = e.file_name().to_string_lossy().starts_with("out");
        if is_out && e.file_type().is_ok_and(|f| f.is_dir()) {
            let p = e.path();
            std::fs::remove_dir_all(&p).map_err(|e| KbuildError::io("remove", &p, e))?;
        }
    }
    Ok(())
}

/// Unpack the pinned tarball and commit it as the base.
fn unpack(
    rt: &Runtime,
    kdir: &KernelDir,
    dir: &Path,
    src: &Path,
    status: &mut impl FnMut(&str),
) -> Result<(), KbuildError> {
    let pin = &kdir.base;
    let tarball = rt.file(&pin.tarball);
    status(&format!("checking {}", tarball.display()));
    let sum = sha256_file(&tarball).map_err(|e| KbuildError::Base {
        what: format!("cannot read the tarball {}: {e}", tarball.display()),
        help: format!(
            "run `gasbench setup` (it installs {}), or give a kernel git tree with --base-tree",
            pin.package
        ),
    })?;
    if sum != pin.tarball_sha256 {
        return Err(KbuildError::Base {
            what: format!(
                "{} has sha256 {sum}, the pin says {}",
                tarball.display(),
                pin.tarball_sha256,
            ),
            help: format!(
                "a different {} version is installed: `gasbench setup` installs the pinned one; or update kernel/base.toml's pin (and the port) for it",
                pin.package
            ),
        });
    }
    status(&format!("unpacking {}", pin.tarball));
    let staging = dir.join("staging");
    std::fs::create_dir_all(&staging).map_err(|e| KbuildError::io("create", &staging, e))?;
    let staging_s = staging.display().to_string();
    let mut tar = rt.build_command(
        &[
            "tar",
            "-xJf",
            pin.tarball.as_str(),
            "-C",
            staging_s.as_str(),
        ],
        &[dir.to_path_buf()],
        dir,
    );
    let out = gasbench_env::process::output(&mut tar, gasbench_env::process::OnParentDeath::Kill)
        .map_err(|e| KbuildError::Spawn {
        what: "tar".into(),
        source: e,
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        if crate::disk::output_says_full(&err) {
            return Err(KbuildError::DiskFull {
                what: "unpacking the kernel source".into(),
                path: dir.to_path_buf(),
                available_mib: crate::disk::free_mib(dir).unwrap_or(0),
                needed_mib: TREE_NEED_MIB,
            });
        }
        return Err(KbuildError::Command {
            command: format!("tar -xJf {}", pin.tarball),
            status: out.status.to_string(),
            detail: crate::git::tail(&err, 20),
        });
    }
    let top = staging.join(&pin.top_dir);
    std::fs::rename(&top, src).map_err(|e| KbuildError::io("move", &top, e))?;
    let _ = std::fs::remove_dir_all(&staging);

    status("committing the base (git add -f: Debian's .gitignore ignores most of the tree)");
    let g = Git::new(rt, src, &[dir.to_path_buf()]);
    g.ok(&["init", "--quiet", "--initial-branch=gasbench-base"])?;
    g.ok(&["add", "--force", "--all", "."])?;
    // Fixed dates: the same tarball always gives the same commit id.
    let date = "2000-01-01T00:00:00+00:00";
    g.ok_env(
        &[
            "commit",
            "--quiet",
            "--no-verify",
            "--author",
            "Debian linux-source <gasbench@localhost.invalid>",
            "-m",
            &format!(
                "{} {} ({}, sha256 {})",
                pin.package, pin.package_version, pin.tarball, pin.tarball_sha256
            ),
        ],
        &[("GIT_AUTHOR_DATE", date), ("GIT_COMMITTER_DATE", date)],
    )?;
    g.ok(&["tag", "-f", BASE_TAG, "HEAD"])?;
    Ok(())
}

fn resolve_in(rt: &Runtime, repo: &Path, rev: &str) -> Result<String, KbuildError> {
    let g = Git::new(rt, repo, &[]);
    g.rev_parse(rev)?.ok_or_else(|| KbuildError::Base {
        what: format!("{} has no revision {rev:?}", repo.display()),
        help: format!(
            "--base-tree must be a git checkout of the kernel that has {rev} (`git -C {} fetch --tags` fetches it)",
            repo.display()
        ),
    })
}

/// The commit `rev` names in the git repository `repo`, if it has one
/// (a series' `base-commit:` looked up in a `--base-tree`).
pub fn commit_in(rt: &Runtime, repo: &Path, rev: &str) -> Option<String> {
    let canon = repo.canonicalize().ok()?;
    Git::new(rt, &canon, std::slice::from_ref(&canon))
        .rev_parse(rev)
        .ok()
        .flatten()
}

/// `VERSION.PATCHLEVEL.SUBLEVEL[EXTRAVERSION]` from the top Makefile.
pub fn release_of(src: &Path) -> Result<String, KbuildError> {
    let path = src.join("Makefile");
    let text = std::fs::read_to_string(&path).map_err(|e| KbuildError::io("read", &path, e))?;
    Ok(parse_release(&text))
}

pub fn parse_release(makefile: &str) -> String {
    let get = |key: &str| {
        makefile
            .lines()
            .take(12)
            .find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == key).then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    format!(
        "{}.{}.{}{}",
        get("VERSION"),
        get("PATCHLEVEL"),
        get("SUBLEVEL"),
        get("EXTRAVERSION")
    )
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// An exclusive lock on one tree for the duration of a build; a second
/// gasbench waits instead of building into the same directories.
pub struct TreeLock {
    _file: std::fs::File,
}

impl TreeLock {
    pub fn acquire(path: &Path, mut waiting: impl FnMut()) -> Result<TreeLock, KbuildError> {
        use std::os::fd::AsRawFd;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| KbuildError::io("create", parent, e))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| KbuildError::io("open", path, e))?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            waiting();
            // SAFETY: as above, now blocking until the other holder exits.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc != 0 {
                return Err(KbuildError::io(
                    "lock",
                    path,
                    std::io::Error::last_os_error(),
                ));
            }
        }
        Ok(TreeLock { _file: file })
    }
}

/// Where the lock for a base tree directory lives.
pub fn lock_path(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    dir.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_from_the_top_makefile() {
        let mk = "# SPDX\nVERSION = 7\nPATCHLEVEL = 2\nSUBLEVEL = 12\nEXTRAVERSION =\nNAME = x\n";
        assert_eq!(parse_release(mk), "7.2.12");
        let mk = "VERSION = 7\nPATCHLEVEL = 3\nSUBLEVEL = 0\nEXTRAVERSION = -rc4\n";
        assert_eq!(parse_release(mk), "7.3.0-rc4");
    }

    #[test]
    fn a_copied_or_moved_tree_is_repaired_and_its_outputs_dropped() {
        let top = tempfile::tempdir().unwrap();
        let git = |dir: &Path, args: &[&str]| {
            let ok = std::process::Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(["-c", "user.name=t", "-c", "user.email=t@t"])
                .args(args)
                .status()
                .unwrap()
                .success();
            assert!(ok, "git {args:?}");
        };
        let tree_at = |dir: &Path| BaseTree {
            dir: dir.to_path_buf(),
            src: dir.join("src"),
            apply: dir.join("apply"),
            out: dir.join("out"),
            base_commit: String::new(),
            release: String::new(),
            label: String::new(),
            reused: true,
            shared_with: vec![],
        };
        let made = top.path().join("cache-a/trees/t");
        std::fs::create_dir_all(made.join("src")).unwrap();
        std::fs::write(made.join("src/Makefile"), "VERSION = 7\n").unwrap();
        git(&made.join("src"), &["init", "-q"]);
        git(&made.join("src"), &["add", "."]);
        git(&made.join("src"), &["commit", "-qm", "base"]);
        let apply = made.join("apply").display().to_string();
        git(
            &made.join("src"),
            &["worktree", "add", "-q", "--detach", &apply, "HEAD"],
        );
        for out in ["out", "out-mkdirat2-v2", "out.debug"] {
            std::fs::create_dir_all(made.join(out)).unwrap();
            std::fs::write(
                made.join(out).join("Makefile"),
                "include /old/src/Makefile\n",
            )
            .unwrap();
        }
        let mut told = Vec::new();
        relocate_if_moved(&tree_at(&made), |s| told.push(s.to_string())).unwrap();
        assert!(told.is_empty(), "a tree at home is left alone: {told:?}");
        assert!(made.join("out").exists());

        // A copy, with the original still in place: the copy must not
        // work on the original's repository.
        let copy = top.path().join("cache-b/trees/t");
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        let ok = std::process::Command::new("cp")
            .arg("-a")
            .arg(&made)
            .arg(&copy)
            .status()
            .unwrap()
            .success();
        assert!(ok);
        relocate_if_moved(&tree_at(&copy), |s| told.push(s.to_string())).unwrap();
        assert_eq!(told.len(), 1, "{told:?}");
        assert!(told[0].contains("moved or copied"), "{told:?}");
        let link = std::fs::read_to_string(copy.join("apply/.git")).unwrap();
        assert!(
            link.contains(&copy.join("src/.git/worktrees").display().to_string()),
            "{link}"
        );
        for out in ["out", "out-mkdirat2-v2", "out.debug"] {
            assert!(!copy.join(out).exists(), "{out} kept");
        }
        assert!(made.join("out").exists(), "the original is untouched");
        // The copy's work tree works.
        std::fs::write(copy.join("apply/Makefile"), "VERSION = 8\n").unwrap();
        let status = std::process::Command::new("git")
            .arg("-C")
            .arg(copy.join("apply"))
            .args(["status", "--porcelain"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&status.stdout), " M Makefile\n");
        let orig = std::process::Command::new("git")
            .arg("-C")
            .arg(made.join("apply"))
            .args(["status", "--porcelain"])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&orig.stdout),
            "",
            "the original sees nothing"
        );
    }

    #[test]
    fn a_second_lock_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.lock");
        let first = TreeLock::acquire(&p, || panic!("nobody holds it yet")).unwrap();
        let p2 = p.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let h = std::thread::spawn(move || {
            let mut told = false;
            let _second = TreeLock::acquire(&p2, || told = true).unwrap();
            tx.send(told).unwrap();
        });
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(rx.try_recv().is_err(), "the second holder got in early");
        drop(first);
        assert!(rx.recv().unwrap(), "the second was told it had to wait");
        h.join().unwrap();
    }
}
