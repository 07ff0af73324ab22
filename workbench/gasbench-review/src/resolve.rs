//! From what the reviewer typed to the series to review.
//!
//! The argument is a file (an mbox as `b4 am` saves it, `git
//! format-patch` output, a lore thread saved as text; one or more series
//! in it) or a Message-Id (`<id>`, a bare `id`, `id:…`, `mid:…`, or a
//! lore link, `%40` and `%3C…%3E` escapes included).
//! A series in a file is *known* when every patch the file holds is
//! byte-identical (its diff) to the same patch under `kernel/series/`:
//! then it is reviewed with the port onto the pinned base. Otherwise it is
//! extracted into a private kernel directory and applied as posted. A
//! Message-Id of a known series needs nothing else; any other is fetched
//! by the binary (gasbench-lore) and read here like a file. `-` is an mbox
//! on standard input.
//!
//! A thread often holds more than one revision of a series (v2 posted in
//! reply to v1): unless `--series` names one, the newest complete revision
//! of each series is reviewed, and [`MailFile::revision_notes`] says which
//! and why.

use std::path::{Path, PathBuf};

use gasbench_kbuild::KbuildError;
use gasbench_kbuild::layout::KernelDir;
use gasbench_series::manifest::{PatchOrigin, SeriesManifest};
use gasbench_series::render::sha256_hex;
use gasbench_series::{MailFormat, Series, find_series, parse_mail};
use serde::{Deserialize, Serialize};

/// What went wrong resolving the input. Every variant is bad input
/// (`gasbench repro` exits 2).
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A FIFO, a device, a directory: reading one could block for ever or
    /// never end (`/dev/zero`).
    #[error("{} is {kind}, not a regular file", path.display())]
    NotAFile { path: PathBuf, kind: &'static str },
    #[error("{} is larger than {} MiB; no patch series is that big", path.display(), limit / (1024 * 1024))]
    TooLarge { path: PathBuf, limit: u64 },
    /// Mail that does not parse, a file without a series, a series with a
    /// hole, a broken kernel/ directory: the kernel stage's error, which
    /// carries the source span for mail.
    #[error(transparent)]
    Kbuild(#[from] KbuildError),
    #[error("no series gasbench knows has the Message-Id <{id}>")]
    UnknownMessageId {
        id: String,
        /// `name: <cover id>` of every known series.
        known: Vec<String>,
    },
    /// A new series with a hole in it: extraction needs every patch, and
    /// the private kernel directory it was looking in is deleted on exit,
    /// so the fix has to go into something that stays.
    #[error("patch {index}/{total} of {title:?} is not in {label}")]
    MissingPatch {
        index: u32,
        total: u32,
        title: String,
        label: String,
        /// Where a hand-written reconstruction would be kept: the known
        /// series of the same name in the checkout, when there is one.
        keep_dir: Option<PathBuf>,
    },
    #[error("{label} has no series {wanted:?} (it has: {})", have.join(", "))]
    NoSuchSeries {
        label: String,
        wanted: String,
        have: Vec<String>,
    },
}

impl ResolveError {
    /// What to do about it.
    pub fn help(&self) -> String {
        match self {
            ResolveError::Read { source, .. }
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                "give a file that exists (an mbox, a lore thread saved as text) or a Message-Id"
                    .into()
            }
            ResolveError::Read { .. } => "check the file's permissions".into(),
            ResolveError::NotAFile { kind, .. } if *kind == "a directory" => {
                "give an mbox file inside it (an mbox, a lore thread saved as text)".into()
            }
            ResolveError::NotAFile { .. } => {
                "give an mbox file: save the mail to a regular file first".into()
            }
            ResolveError::TooLarge { .. } => {
                "give only the thread of the series (`b4 am` saves just that), not a whole archive"
                    .into()
            }
            ResolveError::Kbuild(e) => e.help(),
            ResolveError::UnknownMessageId { id, known } => format!(
                "gasbench fetches the thread from the list's archive (--lore URL, \
                 GASBENCH_LORE) or with --b4; offline, save the thread as an mbox on a \
                 machine with access (`b4 am -o . '{id}'`, or download \
                 https://lore.kernel.org/all/{id}/t.mbox.gz and gunzip it) and run \
                 `gasbench repro FILE` or `gasbench repro - < FILE`. Known here: {}",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join("; ")
                }
            ),
            ResolveError::MissingPatch {
                index,
                total,
                label,
                keep_dir,
                ..
            } => {
                let mut help = format!(
                    "add patch {index}/{total} to a copy of {label} (`b4 am` saves the whole \
                     thread; or append the message saved from the archive) and run `gasbench \
                     repro` on the copy"
                );
                if let Some(dir) = keep_dir {
                    help.push_str(&format!(
                        ", or write it by hand as {}/{index:04}-<title>.patch with an \
                         `X-Gasbench-Reconstructed: <what it was rebuilt from>` header",
                        dir.display()
                    ));
                }
                help
            }
            ResolveError::NoSuchSeries { .. } => {
                "pass --series with one of the names listed, or leave it out to review every series in the file".into()
            }
        }
    }
}

