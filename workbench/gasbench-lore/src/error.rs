//! What can go wrong getting a thread.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LoreError {
    /// The archive answered, and has no such message in any inbox tried.
    #[error("{base} has no thread for <{msgid}> (tried {})", tried.join(", "))]
    NotFound {
        base: String,
        msgid: String,
        tried: Vec<String>,
    },
    /// The server could not be reached at all: no network, DNS, TLS.
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The server answered with an error other than 404.
    #[error("{url} answered HTTP {status}")]
    Http { url: String, status: u16 },
    /// The gzip stream ended early or is corrupt: a cut download.
    #[error("the thread from {url} is a damaged gzip stream: {reason}")]
    BadGzip { url: String, reason: String },
    #[error("the thread from {source_name} is larger than {} MiB; no patch series is that big", limit / (1024 * 1024))]
    TooLarge { source_name: String, limit: u64 },
    #[error("the thread from {source_name} is empty")]
    Empty { source_name: String },
    #[error("{url:?} is not a usable archive address: {reason}")]
    BadBase { url: String, reason: String },
    #[error("<{msgid}> is not a usable Message-Id: {reason}")]
    BadMessageId { msgid: String, reason: String },
    /// b4 is not installed, or not where it was said to be.
    #[error("cannot run {}: {source}", program.display())]
    B4Missing {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`b4 am` for <{msgid}> failed ({status}): {stderr}")]
    B4Failed {
        msgid: String,
        status: String,
        /// Its last lines, cleaned of control characters.
        stderr: String,
    },
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl LoreError {
    /// What to do about it.
    pub fn help(&self) -> String {
        match self {
            LoreError::Unreachable { .. } => "no network here? On a machine with access, save \
                 the thread (`b4 am -o . MSGID`, or download <archive>/all/MSGID/t.mbox.gz and \
                 gunzip it), then run `gasbench repro FILE` (or pipe it: `gasbench repro -`). \
                 --lore URL or GASBENCH_LORE points at another archive."
                .into(),
            LoreError::NotFound { .. } => "check the Message-Id (copy it from the mail's \
                 Message-Id header); a very new message may take a few minutes to reach the \
                 archive; --lore-list NAME also tries that list's inbox"
                .into(),
            LoreError::Http { .. } => {
                "the archive is having trouble; try again, or use --b4 or a saved mbox".into()
            }
            LoreError::BadGzip { .. } => "the download was cut short; run the command again \
                 (nothing damaged was kept)"
                .into(),
            LoreError::TooLarge { .. } | LoreError::Empty { .. } => {
                "check the Message-Id names a patch or its cover letter".into()
            }
            LoreError::BadBase { .. } => {
                "give the archive's base address, e.g. https://lore.kernel.org".into()
            }
            LoreError::BadMessageId { .. } => {
                "give the Message-Id as in the mail's header, e.g. <20260412.1-1-a@b.c>".into()
            }
            LoreError::B4Missing { .. } => {
                "install b4 (`pip install b4`), or leave out --b4 to fetch over HTTPS".into()
            }
            LoreError::B4Failed { .. } => "run the same `b4 am` by hand to see why".into(),
            LoreError::Io { .. } => "check the cache directory's permissions and free space".into(),
        }
    }
}
