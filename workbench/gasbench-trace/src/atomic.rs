//! Files that are whole or absent: results.json, junit.xml and the
//! review are written to a temporary file beside their place, synced, and
//! renamed over it, so a full disk or a crash leaves the old file or none,
//! never an empty or half-written one.

use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("cannot write {}: {source}", path.display())]
pub struct WriteError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Write `bytes` to `path` atomically (temp file, fsync, rename, fsync of
/// the directory). On error nothing is left but what was there before.
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let err = |source| WriteError {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| err(std::io::Error::other("not a file name")))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // The rename itself is on disk once the directory is.
        std::fs::File::open(dir)?.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("results.json");
        write(&p, b"{\"a\":1}").unwrap();
        write(&p, b"{\"b\":2}").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\"b\":2}");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["results.json"]);
    }

    #[test]
    fn a_failed_write_names_the_file_and_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("junit.xml");
        write(&p, b"old").unwrap();
        // A directory where the temporary file would go: the write fails.
        let blocker = dir
            .path()
            .join(format!(".junit.xml.tmp-{}", std::process::id()));
        std::fs::create_dir(&blocker).unwrap();
        let e = write(&p, b"new").unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("cannot write {}: ", p.display())),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "old");
    }
}
