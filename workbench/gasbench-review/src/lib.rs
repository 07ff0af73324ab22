//! The reviewer's reproduction (`gasbench repro`): which posted series to
//! review, and the review report.
//!
//! - [`resolve`]: an mbox, a thread digest or a Message-Id resolved
//!   against the series gasbench knows (`kernel/series/*/series.toml`);
//!   a series it does not know is extracted into a private kernel
//!   directory and applied as posted.
//! - [`concerns`]: which scenarios concern a series (by what its patches
//!   add: the goldfish driver, the mkdirat2 syscall).
//! - [`report`]: the [`Review`] model, built from the facts a reproduction
//!   gathered (the series manifest, the port, the run's events, its
//!   [`gasbench_trace::RunSummary`], the scenario files), with the
//!   findings ordered by severity.
//! - [`detectors`]: what the kernel's detectors and fault injection
//!   found over the review's runs, one per kernel profile.
//! - [`checks`]: b4's review check protocol, answered from the reviews
//!   gasbench keeps by Message-Id and patch-id.
//! - [`markdown`]: renders `review.md`.
//! - [`reply`]: renders `review.eml`, the plain-text reply to the series
//!   (72 columns, threaded, each finding quoting its hunk).
//!
//! Why a crate of its own rather than a module of gasbench-trace: a review
//! joins mail (gasbench-series), the kernel stage's apply and build reports
//! and the port (gasbench-kbuild) with the run's verdicts; gasbench-trace
//! only knows run directories and events, and should not grow a
//! dependency on the kernel stage.
//!
//! **Architecture invariant:** this crate reads files (mail, manifests,
//! scenario files) and writes the private kernel directory; it never runs
//! a build, a VM or a network request. The binary drives the engine and
//! the kernel stage, then hands the facts here.

pub mod checks;
pub mod concerns;
pub mod detectors;
pub mod explorer;
pub mod markdown;
pub mod reply;
pub mod report;
pub mod resolve;
pub mod scenario_text;
pub mod series_checks;

pub use report::{Facts, Finding, Review, Severity};
pub use resolve::{Input, ResolveError, Target};