/// The command-line argument, classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    File(PathBuf),
    /// Without angle brackets.
    MessageId(String),
    /// `-`: an mbox on standard input.
    Stdin,
}

impl Input {
    /// `-` is standard input; a path that exists is a file; otherwise
    /// something shaped like a Message-Id (`<a@b>`, `a@b`, `id:a@b`,
    /// `mid:a@b`, a lore link) is one; anything else is taken as a file
    /// (and reading it will say it is missing).
    pub fn parse(arg: &str) -> Input {
        if arg == "-" {
            return Input::Stdin;
        }
        if Path::new(arg).exists() {
            return Input::File(PathBuf::from(arg));
        }
        match message_id_of(arg) {
            Some(id) => Input::MessageId(id),
            None => Input::File(PathBuf::from(arg)),
        }
    }
}

/// The Message-Id in `arg`, without angle brackets, if it is one.
fn message_id_of(arg: &str) -> Option<String> {
    let decoded = percent_decoded(arg.trim());
    let mut s = decoded.as_str();
    if s.contains("://") {
        // https://lore.kernel.org/<list>/<id>/[T/|t.mbox.gz|…]: the
        // segment with an `@` is the id.
        s = s.split('/').find(|seg| seg.contains('@'))?;
    }
    // `id:` (notmuch, b4) and `mid:` (RFC 2392 URLs, mutt) prefixes.
    let s = ["id:", "mid:"]
        .iter()
        .find_map(|p| {
            s.get(..p.len())
                .filter(|head| head.eq_ignore_ascii_case(p))
                .map(|_| &s[p.len()..])
        })
        .unwrap_or(s);
    let s = s.strip_prefix('<').unwrap_or(s);
    let s = s.strip_suffix('>').unwrap_or(s);
    let shaped = s.contains('@')
        && !s.starts_with('@')
        && !s.ends_with('@')
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c == '/' || c == '<' || c == '>');
    shaped.then(|| s.to_string())
}

