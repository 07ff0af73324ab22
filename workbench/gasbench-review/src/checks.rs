//! b4's review check commands (`b4.review-perpatch-check-cmd`,
//! `b4.review-series-check-cmd`): b4 pipes one message (a patch, or the
//! cover letter for the series check) to the command and reads a JSON
//! array of `{tool, status, summary, url, details}` back, `status` being
//! `pass`, `warn` or `fail`.
//!
//! gasbench answers from the review it keeps of the series: every
//! `repro` registers its review under the Message-Ids of the cover letter
//! and each patch, and under each patch's patch-id (so a patch re-sent
//! under a new Message-Id with the same diff is still found). This module
//! is the index and the answer; the binary reads stdin and runs a repro
//! when asked to.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::report::{Review, Severity};

/// One entry of b4's check protocol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    pub tool: String,
    /// `pass`, `warn` or `fail`.
    pub status: String,
    pub summary: String,
    pub url: String,
    pub details: String,
}

/// The tool name b4 shows.
pub const TOOL: &str = "gasbench";

/// A patch-id for a diff, computed the way `git patch-id --stable` is in
/// spirit: whitespace, `index` lines and hunk line numbers do not count,
/// so the same change re-sent (rebased, re-wrapped context) keeps it.
pub fn patch_id(diff: &str) -> String {
    let mut h = Sha256::new();
    for line in diff.lines() {
        if line.starts_with("index ") {
            continue;
        }
        let line = if line.starts_with("@@") {
            // `@@ -a,b +c,d @@ section`: keep only that it is a hunk.
            "@@"
        } else {
            line
        };
        let squeezed: String = line.chars().filter(|c| !c.is_whitespace()).collect();
        if !squeezed.is_empty() {
            h.update(squeezed.as_bytes());
            h.update(b"\n");
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Where a review is and which message of it a key names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The review.json.
    pub review: PathBuf,
    /// 0 for the cover letter, else the posted index.
    pub index: u32,
}

/// `<cache>/reviews/`: Message-Id and patch-id → the newest review.
#[derive(Clone, Debug)]
pub struct ReviewIndex {
    dir: PathBuf,
}

fn key_file(kind: &str, key: &str) -> String {
    let hash: String = Sha256::digest(key.as_bytes())[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{kind}-{hash}.json")
}

impl ReviewIndex {
    pub fn new(dir: &Path) -> ReviewIndex {
        ReviewIndex {
            dir: dir.to_path_buf(),
        }
    }

    /// Register `review` (kept at `review_json`) under its messages'
    /// Message-Ids and `patch_ids` (posted index → patch-id).
    pub fn register(
        &self,
        review: &Review,
        review_json: &Path,
        patch_ids: &[(u32, String)],
    ) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let put = |kind: &str, key: &str, index: u32| -> std::io::Result<()> {
            let entry = IndexEntry {
                review: review_json.to_path_buf(),
                index,
            };
            let path = self.dir.join(key_file(kind, key));
            let tmp = self.dir.join(format!(".{}.tmp", std::process::id()));
            std::fs::write(&tmp, serde_json::to_vec(&entry).unwrap_or_default())?;
            std::fs::rename(&tmp, &path)
        };
        if let Some(c) = &review.series.cover {
            put("msgid", &c.message_id, 0)?;
        }
        for p in &review.series.patches {
            put("msgid", &p.message_id, p.index)?;
        }
        for (index, id) in patch_ids {
            put("patchid", id, *index)?;
        }
        Ok(())
    }

    /// The review for a message: by its Message-Id, else by the
    /// patch-id of its diff.
    pub fn find(&self, msgid: Option<&str>, patch_id: Option<&str>) -> Option<(Review, u32)> {
        let read = |kind: &str, key: &str| -> Option<(Review, u32)> {
            let text = std::fs::read_to_string(self.dir.join(key_file(kind, key))).ok()?;
            let e: IndexEntry = serde_json::from_str(&text).ok()?;
            let review: Review =
                serde_json::from_str(&std::fs::read_to_string(&e.review).ok()?).ok()?;
            Some((review, e.index))
        };
        msgid
            .and_then(|m| read("msgid", m))
            .or_else(|| patch_id.and_then(|p| read("patchid", p)))
    }
}

fn status_of(severities: impl Iterator<Item = Severity>) -> &'static str {
    let mut status = "pass";
    for s in severities {
        if s <= Severity::Medium {
            return "fail";
        }
        status = "warn";
    }
    status
}

fn url(r: &Review) -> String {
    r.run
        .run_dir
        .as_deref()
        .map(|d| format!("file://{d}/review.md"))
        .unwrap_or_default()
}

/// The answer for message `index` of `r` (0: the series, from its cover
/// letter).
pub fn answer(r: &Review, index: u32) -> Vec<CheckResult> {
    let tool_failed = r.findings.iter().any(|f| f.tool_failure);
    let listing = |pick: &dyn Fn(&crate::report::Finding) -> bool| {
        r.findings
            .iter()
            .filter(|f| pick(f))
            .map(|f| {
                let mut s = format!("[{}] {}", f.severity.name(), f.title);
                if let Some(d) = &f.detail {
                    s.push_str(&format!("\n    {d}"));
                }
                if let Some(l) = &f.location {
                    s.push_str(&format!("\n    at {l}"));
                }
                s
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    if index == 0 {
        let status = if tool_failed {
            "warn"
        } else {
            status_of(r.findings.iter().map(|f| f.severity))
        };
        let summary = if tool_failed {
            format!("gasbench could not finish: {}", r.verdict_line())
        } else {
            r.verdict_line()
        };
        return vec![CheckResult {
            tool: TOOL.into(),
            status: status.into(),
            summary,
            url: url(r),
            details: listing(&|_| true),
        }];
    }
    // A patch: how it applied and built, and the findings that name it.
    let label = format!("{index}/{}", r.series.total);
    let mine = |f: &crate::report::Finding| {
        f.title
            .split(|c: char| c.is_whitespace() || c == '"')
            .any(|w| w == label)
    };
    let rows: Vec<_> = r
        .patches
        .iter()
        .filter(|p| p.posted_index == Some(index))
        .collect();
    let applied = rows
        .first()
        .map(|p| p.status.name())
        .unwrap_or("not applied");
    let builds = rows
        .iter()
        .find_map(|p| p.build.as_ref())
        .map(|b| {
            if b.builds {
                ", builds"
            } else {
                ", does not build"
            }
        })
        .unwrap_or("");
    let status = status_of(r.findings.iter().filter(|f| mine(f)).map(|f| f.severity));
    let n = r.findings.iter().filter(|f| mine(f)).count();
    vec![CheckResult {
        tool: TOOL.into(),
        status: status.into(),
        summary: format!(
            "patch {label}: {applied}{builds}; {} finding(s) on it; the series: {}",
            n,
            r.verdict_line()
        ),
        url: url(r),
        details: listing(&mine),
    }]
}

/// The answer when gasbench has no review of the message.
pub fn not_reviewed(msgid: Option<&str>) -> Vec<CheckResult> {
    vec![CheckResult {
        tool: TOOL.into(),
        status: "warn".into(),
        summary: "gasbench has not reviewed this series yet".into(),
        url: String::new(),
        details: match msgid {
            Some(id) => format!(
                "run `gasbench repro '<{id}>'`, or give b4 `gasbench b4-check --run` to \
                 reproduce it when asked"
            ),
            None => "the message has no Message-Id; run `gasbench repro` on the series".into(),
        },
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_ids_ignore_whitespace_index_lines_and_line_numbers() {
        let a = "diff --git a/x b/x\nindex 111..222 100644\n--- a/x\n+++ b/x\n@@ -1,2 +1,3 @@ f\n a\n+b\n";
        let b = "diff --git a/x b/x\nindex 333..444 100644\n--- a/x\n+++ b/x\n@@ -10,2 +12,3 @@ g\n a\n+ b\n";
        let c = "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1,2 +1,3 @@\n a\n+c\n";
        assert_eq!(patch_id(a), patch_id(b));
        assert_ne!(patch_id(a), patch_id(c));
    }
}
