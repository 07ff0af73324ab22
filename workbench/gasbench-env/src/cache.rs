//! The cache directory: everything big and reusable lives here, outside the
//! repository (the Debian 13 toolroot, kernel trees, build outputs, logs).

use std::path::{Path, PathBuf};

/// Where the cache lives unless told otherwise.
pub const DEFAULT_CACHE_DIR: &str = "/var/cache/gasbench";
/// Environment variable that overrides the default (a flag overrides both).
pub const CACHE_ENV: &str = "GASBENCH_CACHE";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheDir {
    root: PathBuf,
}

impl CacheDir {
    /// Flag, then environment, then the default.
    pub fn resolve(flag: Option<&Path>, env: Option<&str>) -> CacheDir {
        let root = match (flag, env) {
            (Some(p), _) => p.to_path_buf(),
            (None, Some(e)) if !e.is_empty() => PathBuf::from(e),
            _ => PathBuf::from(DEFAULT_CACHE_DIR),
        };
        CacheDir { root }
    }

    /// [`CacheDir::resolve`] with the process environment.
    pub fn from_env(flag: Option<&Path>) -> CacheDir {
        let env = std::env::var(CACHE_ENV).ok();
        Self::resolve(flag, env.as_deref())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The Debian 13 root.
    pub fn toolroot(&self) -> PathBuf {
        self.root.join("toolroot")
    }
    /// Full logs of setup, builds and runs.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// Kernel trees and build outputs.
    pub fn kernel(&self) -> PathBuf {
        self.root.join("kernel")
    }
    /// Small remembered facts (the KVM verdict, …).
    pub fn state(&self) -> PathBuf {
        self.root.join("state")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_beats_environment_beats_default() {
        let flag = Path::new("/flag");
        assert_eq!(
            CacheDir::resolve(Some(flag), Some("/env")).root(),
            Path::new("/flag")
        );
        assert_eq!(
            CacheDir::resolve(None, Some("/env")).root(),
            Path::new("/env")
        );
        assert_eq!(
            CacheDir::resolve(None, Some("")).root(),
            Path::new(DEFAULT_CACHE_DIR)
        );
        assert_eq!(
            CacheDir::resolve(None, None).toolroot(),
            Path::new("/var/cache/gasbench/toolroot")
        );
    }
}
