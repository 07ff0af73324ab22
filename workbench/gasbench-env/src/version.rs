//! Tool versions: parsing what tools print about themselves, and comparing.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// A dotted numeric version (`11.1.3`, `1.96.1`, `0.71.1`). Missing parts
/// compare as zero, so `10.1` == `10.1.0`.
#[derive(Clone, Debug, Eq)]
pub struct Version {
    parts: Vec<u64>,
    /// As written (`1.07.1` stays `1.07.1` when shown).
    text: String,
}

impl Version {
    pub fn new(parts: &[u64]) -> Self {
        let text = parts
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(".");
        Self {
            parts: parts.to_vec(),
            text,
        }
    }

    fn part(&self, i: usize) -> u64 {
        self.parts.get(i).copied().unwrap_or(0)
    }

    /// The first `n` components, for "same major.minor.patch" checks.
    pub fn truncated(&self, n: usize) -> Version {
        let parts: Vec<u64> = (0..n).map(|i| self.part(i)).collect();
        Version::new(&parts)
    }

    /// Find the first dotted number with at least two components in
    /// free text: `"QEMU emulator version 11.1.3 (Debian …)"` → 11.1.3.
    pub fn find_in(text: &str) -> Option<Version> {
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i].is_ascii_digit() && starts_number(bytes, i) {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                    i += 1;
                }
                let candidate = text[start..i].trim_end_matches('.');
                if candidate.contains('.')
                    && let Ok(v) = candidate.parse()
                {
                    return Some(v);
                }
            } else {
                i += 1;
            }
        }
        None
    }

    /// A Debian package version (`1:11.1.3+ds-1~bpo13+1`, `1.96.1+dfsg1-2~bpo13+1`)
    /// → its upstream part's leading dotted number.
    pub fn from_debian(version: &str) -> Option<Version> {
        let upstream = version.split_once(':').map_or(version, |(_, rest)| rest);
        let end = upstream
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(upstream.len());
        upstream[..end].trim_end_matches('.').parse().ok()
    }
}

/// A number starts at `i` when nothing word-like precedes it, or only a
/// lone `v` (`v5.40.1`, `BusyBox v1.37.0`).
fn starts_number(bytes: &[u8], i: usize) -> bool {
    match i {
        0 => true,
        _ if !is_word(bytes[i - 1]) => true,
        _ => bytes[i - 1] == b'v' && (i == 1 || !is_word(bytes[i - 2])),
    }
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a dotted version: {0:?}")]
pub struct BadVersion(String);

impl FromStr for Version {
    type Err = BadVersion;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(BadVersion(s.into()));
        }
        let parts = s
            .split('.')
            .map(|p| p.parse::<u64>().map_err(|_| BadVersion(s.into())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Version {
            parts,
            text: s.to_owned(),
        })
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.parts.len().max(other.parts.len());
        (0..n)
            .map(|i| self.part(i).cmp(&other.part(i)))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn finds_versions_in_what_tools_print() {
        let cases = [
            (
                "QEMU emulator version 11.1.3 (Debian 1:11.1.3+ds-1~bpo13+1)\nCopyright (c) 2003-2026",
                "11.1.3",
            ),
            ("virtiofsd 1.13.2", "1.13.2"),
            (
                "rustc 1.96.1 (31fca3adb 2026-06-26) (built from a source tarball)",
                "1.96.1",
            ),
            ("bindgen 0.71.1", "0.71.1"),
            ("Debian clang version 19.1.7 (3+b1)", "19.1.7"),
            ("Debian LLD 19.1.7 (compatible with GNU linkers)", "19.1.7"),
            ("GNU Make 4.4.1\nBuilt for x86_64-pc-linux-gnu", "4.4.1"),
            ("flex 2.6.4", "2.6.4"),
            ("bison (GNU Bison) 3.8.2", "3.8.2"),
            ("bc 1.07.1\nCopyright 1991-1994", "1.07.1"),
            ("LLVM (http://llvm.org/):\n  LLVM version 19.1.7", "19.1.7"),
            ("cpio (GNU cpio) 2.15", "2.15"),
            (
                "This is perl 5, version 40, subversion 1 (v5.40.1) built for x86_64-linux",
                "5.40.1",
            ),
            (
                "BusyBox v1.37.0 (Debian 1:1.37.0-6+b3) multi-call binary.",
                "1.37.0",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(Version::find_in(text), Some(v(want)), "in {text:?}");
        }
        // A date or a hash is not a version; a lone number is not either.
        assert_eq!(Version::find_in("built 2026-06-26"), None);
        assert_eq!(Version::find_in("x86_64 version 5"), None);
        // Digits glued to a word are not a version start.
        assert_eq!(Version::find_in("x86_64.1 abc"), None);
    }

    #[test]
    fn debian_versions_drop_epoch_and_revision() {
        assert_eq!(
            Version::from_debian("1:11.1.3+ds-1~bpo13+1"),
            Some(v("11.1.3"))
        );
        assert_eq!(
            Version::from_debian("1.96.1+dfsg1-2~bpo13+1"),
            Some(v("1.96.1"))
        );
        assert_eq!(Version::from_debian("7.3.4-1~bpo13+1"), Some(v("7.3.4")));
        assert_eq!(Version::from_debian("1:19.0-63"), Some(v("19.0")));
        assert_eq!(Version::from_debian("junk"), None);
    }

    #[test]
    fn compares_numerically_with_missing_parts_as_zero() {
        assert!(v("10.1") < v("11.0"));
        assert!(v("10.10") > v("10.9"));
        assert_eq!(v("10.1"), v("10.1.0"));
        assert!(v("0.71.1") >= v("0.71.1"));
        assert!(v("0.65.1") < v("0.71.1"));
        assert_eq!(v("1.96.1").truncated(2), v("1.96"));
        assert!("1..2".parse::<Version>().is_err());
        // Shown as written, compared as numbers.
        assert_eq!(v("1.07.1").to_string(), "1.07.1");
        assert_eq!(v("1.07.1"), v("1.7.1"));
        assert!("".parse::<Version>().is_err());
    }
}
