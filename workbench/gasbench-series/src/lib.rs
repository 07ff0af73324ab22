//! Patch series from mail.
//!
//! Reviewers get patches as mail: an mbox saved from a mail client or
//! `b4`, or a thread digest copied from a public-inbox archive (lore). This
//! crate turns either into ordered [`Series`] and renders each patch as a
//! git-am-able mbox message whose diff is byte-identical to what was posted.
//!
//! - [`mail_text`] turns a file's bytes into the text the parsers read
//!   (CRLF messages as LF, 8-bit bodies decoded from their charset).
//! - [`parse_mail`] reads messages from an mbox, a single message or a
//!   public-inbox thread digest (see [`digest`] for that format's quirks).
//! - [`subject::PatchSubject`] understands `[RFC PATCH v3 1/6] title`.
//! - [`patch::PatchBody`] splits a body into message, notes, diff and
//!   signature; [`patch::FileDiff`] parses the diff hunk by hunk.
//! - [`find_series`] groups messages into series, orders them, notices
//!   patches that are missing (and whether a reply quotes them), and gives
//!   every message a stable Message-Id.
//! - [`render`] writes patches and cover letters; [`manifest`] describes a
//!   series (name, version, order, author, lists, cover letter) as TOML.
//!
//! **Architecture invariant:** this crate reads strings (and, in
//! [`mail_text`], bytes) and never touches
//! the file system, a git tree or a process. Every error carries the byte
//! span of the input it is about, so the CLI can point at it.

pub mod charset;
pub mod date;
pub mod digest;
pub mod input;
pub mod manifest;
pub mod mbox;
pub mod message;
pub mod patch;
pub mod render;
pub mod series;
pub mod span;
pub mod subject;

pub use input::mail_text;
pub use message::{MailFormat, Message, Person};
pub use series::{Series, SeriesPatch, find_series};
pub use span::Span;

/// What went wrong, with the place in the input it is about.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no mail found: the input is neither an mbox, a mail message nor a public-inbox digest"
    )]
    NotMail,
    #[error("not a patch series: {reason}")]
    NotASeries { reason: String, span: Option<Span> },
    #[error("malformed header: {what}")]
    BadHeader { what: String, span: Span },
    #[error("malformed date {text:?}: {what}")]
    BadDate {
        text: String,
        what: String,
        span: Span,
    },
    #[error("corrupt patch {subject:?}: {what}")]
    CorruptPatch {
        subject: String,
        what: String,
        span: Span,
    },
    #[error("patch {index}/{total} of {series:?} was posted twice")]
    DuplicatePatch {
        series: String,
        index: u32,
        total: u32,
        span: Span,
        first: Span,
    },
    #[error("patch numbering in {subject:?}: {what}")]
    BadNumbering {
        subject: String,
        what: String,
        span: Span,
    },
    #[error("cannot read {message}: {what}")]
    Charset {
        /// The subject, quoted, or where the message starts.
        message: String,
        /// Which charset, and what about it.
        what: String,
        span: Span,
    },
    #[error("cannot decode the body of {subject:?}: {what}")]
    BadEncoding {
        subject: String,
        what: String,
        span: Span,
    },
}

impl Error {
    /// The part of the input the error is about, when there is one.
    pub fn span(&self) -> Option<Span> {
        match self {
            Error::NotMail => None,
            Error::NotASeries { span, .. } => *span,
            Error::BadHeader { span, .. }
            | Error::BadDate { span, .. }
            | Error::CorruptPatch { span, .. }
            | Error::DuplicatePatch { span, .. }
            | Error::BadNumbering { span, .. }
            | Error::Charset { span, .. }
            | Error::BadEncoding { span, .. } => Some(*span),
        }
    }

    /// What to do about it, for the CLI's help line.
    pub fn help(&self) -> &'static str {
        match self {
            Error::NotMail => {
                "give an mbox (b4 am, git format-patch, a mail client's export) or a lore thread saved as text"
            }
            Error::NotASeries { .. } => {
                "the input needs at least one message whose subject looks like `[PATCH ...] title` and whose body holds a diff"
            }
            Error::BadHeader { .. } | Error::BadDate { .. } => {
                "the message headers are damaged; save the mail again from the archive"
            }
            Error::CorruptPatch { .. } => {
                "the diff was damaged in transit (wrapped lines, lost whitespace); fetch the raw message instead"
            }
            Error::DuplicatePatch { .. } => {
                "the input holds two postings of the same patch; keep only one version of the series"
            }
            Error::BadNumbering { .. } => {
                "a posted patch is `[PATCH k/n]` with 1 <= k <= n (0/n for the cover letter) and n at most 999; fix the subject or leave the message out"
            }
            Error::Charset { .. } => {
                "declare the charset the mail is written in (UTF-8, ISO-8859-1 or windows-1252) in its Content-Type header, or convert it to UTF-8 (`iconv -f <charset> -t UTF-8`)"
            }
            Error::BadEncoding { .. } => {
                "re-save the message with 8bit or quoted-printable encoding"
            }
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Parse mail in any of the supported formats, telling which one it was.
pub fn parse_mail(text: &str) -> Result<(MailFormat, Vec<Message>)> {
    if digest::looks_like_digest(text) {
        let messages = digest::parse(text)?;
        if !messages.is_empty() {
            return Ok((MailFormat::PublicInboxDigest, messages));
        }
    }
    if mbox::looks_like_mbox(text) {
        return Ok((MailFormat::Mbox, mbox::parse(text)?));
    }
    if mbox::looks_like_message(text) {
        return Ok((
            MailFormat::SingleMessage,
            vec![mbox::parse_message(text, 0)?],
        ));
    }
    Err(Error::NotMail)
}
