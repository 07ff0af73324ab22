//! The vfio-user transport for the goldfish device model.
//!
//! QEMU (>= 10.1) attaches the device with
//!
//! ```text
//! -object memory-backend-memfd,id=mem,size=512M,share=on
//! -machine q35,memory-backend=mem
//! -device '{"driver":"vfio-user-pci","socket":{"type":"unix","path":"/run/gas.sock"},"x-no-posted-writes":true}'
//! ```
//!
//! and this crate is the other end: [`DeviceServer`] listens on the unix
//! socket, runs the protocol on its own std thread, maps guest RAM from the
//! memfds QEMU sends with DMA_MAP ([`dma`]), signals INTx through the
//! eventfd from SET_IRQS ([`irq`]), and turns every REGION_READ/WRITE into
//! a call on `gasbench_device::Device`, carrying out the `Effects` it
//! returns (reply delays, dropped connections, interrupts).
//!
//! Why not the `vfio-user` crate's `Server` (0.1.7): it speaks the same
//! protocol version QEMU 11.1 does (0.1 with JSON capabilities; QEMU
//! accepts its 0.0 reply), and QEMU attaches its example. But a client can
//! panic it: a VERSION message without a NUL-terminated capabilities
//! string hits `CString::from_vec_with_nul(..).unwrap()`, and one shorter
//! than 20 bytes underflows `message_size - size_of::<Version>()` (both
//! reproduced). It allocates `count` bytes from REGION_READ/WRITE before
//! checking anything (up to 4 GiB per message), leaves the payload of a
//! failed message in the stream (the next "header" is garbage), sends
//! error replies with errno 0 for backend errors, and its `run` loop
//! cannot be stopped from another thread, cannot drop a connection on
//! purpose (the `drop_connection` fault) and has no hook before each
//! message. The wire format is small (wire.rs), so gasbench speaks it
//! itself.
//!
//! [`pipe`] runs the same server as a child process of the pipeline, with
//! its events and commands on the child's stdout and stdin.
//!
//! **Architecture invariant:** this crate moves bytes; what the device
//! does with them is gasbench-device's business. Nothing a client sends
//! may panic the server: sizes are checked before allocating, every
//! message is read whole before it is parsed, and every failure is an
//! error reply or an orderly end of the session.

pub mod dma;
pub mod irq;
pub mod pipe;
mod server;
mod session;
mod shared;
pub mod signals;
pub mod sock;
pub mod wire;

pub use dma::DmaLimits;
pub use server::{
    DEFAULT_BODY_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT, DeviceServer, ServerError, ServerStatus,
    TransportStats,
};
