//! Mail from the list: the thread of a Message-Id, as an mbox.
//!
//! A reviewer meets a series on the list and knows its Message-Id. This
//! crate gets the thread that holds it:
//!
//! - [`Archive`]: a public-inbox server (the kernel's archive by default;
//!   [`base_url`] says where the base comes from). It asks for
//!   `<base>/all/<msgid>/t.mbox.gz`, and when the server has no `all`
//!   inbox for it, `<base>/<list>/<msgid>/t.mbox.gz` for each list the
//!   caller names. The answer is gunzipped with a bound on its size; a
//!   truncated or corrupt gzip is an error, never half a thread.
//! - [`B4`]: `b4 am -o - <msgid>`, for reviewers who have b4 set up (its
//!   own configuration, mirrors and authentication).
//! - [`MailCache`]: every fetched thread is kept under the cache directory
//!   by Message-Id, so a second `repro` of the same series, and
//!   `b4-check`, work without the network.
//!
//! Where there is no network (as on the build machines), the error says
//! so and how to hand gasbench the thread instead.
//!
//! [`stand_in`] is a public-inbox stand-in on loopback that the tests
//! (this crate's, the binary's, the end-to-end tier's) fetch from.
//!
//! **Architecture invariant:** this crate only fetches and stores bytes.
//! It never parses mail (gasbench-series does) and never runs anything
//! but `b4`.

mod archive;
mod b4;
mod cache;
mod error;
mod msgid;
pub mod stand_in;

pub use archive::{Archive, DEFAULT_BASE, USER_AGENT, base_url};
pub use b4::B4;
pub use cache::MailCache;
pub use error::LoreError;
pub use msgid::{cache_key, url_segment};

/// The most a thread may hold once unpacked (the same bound gasbench puts
/// on an mbox file: the largest real series threads are a few MiB).
pub const MAX_THREAD_BYTES: u64 = 64 * 1024 * 1024;

/// A thread and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Thread {
    /// The mbox, as the archive (or b4) gave it.
    pub mbox: Vec<u8>,
    /// `https://…/all/<id>/t.mbox.gz`, `b4 am`, or the cache file.
    pub source: String,
    /// True when it was read from the cache rather than fetched.
    pub cached: bool,
}
