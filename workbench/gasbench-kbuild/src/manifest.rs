//! The build manifest: what was built from what, with which tools, how
//! long it took and where everything is. Written last, so a directory
//! with a manifest is a complete build.
//!
//! The cache is checked, not trusted: the manifest records the size and
//! sha256 of every artifact ([`Checked`]), and a build is reused only if
//! they still match. Its paths are relative to the build directory, so
//! the cache can be moved or copied.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use serde::{Deserialize, Serialize};

use crate::kconfig::Mismatch;
use crate::report::ApplyReport;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Toolchain {
    /// Tool → its version line (`rustc 1.96.1 (...)`).
    pub versions: BTreeMap<String, String>,
    /// `host` or `toolroot`.
    pub runtime: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    pub apply_ms: u64,
    pub configure_ms: u64,
    pub build_ms: u64,
    pub headers_ms: u64,
    pub selftest_ms: u64,
    pub per_patch_ms: u64,
    pub total_ms: u64,
}

/// Where the artifacts are. In memory the paths are absolute; in
/// manifest.json they are relative to the build directory
/// ([`ArtifactPaths::relative_to`], [`ArtifactPaths::resolved_in`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactPaths {
    pub bzimage: PathBuf,
    pub config: PathBuf,
    pub system_map: PathBuf,
    /// `headers/include` is what `-isystem` wants.
    pub headers: PathBuf,
    /// `None` when the tree has no mkdirat2 selftest to build.
    #[serde(default)]
    pub selftest: Option<PathBuf>,
    pub build_log: PathBuf,
    /// The kernel image with its symbols (and, in the debug profiles,
    /// line tables) that decodes the guest's stack traces.
    #[serde(default)]
    pub vmlinux: Option<PathBuf>,
}

impl ArtifactPaths {
    fn map(&self, f: impl Fn(&Path) -> PathBuf) -> ArtifactPaths {
        ArtifactPaths {
            bzimage: f(&self.bzimage),
            config: f(&self.config),
            system_map: f(&self.system_map),
            headers: f(&self.headers),
            selftest: self.selftest.as_deref().map(&f),
            build_log: f(&self.build_log),
            vmlinux: self.vmlinux.as_deref().map(&f),
        }
    }

    /// The paths relative to `dir` (what manifest.json holds).
    pub fn relative_to(&self, dir: &Path) -> ArtifactPaths {
        self.map(|p| p.strip_prefix(dir).unwrap_or(p).to_path_buf())
    }

    /// The paths resolved in `dir`, where the manifest is now. A manifest
    /// from before paths were relative has absolute ones into the build
    /// directory as it was then: they are rebased on `dir` by the build
    /// directory's name.
    pub fn resolved_in(&self, dir: &Path) -> ArtifactPaths {
        let name = dir.file_name();
        self.map(|p| {
            if p.is_relative() {
                return dir.join(p);
            }
            let parts: Vec<Component> = p.components().collect();
            match parts.iter().rposition(|c| Some(c.as_os_str()) == name) {
                Some(i) => parts[i + 1..]
                    .iter()
                    .fold(dir.to_path_buf(), |acc, c| acc.join(c)),
                None => p.to_path_buf(),
            }
        })
    }

    /// The artifacts whose content a reuse depends on, relative to `dir`.
    pub fn checked_paths(&self, dir: &Path) -> Vec<PathBuf> {
        let rel = self.relative_to(dir);
        let mut v = vec![rel.bzimage, rel.config, rel.system_map, rel.headers];
        v.extend(rel.selftest);
        v
    }
}

/// An artifact as it was made: its size and sha256 (a directory's are
/// over its files, in path order, each path and content).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checked {
    /// Relative to the build directory.
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
}

/// Size and sha256 of `path` (a file, or a directory tree).
pub fn digest(path: &Path) -> std::io::Result<(u64, String)> {
    let mut h = Sha256::new();
    let mut size = 0;
    let mut files = Vec::new();
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        collect_files(path, path, &mut files)?;
        files.sort();
    } else if meta.is_file() {
        files.push(PathBuf::new());
    } else {
        return Err(std::io::Error::other("neither a file nor a directory"));
    }
    let mut buf = vec![0u8; 1 << 16];
    for rel in files {
        let full = if rel.as_os_str().is_empty() {
            path.to_path_buf()
        } else {
            h.update(rel.as_os_str().as_encoded_bytes());
            h.update([0]);
            path.join(&rel)
        };
        let mut f = std::fs::File::open(&full)?;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            size += n as u64;
            h.update(&buf[..n]);
        }
    }
    Ok((size, crate::tree::hex(&h.finalize())))
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let t = e.file_type()?;
        let p = e.path();
        if t.is_dir() {
            collect_files(root, &p, out)?;
        } else {
            out.push(p.strip_prefix(root).unwrap_or(&p).to_path_buf());
        }
    }
    Ok(())
}

/// Record `paths` (relative to `dir`) as they are now.
pub fn record(dir: &Path, paths: &[PathBuf]) -> std::io::Result<Vec<Checked>> {
    paths
        .iter()
        .map(|rel| {
            let (size, sha256) = digest(&dir.join(rel))?;
            Ok(Checked {
                path: rel.clone(),
                size,
                sha256,
            })
        })
        .collect()
}

