//! Kernel reports, from console lines to records a reviewer can read.
//!
//! - [`line`]: one console line without its prefixes (`[   12.3]`
//!   timestamp, `[  T97]` caller), sanitised.
//! - [`parse`]: [`ReportParser`] turns a stream of lines into
//!   [`gasbench_events::report::KernelReport`]s, one per report however
//!   many lines it spans (KASAN, KCSAN, UBSAN, lockdep, atomic-sleep,
//!   WARN, BUG, Oops, Rust panics, panics, hangs), with the task, the
//!   stacks and a signature for counting duplicates;
//!   [`parse::kmemleak`] does the same for a kmemleak scan.
//! - [`decode`]: stack frames to `file:line` against the built vmlinux
//!   (System.map for the address, `llvm-addr2line` through the runtime
//!   for the line), Rust symbols demangled.
//!
//! **Architecture invariant:** `line` and `parse` are pure (no I/O); the
//! console is guest output, so nothing here trusts it: lines are
//! sanitised and capped, reports are capped, and no input panics.

pub mod decode;
pub mod line;
pub mod parse;

pub use parse::{Parsed, ReportParser};
