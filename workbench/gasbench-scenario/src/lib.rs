//! The scenario language.
//!
//! A scenario is a TOML file of steps the guest agent runs (calls with
//! typed arguments, parallel groups, forked children, kselftest binaries),
//! host steps (hot-unplug, device fault plans) and expectations. This crate:
//!
//! - parses and validates it with a span for every key and value, reporting
//!   every problem at once as [`Problems`] (miette diagnostics with line and
//!   column): [`load`], [`compile`], [`compile_bytes`];
//! - compiles it into a [`Compiled`]: the agent's
//!   [`Bundle`](gasbench_abi::bundle::Bundle) and the host's [`HostPlan`]
//!   (sync points and what to do at each, fault plans, timeouts,
//!   expectations);
//! - judges a run: the engine feeds an [`Evaluator`] what it observed and
//!   gets a [`Report`] of [`Verdict`]s, expected next to actual.
//!
//! **Architecture invariant:** no I/O beyond reading the scenario file, and
//! no knowledge of the device model: fault plans and device configuration
//! are carried as JSON with their spans for the engine to hand over.
//!
//! The language is documented with examples in `scenarios/README.md`.

mod compile;
pub mod diag;
pub mod eval;
pub mod plan;

pub use compile::{
    DEFAULT_INJECT_ATTEMPTS, DEFAULT_MUST_NOT_MATCH, MAX_FILE_BYTES, MAX_NESTING, MAX_REPEAT,
    MAX_STEPS, MAX_THREADS, compile, compile_bytes, load,
};
pub use diag::{Problem, Problems};
pub use eval::{Evaluator, Observations, Report, Verdict};
pub use plan::*;
