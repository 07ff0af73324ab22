//! Patch subjects: `[RFC PATCH v3 1/6] uapi: add ...`.

use serde::{Deserialize, Serialize};

/// What a subject line says about the patch it belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchSubject {
    /// `Re:` (or `Aw:`, `Sv:`, ...) in front: a reply, not a posting.
    pub reply: bool,
    /// Bracket words other than the version and the index, in order
    /// (`RFC`, `PATCH`, `net-next`).
    pub tags: Vec<String>,
    /// `v3` → 3; 1 when not given.
    pub version: u32,
    /// `1/6` → (1, 6); a lone `[PATCH]` is (1, 1).
    pub index: u32,
    pub total: u32,
    /// The text after the brackets.
    pub title: String,
}

impl PatchSubject {
    /// `None` when the subject has no `[... PATCH ...]` (or `[RFC]`) tag.
    pub fn parse(subject: &str) -> Option<PatchSubject> {
        let mut rest = subject.trim();
        let mut reply = false;
        loop {
            let lower = rest.to_ascii_lowercase();
            let stripped = ["re:", "aw:", "sv:", "fwd:", "fw:"]
                .iter()
                .find(|p| lower.starts_with(**p))
                .map(|p| rest[p.len()..].trim_start());
            match stripped {
                Some(r) => {
                    reply = true;
                    rest = r;
                }
                None => break,
            }
        }
        let mut words: Vec<String> = Vec::new();
        while let Some(r) = rest.strip_prefix('[') {
            let close = r.find(']')?;
            for w in r[..close].split_whitespace() {
                // `PATCHv2`, `RFCv3`, `PATCH-v2`: the tag and the version
                // written as one word (older git format-patch habits).
                match split_glued_version(w) {
                    Some((tag, version)) => {
                        words.push(tag.to_string());
                        words.push(version.to_string());
                    }
                    None => words.push(w.to_string()),
                }
            }
            rest = r[close + 1..].trim_start();
        }
        if !words
            .iter()
            .any(|w| w.eq_ignore_ascii_case("PATCH") || w.eq_ignore_ascii_case("RFC"))
        {
            return None;
        }
        let mut version = 1;
        let mut index = 1;
        let mut total = 1;
        let mut tags = Vec::new();
        for w in words {
            if let Some(v) = w
                .strip_prefix(['v', 'V'])
                .and_then(|v| v.parse::<u32>().ok())
            {
                version = v;
            } else if let Some((a, b)) = w.split_once('/')
                && let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>())
            {
                index = a;
                total = b;
            } else {
                tags.push(w);
            }
        }
        Some(PatchSubject {
            reply,
            tags,
            version,
            index,
            total,
            title: rest.to_string(),
        })
    }

    /// Tags joined for grouping (`RFC PATCH`), upper-cased.
    pub fn tag_key(&self) -> String {
        self.tags
            .iter()
            .map(|t| t.to_ascii_uppercase())
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn is_cover(&self) -> bool {
        self.index == 0
    }
}

/// `PATCHv2` → (`PATCH`, `v2`); `RFC-v3` → (`RFC`, `v3`).
fn split_glued_version(word: &str) -> Option<(&str, &str)> {
    let tag_len = ["PATCH", "RFC"].iter().find_map(|t| {
        word.get(..t.len())
            .filter(|head| head.eq_ignore_ascii_case(t))
            .map(|_| t.len())
    })?;
    let (tag, rest) = word.split_at(tag_len);
    let version = rest.strip_prefix('-').unwrap_or(rest);
    let digits = version.strip_prefix(['v', 'V'])?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some((tag, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posted_patches_covers_and_replies() {
        let p = PatchSubject::parse("[RFC PATCH v3 1/6] uapi: add header").unwrap();
        assert_eq!(
            (p.reply, p.tags.clone(), p.version, p.index, p.total),
            (false, vec!["RFC".to_string(), "PATCH".to_string()], 3, 1, 6)
        );
        assert_eq!(p.title, "uapi: add header");
        assert_eq!(p.tag_key(), "RFC PATCH");

        let c = PatchSubject::parse("[RFC PATCH v2 0/2] vfs: x").unwrap();
        assert!(c.is_cover());

        let r = PatchSubject::parse("Re: RE: [RFC PATCH v3 1/6] uapi: add header").unwrap();
        assert!(r.reply);
        assert_eq!((r.index, r.total, r.version), (1, 6, 3));

        let single = PatchSubject::parse("[PATCH] fix").unwrap();
        assert_eq!((single.index, single.total, single.version), (1, 1, 1));

        let split = PatchSubject::parse("[RFC][PATCH net-next V4 02/10] x").unwrap();
        assert_eq!(split.tags, vec!["RFC", "PATCH", "net-next"]);
        assert_eq!((split.version, split.index, split.total), (4, 2, 10));
    }

    #[test]
    fn the_subject_forms_git_send_email_and_b4_produce() {
        // (subject, tags, version, index, total, title)
        type Case<'a> = (&'a str, &'a [&'a str], u32, u32, u32, &'a str);
        let cases: &[Case] = &[
            ("[PATCHv2 1/1] fs: x", &["PATCH"], 2, 1, 1, "fs: x"),
            (
                "[PATCH RFC v3 0/6] goldfish",
                &["PATCH", "RFC"],
                3,
                0,
                6,
                "goldfish",
            ),
            (
                "[RFC PATCH v3 1/6] uapi: y",
                &["RFC", "PATCH"],
                3,
                1,
                6,
                "uapi: y",
            ),
            (
                "[PATCH v2 RESEND 2/3] z",
                &["PATCH", "RESEND"],
                2,
                2,
                3,
                "z",
            ),
            ("[PATCH RESEND] z", &["PATCH", "RESEND"], 1, 1, 1, "z"),
            ("[PATCH 1/3 v2] a", &["PATCH"], 2, 1, 3, "a"),
            ("[PATCH 01/10] a", &["PATCH"], 1, 1, 10, "a"),
            ("[RFCv2 PATCH 1/2] a", &["RFC", "PATCH"], 2, 1, 2, "a"),
            ("[PATCH-v4 3/5] a", &["PATCH"], 4, 3, 5, "a"),
            ("[patch v2 1/2] a", &["patch"], 2, 1, 2, "a"),
            (
                "[PATCH net-next v5 07/12] a",
                &["PATCH", "net-next"],
                5,
                7,
                12,
                "a",
            ),
            ("[PATCH 6.1.y] a", &["PATCH", "6.1.y"], 1, 1, 1, "a"),
        ];
        for (subject, tags, version, index, total, title) in cases {
            let p = PatchSubject::parse(subject).unwrap_or_else(|| panic!("{subject}"));
            assert_eq!(
                (
                    p.tags.clone(),
                    p.version,
                    p.index,
                    p.total,
                    p.title.as_str()
                ),
                (
                    tags.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
                    *version,
                    *index,
                    *total,
                    *title
                ),
                "{subject}"
            );
        }
        // A word that only starts like the tag is not the tag.
        assert_eq!(PatchSubject::parse("[PATCHES v2 1/2] a"), None);
        assert_eq!(PatchSubject::parse("[PATCHvx 1/2] a"), None);
    }

    #[test]
    fn subjects_without_patch_tags_are_not_patches() {
        assert_eq!(
            PatchSubject::parse("Re: Avoid reading /sys/kernel/mm"),
            None
        );
        assert_eq!(PatchSubject::parse("[ANNOUNCE] v7.2"), None);
        assert_eq!(PatchSubject::parse("[PATCH 1/2 unterminated"), None);
    }
}
