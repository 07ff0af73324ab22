//! The run directory and what is derived from it.
//!
//! - [`run_dir`]: layout and creation (private, unique, `latest` link).
//! - [`log`]: `events.jsonl`: [`log::record`] writes the bus to disk as
//!   it happens; [`log::read_all`] reads it back, tolerating a line cut
//!   short by a crash; [`log::LogIndex`] gives random access to millions
//!   of events without loading them.
//! - [`summary`]: [`RunSummary`], the one fold from events to verdicts
//!   that the CLI, the TUI and results.json share.
//! - [`junit`]: JUnit XML for CI systems (quick-junit); a failed build or
//!   boot is an error, never an empty passing suite.
//! - [`kcidb`]: a KCIDB v5.3 submission (checkout, builds, tests).
//! - [`ktap`]: the run's results as KTAP for kselftest-style harnesses.
//! - [`atomic`]: files written whole or not at all (results, reviews).

pub mod atomic;
pub mod junit;
pub mod kcidb;
pub mod ktap;
pub mod log;
pub mod proofs;
pub mod run_dir;
pub mod summary;
pub mod table;

pub use run_dir::RunDir;
pub use summary::{RunSummary, RunVerdict};
