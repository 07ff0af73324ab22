//! gasbench's settings and where each came from.
//!
//! Every setting is looked up the same way: a command-line flag, else an
//! environment variable, else the user's configuration file
//! (`$XDG_CONFIG_HOME/gasbench/config.toml`, `~/.config/…`), else the
//! system's (`/etc/gasbench/config.toml`), else the built-in default.
//! `GASBENCH_CONFIG=FILE` names one file instead of both. Each
//! [`Setting`] keeps its [`Source`], which `gasbench config` prints.
//!
//! The files are TOML with flat keys (see [`FileSettings`]); an unknown
//! key or a bad value is an error naming the file and line, never
//! ignored.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Names the one configuration file to read (instead of the user's and
/// the system's).
pub const CONFIG_ENV: &str = "GASBENCH_CONFIG";
/// The system-wide file.
pub const SYSTEM_FILE: &str = "/etc/gasbench/config.toml";

/// Where a value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env(&'static str),
    Flag(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => write!(f, "default"),
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Env(v) => write!(f, "env {v}"),
            Source::Flag(v) => write!(f, "flag {v}"),
        }
    }
}

/// A value and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

impl<T> Setting<T> {
    /// The flag's value when it was given (a flag beats everything).
    pub fn with_flag(self, flag: Option<T>, name: &'static str) -> Setting<T> {
        match flag {
            Some(value) => Setting {
                value,
                source: Source::Flag(name),
            },
            None => self,
        }
    }
}

/// What a configuration file may say. Every key is optional.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    /// The cache directory (toolroot, kernel builds, runs, logs).
    pub cache_dir: Option<PathBuf>,
    /// Where tools come from: `auto`, `host` or `toolroot`.
    pub runtime: Option<String>,
    /// `auto`, `kvm` or `tcg`.
    pub accel: Option<String>,
    /// Guest CPUs.
    pub cpus: Option<u32>,
    /// Guest RAM in MiB.
    pub memory_mib: Option<u32>,
    /// The kernel profile a run builds and boots (`default`, `debug`, `race`).
    pub profile: Option<String>,
    /// The public-inbox archive a Message-Id is fetched from.
    pub lore: Option<String>,
    /// gasbench's data (scenarios, kernel/, the agent's sources) from
    /// this directory rather than the binary's own copy.
    pub data_dir: Option<PathBuf>,
}

/// Flags that every command takes (the others a command applies itself
/// with [`Setting::with_flag`]).
#[derive(Clone, Debug, Default)]
pub struct GlobalFlags {
    pub cache_dir: Option<PathBuf>,
    pub runtime: Option<String>,
    pub data_dir: Option<PathBuf>,
}

/// One configuration file looked at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileStatus {
    pub path: PathBuf,
    /// False when there is no such file (which is fine).
    pub found: bool,
}

/// The effective settings.
#[derive(Clone, Debug)]
pub struct Config {
    pub cache_dir: Setting<PathBuf>,
    pub runtime: Setting<String>,
    pub accel: Setting<String>,
    pub cpus: Setting<u32>,
    pub memory_mib: Setting<u32>,
    pub profile: Setting<String>,
    pub lore: Setting<Option<String>>,
    pub data_dir: Setting<Option<PathBuf>>,
    /// The files looked at, highest precedence first.
    pub files: Vec<FileStatus>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{name}={value:?}: {why}")]
    Env {
        name: &'static str,
        value: String,
        why: String,
    },
    #[error("{CONFIG_ENV} names {0}, which cannot be read")]
    Named(PathBuf),
}

pub const DEFAULT_CACHE_DIR: &str = "/var/cache/gasbench";
pub const DEFAULT_CPUS: u32 = 2;
pub const DEFAULT_MEMORY_MIB: u32 = 512;
pub const RUNTIMES: &[&str] = &["auto", "host", "toolroot"];
pub const ACCELS: &[&str] = &["auto", "kvm", "tcg"];
/// Guest CPUs: q35 without x2APIC takes at most 64 here.
pub const CPUS: std::ops::RangeInclusive<u32> = 1..=64;
pub const MEMORY_MIB: std::ops::RangeInclusive<u32> = 128..=65536;

