//! Getting a thread by Message-Id for `repro` and `b4-check`: from the
//! cache, else the list's archive (gasbench-lore) or `b4 am`.

use std::path::PathBuf;
use std::process::ExitCode;

use gasbench_lore::{Archive, B4, LoreError, MailCache};
use miette::{MietteDiagnostic, Report};

use super::exit;
use crate::Globals;

#[derive(clap::Args, Clone, Debug, Default)]
pub struct FetchArgs {
    /// The public-inbox archive a Message-Id's thread is fetched from
    /// [env: GASBENCH_LORE] [default: https://lore.kernel.org].
    #[arg(long, value_name = "URL")]
    pub lore: Option<String>,
    /// Also try this list's inbox when the archive's `all` has no thread
    /// for the Message-Id (the lists of the series gasbench knows are
    /// tried anyway); repeatable.
    #[arg(long, value_name = "NAME")]
    pub lore_list: Vec<String>,
    /// Fetch with `b4 am -o -` (your b4 and its configuration) instead.
    #[arg(long)]
    pub b4: bool,
    /// Fetch again even when the thread is cached.
    #[arg(long)]
    pub refetch: bool,
}

/// A thread and the file it is kept in.
pub struct Fetched {
    pub mbox: Vec<u8>,
    pub kept: PathBuf,
}

/// The thread of `id`; on failure, the error is printed and the exit
/// status returned (2 for a Message-Id the archive does not have, 3 when
/// the archive or b4 could not be used).
pub fn thread(
    g: &Globals,
    args: &FetchArgs,
    id: &str,
    lists: &[String],
) -> Result<Fetched, ExitCode> {
    let cache = MailCache::new(&g.cache.root().join("mail"));
    let mut lists = lists.to_vec();
    lists.extend(args.lore_list.iter().cloned());
    // The configuration has GASBENCH_LORE over the files already.
    let base = gasbench_lore::base_url(args.lore.as_deref(), None, g.config.lore.value.as_deref());
    let fetch = || {
        if args.b4 {
            eprintln!("gasbench: fetching <{id}> with b4 am");
            B4::default().am(id)
        } else {
            eprintln!("gasbench: fetching the thread of <{id}> from {base}");
            Archive::new(&base)?.thread(id, &lists)
        }
    };
    let result = if args.refetch {
        fetch().and_then(|t| cache.put(id, &t).map(|_| t))
    } else {
        cache.get_or_fetch(id, fetch)
    };
    match result {
        Ok(t) => {
            let kept = cache.path(id);
            eprintln!(
                "gasbench: the thread of <{id}>: {} bytes {} {}",
                t.mbox.len(),
                if t.cached {
                    "from the cache,"
                } else {
                    "fetched from"
                },
                if t.cached {
                    kept.display().to_string()
                } else {
                    format!("{}, kept as {}", t.source, kept.display())
                }
            );
            Ok(Fetched { mbox: t.mbox, kept })
        }
        Err(e) => {
            let status = match &e {
                LoreError::NotFound { .. } | LoreError::BadMessageId { .. } => exit::BAD_INPUT,
                _ => exit::TOOL_FAILED,
            };
            super::eprint_report(&diagnostic(e));
            Err(exit::code(status))
        }
    }
}

pub fn diagnostic(e: LoreError) -> Report {
    let help = e.help();
    Report::new(MietteDiagnostic::new(e.to_string()).with_help(help))
}
