//! Grouping messages into series, in order, with stable Message-Ids.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::message::{Message, Person};
use crate::patch::{FileDiff, PatchBody, parse_diff};
use crate::subject::PatchSubject;
use crate::{Error, Result, Span};

/// Where a Message-Id came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdSource {
    /// The message's own `Message-Id:` header.
    Header,
    /// Other messages reply to it: the patches' common `In-Reply-To` names
    /// their cover letter; a reply quoting patch k names patch k when it
    /// fits the series' git-send-email numbering.
    Replies,
    /// Not known: made from the message's content, so it is the same on
    /// every extraction, under the reserved `.invalid` domain.
    Synthesized,
}

/// How the author's address was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmailSource {
    /// The `From:` header.
    Header,
    /// The author's own `Signed-off-by:` (digests drop addresses from
    /// `From:`).
    SignedOffBy,
    /// Nowhere: a placeholder under `.invalid`.
    Unknown,
}

/// A posted patch of a series.
#[derive(Clone, Debug)]
pub struct SeriesPatch {
    pub subject: PatchSubject,
    pub message: Message,
    pub message_id: String,
    pub id_source: IdSource,
    pub parts: PatchBody,
    pub files: Vec<FileDiff>,
}

impl SeriesPatch {
    /// The diff exactly as posted.
    pub fn diff_text(&self) -> &str {
        &self.message.body[self.parts.diff.clone()]
    }
}

/// The cover letter (patch 0/n).
#[derive(Clone, Debug)]
pub struct SeriesCover {
    pub subject: PatchSubject,
    pub message: Message,
    pub message_id: String,
    pub id_source: IdSource,
}

/// A reply that quotes a patch of the series.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    pub from: String,
    pub date: String,
    /// The reply's `In-Reply-To`: the quoted patch's Message-Id, when the
    /// reply answers it directly.
    pub in_reply_to: Option<String>,
    /// The quoted lines with `> ` removed, in order.
    pub lines: Vec<String>,
    pub span: Span,
}

/// A patch the input does not hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingPatch {
    pub index: u32,
    /// Its title, when a reply names it.
    pub title: Option<String>,
    /// Its Message-Id, when a reply proves it.
    pub message_id: Option<String>,
    pub quotes: Vec<Quote>,
}

/// One version of one patch series.
#[derive(Clone, Debug)]
pub struct Series {
    /// The cover letter's title, else the first patch's.
    pub title: String,
    pub tags: Vec<String>,
    pub version: u32,
    pub total: u32,
    pub author: Person,
    pub email_source: EmailSource,
    pub cover: Option<SeriesCover>,
    /// Posted patches, in index order.
    pub patches: Vec<SeriesPatch>,
    pub missing: Vec<MissingPatch>,
    /// Mailing lists among the recipients.
    pub lists: Vec<String>,
    /// Set by [`find_series`] when another series of the same input would
    /// get the same name and version (the same subject posted by two
    /// people): the author's name as a slug, or a number when that is the
    /// same too. Part of [`Series::suggested_name`], so each series is
    /// extracted and reviewed as itself.
    pub name_qualifier: Option<String>,
}

impl Series {
    /// A short name for directories and reports: the identifier the title
    /// is about (`mkdirat2()` → `mkdirat2`, `goldfish_address_space` →
    /// `goldfish-address-space`), else the title's first words.
    pub fn suggested_name(&self) -> String {
        match &self.name_qualifier {
            Some(q) => format!("{}-{q}", suggest_name(&self.title)),
            None => suggest_name(&self.title),
        }
    }

    /// The Message-Id that replies to patches point at (the cover's).
    pub fn thread_root(&self) -> Option<&str> {
        self.cover.as_ref().map(|c| c.message_id.as_str())
    }

    pub fn is_complete(&self) -> bool {
        self.missing.is_empty()
    }

    /// The `base-commit:` trailer `git format-patch --base` and b4 write
    /// (in the cover letter, else after the last patch's diff): the
    /// commit the series was made on.
    pub fn base_commit(&self) -> Option<String> {
        let bodies = self
            .cover
            .iter()
            .map(|c| c.message.body.as_str())
            .chain(self.patches.iter().rev().map(|p| p.message.body.as_str()));
        for body in bodies {
            if let Some(c) = base_commit_in(body) {
                return Some(c);
            }
        }
        None
    }
}

