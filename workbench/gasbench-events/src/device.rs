//! Device events: what the emulated goldfish address space device saw.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    Read,
    Write,
}

/// One register access in a BAR (or config space, `bar` = None).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegAccess {
    pub access: Access,
    pub bar: Option<u8>,
    pub offset: u64,
    pub width: u8,
    /// Register name, when the offset names one (`BLOCK_SIZE_LOW`).
    pub reg: Option<String>,
    pub value: u64,
}

/// One command the device executed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandDone {
    /// `ALLOCATE_BLOCK`, `GEN_HANDLE`, …
    pub command: String,
    pub code: u32,
    pub handle: Option<u32>,
    /// Decoded meaning: "allocate 0x3000 → offset 0x7000".
    pub decoded: String,
    /// Positive errno written to STATUS (0 = ok).
    pub status: u32,
    /// Set when a fault plan rule changed the outcome.
    pub fault: Option<String>,
}

/// A snapshot of the model's inspectable state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceState {
    pub handles: Vec<u32>,
    /// (offset, size) of allocated blocks.
    pub blocks: Vec<(u64, u64)>,
    /// (offset, size) of free blocks.
    pub free: Vec<(u64, u64)>,
    /// Handles bound to a ping page, with the page's guest address.
    pub ping_pages: Vec<(u32, u64)>,
    pub shared_size: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DeviceEvent {
    /// The transport accepted a client (QEMU) or lost it.
    Connected,
    Disconnected {
        reason: String,
    },
    Reg(RegAccess),
    Command(CommandDone),
    /// A ping was served by a host service.
    Ping {
        handle: u32,
        service: String,
        decoded: String,
    },
    /// The state after a command changed it.
    State(DeviceState),
    /// Something the guest did that the device refused or ignored.
    Anomaly {
        text: String,
    },
}
