//! Where gasbench's own data comes from: the scenarios, the `kernel/`
//! directory (base pin, series as posted, port, fragments, profiles) and
//! the guest agent's sources.
//!
//! One rule for every command ([`DataRoot::locate`]):
//! 1. a directory the user named (`--data-dir`, `GASBENCH_DATA`, the
//!    configuration file);
//! 2. the checkout this binary was built from, when the binary runs from
//!    that build's target directory (`cargo run`, the tests): edits in
//!    the checkout are seen at once;
//! 3. otherwise the copy embedded in the binary at build time, unpacked
//!    once into the cache under its sha256 (`cargo install`, a release
//!    binary copied elsewhere).
//!
//! The agent is embedded as sources, not prebuilt: a prebuilt static
//! agent would have to be built by a nested cargo in a build script on
//! every build of gasbench, while cargo is already a prerequisite at run
//! time (the toolchain that installed gasbench builds the agent, in the
//! cache, once per version).

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The embedded archive (deterministic tar.gz made by build.rs).
static ARCHIVE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/data.tar.gz"));
/// Its sha256, hex.
pub const ARCHIVE_SHA256: &str = env!("GASBENCH_DATA_SHA256");
/// How many files it holds.
pub const ARCHIVE_FILES: &str = env!("GASBENCH_DATA_FILES");
/// The checkout the binary was built from.
const BUILT_FROM: &str = env!("GASBENCH_DATA_CHECKOUT");
/// The target profile directory of that build.
const BUILD_DIR: &str = env!("GASBENCH_DATA_BUILD_DIR");

/// The most the embedded archive may unpack to (it is ours, but a bound
/// costs nothing).
const MAX_UNPACKED: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(
        "{path} (from {source_name}) is not gasbench data: it has no kernel/base.toml and scenarios/ (a gasbench checkout is)"
    )]
    NotData { path: PathBuf, source_name: String },
    #[error("cannot unpack gasbench's embedded data into {dir}: {err}")]
    Unpack {
        dir: PathBuf,
        #[source]
        err: std::io::Error,
    },
}

/// Where the data came from, for `gasbench doctor` and errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A directory the user named; `source` says how (`--data-dir`,
    /// `GASBENCH_DATA`, a configuration file).
    Named { source: String },
    /// The checkout the running binary was built from.
    Checkout,
    /// The binary's own copy, unpacked into the cache.
    Embedded { sha256: String },
}

/// gasbench's data, found.
#[derive(Clone, Debug)]
pub struct DataRoot {
    root: PathBuf,
    origin: Origin,
}

impl fmt::Display for DataRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Origin::Named { source } => write!(f, "{} (from {source})", self.root.display()),
            Origin::Checkout => write!(
                f,
                "{} (the checkout this binary was built from)",
                self.root.display()
            ),
            Origin::Embedded { sha256 } => write!(
                f,
                "embedded in the binary ({} files, sha256 {}…), unpacked at {}",
                ARCHIVE_FILES,
                &sha256[..12],
                self.root.display()
            ),
        }
    }
}

impl DataRoot {
    /// Find the data: `named` (a directory and how the user named it),
    /// else the checkout of a development build, else the embedded copy
    /// unpacked under `cache_dirs` (the first that can be written: the
    /// gasbench cache, then the user's).
    pub fn locate(
        named: Option<(&Path, &str)>,
        cache_dirs: &[PathBuf],
    ) -> Result<DataRoot, DataError> {
        if let Some((path, source)) = named {
            return Self::named(path, source);
        }
        if let Some(checkout) = development_checkout() {
            return Ok(DataRoot {
                root: checkout,
                origin: Origin::Checkout,
            });
        }
        Self::embedded(cache_dirs)
    }

    /// A directory the user named.
    pub fn named(path: &Path, source: &str) -> Result<DataRoot, DataError> {
        if !is_data(path) {
            return Err(DataError::NotData {
                path: path.to_path_buf(),
                source_name: source.to_string(),
            });
        }
        Ok(DataRoot {
            root: path.canonicalize().unwrap_or_else(|_| path.to_path_buf()),
            origin: Origin::Named {
                source: source.to_string(),
            },
        })
    }

