//! A patch mail's body: commit message, notes (diffstat), diff, signature;
//! and the diff itself, file by file and hunk by hunk.

use serde::{Deserialize, Serialize};

/// Where the parts of a patch body are, as byte ranges of the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatchBody {
    /// The commit message (before the `---` line).
    pub message: std::ops::Range<usize>,
    /// Between `---` and the diff: the diffstat and any notes.
    pub notes: std::ops::Range<usize>,
    /// From the first `diff --git` to before the signature.
    pub diff: std::ops::Range<usize>,
    /// The `-- ` signature (git version), if present.
    pub signature: Option<std::ops::Range<usize>>,
}

impl PatchBody {
    /// `None` when the body has no `diff --git` (a cover letter, a reply).
    pub fn split(body: &str) -> Option<PatchBody> {
        let mut offset = 0;
        let mut dashes = None;
        let mut diff_start = None;
        let mut sig_start = None;
        for line in body.split_inclusive('\n') {
            let l = line.trim_end_matches(['\n', '\r']);
            if diff_start.is_none() {
                if l == "---" && dashes.is_none() {
                    dashes = Some(offset);
                } else if l.starts_with("diff --git ") {
                    diff_start = Some(offset);
                }
            } else if l == "-- " && sig_start.is_none() {
                sig_start = Some(offset);
            }
            offset += line.len();
        }
        let diff_start = diff_start?;
        let msg_end = dashes.unwrap_or(diff_start);
        let notes_start = dashes.map_or(diff_start, |d| {
            d + body[d..].find('\n').map_or(body.len() - d, |i| i + 1)
        });
        let diff_end = sig_start.unwrap_or(body.len());
        Some(PatchBody {
            message: 0..msg_end,
            notes: notes_start..diff_start,
            diff: diff_start..diff_end,
            signature: sig_start.map(|s| s..body.len()),
        })
    }
}

/// One hunk of a file diff.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hunk {
    pub old_start: u32,
    pub old_len: u32,
    pub new_start: u32,
    pub new_len: u32,
    /// The text after the second `@@` (the function context).
    pub section: String,
    /// Lines with their marker (` `, `+`, `-`, `\`).
    pub lines: Vec<String>,
    /// Byte offset of the `@@` line in the diff text.
    pub offset: usize,
}

impl Hunk {
    pub fn header(&self) -> String {
        format!(
            "@@ -{},{} +{},{} @@{}",
            self.old_start, self.old_len, self.new_start, self.new_len, self.section
        )
    }

    pub fn added(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().filter_map(|l| l.strip_prefix('+'))
    }

    pub fn removed(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().filter_map(|l| l.strip_prefix('-'))
    }
}

/// One file's part of a diff.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDiff {
    pub old_path: Option<String>,
    pub new_path: Option<String>,
    pub new_file: bool,
    pub deleted: bool,
    pub hunks: Vec<Hunk>,
}

impl FileDiff {
    /// The path the patch leaves behind (or removes).
    pub fn path(&self) -> &str {
        self.new_path
            .as_deref()
            .or(self.old_path.as_deref())
            .unwrap_or("")
    }
}

/// Why a diff could not be parsed; `offset` is into the diff text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiffError {
    pub offset: usize,
    pub len: usize,
    pub what: String,
}

fn strip_ab(path: &str, prefix: &str) -> Option<String> {
    let path = path.trim_end_matches(['\r', '\t']);
    if path == "/dev/null" {
        return None;
    }
    Some(path.strip_prefix(prefix).unwrap_or(path).to_string())
}

fn parse_range(s: &str) -> Option<(u32, u32)> {
    match s.split_once(',') {
        Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
        None => Some((s.parse().ok()?, 1)),
    }
}

fn parse_hunk_header(l: &str) -> Option<(u32, u32, u32, u32, String)> {
    let rest = l.strip_prefix("@@ -")?;
    let (ranges, section) = rest.split_once(" @@")?;
    let (old, new) = ranges.split_once(" +")?;
    let (os, ol) = parse_range(old)?;
    let (ns, nl) = parse_range(new)?;
    Some((os, ol, ns, nl, section.to_string()))
}

