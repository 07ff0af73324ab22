//! A public-inbox archive over HTTP(S).

use std::io::Read;
use std::time::Duration;

use crate::{LoreError, MAX_THREAD_BYTES, Thread, url_segment};

/// The kernel's public archive.
pub const DEFAULT_BASE: &str = "https://lore.kernel.org";

/// What gasbench says it is, in b4's manner (`b4/0.14.2`): archives
/// that rate-limit by tool can tell it apart.
pub const USER_AGENT: &str = concat!("gasbench/", env!("CARGO_PKG_VERSION"));

/// The archive's base URL: `--lore URL`, else `GASBENCH_LORE`, else the
/// configuration file's, else [`DEFAULT_BASE`]. The configuration file is
/// the caller's business (its value is passed in); an empty value counts
/// as not given.
pub fn base_url(flag: Option<&str>, env: Option<&str>, config: Option<&str>) -> String {
    [flag, env, config]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|s| !s.is_empty())
        .unwrap_or(DEFAULT_BASE)
        .trim_end_matches('/')
        .to_string()
}

/// A public-inbox server.
#[derive(Clone, Debug)]
pub struct Archive {
    base: String,
    agent: ureq::Agent,
}

impl Archive {
    /// An archive at `base` (`https://lore.kernel.org`, or a local mirror
    /// such as `http://127.0.0.1:8080`).
    pub fn new(base: &str) -> Result<Archive, LoreError> {
        let base = base.trim().trim_end_matches('/').to_string();
        let scheme_ok = base.starts_with("https://") || base.starts_with("http://");
        if !scheme_ok || base.len() <= "https://".len() {
            return Err(LoreError::BadBase {
                url: base,
                reason: "it must start with https:// (or http:// for a local mirror)".into(),
            });
        }
        let agent = ureq::Agent::config_builder()
            .user_agent(USER_AGENT)
            // A 404 is an answer ("not in this inbox"), not a failure.
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .timeout_connect(Some(Duration::from_secs(20)))
            .max_redirects(5)
            .build()
            .into();
        Ok(Archive { base, agent })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The thread holding `msgid`: `all/` first, then each of `lists`.
    pub fn thread(&self, msgid: &str, lists: &[String]) -> Result<Thread, LoreError> {
        let seg = url_segment(msgid)?;
        let mut inboxes = vec!["all".to_string()];
        for l in lists {
            // A list address (`linux-api@vger.kernel.org`) names its inbox
            // by the local part.
            let name = l.split('@').next().unwrap_or(l).trim();
            let usable = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if usable && !inboxes.iter().any(|i| i == name) {
                inboxes.push(name.to_string());
            }
        }
        let mut tried = Vec::new();
        for inbox in &inboxes {
            let url = format!("{}/{inbox}/{seg}/t.mbox.gz", self.base);
            match self.get_gz(&url)? {
                Some(mbox) => {
                    return Ok(Thread {
                        mbox,
                        source: url,
                        cached: false,
                    });
                }
                None => tried.push(url),
            }
        }
        Err(LoreError::NotFound {
            base: self.base.clone(),
            msgid: msgid.to_string(),
            tried,
        })
    }

    /// The gunzipped body of `url`; `None` on 404 (and 410).
    fn get_gz(&self, url: &str) -> Result<Option<Vec<u8>>, LoreError> {
        let mut resp = self
            .agent
            .get(url)
            .header("Accept", "application/gzip, application/x-gzip, */*")
            .call()
            .map_err(|e| LoreError::Unreachable {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
        let status = resp.status().as_u16();
        if status == 404 || status == 410 {
            return Ok(None);
        }
        if !(200..300).contains(&status) {
            return Err(LoreError::Http {
                url: url.to_string(),
                status,
            });
        }
        // A gzip of a few MiB; the unpacked size is bounded below.
        let gz = resp
            .body_mut()
            .with_config()
            .limit(MAX_THREAD_BYTES)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => LoreError::TooLarge {
                    source_name: url.to_string(),
                    limit: MAX_THREAD_BYTES,
                },
                e => LoreError::Unreachable {
                    url: url.to_string(),
                    reason: format!("the download broke off: {e}"),
                },
            })?;
        gunzip(&gz, url).map(Some)
    }
}

/// Unpack a whole gzip stream (and any members after it), at most
/// [`MAX_THREAD_BYTES`]. A stream that ends early is an error, so a cut
/// download never passes for a short thread.
pub(crate) fn gunzip(gz: &[u8], url: &str) -> Result<Vec<u8>, LoreError> {
    let mut out = Vec::new();
    let mut reader = flate2::read::MultiGzDecoder::new(gz).take(MAX_THREAD_BYTES + 1);
    reader
        .read_to_end(&mut out)
        .map_err(|e| LoreError::BadGzip {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    if out.len() as u64 > MAX_THREAD_BYTES {
        return Err(LoreError::TooLarge {
            source_name: url.to_string(),
            limit: MAX_THREAD_BYTES,
        });
    }
    if out.is_empty() {
        return Err(LoreError::Empty {
            source_name: url.to_string(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_base_comes_from_the_flag_then_the_environment_then_the_config() {
        assert_eq!(base_url(None, None, None), DEFAULT_BASE);
        assert_eq!(base_url(None, None, Some("https://c/")), "https://c");
        assert_eq!(
            base_url(None, Some("http://e"), Some("https://c")),
            "http://e"
        );
        assert_eq!(
            base_url(Some("http://f/"), Some("http://e"), None),
            "http://f"
        );
        assert_eq!(base_url(Some(" "), Some(""), None), DEFAULT_BASE);
        assert!(Archive::new("ftp://x").is_err());
        assert!(Archive::new("https://").is_err());
    }

    #[test]
    fn a_cut_gzip_is_an_error_not_a_short_thread() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let text = "From x\nSubject: [PATCH] a\n\n".repeat(500);
        enc.write_all(text.as_bytes()).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(gunzip(&gz, "u").unwrap(), text.as_bytes());
        let err = gunzip(&gz[..gz.len() / 2], "u").unwrap_err();
        assert!(matches!(err, LoreError::BadGzip { .. }), "{err}");
        let err = gunzip(b"not gzip at all", "u").unwrap_err();
        assert!(matches!(err, LoreError::BadGzip { .. }), "{err}");
    }
}