pub fn suggest_name(title: &str) -> String {
    let words: Vec<&str> = title
        .split(|c: char| c.is_whitespace() || c == ',' || c == ':')
        .filter(|w| !w.is_empty())
        .collect();
    // `name()`: a function or syscall the series adds.
    if let Some(w) = words.iter().find(|w| w.ends_with("()") && w.len() > 2) {
        return slug(&w[..w.len() - 2]);
    }
    // The longest snake_case identifier.
    if let Some(w) = words
        .iter()
        .filter(|w| w.contains('_') && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .max_by_key(|w| w.len())
    {
        return slug(w);
    }
    slug(&words.iter().take(4).copied().collect::<Vec<_>>().join(" "))
}

fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() { "series".into() } else { out }
}

/// Recipients that name mailing lists (`linux-api`, `x@vger.kernel.org`).
fn list_like(recipient: &str) -> Option<String> {
    let p = Person::parse(recipient);
    if let Some(email) = &p.email
        && (email.ends_with("vger.kernel.org") || email.contains("@lists."))
    {
        return Some(email.split('@').next().unwrap_or(email).to_string());
    }
    let n = p.name.trim();
    let token = !n.contains(' ') && n == n.to_ascii_lowercase();
    (token && (n.starts_with("linux-") || n.ends_with("-for-linux") || n.ends_with("-devel")))
        .then(|| n.to_string())
}

/// `Signed-off-by: Name <addr>` of `name` in `body`, else the last
/// sign-off's address when there is only one signer.
fn email_from_signoff(body: &str, name: &str) -> Option<String> {
    let signers: Vec<Person> = body
        .lines()
        .filter_map(|l| l.strip_prefix("Signed-off-by:"))
        .map(Person::parse)
        .filter(|p| p.email.is_some())
        .collect();
    signers
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name))
        .or_else(|| (signers.len() == 1).then(|| &signers[0]))
        .and_then(|p| p.email.clone())
}

fn synthesized_id(m: &Message, s: &PatchSubject) -> String {
    let mut h = Sha256::new();
    for part in [&m.from.name, &m.date_text, &m.subject, &m.body] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    let hex: String = h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "gasbench-v{}-{}-{}.{}@digest.invalid",
        s.version, s.index, s.total, hex
    )
}

/// git send-email numbers a thread's messages `<stamp>-N-<addr>` from 1:
/// with a cover letter `-1-`, patch k is `-(k+1)-`.
pub fn send_email_id(cover_id: &str, index: u32) -> Option<String> {
    let (left, addr) = cover_id.split_once('@')?;
    let (stamp_and_n, user) = left.rsplit_once('-')?;
    let (stamp, n) = stamp_and_n.rsplit_once('-')?;
    if n != "1" || !stamp.contains('.') {
        return None;
    }
    Some(format!("{stamp}-{}-{user}@{addr}", index + 1))
}

fn quoted_lines(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| {
            l.strip_prefix("> ")
                .or_else(|| (l == ">").then_some(""))
                .map(str::to_string)
        })
        .collect()
}

/// The most patches a series may say it has. Series numbers are written
/// by git format-patch; a few hundred is already extraordinary. The bound
/// keeps a damaged or hostile subject (`[PATCH 1/4000000000]`) from making
/// the missing-patch bookkeeping walk billions of indexes.
pub const MAX_PATCHES: u32 = 999;

/// A posting's `k/n` must make sense before anything counts up to `n`.
fn check_numbering(m: &Message, s: &PatchSubject) -> Result<()> {
    let what = if s.total > MAX_PATCHES {
        format!(
            "the series says it has {} patches; at most {MAX_PATCHES} are accepted",
            s.total
        )
    } else if s.index > s.total {
        format!("patch {} of a series of {}", s.index, s.total)
    } else {
        return Ok(());
    };
    Err(Error::BadNumbering {
        subject: m.subject.clone(),
        what,
        span: m.span,
    })
}

