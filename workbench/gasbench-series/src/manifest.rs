//! Manifests: what a series directory holds (`series.toml`) and what a
//! port onto a base adds (`port.toml`).
//!
//! A series directory keeps the series *as posted*: one git-am-able file
//! per patch, the cover letter, and `series.toml` saying where each came
//! from. A port directory keeps what applying it to one base needed:
//! replacements for posted patches that do not apply there (same added
//! lines, context refreshed) and fixup patches that follow the posted
//! ones. Fixups are never folded into posted patches, so a reviewer sees
//! exactly what the posting lacked and what the base changed.

use serde::{Deserialize, Serialize};

use crate::render::{COVER_FILE, patch_file_name, sha256_hex};
use crate::series::{EmailSource, IdSource, Series, send_email_id};
use crate::{Error, Result, Span};

/// The input the series was extracted from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// As given (a path relative to the repository, or a URL).
    pub file: String,
    pub sha256: String,
    /// `public-inbox-digest`, `mbox`, `single-message`.
    pub format: String,
    /// The archive's title line, for digests (`Linux userland API discussions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Author {
    pub name: String,
    pub email: String,
    pub email_source: EmailSource,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoverEntry {
    pub subject: String,
    pub date: String,
    pub message_id: String,
    pub message_id_source: IdSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<String>,
    pub file: String,
    /// First and last line in the source.
    pub source_lines: [usize; 2],
}

/// How a patch file came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PatchOrigin {
    /// Extracted from the source; the diff is byte-identical.
    Posted,
    /// Not in the source: written by hand from quotes and from how later
    /// patches use it. Not the posted bytes.
    Reconstructed,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchEntry {
    pub index: u32,
    pub subject: String,
    pub file: String,
    pub origin: PatchOrigin,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    pub message_id: String,
    pub message_id_source: IdSource,
    /// What git send-email would have called it, given the cover's id:
    /// a lead for finding the original on lore, not a fact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id_guess: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<String>,
    /// sha256 of the diff as posted (posted patches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_sha256: Option<String>,
    /// Files the patch touches.
    pub files: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_lines: Option<[usize; 2]>,
    /// For reconstructed patches: what it was rebuilt from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconstructed_from: Option<String>,
}

/// `series.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesManifest {
    pub name: String,
    pub title: String,
    pub version: u32,
    pub tags: Vec<String>,
    pub total: u32,
    pub author: Author,
    /// Mailing lists it was sent to.
    pub lists: Vec<String>,
    pub source: SourceInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cover: Option<CoverEntry>,
    /// The series' `base-commit:` trailer: the commit it was made on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_commit: Option<String>,
    /// In application order.
    #[serde(rename = "patch")]
    pub patches: Vec<PatchEntry>,
}

/// A hand-made stand-in for a patch the source lacks.
#[derive(Clone, Debug)]
pub struct Reconstruction {
    pub index: u32,
    pub subject: String,
    pub file: String,
    pub files: Vec<String>,
    pub message_id: String,
    pub note: String,
}

impl SeriesManifest {
    /// Describe `series` as extracted from `source` (the source text is
    /// needed for line numbers).
    pub fn from_series(
        series: &Series,
        name: &str,
        source: SourceInfo,
        source_text: &str,
        reconstructions: &[Reconstruction],
    ) -> Result<SeriesManifest> {
        let lines_of = |span: Span| {
            let (a, b) = span.lines_in(source_text);
            [a, b]
        };
        let root = series.thread_root();
        let mut patches: Vec<PatchEntry> = series
            .patches
            .iter()
            .map(|p| PatchEntry {
                index: p.subject.index,
                subject: p.message.subject.clone(),
                file: patch_file_name(p.subject.index, &p.subject.title),
                origin: PatchOrigin::Posted,
                date: Some(p.message.date.to_rfc5322()),
                message_id: p.message_id.clone(),
                message_id_source: p.id_source,
                message_id_guess: (p.id_source == IdSource::Synthesized)
                    .then(|| root.and_then(|r| send_email_id(r, p.subject.index)))
                    .flatten(),
                in_reply_to: p.message.in_reply_to.clone(),
                diff_sha256: Some(sha256_hex(p.diff_text().as_bytes())),
                files: p.files.iter().map(|f| f.path().to_string()).collect(),
                source_lines: Some(lines_of(p.message.span)),
                reconstructed_from: None,
            })
            .collect();
        for m in &series.missing {
            let Some(r) = reconstructions.iter().find(|r| r.index == m.index) else {
                return Err(Error::NotASeries {
                    reason: format!(
                        "patch {}/{} of {:?} is missing from the source and no reconstruction was given",
                        m.index, series.total, series.title
                    ),
                    span: m.quotes.first().map(|q| q.span),
                });
            };
            patches.push(PatchEntry {
                index: r.index,
                subject: r.subject.clone(),
                file: r.file.clone(),
                origin: PatchOrigin::Reconstructed,
                date: None,
                message_id: r.message_id.clone(),
                message_id_source: IdSource::Synthesized,
                message_id_guess: m.message_id.clone(),
                in_reply_to: root.map(str::to_string),
                diff_sha256: None,
                files: r.files.clone(),
                source_lines: m.quotes.first().map(|q| lines_of(q.span)),
                reconstructed_from: Some(r.note.clone()),
            });
        }
        patches.sort_by_key(|p| p.index);
        Ok(SeriesManifest {
            name: name.to_string(),
            title: series.title.clone(),
            version: series.version,
            tags: series.tags.clone(),
            total: series.total,
            author: Author {
                name: series.author.name.clone(),
                email: series.author.email.clone().unwrap_or_default(),
                email_source: series.email_source,
            },
            lists: series.lists.clone(),
            base_commit: series.base_commit(),
            source,
            cover: series.cover.as_ref().map(|c| CoverEntry {
                subject: c.message.subject.clone(),
                date: c.message.date.to_rfc5322(),
                message_id: c.message_id.clone(),
                message_id_source: c.id_source,
                in_reply_to: c.message.in_reply_to.clone(),
                file: COVER_FILE.to_string(),
                source_lines: lines_of(c.message.span),
            }),
            patches,
        })
    }

