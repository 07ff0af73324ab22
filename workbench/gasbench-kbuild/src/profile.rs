//! Kernel profiles: what one kind of run adds on top of the guest config
//! (`kernel/profiles/profiles.toml`): a config fragment, patches applied
//! after the series and the port, kernel command-line arguments, and the
//! detectors the profile arms.
//!
//! Each profile builds in its own output directory
//! ([`build_dir_for`]), so switching between them rebuilds nothing that
//! was built before; its patches make a commit of their own on top of the
//! series (kept under `refs/gasbench/profile/<key>`), so the series'
//! apply report and per-patch builds are the same in every profile.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::KbuildError;
use crate::git::Git;
use crate::layout::{Fragment, KernelDir};
use crate::tree::hex;

/// The profile `run` and `kernel build` use unless told otherwise.
pub const DEFAULT: &str = "default";

/// `profiles.toml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfilesFile {
    profile: Vec<ProfileEntry>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileEntry {
    name: String,
    fragment: String,
    #[serde(default)]
    patches: Vec<String>,
    #[serde(default)]
    cmdline: String,
    #[serde(default)]
    detectors: Vec<String>,
    #[serde(default)]
    about: String,
}

/// One profile, resolved against `kernel/profiles/`.
#[derive(Clone, Debug)]
pub struct Profile {
    pub name: String,
    pub fragment: Fragment,
    pub patches: Vec<PathBuf>,
    pub info: ProfileInfo,
}

/// What the rest of the pipeline needs to know about the profile a
/// kernel was built with (kept in the build manifest).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileInfo {
    pub name: String,
    /// Added to the guest's kernel command line.
    #[serde(default)]
    pub cmdline: String,
    /// The detectors the profile arms (`kasan`, `lockdep`, …).
    #[serde(default)]
    pub detectors: Vec<String>,
    #[serde(default)]
    pub about: String,
}

impl ProfileInfo {
    /// The profile of a manifest written before profiles existed.
    pub fn default_profile() -> ProfileInfo {
        ProfileInfo {
            name: DEFAULT.into(),
            ..Default::default()
        }
    }
}

fn profiles_dir(kdir: &KernelDir) -> PathBuf {
    kdir.root().join("profiles")
}

fn load(kdir: &KernelDir) -> Result<Vec<ProfileEntry>, KbuildError> {
    let path = profiles_dir(kdir).join("profiles.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| KbuildError::io("read", &path, e))?;
    let file: ProfilesFile = toml::from_str(&text).map_err(|e| KbuildError::Layout {
        what: format!("{}: {}", kdir.relative(&path), e.message()),
        path: Some(path.clone()),
    })?;
    Ok(file.profile)
}

/// The names of the profiles `kernel/` defines, in file order.
pub fn names(kdir: &KernelDir) -> Result<Vec<String>, KbuildError> {
    Ok(load(kdir)?.into_iter().map(|p| p.name).collect())
}

/// The profile called `name`.
pub fn profile(kdir: &KernelDir, name: &str) -> Result<Profile, KbuildError> {
    let all = load(kdir)?;
    let Some(entry) = all.iter().find(|p| p.name == name) else {
        return Err(KbuildError::UnknownProfile {
            name: name.to_string(),
            known: all.iter().map(|p| p.name.clone()).collect(),
        });
    };
    if !valid_name(&entry.name) {
        return Err(KbuildError::Layout {
            what: format!(
                "profile name {:?}: use lower-case letters, digits and '-'",
                entry.name
            ),
            path: None,
        });
    }
    let dir = profiles_dir(kdir);
    let inside = |rel: &str| -> Result<PathBuf, KbuildError> {
        let p = Path::new(rel);
        if p.is_absolute() || p.components().any(|c| c.as_os_str() == "..") {
            return Err(KbuildError::Layout {
                what: format!("profile {name}: {rel:?} must be a path inside profiles/"),
                path: None,
            });
        }
        Ok(dir.join(p))
    };
    let fpath = inside(&entry.fragment)?;
    let text = std::fs::read_to_string(&fpath).map_err(|e| KbuildError::io("read", &fpath, e))?;
    let fragment = Fragment {
        // After the guest config's fragments, whatever their names.
        name: format!("profile-{}.config", entry.name),
        path: fpath,
        text,
    };
    let mut patches = Vec::new();
    for p in &entry.patches {
        let path = inside(p)?;
        if !path.is_file() {
            return Err(KbuildError::Layout {
                what: format!("profile {name}: no patch {}", kdir.relative(&path)),
                path: Some(path),
            });
        }
        patches.push(path);
    }
    Ok(Profile {
        name: entry.name.clone(),
        fragment,
        patches,
        info: ProfileInfo {
            name: entry.name.clone(),
            cmdline: entry.cmdline.clone(),
            detectors: entry.detectors.clone(),
            about: entry.about.clone(),
        },
    })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The build directory for a set of series in a profile: the default
/// (every series, default profile) keeps `out`; a subset (`--series`)
/// gets `out-<series>`, another profile `.<profile>` after that. Their
/// .config files differ, and one shared directory rebuilt everything on
/// every switch between them (60–300 s; a debug kernel far longer).
pub fn build_dir_for(out: &Path, series: Option<&[String]>, profile: &str) -> PathBuf {
    let name = out.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let mut dir = name.to_string();
    if let Some(names) = series {
        let mut names = names.to_vec();
        names.sort();
        names.dedup();
        dir = format!("{dir}-{}", names.join("+"));
    }
    if profile != DEFAULT {
        dir = format!("{dir}.{profile}");
    }
    out.with_file_name(dir)
}

/// The profile a build directory is for, from its name (`out-x.debug`
/// → `debug`; no suffix → the default).
fn profile_of_dir(name: &str) -> &str {
    match name.rsplit_once('.') {
        Some((_, p)) => p,
        None => DEFAULT,
    }
}

/// A complete build directory of the same profile beside `target` (a
/// build of another set of series), to start `target` from: kbuild then
/// rebuilds only what the other tree and configuration change, instead of
/// everything (a debug kernel takes most of an hour on two cores).
pub fn seed_for(target: &Path, profile: &str) -> Option<PathBuf> {
    if target.exists() {
        return None;
    }
    let parent = target.parent()?;
    let mut candidates: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(parent)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let p = e.path();
            let complete = p.join(".config").is_file() && p.join("vmlinux").is_file();
            (name.starts_with("out") && profile_of_dir(&name) == profile && complete)
                .then(|| Some((p.join("vmlinux").metadata().ok()?.modified().ok()?, p)))
                .flatten()
        })
        .collect();
    candidates.sort();
    candidates.pop().map(|(_, p)| p)
}

