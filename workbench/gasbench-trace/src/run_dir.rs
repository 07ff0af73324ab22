//! A run directory: everything one run produced, written as it happens.
//!
//! ```text
//! <run>/events.jsonl   every event, one JSON object per line, in bus order
//! <run>/console.log    the guest console, raw
//! <run>/qemu.log       QEMU's own output and its command line
//! <run>/results.json   the summary: verdicts, expected vs actual
//! <run>/junit.xml      the same for CI systems
//! <run>/results.ktap   the same as KTAP, for kselftest-style harnesses
//! <run>/kcidb.json     a KCIDB v5.3 submission (checkout, builds, tests)
//! <run>/ktap/*.ktap    kselftest output as the binaries printed it
//! <run>/share/         the virtiofs share (scenario bundles)
//! ```

use std::path::{Path, PathBuf};

pub const EVENTS: &str = "events.jsonl";
pub const RESULTS: &str = "results.json";
pub const JUNIT: &str = "junit.xml";
pub const CONSOLE: &str = "console.log";
pub const KTAP: &str = "results.ktap";
pub const KCIDB: &str = "kcidb.json";

#[derive(Clone, Debug)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// A new run directory under `base`, named by time and what ran.
    /// Private (0700): it holds the VM's sockets.
    pub fn create(base: &Path, label: &str) -> std::io::Result<RunDir> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::create_dir_all(base)?;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let clean: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        // Two runs in the same second get distinct directories.
        let mut n = 0;
        let path = loop {
            let name = if n == 0 {
                format!("{stamp}-{clean}")
            } else {
                format!("{stamp}-{clean}-{n}")
            };
            let p = base.join(name);
            match std::fs::DirBuilder::new().mode(0o700).create(&p) {
                Ok(()) => break p,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
                Err(e) => return Err(e),
            }
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
        // `latest` points at the newest run; best effort.
        let latest = base.join("latest");
        let _ = std::fs::remove_file(&latest);
        let _ = std::os::unix::fs::symlink(path.file_name().unwrap_or_default(), &latest);
        Ok(RunDir { path })
    }

    /// The newest run under `base`, from the `latest` link gasbench
    /// keeps there (for `gasbench open` with no argument). The link is
    /// ours, but it is read as data: only a plain name of a directory
    /// beside it is followed, never a path, `..` or a link to a link.
    pub fn latest(base: &Path) -> std::io::Result<PathBuf> {
        let link = base.join("latest");
        let bad = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidData, why);
        let target = std::fs::read_link(&link).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("{}: {e} (no run has been made there yet?)", link.display()),
            )
        })?;
        let mut parts = target.components();
        let name = match (parts.next(), parts.next()) {
            (Some(std::path::Component::Normal(n)), None) => n.to_owned(),
            _ => {
                return Err(bad(format!(
                    "{} points at {}, not at a run beside it",
                    link.display(),
                    target.display()
                )));
            }
        };
        let dir = base.join(name);
        let meta = std::fs::symlink_metadata(&dir)?;
        if !meta.is_dir() {
            return Err(bad(format!("{} is not a run directory", dir.display())));
        }
        Ok(dir)
    }

    /// An existing run directory (for `gasbench open`).
    pub fn open(path: &Path) -> std::io::Result<RunDir> {
        let events = path.join(EVENTS);
        if !events.exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "{} has no {EVENTS}: not a gasbench run directory",
                    path.display()
                ),
            ));
        }
        Ok(RunDir {
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn events(&self) -> PathBuf {
        self.path.join(EVENTS)
    }
    pub fn results(&self) -> PathBuf {
        self.path.join(RESULTS)
    }
    pub fn junit(&self) -> PathBuf {
        self.path.join(JUNIT)
    }
    pub fn results_ktap(&self) -> PathBuf {
        self.path.join(KTAP)
    }
    pub fn kcidb(&self) -> PathBuf {
        self.path.join(KCIDB)
    }
    pub fn console(&self) -> PathBuf {
        self.path.join(CONSOLE)
    }
    pub fn share(&self) -> PathBuf {
        self.path.join("share")
    }
    pub fn ktap(&self) -> PathBuf {
        self.path.join("ktap")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn latest_follows_only_a_plain_name_beside_it() {
        let base = tempfile::tempdir().unwrap();
        assert!(RunDir::latest(base.path()).is_err());
        let a = RunDir::create(base.path(), "a").unwrap();
        assert_eq!(RunDir::latest(base.path()).unwrap(), a.path());
        for evil in ["/etc", "../elsewhere", "x/../../etc"] {
            let link = base.path().join("latest");
            std::fs::remove_file(&link).unwrap();
            std::os::unix::fs::symlink(evil, &link).unwrap();
            let err = RunDir::latest(base.path()).unwrap_err();
            assert!(
                err.to_string().contains("not at a run beside it"),
                "{evil}: {err}"
            );
        }
        // A name that is itself a link is not followed further.
        std::os::unix::fs::symlink("/etc", base.path().join("sneaky")).unwrap();
        let link = base.path().join("latest");
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink("sneaky", &link).unwrap();
        assert!(RunDir::latest(base.path()).is_err());
    }

    #[test]
    fn run_dirs_are_private_distinct_and_linked_as_latest() {
        let base = tempfile::tempdir().unwrap();
        let a = RunDir::create(base.path(), "run scenarios/x.toml").unwrap();
        let b = RunDir::create(base.path(), "run scenarios/x.toml").unwrap();
        assert_ne!(a.path(), b.path());
        let mode = std::fs::metadata(a.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(
            a.path()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .ends_with("-run_scenarios_x_toml")
        );
        let latest = std::fs::read_link(base.path().join("latest")).unwrap();
        assert_eq!(latest, b.path().file_name().unwrap());
        assert!(RunDir::open(a.path()).is_err(), "no events.jsonl yet");
        std::fs::write(a.events(), "").unwrap();
        assert!(RunDir::open(a.path()).is_ok());
    }
}
