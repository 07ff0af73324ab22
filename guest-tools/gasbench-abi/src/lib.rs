//! The contract shared by the guest agent and the host.
//!
//! Two halves:
//! - [`uapi`]: what the kernel under test exposes (the goldfish address
//!   space ioctls and their structs, as reconstructed from the RFC posting),
//!   encoded exactly as the kernel lays them out.
//! - [`protocol`]: the line-delimited JSON messages the agent and the host
//!   exchange over the virtio-serial port.
//!
//! **Architecture invariant:** this crate does no I/O and has no
//! dependencies beyond serde, so the static guest agent stays small and the
//! host can decode every agent message without pulling in guest code.

pub mod protocol;
pub mod uapi;
