//! The run directory and what is derived from it.
//!
//! - [`run_dir`]: layout and creation (private, unique, `latest` link).
//! - [`log`]: `events.jsonl`: [`log::record`] writes the bus to disk as
//!   it happens; [`log::read_all`] reads it back, tolerating a line cut
//!   short by a crash; [`log::LogIndex`] gives random access to millions
//!   of events without loading them.
//! - [`summary`]: [`RunSummary`], the one fold from events to verdicts
//!   that the CLI, the TUI and results.json share.
//! - [`junit`]: JUnit XML for CI systems.

pub mod junit;
pub mod log;
pub mod proofs;
pub mod run_dir;
pub mod summary;
pub mod table;

pub use run_dir::RunDir;
pub use summary::RunSummary;
