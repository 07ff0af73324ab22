//! The patched kernel, from posted series to bzImage.
//!
//! Entry point: [`ensure_kernel`].

pub mod disk;
pub mod error;
pub mod extract;
pub mod kconfig;
pub mod report;

pub use error::KbuildError;
