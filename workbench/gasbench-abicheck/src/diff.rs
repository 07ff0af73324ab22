//! What a series adds, per file: the `+` lines of its patches.

use std::collections::BTreeMap;

use crate::Patch;

/// Added lines by the file they go to (`b/` stripped), in patch order,
/// and the files the series creates.
#[derive(Clone, Debug, Default)]
pub struct Added {
    pub lines: BTreeMap<String, Vec<String>>,
    /// Files that are new in the series (`--- /dev/null`).
    pub new_files: Vec<String>,
}

impl Added {
    pub fn of(patches: &[Patch]) -> Added {
        let mut a = Added::default();
        for p in patches {
            let mut file: Option<String> = None;
            let mut from_null = false;
            let mut in_hunk = false;
            for line in p.text.lines() {
                if line.starts_with("diff --git ") {
                    file = None;
                    in_hunk = false;
                    continue;
                }
                if let Some(old) = line.strip_prefix("--- ")
                    && (!in_hunk || file.is_none())
                {
                    from_null = old.trim() == "/dev/null";
                    continue;
                }
                if let Some(new) = line.strip_prefix("+++ ")
                    && (!in_hunk || file.is_none())
                {
                    let f = new.trim().trim_start_matches("b/").to_string();
                    if from_null && !a.new_files.contains(&f) {
                        a.new_files.push(f.clone());
                    }
                    file = Some(f);
                    in_hunk = false;
                    continue;
                }
                if line.starts_with("@@ ") {
                    in_hunk = file.is_some();
                    continue;
                }
                if !in_hunk {
                    continue;
                }
                if let (Some(f), Some(added)) = (&file, line.strip_prefix('+')) {
                    a.lines
                        .entry(f.clone())
                        .or_default()
                        .push(added.to_string());
                }
            }
        }
        a
    }

    /// Added lines of files whose path matches `pred`.
    pub fn in_files<'a>(
        &'a self,
        pred: impl Fn(&str) -> bool + 'a,
    ) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.lines
            .iter()
            .filter(move |(f, _)| pred(f))
            .flat_map(|(f, v)| v.iter().map(move |l| (f.as_str(), l.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_lines_by_file_and_new_files() {
        let text = "\
Subject: x

diff --git a/a.tbl b/a.tbl
--- a/a.tbl
+++ b/a.tbl
@@ -1,2 +1,3 @@
 1 common old sys_old
+2 common new sys_new
diff --git a/include/uapi/x.h b/include/uapi/x.h
new file mode 100644
--- /dev/null
+++ b/include/uapi/x.h
@@ -0,0 +1,2 @@
+#define X 1
+--- not a header line
";
        let a = Added::of(&[Patch { file: "p", text }]);
        assert_eq!(a.lines["a.tbl"], vec!["2 common new sys_new"]);
        assert_eq!(
            a.lines["include/uapi/x.h"],
            vec!["#define X 1", "--- not a header line"]
        );
        assert_eq!(a.new_files, vec!["include/uapi/x.h"]);
    }
}
