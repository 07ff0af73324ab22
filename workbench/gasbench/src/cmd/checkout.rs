//! What a run checked out, for its KCIDB submission: the pinned base (or
//! a `--base-tree`) and the patches of the series applied on it, as the
//! kernel/ directory records them.

use gasbench_kbuild::layout::KernelDir;
use gasbench_series::series::IdSource;
use gasbench_trace::kcidb::{Checkout, PatchFile};
use sha2::{Digest, Sha256};

/// The checkout of `series` (directory names) on the base of `kdir`.
pub fn of_series(kdir: &KernelDir, series: &[String]) -> Checkout {
    let base = &kdir.base;
    let mut c = Checkout {
        tree_name: format!(
            "{} ({} {})",
            base.release, base.package, base.package_version
        ),
        git_commit_hash: None,
        git_commit_name: Some(base.upstream_tag.clone()),
        ..Checkout::default()
    };
    for name in series {
        let Ok(m) = kdir.series(name) else { continue };
        let dir = kdir.series_dir(name);
        if c.message_id.is_none() {
            c.message_id = m
                .cover
                .as_ref()
                .map(|x| x.message_id.clone())
                .or_else(|| m.patches.first().map(|p| p.message_id.clone()));
            c.comment = m
                .cover
                .as_ref()
                .map(|x| x.subject.clone())
                .or_else(|| m.patches.first().map(|p| p.subject.clone()));
        }
        for p in &m.patches {
            let path = dir.join(&p.file);
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            // The archive's raw message when the id is the posting's own;
            // the file here otherwise (a reconstruction, a made-up id).
            let url = if p.message_id_source == IdSource::Header {
                format!("https://lore.kernel.org/all/{}/raw", p.message_id)
            } else {
                format!("file://{}", path.display())
            };
            c.patches.push(PatchFile {
                name: p.file.clone(),
                url,
                sha256: Sha256::digest(&bytes)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect(),
            });
        }
    }
    c
}

/// The checkout of every series of `kdir` (what `gasbench run` builds).
pub fn of_all(kdir: &KernelDir) -> Checkout {
    of_series(kdir, &kdir.all_series().unwrap_or_default())
}