/// The commit to build: `head` itself for a profile without patches,
/// else `head` with the profile's patches on top, made once in the
/// apply work tree and kept under a ref named by what went in.
pub fn commit_on(git: &Git, head: &str, profile: &Profile) -> Result<String, KbuildError> {
    if profile.patches.is_empty() {
        return Ok(head.to_string());
    }
    let mut h = Sha256::new();
    h.update(head.as_bytes());
    for p in &profile.patches {
        let bytes = std::fs::read(p).map_err(|e| KbuildError::io("read", p, e))?;
        h.update(Sha256::digest(&bytes));
    }
    let key = hex(&h.finalize());
    let key_ref = format!("refs/gasbench/profile/{}", &key[..32]);
    if let Some(c) = git.rev_parse(&key_ref)? {
        return Ok(c);
    }
    let _ = git.run(&["am", "--abort"]);
    git.ok(&["checkout", "--quiet", "--force", "--detach", head])?;
    for p in &profile.patches {
        let file = p.display().to_string();
        let out = git.run(&["am", "--quiet", "--committer-date-is-author-date", &file])?;
        if !out.ok {
            let _ = git.run(&["am", "--abort"]);
            return Err(KbuildError::ProfilePatch {
                profile: profile.name.clone(),
                patch: p.clone(),
                detail: crate::git::tail(out.stderr.trim(), 10),
            });
        }
    }
    let commit = git.rev_parse("HEAD")?.unwrap_or_default();
    git.ok(&["update-ref", &key_ref, &commit])?;
    Ok(commit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_set_of_series_and_profile_builds_in_its_own_directory() {
        let out = Path::new("/cache/kernel/trees/7.2.12-x/out");
        assert_eq!(build_dir_for(out, None, DEFAULT), out);
        let one = build_dir_for(out, Some(&["mkdirat2-v2".to_string()]), DEFAULT);
        assert_eq!(
            one,
            Path::new("/cache/kernel/trees/7.2.12-x/out-mkdirat2-v2")
        );
        // The order the series were named in does not matter.
        let a = build_dir_for(out, Some(&["b-v1".into(), "a-v2".into()]), DEFAULT);
        let b = build_dir_for(
            out,
            Some(&["a-v2".into(), "b-v1".into(), "a-v2".into()]),
            DEFAULT,
        );
        assert_eq!(a, b);
        assert_eq!(a, Path::new("/cache/kernel/trees/7.2.12-x/out-a-v2+b-v1"));
        // Profiles: their own directories, for every set of series.
        assert_eq!(
            build_dir_for(out, None, "debug"),
            Path::new("/cache/kernel/trees/7.2.12-x/out.debug")
        );
        assert_eq!(
            build_dir_for(out, Some(&["mkdirat2-v2".to_string()]), "race"),
            Path::new("/cache/kernel/trees/7.2.12-x/out-mkdirat2-v2.race")
        );
    }

    #[test]
    fn a_new_build_directory_starts_from_a_complete_one_of_its_profile() {
        let dir = tempfile::tempdir().unwrap();
        let mk = |name: &str, complete: bool| {
            let p = dir.path().join(name);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join(".config"), "").unwrap();
            if complete {
                std::fs::write(p.join("vmlinux"), "").unwrap();
            }
        };
        mk("out", true);
        mk("out.debug", true);
        mk("out-a.race", false);
        let t = |n: &str| dir.path().join(n);
        assert_eq!(
            seed_for(&t("out-mkdirat2-v2.debug"), "debug"),
            Some(t("out.debug"))
        );
        assert_eq!(seed_for(&t("out-mkdirat2-v2"), DEFAULT), Some(t("out")));
        // Half-built siblings are no seed; an existing directory needs none.
        assert_eq!(seed_for(&t("out-b.race"), "race"), None);
        assert_eq!(seed_for(&t("out.debug"), "debug"), None);
    }

    #[test]
    fn profile_names_are_plain() {
        assert!(valid_name("debug"));
        assert!(valid_name("race-2"));
        for bad in ["", "Debug", "../x", "a b", "a.b", &"x".repeat(33)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