/// The configuration files to read, highest precedence first:
/// `GASBENCH_CONFIG` alone when set, else the user's and the system's.
pub fn config_files(env: &dyn Fn(&str) -> Option<String>) -> (Vec<PathBuf>, bool) {
    if let Some(named) = env(CONFIG_ENV).filter(|s| !s.is_empty()) {
        return (vec![PathBuf::from(named)], true);
    }
    let mut files = Vec::new();
    let user = env("XDG_CONFIG_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            env("HOME")
                .filter(|s| !s.is_empty())
                .map(|h| Path::new(&h).join(".config"))
        });
    if let Some(dir) = user {
        files.push(dir.join("gasbench/config.toml"));
    }
    files.push(PathBuf::from(SYSTEM_FILE));
    (files, false)
}

/// Read one file; `Ok(None)` when it does not exist.
pub fn read_file(path: &Path) -> Result<Option<FileSettings>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ConfigError::File {
                path: path.to_path_buf(),
                message: e.to_string(),
            });
        }
    };
    let settings: FileSettings = toml::from_str(&text).map_err(|e| ConfigError::File {
        path: path.to_path_buf(),
        message: match e.span() {
            Some(span) => format!(
                "line {}: {}",
                text[..span.start].matches('\n').count() + 1,
                e.message()
            ),
            None => e.message().to_string(),
        },
    })?;
    check_file(path, &settings)?;
    Ok(Some(settings))
}

fn check_file(path: &Path, s: &FileSettings) -> Result<(), ConfigError> {
    let bad = |message: String| ConfigError::File {
        path: path.to_path_buf(),
        message,
    };
    if let Some(r) = &s.runtime {
        one_of("runtime", r, RUNTIMES).map_err(bad)?;
    }
    if let Some(a) = &s.accel {
        one_of("accel", a, ACCELS).map_err(bad)?;
    }
    if let Some(c) = s.cpus {
        in_range("cpus", c, &CPUS).map_err(bad)?;
    }
    if let Some(m) = s.memory_mib {
        in_range("memory_mib", m, &MEMORY_MIB).map_err(bad)?;
    }
    Ok(())
}

fn one_of(key: &str, value: &str, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "{key} = {value:?}: expected one of {}",
            allowed.join(", ")
        ))
    }
}

fn in_range(key: &str, value: u32, range: &std::ops::RangeInclusive<u32>) -> Result<(), String> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "{key} = {value}: expected {} to {}",
            range.start(),
            range.end()
        ))
    }
}

/// The effective settings from `flags`, the process environment and the
/// configuration files.
pub fn load(flags: &GlobalFlags) -> Result<Config, ConfigError> {
    load_with(flags, &|name| std::env::var(name).ok())
}