/// `%40`, `%3C`, `%3E` … as the ASCII they stand for (lore links and
/// mail clients escape the `@` and the angle brackets); anything else,
/// including escapes of non-ASCII bytes, is kept as written.
fn percent_decoded(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let byte = rest
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .filter(u8::is_ascii);
        match byte {
            Some(b) => {
                out.push(char::from(b));
                rest = &rest[i + 3..];
            }
            None => {
                out.push('%');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A series under `kernel/series/`.
#[derive(Clone, Debug)]
pub struct KnownSeries {
    pub name: String,
    pub manifest: SeriesManifest,
}

/// Every series under the kernel directory's `series/`.
pub fn known_series(kdir: &KernelDir) -> Result<Vec<KnownSeries>, KbuildError> {
    kdir.all_series()?
        .into_iter()
        .map(|name| {
            Ok(KnownSeries {
                manifest: kdir.series(&name)?,
                name,
            })
        })
        .collect()
}

/// One series found in a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSeries {
    /// The known series' name, else the name extraction gives it
    /// (`<subject>-v<version>`).
    pub name: String,
    pub title: String,
    pub version: u32,
    pub total: u32,
    /// Posted patch indexes the file holds.
    pub posted: Vec<u32>,
    /// Indexes it lacks.
    pub missing: Vec<u32>,
    /// `Some(name)` when it is a series gasbench knows.
    pub known: Option<String>,
    /// How it was recognised (or why it is not a known one).
    pub how: String,
}

/// A mail file and the series in it.
#[derive(Clone, Debug)]
pub struct MailFile {
    pub path: PathBuf,
    /// The path as the user gave it.
    pub label: String,
    /// The file as text ([`gasbench_series::mail_text`]: LF line ends,
    /// UTF-8).
    pub text: String,
    pub format: MailFormat,
    pub series: Vec<FileSeries>,
}

/// The most a mail file may hold. The largest real series threads are a
/// few MiB; the bound keeps `/dev/zero`-like input from eating memory.
pub const MAX_MAIL_BYTES: u64 = 64 * 1024 * 1024;

/// The bytes of the regular file `path`, at most `limit` of them
/// ([`gasbench_safefs::read_regular_file`]: a FIFO, device or directory
/// is refused without being opened).
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, ResolveError> {
    use gasbench_safefs::SafeFsError;
    gasbench_safefs::read_regular_file(path, limit).map_err(|e| match e {
        SafeFsError::NotRegular { kind, .. } => ResolveError::NotAFile {
            path: path.to_path_buf(),
            kind,
        },
        SafeFsError::TooLarge { limit, .. } => ResolveError::TooLarge {
            path: path.to_path_buf(),
            limit,
        },
        SafeFsError::Io { source, .. } => ResolveError::Read {
            path: path.to_path_buf(),
            source,
        },
        other => ResolveError::Read {
            path: path.to_path_buf(),
            source: std::io::Error::other(other.to_string()),
        },
    })
}

/// Read `path` and tell, for each series in it, whether it is known.
pub fn read_mail_file(path: &Path, known: &[KnownSeries]) -> Result<MailFile, ResolveError> {
    let bytes = read_bounded(path, MAX_MAIL_BYTES)?;
    read_mail_bytes(&bytes, &path.display().to_string(), path, known)
}

/// At most [`MAX_MAIL_BYTES`] of `reader` (standard input).
pub fn read_bounded_stream(
    reader: impl std::io::Read,
    label: &str,
) -> Result<Vec<u8>, ResolveError> {
    use std::io::Read;
    let mut bytes = Vec::new();
    reader
        .take(MAX_MAIL_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| ResolveError::Read {
            path: PathBuf::from(label),
            source,
        })?;
    if bytes.len() as u64 > MAX_MAIL_BYTES {
        return Err(ResolveError::TooLarge {
            path: PathBuf::from(label),
            limit: MAX_MAIL_BYTES,
        });
    }
    Ok(bytes)
}

/// Mail that came from somewhere other than a file the user named
/// (standard input, a fetched thread), labelled `label`; `path` is where
/// it is kept.
pub fn read_mail_bytes(
    bytes: &[u8],
    label: &str,
    path: &Path,
    known: &[KnownSeries],
) -> Result<MailFile, ResolveError> {
    let label = label.to_string();
    // CRLF mail read as LF, 8-bit bodies from their charset: `text` is what
    // every later stage (extraction included) parses, so they all agree.
    let text = gasbench_series::mail_text(bytes)
        .map_err(|e| KbuildError::series(&label, &String::from_utf8_lossy(bytes), e))?;
    let (format, messages) =
        parse_mail(&text).map_err(|e| KbuildError::series(&label, &text, e))?;
    let found = find_series(&messages).map_err(|e| KbuildError::series(&label, &text, e))?;
    let series = found.iter().map(|s| classify(s, known)).collect();
    Ok(MailFile {
        path: path.to_path_buf(),
        label,
        text,
        format,
        series,
    })
}

/// Known when the version and count agree and every patch the file holds
/// has the diff of the known series' posted patch with the same index.
pub fn classify(s: &Series, known: &[KnownSeries]) -> FileSeries {
    let extracted = gasbench_kbuild::extract::series_dir_name(s);
    let posted: Vec<u32> = s.patches.iter().map(|p| p.subject.index).collect();
    let missing: Vec<u32> = s.missing.iter().map(|m| m.index).collect();
    let mut how =
        format!("not a series gasbench knows: applied as posted (extracted as {extracted})");
    let mut name = extracted.clone();
    let mut known_as = None;
    for k in known {
        let m = &k.manifest;
        if m.version != s.version || m.total != s.total {
            continue;
        }
        let same_cover = matches!(
            (&m.cover, &s.cover),
            (Some(a), Some(b)) if a.message_id == b.message_id
        );
        if !same_cover && m.title != s.title {
            continue;
        }
        let differing: Vec<u32> = s
            .patches
            .iter()
            .filter(|p| {
                let sha = sha256_hex(p.diff_text().as_bytes());
                !m.patches.iter().any(|e| {
                    e.index == p.subject.index
                        && e.origin == PatchOrigin::Posted
                        && e.diff_sha256.as_deref() == Some(sha.as_str())
                })
            })
            .map(|p| p.subject.index)
            .collect();
        if s.patches.is_empty() {
            continue;
        }
        if differing.is_empty() {
            name = k.name.clone();
            known_as = Some(k.name.clone());
            how = format!(
                "known as kernel/series/{}: {} of its {} patches are in the file, each \
                 byte-identical to the posting gasbench has{}",
                k.name,
                s.patches.len(),
                s.total,
                if same_cover {
                    " (same cover letter)"
                } else {
                    ""
                }
            );
            break;
        }
        how = format!(
            "same title and version as kernel/series/{}, but patch(es) {} differ from it: \
             a different posting, applied as posted (extracted as {extracted})",
            k.name,
            list(&differing),
        );
    }
    FileSeries {
        name,
        title: s.title.clone(),
        version: s.version,
        total: s.total,
        posted,
        missing,
        known: known_as,
        how,
    }
}

fn list(ix: &[u32]) -> String {
    ix.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
}

/// A series' name without its revision: `mkdirat2-v2` → `mkdirat2`.
fn unversioned(s: &FileSeries) -> &str {
    s.name
        .strip_suffix(&format!("-v{}", s.version))
        .unwrap_or(&s.name)
}

impl MailFile {
    /// Of each series, the revision to review: the newest complete one
    /// (every patch there), else the newest. In file order.
    pub fn newest_revisions(&self) -> Vec<&FileSeries> {
        let mut out: Vec<&FileSeries> = Vec::new();
        for s in &self.series {
            let same: Vec<&FileSeries> = self
                .series
                .iter()
                .filter(|o| unversioned(o) == unversioned(s))
                .collect();
            let pick = same
                .iter()
                .filter(|o| o.missing.is_empty())
                .max_by_key(|o| o.version)
                .or_else(|| same.iter().max_by_key(|o| o.version))
                .copied();
            if let Some(p) = pick
                && !out.iter().any(|o| o.name == p.name)
            {
                out.push(p);
            }
        }
        out
    }

    /// What [`MailFile::newest_revisions`] chose where the file holds
    /// more than one revision of a series, and why.
    pub fn revision_notes(&self) -> Vec<String> {
        let chosen = self.newest_revisions();
        let mut notes = Vec::new();
        for c in &chosen {
            let mut others: Vec<&FileSeries> = self
                .series
                .iter()
                .filter(|o| unversioned(o) == unversioned(c) && o.name != c.name)
                .collect();
            if others.is_empty() {
                continue;
            }
            others.sort_by_key(|o| std::cmp::Reverse(o.version));
            let describe = |o: &FileSeries| {
                if o.missing.is_empty() {
                    format!("v{} (complete)", o.version)
                } else {
                    format!(
                        "v{} (lacks {} of {})",
                        o.version,
                        o.missing
                            .iter()
                            .map(|i| format!("{i}/{}", o.total))
                            .collect::<Vec<_>>()
                            .join(", "),
                        o.total
                    )
                }
            };
            let newer_incomplete = others.iter().any(|o| o.version > c.version);
            notes.push(format!(
                "the thread holds {} revisions of {:?}: {} and {}; reviewing v{}, the newest {}\
                 (--series {} picks another)",
                others.len() + 1,
                c.title,
                describe(c),
                others
                    .iter()
                    .map(|o| describe(o))
                    .collect::<Vec<_>>()
                    .join(", "),
                c.version,
                if !c.missing.is_empty() {
                    "(no revision is complete) "
                } else if newer_incomplete {
                    "complete one "
                } else {
                    ""
                },
                others[0].name,
            ));
        }
        notes
    }

    /// The series to review: `wanted` by name (`mkdirat2-v2`), without the
    /// version (`mkdirat2`) or by a prefix only one name has (`goldfish`);
    /// when `wanted` is empty, the newest complete revision of each.
    pub fn select(&self, wanted: &[String]) -> Result<Vec<&FileSeries>, ResolveError> {
        if wanted.is_empty() {
            return Ok(self.newest_revisions());
        }
        let mut out = Vec::new();
        for w in wanted {
            let exact = self.series.iter().find(|s| {
                s.name == *w
                    || s.known.as_deref() == Some(w.as_str())
                    || s.name
                        .strip_suffix(&format!("-v{}", s.version))
                        .is_some_and(|bare| bare == w)
            });
            let prefixed: Vec<&FileSeries> = self
                .series
                .iter()
                .filter(|s| s.name.starts_with(w.as_str()))
                .collect();
            let hit = exact.or(match prefixed.as_slice() {
                [one] => Some(*one),
                _ => None,
            });
            match hit {
                Some(s) if !out.iter().any(|o: &&FileSeries| o.name == s.name) => out.push(s),
                Some(_) => {}
                None => {
                    return Err(ResolveError::NoSuchSeries {
                        label: self.label.clone(),
                        wanted: w.clone(),
                        have: self.series.iter().map(|s| s.name.clone()).collect(),
                    });
                }
            }
        }
        Ok(out)
    }
}

/// A Message-Id found among the known series.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdMatch {
    pub name: String,
    pub how: String,
}

/// Which known series has the Message-Id `id` (cover letter, a patch, or
/// the id git send-email would have given a patch whose real id the
/// source lacked).
pub fn find_message_id(id: &str, known: &[KnownSeries]) -> Result<IdMatch, ResolveError> {
    for k in known {
        let m = &k.manifest;
        if let Some(c) = &m.cover
            && c.message_id == id
        {
            return Ok(IdMatch {
                name: k.name.clone(),
                how: format!("<{id}> is the cover letter of kernel/series/{}", k.name),
            });
        }
        for p in &m.patches {
            if p.message_id == id {
                return Ok(IdMatch {
                    name: k.name.clone(),
                    how: format!(
                        "<{id}> is patch {}/{} of kernel/series/{}",
                        p.index, m.total, k.name
                    ),
                });
            }
            if p.message_id_guess.as_deref() == Some(id) {
                return Ok(IdMatch {
                    name: k.name.clone(),
                    how: format!(
                        "<{id}> is the id git send-email gives patch {}/{} of kernel/series/{} \
                         (the source lacked its real id)",
                        p.index, m.total, k.name
                    ),
                });
            }
        }
    }
    Err(ResolveError::UnknownMessageId {
        id: id.to_string(),
        known: known
            .iter()
            .map(|k| match &k.manifest.cover {
                Some(c) => format!("{} (cover <{}>)", k.name, c.message_id),
                None => k.name.clone(),
            })
            .collect(),
    })
}

/// A series ready to review: where its kernel directory is and how to
/// apply it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub name: String,
    /// `kernel/` for a known series; the private copy for a new one.
    pub kernel_dir: PathBuf,
    /// Apply as posted, without the port (a series the port knows nothing of).
    pub posted_only: bool,
    pub known: bool,
    /// How the input was resolved to it.
    pub how: String,
    /// The argument as given.
    pub input: String,
}

