//! `--guess-base`: the newest base a series applies to, found as b4 finds
//! one: a series made with git carries, for every file it changes, the
//! blob it was made against (`index <blob>..<blob>`); a revision on which
//! every one of those files has that blob is one the series was made on.

use std::path::{Path, PathBuf};

use gasbench_env::Runtime;

use crate::KbuildError;
use crate::git::Git;

/// The files the series changes and the blob (abbreviated) each had
/// before the series: from the first patch that changes it (later
/// patches were made on top of the earlier ones). New files are left
/// out: any base lacks them.
pub fn preimages<'a>(diffs: impl IntoIterator<Item = &'a str>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for diff in diffs {
        let mut path: Option<String> = None;
        for line in diff.lines() {
            if let Some(rest) = line.strip_prefix("diff --git a/") {
                path = rest.split(" b/").next().map(str::to_string);
            } else if let (Some(p), Some(rest)) = (&path, line.strip_prefix("index ")) {
                let pre = rest.split("..").next().unwrap_or("");
                let known = out.iter().any(|(q, _)| q == p);
                if !known && !pre.is_empty() && pre.chars().any(|c| c != '0') {
                    out.push((p.clone(), pre.to_string()));
                }
                path = None;
            }
        }
    }
    out
}

/// What the guess found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guess {
    /// `HEAD` or a tag.
    pub rev: String,
    pub commit: String,
    /// How many revisions were tried before it.
    pub tried: usize,
}

/// The newest of `HEAD` and the tree's newest `limit` tags on which every
/// preimage is there; `None` when none is.
pub fn guess(
    rt: &Runtime,
    repo: &Path,
    preimages: &[(String, String)],
    limit: usize,
) -> Result<Option<Guess>, KbuildError> {
    let canon = repo
        .canonicalize()
        .map_err(|e| KbuildError::io("open", repo, e))?;
    let binds: Vec<PathBuf> = vec![canon.clone()];
    let git = Git::new(rt, &canon, &binds);
    let tags = git.ok(&["tag", "--sort=-creatordate", "--list"])?.text();
    let mut candidates = vec!["HEAD".to_string()];
    candidates.extend(
        tags.lines()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .take(limit)
            .map(str::to_string),
    );
    for (tried, rev) in candidates.iter().enumerate() {
        let fits = preimages.iter().all(|(path, blob)| {
            git.run(&["rev-parse", "--verify", "--quiet", &format!("{rev}:{path}")])
                .is_ok_and(|o| o.ok && o.text().starts_with(blob.as_str()))
        });
        if fits && let Some(commit) = git.rev_parse(rev)? {
            return Ok(Some(Guess {
                rev: rev.clone(),
                commit,
                tried,
            }));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_patch_that_changes_a_file_says_its_blob() {
        let p1 = "diff --git a/fs/namei.c b/fs/namei.c\nindex 1a2b3c4..5d6e7f8 100644\n--- a/fs/namei.c\n+++ b/fs/namei.c\n@@ -1 +1 @@\n-a\n+b\ndiff --git a/new.c b/new.c\nnew file mode 100644\nindex 0000000..abcdef0\n";
        let p2 = "diff --git a/fs/namei.c b/fs/namei.c\nindex 5d6e7f8..9999999 100644\n";
        assert_eq!(
            preimages([p1, p2]),
            [("fs/namei.c".to_string(), "1a2b3c4".to_string())]
        );
    }
}