/// [`load`] with the environment given (tests).
pub fn load_with(
    flags: &GlobalFlags,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let (paths, named) = config_files(env);
    let mut layers: Vec<(PathBuf, FileSettings)> = Vec::new();
    let mut files = Vec::new();
    for path in paths {
        let found = read_file(&path)?;
        if named && found.is_none() {
            return Err(ConfigError::Named(path));
        }
        files.push(FileStatus {
            path: path.clone(),
            found: found.is_some(),
        });
        if let Some(s) = found {
            layers.push((path, s));
        }
    }
    let env_var = |name: &'static str| env(name).filter(|s| !s.is_empty());

    // The first layer that says: env, then each file in order, then the
    // default.
    fn pick<T: Clone>(
        env: Option<(&'static str, T)>,
        layers: &[(PathBuf, FileSettings)],
        get: impl Fn(&FileSettings) -> Option<T>,
        default: T,
    ) -> Setting<T> {
        if let Some((name, value)) = env {
            return Setting {
                value,
                source: Source::Env(name),
            };
        }
        for (path, s) in layers {
            if let Some(value) = get(s) {
                return Setting {
                    value,
                    source: Source::File(path.clone()),
                };
            }
        }
        Setting {
            value: default,
            source: Source::Default,
        }
    }
    let env_choice = |name: &'static str, allowed: &[&str]| -> Result<_, ConfigError> {
        match env_var(name) {
            None => Ok(None),
            Some(v) => one_of(name, &v, allowed)
                .map(|_| Some((name, v.clone())))
                .map_err(|why| ConfigError::Env {
                    name,
                    value: v,
                    why,
                }),
        }
    };
    let env_number =
        |name: &'static str, range: &std::ops::RangeInclusive<u32>| -> Result<_, ConfigError> {
            match env_var(name) {
                None => Ok(None),
                Some(v) => {
                    let err = |why: String| ConfigError::Env {
                        name,
                        value: v.clone(),
                        why,
                    };
                    let n: u32 = v.trim().parse().map_err(|_| err("not a number".into()))?;
                    in_range(name, n, range).map_err(err)?;
                    Ok(Some((name, n)))
                }
            }
        };

    Ok(Config {
        cache_dir: pick(
            env_var("GASBENCH_CACHE").map(|v| ("GASBENCH_CACHE", PathBuf::from(v))),
            &layers,
            |s| s.cache_dir.clone(),
            PathBuf::from(DEFAULT_CACHE_DIR),
        )
        .with_flag(flags.cache_dir.clone(), "--cache-dir"),
        runtime: pick(
            env_choice("GASBENCH_RUNTIME", RUNTIMES)?,
            &layers,
            |s| s.runtime.clone(),
            "auto".to_string(),
        )
        .with_flag(flags.runtime.clone(), "--runtime"),
        accel: pick(
            env_choice("GASBENCH_ACCEL", ACCELS)?,
            &layers,
            |s| s.accel.clone(),
            "auto".to_string(),
        ),
        cpus: pick(
            env_number("GASBENCH_CPUS", &CPUS)?,
            &layers,
            |s| s.cpus,
            DEFAULT_CPUS,
        ),
        memory_mib: pick(
            env_number("GASBENCH_MEMORY", &MEMORY_MIB)?,
            &layers,
            |s| s.memory_mib,
            DEFAULT_MEMORY_MIB,
        ),
        profile: pick(
            env_var("GASBENCH_PROFILE").map(|v| ("GASBENCH_PROFILE", v)),
            &layers,
            |s| s.profile.clone(),
            "default".to_string(),
        ),
        lore: pick(
            env_var("GASBENCH_LORE").map(|v| ("GASBENCH_LORE", Some(v))),
            &layers,
            |s| s.lore.clone().map(Some),
            None,
        ),
        data_dir: pick(
            env_var("GASBENCH_DATA").map(|v| ("GASBENCH_DATA", Some(PathBuf::from(v)))),
            &layers,
            |s| s.data_dir.clone().map(Some),
            None,
        )
        .with_flag(flags.data_dir.clone().map(Some), "--data-dir"),
        files,
    })
}

