//! The repository's `kernel/` directory: the base pin, the config
//! fragments, the series as posted and the port onto the base; and the
//! apply plan made from them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use gasbench_series::manifest::{FixupKind, PatchEntry, PatchOrigin, PortManifest, SeriesManifest};
use gasbench_series::parse_mail;
use serde::{Deserialize, Serialize};

pub use gasbench_events::kernel::PatchRole;

use crate::KbuildError;

/// `kernel/base.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BasePin {
    pub release: String,
    pub package: String,
    pub package_version: String,
    /// The tarball's path inside the runtime.
    pub tarball: String,
    pub tarball_sha256: String,
    pub top_dir: String,
    pub upstream_tag: String,
    /// The port directory, relative to `kernel/`.
    pub port: String,
    pub arch: String,
    pub make_vars: Vec<String>,
    pub full_build_lines: u64,
}

/// A config fragment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fragment {
    pub name: String,
    pub path: PathBuf,
    pub text: String,
}

/// The `kernel/` directory of a gasbench checkout.
#[derive(Clone, Debug)]
pub struct KernelDir {
    root: PathBuf,
    pub base: BasePin,
}

fn read(path: &Path) -> Result<String, KbuildError> {
    std::fs::read_to_string(path).map_err(|e| KbuildError::io("read", path, e))
}

