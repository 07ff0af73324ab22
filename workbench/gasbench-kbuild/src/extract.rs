//! `gasbench kernel extract`: series directories from a digest or mbox.
//!
//! Each series found becomes `OUT/<name>-v<version>/` with one
//! git-am-able file per posted patch, the cover letter and `series.toml`.
//! A patch the source lacks must already be there as a hand-written
//! reconstruction (a file `000k-*.patch` with an `X-Gasbench-Reconstructed`
//! header); extraction keeps it and records it, and refuses to write a
//! series with a hole in it.

use std::path::{Path, PathBuf};

use gasbench_series::manifest::{Reconstruction, SeriesManifest, SourceInfo};
use gasbench_series::render::{
    COVER_FILE, Provenance, patch_file_name, render_cover, render_patch, sha256_hex,
};
use gasbench_series::{digest, find_series, parse_mail};

use crate::KbuildError;

/// What one extraction wrote.
#[derive(Clone, Debug)]
pub struct Extracted {
    pub dir: PathBuf,
    pub manifest: SeriesManifest,
    /// Files written (patches, cover, manifest); reconstructions are kept.
    pub written: Vec<PathBuf>,
}

/// Extract every series of `source` (its text given) into `out`.
/// `label` is how the manifest names the source (a repo-relative path).
pub fn extract(source: &str, label: &str, out: &Path) -> Result<Vec<Extracted>, KbuildError> {
    extract_selected(source, label, out, |_| true)
}

/// Extract the series of `source` whose directory name (`mkdirat2-v2`,
/// see [`series_dir_name`]) `keep` accepts; the others are not written,
/// so one that cannot be extracted (a patch missing) does not stop them.
pub fn extract_selected(
    source: &str,
    label: &str,
    out: &Path,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<Extracted>, KbuildError> {
    let (format, messages) =
        parse_mail(source).map_err(|e| KbuildError::series(label, source, e))?;
    let series = find_series(&messages).map_err(|e| KbuildError::series(label, source, e))?;
    let info = SourceInfo {
        file: label.to_string(),
        sha256: sha256_hex(source.as_bytes()),
        format: serde_json::to_value(format)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        archive: (format == gasbench_series::MailFormat::PublicInboxDigest)
            .then(|| digest::archive_title(source))
            .flatten(),
    };
    let mut done = Vec::new();
    for s in &series {
        let name = series_dir_name(s);
        if !keep(&name) {
            continue;
        }
        let dir = out.join(&name);
        std::fs::create_dir_all(&dir).map_err(|e| KbuildError::io("create", &dir, e))?;
        let mut recon = Vec::new();
        for m in &s.missing {
            recon.push(find_reconstruction(
                &dir, m.index, s.total, &s.title, label, source,
            )?);
        }
        let manifest = SeriesManifest::from_series(s, &name, info.clone(), source, &recon)
            .map_err(|e| KbuildError::series(label, source, e))?;
        let mut written = Vec::new();
        for p in &s.patches {
            let (a, b) = p.message.span.lines_in(source);
            let prov = Provenance {
                source: format!("{label} lines {a}-{b}"),
            };
            let path = dir.join(patch_file_name(p.subject.index, &p.subject.title));
            write(&path, &render_patch(s, p, &prov))?;
            written.push(path);
        }
        if let Some(c) = &s.cover {
            let (a, b) = c.message.span.lines_in(source);
            let prov = Provenance {
                source: format!("{label} lines {a}-{b}"),
            };
            let path = dir.join(COVER_FILE);
            write(&path, &render_cover(s, c, &prov))?;
            written.push(path);
        }
        let path = dir.join("series.toml");
        write(&path, &manifest.to_toml())?;
        written.push(path);
        done.push(Extracted {
            dir,
            manifest,
            written,
        });
    }
    Ok(done)
}

/// The directory a series is extracted to: `<suggested name>-v<version>`.
pub fn series_dir_name(s: &gasbench_series::Series) -> String {
    format!("{}-v{}", s.suggested_name(), s.version)
}

fn write(path: &Path, text: &str) -> Result<(), KbuildError> {
    std::fs::write(path, text).map_err(|e| KbuildError::io("write", path, e))
}

/// The hand-written stand-in for missing patch `index` in `dir`.
fn find_reconstruction(
    dir: &Path,
    index: u32,
    total: u32,
    title: &str,
    label: &str,
    source: &str,
) -> Result<Reconstruction, KbuildError> {
    let prefix = format!("{index:04}-");
    let missing = || KbuildError::MissingPatch {
        index,
        total,
        series: title.to_string(),
        origin: label.to_string(),
        dir: dir.to_path_buf(),
    };
    let entries = std::fs::read_dir(dir).map_err(|e| KbuildError::io("read", dir, e))?;
    let mut found = None;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) && name.ends_with(".patch") {
            found = Some((name, e.path()));
        }
    }
    let (file, path) = found.ok_or_else(missing)?;
    let text = std::fs::read_to_string(&path).map_err(|e| KbuildError::io("read", &path, e))?;
    let (_, msgs) = parse_mail(&text).map_err(|e| KbuildError::series(&file, &text, e))?;
    let msg = msgs.into_iter().next().ok_or_else(missing)?;
    let note = text
        .lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix("X-Gasbench-Reconstructed:"))
        .map(|s| s.trim().to_string())
        .ok_or_else(|| KbuildError::NotReconstruction { path: path.clone() })?;
    let files = gasbench_series::patch::PatchBody::split(&msg.body)
        .and_then(|p| gasbench_series::patch::parse_diff(&msg.body[p.diff]).ok())
        .map(|f| f.iter().map(|f| f.path().to_string()).collect())
        .unwrap_or_default();
    let _ = source;
    Ok(Reconstruction {
        index,
        subject: msg.subject,
        file,
        files,
        message_id: msg.message_id.unwrap_or_default(),
        note,
    })
}
