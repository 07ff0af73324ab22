//! The explorer: what nobody wrote a scenario for.
//!
//! It generates random but well-typed call sequences for a uapi (the
//! goldfish address space device's ioctls; mkdirat2 on every filesystem
//! the guest mounts), renders them as ordinary scenario files, and checks
//! what the guest did against a reference model of what the uapi
//! promises. A divergence is shrunk to a minimal sequence and written out
//! as a scenario file that reproduces it, so the finding becomes a
//! regression test; the seed makes a run repeatable, and a call budget
//! bounds it.
//!
//! - [`explorer`]: the loop, without I/O ([`Explorer::next_batch`] /
//!   [`Explorer::observe`]), and the [`Domain`] trait;
//! - [`goldfish`], [`mkdirat2`]: the two domains and their models;
//! - [`model`]: outcomes, divergences, what a sequence's check gives;
//! - [`observe`]: what a run showed, keyed by the explorer's step names;
//! - [`report`]: the report's text.
//!
//! **Architecture invariant:** no I/O, no knowledge of how a batch is run:
//! the binary compiles each batch with gasbench-scenario and runs it with
//! the engine; the unit tests run it against a fake driver.

pub mod explorer;
pub mod goldfish;
pub mod mkdirat2;
pub mod model;
pub mod observe;
pub mod report;
mod toml_out;

pub use explorer::{Batch, Budget, Domain, ExploreReport, Explorer, Finding};
pub use model::{Divergence, Kind, Outcome, SeqCheck};
pub use observe::{Observed, Recorded};