impl KernelDir {
    /// Open `root` (a directory holding `base.toml`).
    pub fn open(root: &Path) -> Result<KernelDir, KbuildError> {
        let path = root.join("base.toml");
        let text = read(&path).map_err(|_| KbuildError::Layout {
            what: format!("{} has no base.toml", root.display()),
            path: Some(root.to_path_buf()),
        })?;
        let base: BasePin = toml::from_str(&text).map_err(|e| KbuildError::Layout {
            what: format!("{}: {}", path.display(), e.message()),
            path: Some(path.clone()),
        })?;
        let root = root
            .canonicalize()
            .map_err(|e| KbuildError::io("resolve", root, e))?;
        Ok(KernelDir { root, base })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `path` relative to `kernel/`, for reports.
    pub fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    /// The fragments under `config/`, in file-name order.
    pub fn fragments(&self) -> Result<Vec<Fragment>, KbuildError> {
        let dir = self.root.join("config");
        let mut out = Vec::new();
        let entries = std::fs::read_dir(&dir).map_err(|e| KbuildError::io("read", &dir, e))?;
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "config") {
                out.push(Fragment {
                    name: e.file_name().to_string_lossy().into_owned(),
                    text: read(&path)?,
                    path,
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        if out.is_empty() {
            return Err(KbuildError::Layout {
                what: format!("{} has no *.config fragments", dir.display()),
                path: Some(dir),
            });
        }
        Ok(out)
    }

    pub fn series_dir(&self, name: &str) -> PathBuf {
        self.root.join("series").join(name)
    }

    /// The text of each patch of `series` (the manifest of the series
    /// directory `name`) that can be read, with its entry, in the series'
    /// order: a caller reads them once and hands them to every check.
    pub fn patch_texts<'m>(
        &self,
        name: &str,
        series: &'m SeriesManifest,
    ) -> Vec<(&'m PatchEntry, String)> {
        let dir = self.series_dir(name);
        series
            .patches
            .iter()
            .filter_map(|p| Some((p, std::fs::read_to_string(dir.join(&p.file)).ok()?)))
            .collect()
    }

    pub fn series(&self, name: &str) -> Result<SeriesManifest, KbuildError> {
        let path = self.series_dir(name).join("series.toml");
        let text = read(&path)?;
        SeriesManifest::parse(&text)
            .map_err(|e| KbuildError::series(&self.relative(&path), &text, e))
    }

    /// Every series directory's name, sorted.
    pub fn all_series(&self) -> Result<Vec<String>, KbuildError> {
        let dir = self.root.join("series");
        let mut out: Vec<String> = std::fs::read_dir(&dir)
            .map_err(|e| KbuildError::io("read", &dir, e))?
            .flatten()
            .filter(|e| e.path().join("series.toml").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        out.sort();
        Ok(out)
    }

    /// Kconfig symbols the series' patches add (`config FOO` lines added
    /// to a Kconfig file), from its patch files as posted or reconstructed.
    pub fn symbols_added_by(&self, name: &str) -> Result<BTreeSet<String>, KbuildError> {
        let manifest = self.series(name)?;
        let dir = self.series_dir(name);
        let mut out = BTreeSet::new();
        for p in &manifest.patches {
            out.extend(kconfig_symbols_added(&read(&dir.join(&p.file))?));
        }
        Ok(out)
    }

    /// The fragments for a build of `only` (series names): a symbol that
    /// only a series left out of the build adds (the goldfish driver's
    /// `GOLDFISH_ADDRESS_SPACE` in a mkdirat2-only build) cannot be set,
    /// so its fragment line is left out rather than reported as a
    /// configuration error. Returns the fragments and, per symbol left
    /// out, the series that adds it.
    pub fn fragments_for(
        &self,
        only: &[String],
    ) -> Result<(Vec<Fragment>, BTreeMap<String, String>), KbuildError> {
        let mut fragments = self.fragments()?;
        let mut kept = BTreeSet::new();
        let mut others: BTreeMap<String, String> = BTreeMap::new();
        for name in self.all_series()? {
            let added = self.symbols_added_by(&name)?;
            if only.contains(&name) {
                kept.extend(added);
            } else {
                for s in added {
                    others.entry(s).or_insert_with(|| name.clone());
                }
            }
        }
        others.retain(|s, _| !kept.contains(s));
        let mut left_out = BTreeMap::new();
        for f in &mut fragments {
            let mut text = String::new();
            for line in f.text.lines() {
                let symbol = crate::kconfig::parse_fragment(line, &f.name)
                    .into_iter()
                    .next()
                    .map(|r| r.symbol);
                match symbol
                    .as_ref()
                    .and_then(|s| others.get(s).map(|by| (s, by)))
                {
                    Some((s, by)) => {
                        text.push_str(&format!(
                            "# CONFIG_{s}: left out, {by} adds it and is not in this build\n"
                        ));
                        left_out.insert(s.clone(), by.clone());
                    }
                    None => {
                        text.push_str(line);
                        text.push('\n');
                    }
                }
            }
            f.text = text;
        }
        Ok((fragments, left_out))
    }

    /// The port onto the pinned base: its directory and manifest.
    pub fn port(&self) -> Result<(PathBuf, PortManifest), KbuildError> {
        self.port_at(&self.root.join(&self.base.port))
    }

    /// The port in `dir`.
    pub fn port_at(&self, dir: &Path) -> Result<(PathBuf, PortManifest), KbuildError> {
        let path = dir.join("port.toml");
        let text = read(&path)?;
        let m = PortManifest::parse(&text)
            .map_err(|e| KbuildError::series(&self.relative(&path), &text, e))?;
        Ok((dir.to_path_buf(), m))
    }

    /// The port for `release`, if `kernel/port/v<release>` exists.
    pub fn port_for(&self, release: &str) -> Result<Option<(PathBuf, PortManifest)>, KbuildError> {
        let dir = self.root.join("port").join(format!("v{release}"));
        if dir.join("port.toml").is_file() {
            Ok(Some(self.port_at(&dir)?))
        } else {
            Ok(None)
        }
    }

    /// The apply plan: each series' posted patches in order (a failing one
    /// replaced by the port's replacement, if any), then its fixups.
    /// `port` None applies the posted series only. `only` limits the
    /// series (by directory name).
    pub fn plan(
        &self,
        port: Option<&(PathBuf, PortManifest)>,
        only: Option<&[String]>,
    ) -> Result<Plan, KbuildError> {
        let names: Vec<String> = match port {
            Some((_, m)) => m.series.iter().map(|s| s.series.clone()).collect(),
            None => self.all_series()?,
        };
        if let Some(only) = only {
            for o in only {
                if !names.contains(o) {
                    return Err(KbuildError::Layout {
                        what: format!("no series {o:?} (have: {})", names.join(", ")),
                        path: None,
                    });
                }
            }
        }
        let mut steps = Vec::new();
        for name in names {
            if only.is_some_and(|o| !o.contains(&name)) {
                continue;
            }
            let manifest = self.series(&name)?;
            let sdir = self.series_dir(&name);
            let ps = port
                .and_then(|(dir, m)| m.series.iter().find(|s| s.series == name).map(|s| (dir, s)));
            for p in &manifest.patches {
                let role = match p.origin {
                    PatchOrigin::Posted => PatchRole::Posted,
                    PatchOrigin::Reconstructed => PatchRole::Reconstructed,
                };
                let replacement = match ps.and_then(|(dir, s)| {
                    s.replacements
                        .iter()
                        .find(|r| r.index == p.index)
                        .map(|r| (dir, r))
                }) {
                    Some((dir, r)) => {
                        let file = dir.join(&r.file);
                        Some(Box::new(Step {
                            series: name.clone(),
                            role: PatchRole::Replacement,
                            posted_index: Some(p.index),
                            subject: subject_of(&file)?,
                            rel: self.relative(&file),
                            file,
                            replacement: None,
                            why: Some(r.why.clone()),
                            kind: None,
                        }))
                    }
                    None => None,
                };
                let file = sdir.join(&p.file);
                steps.push(Step {
                    series: name.clone(),
                    role,
                    posted_index: Some(p.index),
                    subject: p.subject.clone(),
                    rel: self.relative(&file),
                    file,
                    replacement,
                    why: None,
                    kind: None,
                });
            }
            if let Some((dir, s)) = ps {
                for f in &s.fixups {
                    let file = dir.join(&f.file);
                    steps.push(Step {
                        series: name.clone(),
                        role: PatchRole::Fixup,
                        posted_index: None,
                        subject: subject_of(&file)?,
                        rel: self.relative(&file),
                        file,
                        replacement: None,
                        why: Some(f.why.clone()),
                        kind: Some(f.kind),
                    });
                }
            }
        }
        if steps.is_empty() {
            return Err(KbuildError::Layout {
                what: "the plan has no patches".into(),
                path: None,
            });
        }
        Ok(Plan { steps })
    }
}

/// Kconfig symbols a patch adds: `config FOO` / `menuconfig FOO` lines
/// added to a file named `Kconfig*`.
pub fn kconfig_symbols_added(patch: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut in_kconfig = false;
    for line in patch.lines() {
        if let Some(path) = line.strip_prefix("+++ ") {
            let name = path.trim().rsplit('/').next().unwrap_or("");
            in_kconfig = name.starts_with("Kconfig");
            continue;
        }
        if line.starts_with("diff --git ") {
            in_kconfig = false;
            continue;
        }
        let Some(added) = line.strip_prefix('+').filter(|_| in_kconfig) else {
            continue;
        };
        let mut words = added.split_whitespace();
        if let (Some("config" | "menuconfig"), Some(sym)) = (words.next(), words.next()) {
            out.insert(sym.to_string());
        }
    }
    out
}

/// The Subject of a patch file.
pub fn subject_of(path: &Path) -> Result<String, KbuildError> {
    let text = read(path)?;
    let (_, msgs) = parse_mail(&text)
        .map_err(|e| KbuildError::series(&path.display().to_string(), &text, e))?;
    msgs.into_iter()
        .next()
        .map(|m| m.subject)
        .ok_or_else(|| KbuildError::Layout {
            what: format!("{} holds no message", path.display()),
            path: Some(path.to_path_buf()),
        })
}

/// One patch to apply.
#[derive(Clone, Debug)]
pub struct Step {
    pub series: String,
    pub role: PatchRole,
    pub posted_index: Option<u32>,
    pub subject: String,
    pub file: PathBuf,
    /// `file` relative to `kernel/`.
    pub rel: String,
    /// What to apply if this posted patch does not apply.
    pub replacement: Option<Box<Step>>,
    /// Why the port has this patch.
    pub why: Option<String>,
    pub kind: Option<FixupKind>,
}

/// Patches in application order.
#[derive(Clone, Debug)]
pub struct Plan {
    pub steps: Vec<Step>,
}

impl Plan {
    /// Every file the plan may apply (for hashing and bind mounts).
    pub fn files(&self) -> Vec<&Path> {
        let mut out = Vec::new();
        for s in &self.steps {
            out.push(s.file.as_path());
            if let Some(r) = &s.replacement {
                out.push(r.file.as_path());
            }
        }
        out
    }
}
