//! The pipeline that joins the stages: build what is missing, boot,
//! run scenarios, collect. Every step is reported on the event bus; the
//! CLI and the TUI only consume events and call in here.
//!
//! - [`agent_build`]: the static guest agent.
//! - [`guest_image`]: the initramfs around it.
//! - [`session`]: a booted guest whose agent said `Ready`.
//! - [`interrupt`]: stopping a run early (Ctrl-C) with the verdicts it has.
//! - [`device_host`]: the goldfish device server, on a thread or as a
//!   child process.
//! - [`explore_run`]: the explorer's batches run on the guest.

pub mod agent_build;
pub mod device_host;
pub mod explore_run;
pub mod guest;
pub mod guest_image;
pub mod interrupt;
pub mod pipeline;
pub mod preflight;
pub mod reports;
pub mod scenario_run;
pub mod service;
pub mod session;
pub mod shell;
