//! The contract shared by the guest agent and the host.
//!
//! - [`uapi`]: what the kernel under test exposes (the goldfish address
//!   space ioctls and their structs, as reconstructed from the RFC posting),
//!   encoded exactly as the kernel lays them out; [`consts`]: errno names
//!   and the flag values scenarios spell by name.
//! - [`goldfish`]: the device's side — the BAR0 register map, the
//!   command codes and the one ping page header layout.
//! - [`protocol`]: the line-delimited JSON messages the agent and the host
//!   exchange over the virtio-serial port.
//! - [`bundle`]: a compiled scenario as the agent runs it, with [`expr`]
//!   for the values it resolves at run time.
//! - [`ktap`]: the KTAP parser the agent runs over kselftest output.
//! - [`kmsg`]: the markers the agent writes into the kernel log around
//!   each call, which tie kernel reports to calls.
//!
//! **Architecture invariant:** this crate does no I/O and has no
//! dependencies beyond serde, so the static guest agent stays small and the
//! host can decode every agent message without pulling in guest code.

pub mod bundle;
pub mod consts;
pub mod expr;
pub mod goldfish;
pub mod kmsg;
pub mod ktap;
pub mod protocol;
pub mod uapi;
