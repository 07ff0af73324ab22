//! The build cache: a finished build directory is reused only once checked
//! against its manifest; staging directories a killed gasbench left and
//! builds past the newest few are removed.

use super::*;

/// Sizes and hashes recorded for a build whose manifest predates them.
pub(crate) const LEGACY_CHECKED: &str = "checked.json";

/// What the build directory for a request holds.
pub(crate) enum Reuse {
    Hit(Box<KernelArtifacts>),
    /// No complete build (no manifest): build.
    Missing,
    /// A build whose artifacts no longer match their manifest: why.
    Damaged(String),
}

/// The build in `dir`, checked against its manifest. A manifest from
/// before sizes and hashes were kept is checked as far as it can be (the
/// files are there, the image is a whole bzImage), and what it has now is
/// recorded beside it (`checked.json`: the manifest itself is left as it
/// is, for the gasbench that wrote it).
pub(crate) fn reuse(dir: &Path) -> Reuse {
    let mpath = dir.join("manifest.json");
    let Ok(text) = std::fs::read_to_string(&mpath) else {
        return if dir.exists() {
            Reuse::Damaged("it has no manifest".into())
        } else {
            Reuse::Missing
        };
    };
    let mut manifest: BuildManifest = match serde_json::from_str(&text) {
        Ok(m) => m,
        Err(e) => return Reuse::Damaged(format!("manifest.json does not parse: {e}")),
    };
    let on_disk = manifest.artifacts.clone();
    manifest.artifacts = on_disk.resolved_in(dir);
    let a = &manifest.artifacts;
    let sidecar = dir.join(LEGACY_CHECKED);
    if manifest.checked.is_empty() {
        manifest.checked = std::fs::read_to_string(&sidecar)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
    }
    if manifest.checked.is_empty() {
        let all = [&a.bzimage, &a.config, &a.system_map, &a.headers];
        if let Some(p) = all
            .into_iter()
            .chain(a.selftest.as_ref())
            .find(|p| !p.exists())
        {
            return Reuse::Damaged(format!("{} is missing", p.display()));
        }
        if let Err(e) = bzimage::check(&a.bzimage) {
            return Reuse::Damaged(e.to_string());
        }
        match manifest::record(dir, &a.checked_paths(dir)) {
            Ok(c) => manifest.checked = c,
            Err(e) => return Reuse::Damaged(e.to_string()),
        }
        // Best effort: the next reuse checks against it.
        if let Ok(text) = serde_json::to_string_pretty(&manifest.checked) {
            let tmp = dir.join(format!(".{LEGACY_CHECKED}.tmp-{}", std::process::id()));
            if std::fs::write(&tmp, text).is_ok() {
                let _ = std::fs::rename(&tmp, &sidecar);
            }
        }
    } else if let Err(why) = manifest::verify(dir, &manifest.checked) {
        return Reuse::Damaged(why);
    }
    // The image itself, whatever the manifest says.
    if let Err(e) = bzimage::check(&a.bzimage) {
        return Reuse::Damaged(e.to_string());
    }
    // vmlinux is too big to hash on every reuse (a debug one is hundreds
    // of MiB); that it is there is what decoding needs.
    if let Some(v) = &manifest.artifacts.vmlinux
        && !v.exists()
    {
        return Reuse::Damaged(format!("{} is missing", v.display()));
    }
    // Pruning keeps the builds used last, not those made last: mark this
    // one used (best effort).
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.set_modified(std::time::SystemTime::now());
    }
    let a = &manifest.artifacts;
    Reuse::Hit(Box::new(KernelArtifacts {
        bzimage: a.bzimage.clone(),
        release: manifest.kernel_release.clone(),
        config: a.config.clone(),
        system_map: a.system_map.clone(),
        headers: a.headers.clone(),
        selftest: a.selftest.clone(),
        mkdirat2_syscall: manifest.mkdirat2_syscall,
        manifest_path: dir.join("manifest.json"),
        manifest: manifest.clone(),
        reused: true,
        src: PathBuf::new(),
    }))
}

