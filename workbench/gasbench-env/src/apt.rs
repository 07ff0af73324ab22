//! Reading Debian's package metadata without running apt: the host's apt
//! sources (to reuse its mirror) and a root's dpkg status database.

use std::collections::BTreeMap;

/// The first mirror URI in apt sources that serves the main Debian archive
/// (not the security archive), from deb822 `.sources` text or one-line
/// `sources.list` text. The repository never names a mirror itself: the
/// toolroot uses whatever the host uses.
pub fn mirror_from_sources(text: &str) -> Option<String> {
    let is_main_archive = |uri: &str, suite: &str| {
        !uri.contains("security") && !suite.contains("security") && uri.starts_with("http")
    };
    // deb822: paragraphs with "URIs:" and "Suites:".
    for paragraph in text.split("\n\n") {
        let mut uris = Vec::new();
        let mut suites = Vec::new();
        let mut is_deb = true;
        for line in paragraph.lines() {
            let line = line.trim();
            if let Some(v) = line.strip_prefix("URIs:") {
                uris.extend(v.split_whitespace().map(str::to_owned));
            } else if let Some(v) = line.strip_prefix("Suites:") {
                suites.extend(v.split_whitespace().map(str::to_owned));
            } else if let Some(v) = line.strip_prefix("Types:") {
                is_deb = v.split_whitespace().any(|t| t == "deb");
            } else if let Some(v) = line.strip_prefix("Enabled:")
                && v.trim().eq_ignore_ascii_case("no")
            {
                is_deb = false;
            }
        }
        if is_deb
            && let (Some(uri), Some(suite)) = (uris.first(), suites.first())
            && is_main_archive(uri, suite)
        {
            return Some(uri.trim_end_matches('/').to_owned());
        }
    }
    // One-line format: "deb [opts] URI suite components…".
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("deb ") else {
            continue;
        };
        let mut words = rest.split_whitespace().peekable();
        if words.peek().is_some_and(|w| w.starts_with('[')) {
            for w in words.by_ref() {
                if w.ends_with(']') {
                    break;
                }
            }
        }
        if let (Some(uri), Some(suite)) = (words.next(), words.next())
            && is_main_archive(uri, suite)
        {
            return Some(uri.trim_end_matches('/').to_owned());
        }
    }
    None
}

/// One package in a dpkg status database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalledPackage {
    pub version: String,
    /// The `Status:` field, e.g. `install ok installed`.
    pub status: String,
}

impl InstalledPackage {
    /// Fully installed and configured: anything else (half-installed,
    /// unpacked, config-files) means an apt or dpkg run was interrupted.
    pub fn is_installed(&self) -> bool {
        self.status == "install ok installed"
    }
}

/// Parse `/var/lib/dpkg/status`: package name → version and status.
/// Multi-arch duplicates keep the first entry.
pub fn parse_dpkg_status(text: &str) -> BTreeMap<String, InstalledPackage> {
    let mut out = BTreeMap::new();
    for paragraph in text.split("\n\n") {
        let mut name = None;
        let mut version = String::new();
        let mut status = String::new();
        for line in paragraph.lines() {
            if let Some(v) = line.strip_prefix("Package: ") {
                name = Some(v.trim().to_owned());
            } else if let Some(v) = line.strip_prefix("Version: ") {
                version = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("Status: ") {
                status = v.trim().to_owned();
            }
        }
        if let Some(name) = name {
            out.entry(name)
                .or_insert(InstalledPackage { version, status });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_comes_from_deb822_skipping_security() {
        let text = "Types: deb\n# snapshot comment\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n\nTypes: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n";
        assert_eq!(
            mirror_from_sources(text).as_deref(),
            Some("http://mirror.example/debian")
        );
    }

    #[test]
    fn mirror_comes_from_one_line_format_with_options() {
        let text = "# comment\ndeb-src http://src.example/debian bookworm main\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main\n";
        assert_eq!(
            mirror_from_sources(text).as_deref(),
            Some("http://m.example/debian")
        );
        assert_eq!(mirror_from_sources("deb-src http://x/ y main\n"), None);
        assert_eq!(
            mirror_from_sources("Types: deb\nEnabled: no\nURIs: http://a/\nSuites: s\n"),
            None
        );
    }

    #[test]
    fn dpkg_status_tells_installed_from_half_installed() {
        let text = "Package: rustc\nStatus: install ok installed\nVersion: 1.96.1+dfsg1-2~bpo13+1\n\nPackage: clang\nStatus: install ok half-configured\nVersion: 1:19.0-63\n";
        let db = parse_dpkg_status(text);
        assert!(db["rustc"].is_installed());
        assert_eq!(db["rustc"].version, "1.96.1+dfsg1-2~bpo13+1");
        assert!(!db["clang"].is_installed());
        assert!(!db.contains_key("qemu-system-x86"));
    }
}