/// A known series, reviewed with the port from `kdir`.
pub fn known_target(kdir: &KernelDir, name: &str, how: &str, input: &str) -> Target {
    Target {
        name: name.to_string(),
        kernel_dir: kdir.root().to_path_buf(),
        posted_only: false,
        known: true,
        how: how.to_string(),
        input: input.to_string(),
    }
}

/// A series gasbench does not know: a private kernel directory in `dest`
/// (a copy of `kdir`'s base pin, config fragments, port and known series,
/// which tell the kernel stage which config symbols belong to other
/// series), with the new series extracted into it, applied as posted.
pub fn private_target(
    kdir: &KernelDir,
    file: &MailFile,
    series: &FileSeries,
    dest: &Path,
) -> Result<Target, ResolveError> {
    let src = kdir.root();
    copy_file(&src.join("base.toml"), &dest.join("base.toml"))?;
    std::fs::create_dir_all(dest.join("config")).map_err(|e| io("create", dest, e))?;
    for f in kdir.fragments()? {
        copy_file(&f.path, &dest.join("config").join(&f.name))?;
    }
    copy_tree(&src.join("port"), &dest.join("port"))?;
    copy_tree(&src.join("series"), &dest.join("series"))?;
    // The kernel profiles (their fragments and patches) are gasbench's,
    // whatever the series: a private target builds every profile.
    copy_tree(&src.join("profiles"), &dest.join("profiles"))?;
    // A different posting under a known name replaces it; only the
    // hand-made reconstructions of patches the file lacks are kept.
    let sdir = dest.join("series").join(&series.name);
    if sdir.is_dir() {
        let keep: Vec<String> = series.missing.iter().map(|i| format!("{i:04}-")).collect();
        for e in std::fs::read_dir(&sdir)
            .map_err(|e| io("read", &sdir, e))?
            .flatten()
        {
            let n = e.file_name().to_string_lossy().into_owned();
            if !keep.iter().any(|k| n.starts_with(k.as_str())) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    match gasbench_kbuild::extract::extract_selected(
        &file.text,
        &file.label,
        &dest.join("series"),
        |n| n == series.name,
    ) {
        Ok(_) => {}
        // The kernel stage would point into `dest`, which the caller
        // deletes: say what to change that lasts.
        Err(KbuildError::MissingPatch {
            index,
            total,
            series: title,
            ..
        }) => {
            let known_dir = kdir.series_dir(&series.name);
            return Err(ResolveError::MissingPatch {
                index,
                total,
                title,
                label: file.label.clone(),
                keep_dir: known_dir.is_dir().then_some(known_dir),
            });
        }
        Err(e) => return Err(e.into()),
    }
    Ok(Target {
        name: series.name.clone(),
        kernel_dir: dest.to_path_buf(),
        posted_only: true,
        known: false,
        how: series.how.clone(),
        input: file.label.clone(),
    })
}

fn io(op: &'static str, path: &Path, e: std::io::Error) -> ResolveError {
    ResolveError::Kbuild(KbuildError::io(op, path, e))
}

fn copy_file(from: &Path, to: &Path) -> Result<(), ResolveError> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io("create", parent, e))?;
    }
    std::fs::copy(from, to).map_err(|e| io("copy", from, e))?;
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), ResolveError> {
    if !from.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(to).map_err(|e| io("create", to, e))?;
    for e in std::fs::read_dir(from)
        .map_err(|e| io("read", from, e))?
        .flatten()
    {
        let (a, b) = (e.path(), to.join(e.file_name()));
        if a.is_dir() {
            copy_tree(&a, &b)?;
        } else {
            copy_file(&a, &b)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_in_their_usual_spellings() {
        let id = "20260412135434.3095416-1-jkoolstra@xs4all.nl";
        for arg in [
            format!("<{id}>"),
            id.to_string(),
            format!("id:{id}"),
            format!("https://lore.kernel.org/all/{id}/"),
            format!("https://lore.kernel.org/linux-api/{id}/T/#t"),
            format!("https://lore.kernel.org/r/{}", id.replace('@', "%40")),
            format!(
                "https://lore.kernel.org/all/%3C{}%3E/",
                id.replace('@', "%40")
            ),
            format!(
                "https://lore.kernel.org/all/%3c{}%3e/T/#u",
                id.replace('@', "%40")
            ),
            format!("mid:{id}"),
            format!("MID:<{id}>"),
            format!("mid:<{id}>"),
            format!("id:%3C{}%3E", id.replace('@', "%40")),
        ] {
            assert_eq!(Input::parse(&arg), Input::MessageId(id.into()), "{arg}");
        }
        // Not shaped like one: a (missing) file.
        for arg in [
            "series.mbox",
            "@x",
            "a b@c",
            "/tmp/does-not-exist@x/y",
            "mid:",
            "%zz@",
        ] {
            assert!(matches!(Input::parse(arg), Input::File(_)), "{arg}");
        }
    }

    #[test]
    fn only_regular_files_are_read_and_only_up_to_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // Opening it would block: the type check must come first.
        let err = read_bounded(&fifo, 100).unwrap_err();
        assert!(
            matches!(err, ResolveError::NotAFile { kind: "a FIFO", .. }),
            "{err}"
        );
        assert!(err.to_string().contains("is a FIFO"), "{err}");
        assert!(err.help().contains("give an mbox file"), "{}", err.help());

        let err = read_bounded(Path::new("/dev/zero"), 100).unwrap_err();
        assert!(err.to_string().contains("a character device"), "{err}");
        let err = read_bounded(dir.path(), 100).unwrap_err();
        assert!(err.to_string().contains("a directory"), "{err}");

        let file = dir.path().join("m");
        std::fs::write(&file, [b'x'; 101]).unwrap();
        let err = read_bounded(&file, 100).unwrap_err();
        assert!(matches!(err, ResolveError::TooLarge { .. }), "{err}");
        assert_eq!(read_bounded(&file, 101).unwrap().len(), 101);

        let err = read_bounded(&dir.path().join("absent"), 100).unwrap_err();
        assert!(
            err.help().contains("give a file that exists"),
            "{}",
            err.help()
        );
    }

    #[test]
    fn percent_escapes_of_ascii_only() {
        assert_eq!(percent_decoded("a%40b%3C%3e%"), "a@b<>%");
        assert_eq!(percent_decoded("%C3%A9%4"), "%C3%A9%4");
    }

    #[test]
    fn a_file_that_exists_is_a_file_even_with_an_at_sign() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a@b");
        std::fs::write(&p, "x").unwrap();
        assert_eq!(Input::parse(p.to_str().unwrap()), Input::File(p.clone()));
    }
}
