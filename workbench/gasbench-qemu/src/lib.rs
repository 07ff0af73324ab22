//! Running a VM for gasbench.
//!
//! - [`spec`]: the QEMU and virtiofsd command lines, as pure functions.
//! - [`confine`]: how QEMU and virtiofsd are confined (seccomp, the
//!   unprivileged VM user, namespaces, rlimits, a read-only share) and the
//!   report of which protections hold.
//! - [`vm`]: [`Vm::launch`] starts virtiofsd and QEMU; QEMU is handed
//!   connected sockets (QMP, console, agent port, virtiofsd) and open
//!   files as inherited descriptors, so it needs no path into the 0700 run
//!   directory; [`Vm::shutdown`] ends it in order, and dropping a `Vm`
//!   kills what is left. Children die with us (PR_SET_PDEATHSIG).
//! - [`qmp`]: QMP with the `qapi` crate's typed commands over our own
//!   line transport, which tolerates what QEMU 11 sends that the crate's
//!   QEMU 9.1 schema lacks.
//! - [`agent_port`]: the guest agent's virtio-serial port, drained under
//!   one lock so agent and device events keep their causal order.
//! - [`console`]: console lines and their severity.
//!
//! **Architecture invariant:** this is the only crate that speaks QMP.

pub mod agent_port;
pub mod confine;
pub mod console;
pub mod process;
pub mod qmp;
pub mod spec;
pub mod vm;

pub use agent_port::{AgentPort, FromAgent};
pub use qmp::{Qmp, QmpError, QmpEvent};
pub use spec::{Accel, VmSpec};
pub use vm::{HotplugError, Vm, VmError};
