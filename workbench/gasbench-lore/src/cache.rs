//! Fetched threads, kept by Message-Id.

use std::path::{Path, PathBuf};

use crate::{LoreError, MAX_THREAD_BYTES, Thread, cache_key};

/// `<cache>/mail/<key>.mbox`, one file per Message-Id fetched.
#[derive(Clone, Debug)]
pub struct MailCache {
    dir: PathBuf,
}

impl MailCache {
    pub fn new(dir: &Path) -> MailCache {
        MailCache {
            dir: dir.to_path_buf(),
        }
    }

    /// Where the thread of `msgid` is kept.
    pub fn path(&self, msgid: &str) -> PathBuf {
        self.dir.join(format!("{}.mbox", cache_key(msgid)))
    }

    /// The thread of `msgid` if it was fetched before.
    pub fn get(&self, msgid: &str) -> Option<Thread> {
        let path = self.path(msgid);
        let meta = std::fs::metadata(&path).ok()?;
        if !meta.is_file() || meta.len() == 0 || meta.len() > MAX_THREAD_BYTES {
            return None;
        }
        let mbox = std::fs::read(&path).ok()?;
        Some(Thread {
            mbox,
            source: path.display().to_string(),
            cached: true,
        })
    }

    /// Keep `thread` for `msgid`: written beside and renamed into place,
    /// so a crash never leaves half a thread that a later run would take
    /// for the whole.
    pub fn put(&self, msgid: &str, thread: &Thread) -> Result<PathBuf, LoreError> {
        let io = |op, path: &Path, source| LoreError::Io {
            op,
            path: path.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(|e| io("create", &self.dir, e))?;
        let path = self.path(msgid);
        let tmp = self
            .dir
            .join(format!(".{}.{}.tmp", cache_key(msgid), std::process::id()));
        std::fs::write(&tmp, &thread.mbox).map_err(|e| io("write", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io("rename", &tmp, e)
        })?;
        Ok(path)
    }

    /// The cached thread, else `fetch`'s (which is then kept).
    pub fn get_or_fetch(
        &self,
        msgid: &str,
        fetch: impl FnOnce() -> Result<Thread, LoreError>,
    ) -> Result<Thread, LoreError> {
        if let Some(t) = self.get(msgid) {
            return Ok(t);
        }
        let t = fetch()?;
        self.put(msgid, &t)?;
        Ok(t)
    }
}