impl Config {
    /// Every setting as (key, value, source), in file order, for
    /// `gasbench config`.
    pub fn rows(&self) -> Vec<(&'static str, String, String)> {
        fn row<T>(
            key: &'static str,
            s: &Setting<T>,
            show: impl Fn(&T) -> String,
        ) -> (&'static str, String, String) {
            (key, show(&s.value), s.source.to_string())
        }
        let path = |p: &PathBuf| p.display().to_string();
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
        vec![
            row("cache_dir", &self.cache_dir, path),
            row("runtime", &self.runtime, String::clone),
            row("accel", &self.accel, String::clone),
            row("cpus", &self.cpus, u32::to_string),
            row("memory_mib", &self.memory_mib, u32::to_string),
            row("profile", &self.profile, String::clone),
            row("lore", &self.lore, opt),
            row("data_dir", &self.data_dir, |v| {
                v.as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "(none)".into())
            }),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn flags_beat_env_beats_user_file_beats_system_file_beats_default() {
        let home = tempfile::tempdir().unwrap();
        let user = home.path().join("gasbench/config.toml");
        std::fs::create_dir_all(user.parent().unwrap()).unwrap();
        std::fs::write(
            &user,
            "cpus = 4\nmemory_mib = 1024\naccel = \"tcg\"\ncache_dir = \"/file/cache\"\nlore = \"https://example.org/\"\n",
        )
        .unwrap();
        let home_s = home.path().to_str().unwrap();
        let env = env_of(&[("XDG_CONFIG_HOME", home_s), ("GASBENCH_CPUS", "8")]);
        let flags = GlobalFlags {
            cache_dir: Some("/flag/cache".into()),
            ..Default::default()
        };
        let c = load_with(&flags, &env).unwrap();
        assert_eq!(c.cache_dir.value, Path::new("/flag/cache"));
        assert_eq!(c.cache_dir.source, Source::Flag("--cache-dir"));
        assert_eq!(c.cpus.value, 8);
        assert_eq!(c.cpus.source, Source::Env("GASBENCH_CPUS"));
        assert_eq!(c.memory_mib.value, 1024);
        assert_eq!(c.memory_mib.source, Source::File(user.clone()));
        assert_eq!(c.accel.value, "tcg");
        assert_eq!(c.lore.value.as_deref(), Some("https://example.org/"));
        assert_eq!(c.runtime.value, "auto");
        assert_eq!(c.runtime.source, Source::Default);
        assert_eq!(
            c.files[0],
            FileStatus {
                path: user,
                found: true
            }
        );
        assert_eq!(c.files.last().unwrap().path, Path::new(SYSTEM_FILE));
        let rows = c.rows();
        assert!(
            rows.iter()
                .any(|r| r.0 == "cpus" && r.2 == "env GASBENCH_CPUS")
        );
        let cpus = c.cpus.with_flag(Some(3), "--cpus");
        assert_eq!((cpus.value, cpus.source), (3, Source::Flag("--cpus")));
    }

    #[test]
    fn an_unknown_key_or_a_bad_value_names_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "cpus = 2\ncpu = 4\n").unwrap();
        let env_s = file.to_str().unwrap().to_string();
        let env = env_of(&[(CONFIG_ENV, &env_s)]);
        let err = load_with(&GlobalFlags::default(), &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("c.toml") && err.contains("line 2"), "{err}");
        assert!(err.contains("cpu"), "{err}");
        std::fs::write(&file, "accel = \"fast\"\n").unwrap();
        let err = load_with(&GlobalFlags::default(), &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected one of auto, kvm, tcg"), "{err}");
        std::fs::write(&file, "memory_mib = 12\n").unwrap();
        let err = load_with(&GlobalFlags::default(), &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("128 to 65536"), "{err}");
    }

    #[test]
    fn a_named_file_must_exist_and_replaces_the_others() {
        let env = env_of(&[(CONFIG_ENV, "/nonexistent/gasbench.toml"), ("HOME", "/h")]);
        let err = load_with(&GlobalFlags::default(), &env).unwrap_err();
        assert!(matches!(err, ConfigError::Named(_)));
        let (files, named) = config_files(&env_of(&[("HOME", "/h")]));
        assert!(!named);
        assert_eq!(
            files,
            vec![
                PathBuf::from("/h/.config/gasbench/config.toml"),
                PathBuf::from(SYSTEM_FILE)
            ]
        );
    }

    #[test]
    fn a_bad_environment_value_is_refused_with_its_name() {
        let env = env_of(&[("GASBENCH_CPUS", "many"), ("HOME", "/nonexistent")]);
        let err = load_with(&GlobalFlags::default(), &env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("GASBENCH_CPUS") && err.contains("not a number"),
            "{err}"
        );
        let env = env_of(&[("GASBENCH_RUNTIME", "docker"), ("HOME", "/nonexistent")]);
        let err = load_with(&GlobalFlags::default(), &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("GASBENCH_RUNTIME"), "{err}");
    }
}