    /// The embedded copy, unpacked into the first of `cache_dirs` that
    /// can be written (`<dir>/data/<sha256 prefix>`), or reused there.
    pub fn embedded(cache_dirs: &[PathBuf]) -> Result<DataRoot, DataError> {
        let key = &ARCHIVE_SHA256[..16];
        let mut last = None;
        for cache in cache_dirs {
            let dir = cache.join("data").join(key);
            match unpack_once(&dir) {
                Ok(()) => {
                    return Ok(DataRoot {
                        root: dir,
                        origin: Origin::Embedded {
                            sha256: ARCHIVE_SHA256.to_string(),
                        },
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| DataError::Unpack {
            dir: PathBuf::from("(no cache directory)"),
            err: std::io::Error::from(std::io::ErrorKind::NotFound),
        }))
    }

    /// The top directory (a checkout, or the unpacked copy).
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// `kernel/`: what `gasbench_kbuild::layout::KernelDir::open` takes.
    pub fn kernel_dir(&self) -> PathBuf {
        self.root.join("kernel")
    }

    /// The default scenario suite.
    pub fn scenarios(&self) -> PathBuf {
        self.root.join("scenarios")
    }

    /// The workspace the guest agent is built from with cargo.
    pub fn agent_source(&self) -> &Path {
        &self.root
    }
}

fn is_data(dir: &Path) -> bool {
    dir.join("kernel/base.toml").is_file() && dir.join("scenarios").is_dir()
}

/// The checkout this binary was built from, when the binary runs from
/// that build's own target directory and the checkout is still there.
fn development_checkout() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?.canonicalize().ok()?;
    let build_dir = Path::new(BUILD_DIR).canonicalize().ok()?;
    let checkout = Path::new(BUILT_FROM);
    (exe.starts_with(&build_dir) && is_data(checkout)).then(|| checkout.to_path_buf())
}

/// Unpack the archive into `dir` unless a complete copy is there: into a
/// staging directory beside it, renamed into place when whole, so a
/// killed gasbench leaves no half copy that looks complete.
fn unpack_once(dir: &Path) -> Result<(), DataError> {
    let err = |e: std::io::Error| DataError::Unpack {
        dir: dir.to_path_buf(),
        err: e,
    };
    if is_data(dir) {
        return Ok(());
    }
    let parent = dir.parent().expect("data/<key> has a parent");
    std::fs::create_dir_all(parent).map_err(err)?;
    let staging = parent.join(format!(
        ".partial-{}-{}",
        dir.file_name().unwrap().to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir(&staging).map_err(err)?;
    let unpacked = unpack_into(&staging);
    if let Err(e) = unpacked {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(err(e));
    }
    match std::fs::rename(&staging, dir) {
        Ok(()) => Ok(()),
        // Another gasbench put its copy there first: the same bytes.
        Err(_) if is_data(dir) => {
            let _ = std::fs::remove_dir_all(&staging);
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(err(e))
        }
    }
}

fn unpack_into(staging: &Path) -> std::io::Result<()> {
    let gz = flate2::read::GzDecoder::new(ARCHIVE).take(MAX_UNPACKED);
    let mut archive = tar::Archive::new(gz);
    archive.set_preserve_mtime(false);
    for entry in archive.entries()? {
        let mut entry = entry?;
        // unpack_in refuses paths that leave `staging`.
        entry.unpack_in(staging)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_copy_unpacks_into_the_first_writable_cache_and_is_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let unwritable = tmp.path().join("file");
        std::fs::write(&unwritable, "not a directory").unwrap();
        let data = DataRoot::embedded(&[unwritable, tmp.path().join("cache")]).unwrap();
        assert!(data.root().starts_with(tmp.path().join("cache/data")));
        assert!(data.kernel_dir().join("base.toml").is_file());
        assert!(data.scenarios().is_dir());
        let agent = data
            .agent_source()
            .join("guest-tools/gasbench-agent/Cargo.toml");
        let manifest = std::fs::read_to_string(agent).unwrap();
        assert!(!manifest.contains("[dev-dependencies]"));
        let ws = std::fs::read_to_string(data.agent_source().join("Cargo.toml")).unwrap();
        assert!(ws.contains("members = [\"guest-tools/*\"]"));
        assert!(data.to_string().contains("embedded in the binary"));
        // A second locate takes the complete copy as it is.
        std::fs::write(data.root().join("marker"), "").unwrap();
        let again = DataRoot::embedded(&[tmp.path().join("cache")]).unwrap();
        assert!(again.root().join("marker").exists());
        assert!(
            std::fs::read_dir(tmp.path().join("cache/data"))
                .unwrap()
                .flatten()
                .all(|e| !e.file_name().to_string_lossy().starts_with(".partial"))
        );
    }

    #[test]
    fn the_embedded_copy_holds_what_the_checkout_holds() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataRoot::embedded(&[tmp.path().to_path_buf()]).unwrap();
        let checkout = Path::new(BUILT_FROM);
        for rel in ["kernel/base.toml", "scenarios/README.md"] {
            assert_eq!(
                std::fs::read(data.root().join(rel)).unwrap(),
                std::fs::read(checkout.join(rel)).unwrap(),
                "{rel}"
            );
        }
    }

    #[test]
    fn a_named_directory_must_be_gasbench_data() {
        let tmp = tempfile::tempdir().unwrap();
        let err = DataRoot::named(tmp.path(), "GASBENCH_DATA").unwrap_err();
        assert!(err.to_string().contains("GASBENCH_DATA"), "{err}");
        let ok = DataRoot::named(Path::new(BUILT_FROM), "--data-dir").unwrap();
        assert_eq!(
            ok.origin(),
            &Origin::Named {
                source: "--data-dir".into()
            }
        );
    }

    #[test]
    fn a_test_binary_is_a_development_build_of_its_checkout() {
        let data = DataRoot::locate(None, &[]).unwrap();
        assert_eq!(data.origin(), &Origin::Checkout);
        assert_eq!(data.root(), Path::new(BUILT_FROM));
    }
}