pub(crate) fn emit_artifacts(sink: &EventSink, a: &ArtifactPaths) {
    for (kind, path) in [
        ("bzImage", Some(&a.bzimage)),
        ("config", Some(&a.config)),
        ("system_map", Some(&a.system_map)),
        ("headers", Some(&a.headers)),
        ("selftest", a.selftest.as_ref()),
        ("build_log", Some(&a.build_log)),
        ("vmlinux", a.vmlinux.as_ref()),
    ] {
        let Some(path) = path else { continue };
        sink.emit(KernelEvent::Artifact {
            kind: kind.into(),
            path: path.display().to_string(),
        });
    }
}

/// Removes a directory when dropped, unless disarmed.
pub(crate) struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    pub(crate) fn new(dir: PathBuf) -> RemoveOnDrop {
        RemoveOnDrop(Some(dir))
    }

    pub(crate) fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// Remove staging directories (`.staging-<key>-<pid>`) whose gasbench is
/// gone: one that was killed outright had no chance to.
pub(crate) fn remove_abandoned_staging(builds: &Path) {
    let Ok(entries) = std::fs::read_dir(builds) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(".staging-")
            .and_then(|rest| rest.rsplit_once('-'))
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// How many finished builds the cache keeps: every profile and set of
/// series a user switches between (default, debug, race, each series on
/// its own) stays, the ones unused longest go.
pub(crate) const BUILDS_KEPT: usize = 12;

/// Keep the `keep` build directories used last (a reuse marks its
/// directory's time).
pub(crate) fn prune_builds(dir: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut builds: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    builds.sort();
    let n = builds.len().saturating_sub(keep);
    for (_, p) in builds.into_iter().take(n) {
        let _ = std::fs::remove_dir_all(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{self, Timings, Toolchain};
    use crate::report::ApplyReport;

    /// A complete build directory as the kernel stage leaves it, with a
    /// manifest whose paths are absolute (as before they were relative)
    /// and no checksums.
    fn legacy_build(dir: &Path) {
        std::fs::create_dir_all(dir.join("headers/include/linux")).unwrap();
        std::fs::create_dir_all(dir.join("selftests")).unwrap();
        let mut img = vec![0u8; 32 * 512];
        img[0x1f1] = 31;
        img[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        std::fs::write(dir.join("bzImage"), &img).unwrap();
        std::fs::write(dir.join("config"), "CONFIG_RUST=y\n").unwrap();
        std::fs::write(dir.join("System.map"), "0 T _text\n").unwrap();
        std::fs::write(dir.join("headers/include/linux/a.h"), "int a;\n").unwrap();
        std::fs::write(dir.join("selftests/mkdirat_fd_test"), "ELF").unwrap();
        std::fs::write(dir.join("build.log"), "ok\n").unwrap();
        let old = Path::new("/elsewhere/kernel/builds").join(dir.file_name().unwrap());
        let m = BuildManifest {
            kernel_release: "7.2.12-gasbench".into(),
            base: "b".into(),
            base_commit: "c".into(),
            head: "h".into(),
            local_changes_sha256: String::new(),
            build_key: "k".into(),
            arch: "x86_64".into(),
            make_vars: vec![],
            config_sha256: "s".into(),
            config_mismatches: vec![],
            config_fragments: vec![],
            apply: ApplyReport::default(),
            toolchain: Toolchain {
                versions: Default::default(),
                runtime: "toolroot".into(),
            },
            timings: Timings::default(),
            artifacts: ArtifactPaths {
                bzimage: old.join("bzImage"),
                config: old.join("config"),
                system_map: old.join("System.map"),
                headers: old.join("headers/include"),
                selftest: Some(old.join("selftests/mkdirat_fd_test")),
                build_log: old.join("build.log"),
                vmlinux: None,
            },
            mkdirat2_syscall: Some(472),
            kbuild_steps: 1,
            per_patch: vec![],
            profile: crate::profile::ProfileInfo::default_profile(),
            checked: vec![],
        };
        std::fs::write(
            dir.join("manifest.json"),
            serde_json::to_string_pretty(&m).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn pruning_keeps_the_builds_used_last() {
        let cache = tempfile::tempdir().unwrap();
        let dir = |n: &str| cache.path().join(n);
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for (i, n) in ["0000000000000001", "0000000000000002", "0000000000000003"]
            .iter()
            .enumerate()
        {
            legacy_build(&dir(n));
            // Checked once (which records checked.json beside it), then
            // made an hour ago, a minute apart, oldest first.
            assert!(matches!(reuse(&dir(n)), Reuse::Hit(_)));
            let t = old + std::time::Duration::from_secs(60 * i as u64);
            std::fs::File::open(dir(n))
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        // The oldest is the one used now.
        assert!(matches!(reuse(&dir("0000000000000001")), Reuse::Hit(_)));
        prune_builds(cache.path(), 2);
        assert!(dir("0000000000000001").exists(), "used last: kept");
        assert!(!dir("0000000000000002").exists(), "unused longest: pruned");
        assert!(dir("0000000000000003").exists());
    }

    #[test]
    fn a_moved_build_is_reused_checked_and_a_damaged_one_is_named() {
        let cache = tempfile::tempdir().unwrap();
        let dir = cache.path().join("0123456789abcdef");
        legacy_build(&dir);
        // Moved from /elsewhere, checksums recorded on first use.
        let Reuse::Hit(a) = reuse(&dir) else {
            panic!("a whole legacy build is reused")
        };
        assert_eq!(a.bzimage, dir.join("bzImage"));
        assert_eq!(a.headers, dir.join("headers/include"));
        // The manifest is left as its gasbench wrote it; what was found is
        // recorded beside it.
        let text = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
        assert!(text.contains("/elsewhere"), "{text}");
        let checked: Vec<manifest::Checked> =
            serde_json::from_str(&std::fs::read_to_string(dir.join("checked.json")).unwrap())
                .unwrap();
        assert_eq!(checked.len(), 5);
        let Reuse::Hit(again) = reuse(&dir) else {
            panic!("reused again")
        };
        assert_eq!(again.manifest.checked, checked);

        // A bit flipped in the selftest, then the image cut short.
        std::fs::write(dir.join("selftests/mkdirat_fd_test"), "ELG").unwrap();
        match reuse(&dir) {
            Reuse::Damaged(why) => assert!(
                why.starts_with("selftests/mkdirat_fd_test has sha256"),
                "{why}"
            ),
            _ => panic!("damage goes unnoticed"),
        }
        std::fs::write(dir.join("selftests/mkdirat_fd_test"), "ELF").unwrap();
        assert!(matches!(reuse(&dir), Reuse::Hit(_)));
        let img = std::fs::read(dir.join("bzImage")).unwrap();
        std::fs::write(dir.join("bzImage"), &img[..1000]).unwrap();
        match reuse(&dir) {
            Reuse::Damaged(why) => assert_eq!(
                why,
                format!("bzImage has 1000 bytes, the manifest says {}", img.len())
            ),
            _ => panic!("a truncated image goes unnoticed"),
        }
        // A legacy build with a truncated image is not trusted either.
        let other = cache.path().join("fedcba9876543210");
        legacy_build(&other);
        std::fs::write(other.join("bzImage"), &img[..1000]).unwrap();
        match reuse(&other) {
            Reuse::Damaged(why) => assert!(why.contains("truncated"), "{why}"),
            _ => panic!("a truncated legacy image is reused"),
        }
        assert!(matches!(reuse(&cache.path().join("none")), Reuse::Missing));
    }
}