/// Parse a `git diff` text. Hunk line counts are checked: a diff whose
/// hunks do not add up was damaged and would not apply as posted.
pub fn parse_diff(diff: &str) -> Result<Vec<FileDiff>, DiffError> {
    let mut files: Vec<FileDiff> = Vec::new();
    let mut offset = 0;
    let all: Vec<&str> = diff.split_inclusive('\n').collect();
    let mut i = 0;
    let err = |offset: usize, line: &str, what: String| DiffError {
        offset,
        len: line.trim_end_matches('\n').len(),
        what,
    };
    while i < all.len() {
        let line = all[i];
        let l = line.trim_end_matches(['\n', '\r']);
        if let Some(rest) = l.strip_prefix("diff --git ") {
            // `a/x b/x`: split in the middle for the common unrenamed case.
            let (a, b) = match rest.find(" b/") {
                Some(k) => (&rest[..k], &rest[k + 1..]),
                None => (rest, rest),
            };
            files.push(FileDiff {
                old_path: strip_ab(a, "a/"),
                new_path: strip_ab(b, "b/"),
                new_file: false,
                deleted: false,
                hunks: Vec::new(),
            });
        } else if let Some(f) = files.last_mut() {
            if l.starts_with("new file mode") {
                f.new_file = true;
            } else if l.starts_with("deleted file mode") {
                f.deleted = true;
            } else if let Some(p) = l.strip_prefix("--- ") {
                f.old_path = strip_ab(p, "a/");
            } else if let Some(p) = l.strip_prefix("+++ ") {
                f.new_path = strip_ab(p, "b/");
            } else if l.starts_with("@@ ") {
                let (os, ol, ns, nl, section) = parse_hunk_header(l)
                    .ok_or_else(|| err(offset, line, format!("bad hunk header {l:?}")))?;
                let hunk_offset = offset;
                let (mut old_seen, mut new_seen) = (0u32, 0u32);
                let mut lines = Vec::new();
                offset += line.len();
                i += 1;
                while (old_seen < ol || new_seen < nl) && i < all.len() {
                    let hl = all[i].trim_end_matches('\n');
                    match hl.as_bytes().first() {
                        // git apply, like GNU diff, reads an empty line as
                        // an empty context line whose space was lost.
                        Some(b' ') | None => {
                            old_seen += 1;
                            new_seen += 1;
                        }
                        Some(b'-') => old_seen += 1,
                        Some(b'+') => new_seen += 1,
                        Some(b'\\') => {}
                        _ => {
                            return Err(err(
                                offset,
                                all[i],
                                format!(
                                    "hunk {} ends early: {} of {} old and {} of {} new lines, then {:?}",
                                    format_args!("@@ -{os},{ol} +{ns},{nl} @@"),
                                    old_seen,
                                    ol,
                                    new_seen,
                                    nl,
                                    hl
                                ),
                            ));
                        }
                    }
                    lines.push(hl.to_string());
                    offset += all[i].len();
                    i += 1;
                }
                if old_seen != ol || new_seen != nl {
                    return Err(DiffError {
                        offset: hunk_offset,
                        len: l.len(),
                        what: format!("hunk {l:?} is cut short by the end of the diff"),
                    });
                }
                // `\ No newline at end of file` may follow the last line.
                while i < all.len() && all[i].starts_with('\\') {
                    lines.push(all[i].trim_end_matches('\n').to_string());
                    offset += all[i].len();
                    i += 1;
                }
                f.hunks.push(Hunk {
                    old_start: os,
                    old_len: ol,
                    new_start: ns,
                    new_len: nl,
                    section,
                    lines,
                    offset: hunk_offset,
                });
                continue;
            }
        }
        offset += line.len();
        i += 1;
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "Subject line body\n\nSigned-off-by: A <a@b>\n---\n x | 2 +-\n\n\
diff --git a/x b/x\nindex 1..2 100644\n--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@ fn f\n a\n-b\n+c\n\
diff --git a/y b/y\nnew file mode 100644\n--- /dev/null\n+++ b/y\n@@ -0,0 +1 @@\n+new\n\\ No newline at end of file\n\
-- \n2.53.0\n";

    #[test]
    fn body_parts_and_files() {
        let p = PatchBody::split(BODY).unwrap();
        assert!(BODY[p.message.clone()].ends_with("Signed-off-by: A <a@b>\n"));
        assert_eq!(&BODY[p.notes.clone()], " x | 2 +-\n\n");
        assert!(BODY[p.diff.clone()].starts_with("diff --git a/x b/x\n"));
        assert!(BODY[p.diff.clone()].ends_with("\\ No newline at end of file\n"));
        assert_eq!(&BODY[p.signature.clone().unwrap()], "-- \n2.53.0\n");

        let files = parse_diff(&BODY[p.diff.clone()]).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].path(), "x");
        assert_eq!(files[0].hunks[0].section, " fn f");
        assert_eq!(files[0].hunks[0].added().collect::<Vec<_>>(), vec!["c"]);
        assert_eq!(files[0].hunks[0].removed().collect::<Vec<_>>(), vec!["b"]);
        assert!(files[1].new_file);
        assert_eq!(files[1].old_path, None);
        assert_eq!(files[1].hunks[0].lines.len(), 2);
    }

    #[test]
    fn a_body_without_a_diff_is_not_a_patch() {
        assert_eq!(PatchBody::split("cover letter\n---\n stats\n"), None);
    }

    #[test]
    fn damaged_hunks_are_reported_where_they_break() {
        // A wrapped line (a mail client broke it) starts with no marker.
        let diff = "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\nwrapped\n-b\n+c\n";
        let e = parse_diff(diff).unwrap_err();
        assert!(e.what.contains("ends early"), "{}", e.what);
        assert_eq!(&diff[e.offset..e.offset + e.len], "wrapped");
        // An empty line is an empty context line, as git apply reads it.
        let diff = "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n\n-b\n+c\n";
        assert_eq!(parse_diff(diff).unwrap()[0].hunks[0].lines.len(), 4);
        // Cut short.
        let diff = "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n";
        assert!(parse_diff(diff).unwrap_err().what.contains("cut short"));
    }
}