    pub fn to_toml(&self) -> String {
        let body = toml::to_string_pretty(self).expect("manifest serializes");
        format!(
            "# Written by `gasbench kernel extract`; the patch files beside it are\n\
             # the series as posted (diffs byte-identical to the source).\n{body}"
        )
    }

    pub fn parse(text: &str) -> Result<SeriesManifest> {
        toml::from_str(text).map_err(|e| manifest_error(text, e))
    }
}

fn manifest_error(text: &str, e: toml::de::Error) -> Error {
    let span = e
        .span()
        .map(|r| Span::new(r.start, r.end.saturating_sub(r.start)))
        .unwrap_or(Span::new(0, text.len().min(1)));
    Error::BadHeader {
        what: format!("bad manifest: {}", e.message()),
        span,
    }
}

/// Why a fixup exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FixupKind {
    /// The posting is wrong on any base (a build break in the posting
    /// itself, a patch missing from it).
    PostingDefect,
    /// The base moved on since the posting (API drift, a syscall number
    /// already taken).
    BaseDrift,
}

/// A posted patch that does not apply to the base, and what replaces it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replacement {
    /// The posted patch's index.
    pub index: u32,
    /// Relative to the port directory.
    pub file: String,
    pub why: String,
}

/// A patch applied after the posted ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fixup {
    /// Relative to the port directory.
    pub file: String,
    pub kind: FixupKind,
    /// The posted patches whose problem it fixes.
    pub fixes: Vec<u32>,
    pub why: String,
}

/// One series' part of a port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSeries {
    /// The series directory's name under `kernel/series/`.
    pub series: String,
    #[serde(default, rename = "replace")]
    pub replacements: Vec<Replacement>,
    #[serde(default, rename = "fixup")]
    pub fixups: Vec<Fixup>,
}

/// `port.toml`: how the series go onto one base, in application order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortManifest {
    /// The base release (`7.2.12`).
    pub base: String,
    #[serde(rename = "series")]
    pub series: Vec<PortSeries>,
}

impl PortManifest {
    pub fn parse(text: &str) -> Result<PortManifest> {
        toml::from_str(text).map_err(|e| manifest_error(text, e))
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("manifest serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_manifest_round_trip_and_errors_point_at_the_line() {
        let text = r#"base = "7.2.12"

[[series]]
series = "mkdirat2-v2"

[[series.fixup]]
file = "mkdirat2-v2/0001-fix.patch"
kind = "posting-defect"
fixes = [1]
why = "missing semicolon"
"#;
        let m = PortManifest::parse(text).unwrap();
        assert_eq!(m.series[0].fixups[0].kind, FixupKind::PostingDefect);
        assert!(m.series[0].replacements.is_empty());
        assert_eq!(PortManifest::parse(&m.to_toml()).unwrap(), m);

        let bad = text.replace("posting-defect", "whatever");
        let err = PortManifest::parse(&bad).unwrap_err();
        let span = err.span().unwrap();
        assert!(bad[span.offset..span.end()].contains("whatever"), "{err}");
    }
}