#[derive(Default)]
struct Group<'a> {
    cover: Option<(&'a Message, PatchSubject)>,
    patches: BTreeMap<u32, (&'a Message, PatchSubject)>,
}

/// Find every series in `messages`, oldest first.
pub fn find_series(messages: &[Message]) -> Result<Vec<Series>> {
    // Key: author name, version, total, tags.
    let mut groups: BTreeMap<(String, u32, u32, String), Group<'_>> = BTreeMap::new();
    for m in messages {
        let Some(s) = PatchSubject::parse(&m.subject) else {
            continue;
        };
        if s.reply {
            continue;
        }
        check_numbering(m, &s)?;
        let key = (m.from.name.to_lowercase(), s.version, s.total, s.tag_key());
        let g = groups.entry(key).or_default();
        if s.is_cover() {
            if let Some((first, _)) = g.cover {
                return Err(duplicate(m, &s, first));
            }
            g.cover = Some((m, s));
        } else {
            if let Some((first, _)) = g.patches.get(&s.index) {
                return Err(duplicate(m, &s, first));
            }
            g.patches.insert(s.index, (m, s));
        }
    }

    let mut out = Vec::new();
    for (_, g) in groups {
        if g.patches.is_empty() {
            // A cover letter alone (its patches are in another thread).
            continue;
        }
        out.push(build(g, messages)?);
    }
    if out.is_empty() {
        let patchish = messages
            .iter()
            .filter(|m| PatchSubject::parse(&m.subject).is_some_and(|s| !s.reply))
            .count();
        return Err(Error::NotASeries {
            reason: format!(
                "{} message(s), {} with a [PATCH] subject that is not a reply, none with a diff",
                messages.len(),
                patchish
            ),
            span: messages.first().map(|m| m.span),
        });
    }
    out.sort_by_key(|s| {
        s.patches
            .first()
            .map(|p| p.message.date.unix_seconds())
            .unwrap_or(0)
    });
    qualify_clashing_names(&mut out);
    Ok(out)
}

/// Give series whose names would clash (same suggested name and version)
/// a qualifier: the author, else their place among the clashing ones.
fn qualify_clashing_names(series: &mut [Series]) {
    let key = |s: &Series| (suggest_name(&s.title), s.version);
    let mut clashes: BTreeMap<(String, u32), Vec<usize>> = BTreeMap::new();
    for (i, s) in series.iter().enumerate() {
        clashes.entry(key(s)).or_default().push(i);
    }
    for group in clashes.into_values().filter(|g| g.len() > 1) {
        let authors: Vec<String> = group
            .iter()
            .map(|&i| slug(&series[i].author.name))
            .collect();
        for (n, &i) in group.iter().enumerate() {
            let unique_author = authors.iter().filter(|a| **a == authors[n]).count() == 1;
            series[i].name_qualifier = Some(if unique_author {
                authors[n].clone()
            } else {
                // Oldest first (the order `find_series` returns them in).
                format!("{}-{}", authors[n], n + 1)
            });
        }
    }
}

fn duplicate(m: &Message, s: &PatchSubject, first: &Message) -> Error {
    Error::DuplicatePatch {
        series: s.title.clone(),
        index: s.index,
        total: s.total,
        span: m.span,
        first: first.span,
    }
}

fn build(g: Group<'_>, all: &[Message]) -> Result<Series> {
    let (first_msg, first_subject) = g.patches.values().next().expect("non-empty group");
    let version = first_subject.version;
    let total = first_subject.total;

    let mut patches = Vec::new();
    for (m, s) in g.patches.values() {
        let parts = PatchBody::split(&m.body).ok_or_else(|| Error::CorruptPatch {
            subject: m.subject.clone(),
            what: "the mail has a patch subject but no `diff --git` in its body".into(),
            span: m.span,
        })?;
        let files = parse_diff(&m.body[parts.diff.clone()]).map_err(|e| Error::CorruptPatch {
            subject: m.subject.clone(),
            what: e.what,
            span: m.body_span(parts.diff.start + e.offset, e.len),
        })?;
        patches.push(SeriesPatch {
            subject: s.clone(),
            message: (*m).clone(),
            message_id: String::new(),
            id_source: IdSource::Synthesized,
            parts,
            files,
        });
    }

    // The cover's id: its own, else what every patch replies to.
    let common_parent = {
        let parents: Vec<Option<&String>> = patches
            .iter()
            .map(|p| p.message.in_reply_to.as_ref())
            .collect();
        match parents.first() {
            Some(Some(p)) if parents.iter().all(|q| *q == Some(*p)) => Some((*p).clone()),
            _ => None,
        }
    };
    let cover = g.cover.map(|(m, s)| {
        let (id, src) = match (&m.message_id, &common_parent) {
            (Some(id), _) => (id.clone(), IdSource::Header),
            (None, Some(parent)) if m.in_reply_to.as_ref() != Some(parent) => {
                (parent.clone(), IdSource::Replies)
            }
            _ => (synthesized_id(m, &s), IdSource::Synthesized),
        };
        SeriesCover {
            subject: s.clone(),
            message: m.clone(),
            message_id: id,
            id_source: src,
        }
    });
    let root = cover.as_ref().map(|c| c.message_id.clone());

    // Replies to patches of this series (same version, total, title).
    let replies_to = |index: u32| -> Vec<&Message> {
        all.iter()
            .filter(|m| {
                PatchSubject::parse(&m.subject).is_some_and(|s| {
                    s.reply && s.version == version && s.total == total && s.index == index
                })
            })
            .collect()
    };
    let proven_id = |index: u32, replies: &[&Message]| -> Option<String> {
        let expected = root.as_deref().and_then(|r| send_email_id(r, index))?;
        replies
            .iter()
            .filter_map(|r| r.in_reply_to.as_ref())
            .find(|id| **id == expected)
            .cloned()
    };

    for p in &mut patches {
        let replies = replies_to(p.subject.index);
        let (id, src) = match (&p.message.message_id, proven_id(p.subject.index, &replies)) {
            (Some(id), _) => (id.clone(), IdSource::Header),
            (None, Some(id)) => (id, IdSource::Replies),
            (None, None) => (
                synthesized_id(&p.message, &p.subject),
                IdSource::Synthesized,
            ),
        };
        p.message_id = id;
        p.id_source = src;
    }

    let present: Vec<u32> = patches.iter().map(|p| p.subject.index).collect();
    let mut missing = Vec::new();
    for index in 1..=total {
        if present.contains(&index) {
            continue;
        }
        let replies = replies_to(index);
        missing.push(MissingPatch {
            index,
            title: replies
                .first()
                .and_then(|r| PatchSubject::parse(&r.subject))
                .map(|s| s.title),
            message_id: proven_id(index, &replies),
            quotes: replies
                .iter()
                .map(|r| Quote {
                    from: r.from.name.clone(),
                    date: r.date.to_iso8601(),
                    in_reply_to: r.in_reply_to.clone(),
                    lines: quoted_lines(&r.body),
                    span: r.span,
                })
                .filter(|q| !q.lines.is_empty())
                .collect(),
        });
    }

    let author_msg = cover.as_ref().map_or(*first_msg, |c| &c.message);
    let (email, email_source) = match &first_msg.from.email {
        Some(e) => (e.clone(), EmailSource::Header),
        None => match email_from_signoff(&first_msg.body, &first_msg.from.name) {
            Some(e) => (e, EmailSource::SignedOffBy),
            None => (
                format!("{}@unknown.invalid", slug(&first_msg.from.name)),
                EmailSource::Unknown,
            ),
        },
    };
    let mut lists: Vec<String> = Vec::new();
    for r in author_msg.to.iter().chain(author_msg.cc.iter()) {
        if let Some(l) = list_like(r)
            && !lists.contains(&l)
        {
            lists.push(l);
        }
    }

    Ok(Series {
        title: cover
            .as_ref()
            .map_or_else(|| first_subject.title.clone(), |c| c.subject.title.clone()),
        tags: first_subject.tags.clone(),
        version,
        total,
        author: Person {
            name: first_msg.from.name.clone(),
            email: Some(email),
        },
        email_source,
        cover,
        patches,
        missing,
        lists,
        name_qualifier: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_titles() {
        assert_eq!(
            suggest_name("vfs: syscalls: add mkdirat2() that returns an O_DIRECTORY fd"),
            "mkdirat2"
        );
        assert_eq!(
            suggest_name("Rust goldfish_address_space driver (ioctl-only subset)"),
            "goldfish-address-space"
        );
        assert_eq!(
            suggest_name("Fix the frobnicator once more"),
            "fix-the-frobnicator-once"
        );
        assert_eq!(suggest_name("!!!"), "series");
    }

    fn posting(subject: &str) -> String {
        format!(
            "From 1 Mon Sep 17 00:00:00 2001\n\
             From: T <t@x>\n\
             Date: Mon, 4 May 2026 10:01:00 +0200\n\
             Subject: {subject}\n\
             \n\
             x\n---\n\
             diff --git a/f b/f\n\
             --- a/f\n\
             +++ b/f\n\
             @@ -1 +1 @@\n\
             -a\n\
             +b\n"
        )
    }

    #[test]
    fn absurd_or_impossible_numbering_is_refused_before_counting() {
        for (subject, says) in [
            ("[PATCH 1/4000000000] frob", "4000000000 patches"),
            ("[PATCH 5/2] frob", "patch 5 of a series of 2"),
            ("[PATCH 1/0] frob", "patch 1 of a series of 0"),
        ] {
            let text = posting(subject);
            let messages = crate::mbox::parse(&text).unwrap();
            let err = find_series(&messages).unwrap_err();
            assert!(
                matches!(err, Error::BadNumbering { .. }),
                "{subject}: {err}"
            );
            let shown = err.to_string();
            assert!(shown.contains(subject), "names the subject: {shown}");
            assert!(shown.contains(says), "{shown}");
            assert_eq!(err.span(), Some(messages[0].span));
        }
        // The largest accepted total still works (one patch present, the
        // rest reported missing).
        let text = posting(&format!("[PATCH 1/{MAX_PATCHES}] frob"));
        let series = find_series(&crate::mbox::parse(&text).unwrap()).unwrap();
        assert_eq!(series[0].missing.len(), MAX_PATCHES as usize - 1);
    }

    #[test]
    fn the_same_subject_from_two_people_gets_two_names() {
        let by = |who: &str, subject: &str, day: u32| {
            posting(subject)
                .replace("From: T <t@x>", &format!("From: {who} <{who}@x>"))
                .replace("10:01:00", &format!("1{day}:01:00"))
        };
        let text = [
            by("Alice Person", "[PATCH] frob: add the frobnicator core", 4),
            by("Bob Person", "[PATCH] frob: add the frobnicator core", 5),
            by(
                "Bob Person",
                "[RFC PATCH] frob: add the frobnicator core",
                6,
            ),
            by("Carol", "[PATCH] something else", 7),
        ]
        .join("\n");
        let series = find_series(&crate::mbox::parse(&text).unwrap()).unwrap();
        let names: Vec<String> = series.iter().map(Series::suggested_name).collect();
        assert_eq!(
            names,
            [
                "frob-add-the-frobnicator-alice-person",
                "bob-person-2",
                "bob-person-3",
                "something-else",
            ]
            .map(|n| match n {
                "bob-person-2" | "bob-person-3" => format!("frob-add-the-frobnicator-{n}"),
                n => n.to_string(),
            })
        );
    }

    #[test]
    fn send_email_numbering() {
        assert_eq!(
            send_email_id("20260406165120.166928-1-wenzhaoliao@ruc.edu.cn", 1).as_deref(),
            Some("20260406165120.166928-2-wenzhaoliao@ruc.edu.cn")
        );
        assert_eq!(send_email_id("cover.1775456181.git.w@ruc.edu.cn", 1), None);
        assert_eq!(send_email_id("20260406165120.166928-3-w@x", 1), None);
    }

    #[test]
    fn lists_and_signoffs() {
        assert_eq!(list_like("linux-api").as_deref(), Some("linux-api"));
        assert_eq!(
            list_like("rust-for-linux").as_deref(),
            Some("rust-for-linux")
        );
        assert_eq!(
            list_like("linux-kernel@vger.kernel.org").as_deref(),
            Some("linux-kernel")
        );
        assert_eq!(list_like("Greg Kroah-Hartman"), None);
        assert_eq!(list_like("cmirabil"), None);
        let body = "x\nSigned-off-by: Other <o@x>\nSigned-off-by: Jori Koolstra <j@x>\n";
        assert_eq!(
            email_from_signoff(body, "jori koolstra").as_deref(),
            Some("j@x")
        );
        assert_eq!(email_from_signoff(body, "Nobody"), None);
    }
}

/// `base-commit: <7 to 40 hex digits>` on a line of its own.
pub fn base_commit_in(body: &str) -> Option<String> {
    body.lines().find_map(|l| {
        let v = l.trim().strip_prefix("base-commit:")?.trim();
        (v.len() >= 7 && v.len() <= 40 && v.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| v.to_ascii_lowercase())
    })
}

#[cfg(test)]
mod base_commit_tests {
    use super::base_commit_in;

    #[test]
    fn the_trailer_git_format_patch_base_writes() {
        let body = "text\n-- \n2.43\n\nbase-commit: 0123456789ABCDEF0123456789abcdef01234567\nchange-id: x\n";
        assert_eq!(
            base_commit_in(body).as_deref(),
            Some("0123456789abcdef0123456789abcdef01234567")
        );
        assert_eq!(base_commit_in("base-commit: xyz\n"), None);
        assert_eq!(base_commit_in("no trailer\n"), None);
    }
}