/// What differs between the build in `dir` and what was recorded, if
/// anything: the first damaged artifact, said plainly.
pub fn verify(dir: &Path, checked: &[Checked]) -> Result<(), String> {
    for c in checked {
        let path = dir.join(&c.path);
        let (size, sha) = digest(&path).map_err(|e| format!("{}: {e}", c.path.display()))?;
        if size != c.size {
            return Err(format!(
                "{} has {size} bytes, the manifest says {}",
                c.path.display(),
                c.size
            ));
        }
        if sha != c.sha256 {
            return Err(format!(
                "{} has sha256 {}, the manifest says {}",
                c.path.display(),
                &sha[..16],
                &c.sha256[..16.min(c.sha256.len())]
            ));
        }
    }
    Ok(())
}

/// After patch k: does the tree build?
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchBuild {
    pub position: u32,
    pub series: String,
    pub label: String,
    pub commit: String,
    pub builds: bool,
    pub first_error: Option<String>,
    /// Requested config symbols that were not set at this point.
    pub config_missing: Vec<String>,
    /// The same patch's C files compiled for a second architecture.
    #[serde(default)]
    pub cross: Option<crate::cross::CrossResult>,
    pub elapsed_ms: u64,
    pub log: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildManifest {
    /// `7.2.12` (from the build's include/config/kernel.release).
    pub kernel_release: String,
    pub base: String,
    pub base_commit: String,
    /// The commit that was built.
    pub head: String,
    /// Non-empty when the tree had local changes on top of `head`.
    pub local_changes_sha256: String,
    pub build_key: String,
    pub arch: String,
    pub make_vars: Vec<String>,
    pub config_sha256: String,
    /// Requested symbols that did not stick (empty in a strict build).
    pub config_mismatches: Vec<Mismatch>,
    pub config_fragments: Vec<String>,
    pub apply: ApplyReport,
    pub toolchain: Toolchain,
    pub timings: Timings,
    pub artifacts: ArtifactPaths,
    /// The number mkdirat2 got in the x86_64 syscall table.
    pub mkdirat2_syscall: Option<u32>,
    /// kbuild command lines in the build (progress total for the next).
    pub kbuild_steps: u64,
    #[serde(default)]
    pub per_patch: Vec<PatchBuild>,
    /// The kernel profile it was built with.
    #[serde(default = "crate::profile::ProfileInfo::default_profile")]
    pub profile: crate::profile::ProfileInfo,
    /// Size and sha256 of each artifact as built (empty in a manifest
    /// from before they were kept).
    #[serde(default)]
    pub checked: Vec<Checked>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(dir: &Path) -> ArtifactPaths {
        ArtifactPaths {
            bzimage: dir.join("bzImage"),
            config: dir.join("config"),
            system_map: dir.join("System.map"),
            headers: dir.join("headers/include"),
            selftest: Some(dir.join("selftests/t")),
            build_log: dir.join("build.log"),
            vmlinux: None,
        }
    }

    #[test]
    fn paths_are_kept_relative_and_old_absolute_ones_follow_a_moved_cache() {
        let old = Path::new("/var/cache/gasbench/kernel/builds/945967bc72323253");
        let new = Path::new("/srv/copy/kernel/builds/945967bc72323253");
        let rel = paths(old).relative_to(old);
        assert_eq!(rel.bzimage, Path::new("bzImage"));
        assert_eq!(rel.headers, Path::new("headers/include"));
        assert_eq!(rel.resolved_in(new), paths(new));
        // A manifest written before paths were relative.
        assert_eq!(paths(old).resolved_in(new), paths(new));
    }

    #[test]
    fn a_damaged_artifact_is_named_with_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("bzImage"), vec![1u8; 4096]).unwrap();
        std::fs::create_dir_all(d.join("headers/include/linux")).unwrap();
        std::fs::write(d.join("headers/include/linux/a.h"), "int a;\n").unwrap();
        let rels = [PathBuf::from("bzImage"), PathBuf::from("headers/include")];
        let checked = record(d, &rels).unwrap();
        assert_eq!(checked[0].size, 4096);
        verify(d, &checked).unwrap();

        // Same size, other bytes.
        std::fs::write(d.join("bzImage"), vec![2u8; 4096]).unwrap();
        let e = verify(d, &checked).unwrap_err();
        assert!(e.starts_with("bzImage has sha256 "), "{e}");
        // Cut short.
        std::fs::write(d.join("bzImage"), vec![1u8; 100]).unwrap();
        let e = verify(d, &checked).unwrap_err();
        assert_eq!(e, "bzImage has 100 bytes, the manifest says 4096");
        std::fs::write(d.join("bzImage"), vec![1u8; 4096]).unwrap();
        // A header edited in the tree of headers.
        std::fs::write(d.join("headers/include/linux/a.h"), "int b;\n").unwrap();
        let e = verify(d, &checked).unwrap_err();
        assert!(e.starts_with("headers/include has sha256"), "{e}");
        // Gone.
        std::fs::remove_dir_all(d.join("headers")).unwrap();
        let e = verify(d, &checked).unwrap_err();
        assert!(e.starts_with("headers/include: "), "{e}");
    }
}
