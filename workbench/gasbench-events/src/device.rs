//! Device events: what the emulated goldfish address space device saw and
//! did, and snapshots of its state.
//!
//! The TUI draws from these alone: live handles and the shared BAR's block
//! map come from [`DeviceState`] (sent after every command that changed
//! it), command counters from [`Counters`], injected faults from
//! [`FaultFired`], and the register trace from [`RegAccess`], which the
//! engine lines up with the agent's `CallBegin`/`CallEnd` brackets.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    Read,
    Write,
}

/// Which of the device's address spaces an access landed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Space {
    /// PCI configuration space.
    Config,
    /// BAR0: the 32-bit control registers.
    Bar0,
    /// BAR1: the shared memory area.
    Bar1,
}

/// The register map, command codes and ping header are the device's
/// contract, kept in gasbench-abi; events name them.
pub use gasbench_abi::goldfish::{CommandKind, PingInfo, Register};

/// One access to config space or a BAR.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegAccess {
    pub access: Access,
    pub space: Space,
    pub offset: u64,
    /// Bytes accessed (QEMU sends 1, 2, 4 or 8; a raw client may send more).
    pub width: u32,
    /// The BAR0 register, when the access is one the device acts on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reg: Option<Register>,
    /// The value read or written, little-endian, first 8 bytes.
    pub value: u64,
    /// What the access meant: "GEN_HANDLE", "size 0x3000", "ignored: 2-byte
    /// access" … Empty when the raw value says it all.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub decoded: String,
    /// The HANDLE register when the access happened: the context the guest
    /// was talking about.
    pub handle: u32,
    /// The STATUS register after the access.
    pub status: u32,
}

/// One command the device executed (or refused).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandDone {
    pub command: CommandKind,
    /// The raw value written to COMMAND.
    pub code: u32,
    /// The HANDLE register after the command (the new handle for GEN_HANDLE).
    pub handle: u32,
    /// "allocate 0x1000 (asked 0x800) → offset 0x7000", "ENOMEM: no free
    /// block of 0x2000", …
    pub decoded: String,
    /// Positive errno written to STATUS (0 = ok).
    pub status: u32,
    /// Set when a fault plan rule changed the outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
}

/// The host services a context can be bound to by its first ping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    /// Echoes each ping back with a recognisable transformation.
    Echo,
    /// Backs guest-allocated blocks with host memory (emulator type 5).
    HostMemoryAllocator,
    /// Carves areas out of the shared BAR for the guest to claim
    /// (emulator type 6, "shared slots").
    SharedSlots,
}

/// A PING or PING_WITH_DATA write and what the device did about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingDone {
    pub handle: u32,
    pub with_data: bool,
    /// The service the context is bound to after this ping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceKind>,
    /// Guest-physical address of the ping page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u64>,
    /// The header as read from the page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<PingInfo>,
    /// The header as written back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<PingInfo>,
    pub decoded: String,
    /// Why the ping could not be served (unknown handle, no ping page, the
    /// page is not in guest RAM the device can reach, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
}

/// A fault plan rule fired.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultFired {
    /// Index of the rule in the plan.
    pub rule: usize,
    /// What the rule watches (`allocate_block`, `ping`, `access`, …).
    pub trigger: String,
    /// Which occurrence of the trigger this was (from 1).
    pub occurrence: u64,
    /// What it did: "fail ENOMEM", "invalid handle", "delay 200 ms", …
    pub action: String,
}

/// Who holds a range of the shared area.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BlockOwner {
    Free,
    /// Allocated by the guest with ALLOCATE_BLOCK.
    Guest,
    /// Carved by a host service for the context `handle` (a claim).
    Host {
        handle: u32,
    },
}

/// One range of the shared area. Together the blocks tile it exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockInfo {
    pub offset: u64,
    pub size: u64,
    pub owner: BlockOwner,
}

/// One live context.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandleInfo {
    pub handle: u32,
    /// Guest-physical address of its ping page, once told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping_page: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceKind>,
    pub pings: u64,
}

/// Guest memory a host-memory-allocator context asked the host to back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostMapping {
    pub handle: u32,
    /// Guest-physical address (inside the shared BAR).
    pub phys: u64,
    pub size: u64,
}

/// Successes and failures of one kind of operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpCount {
    pub ok: u64,
    pub failed: u64,
}

/// What the device has done since it started (or was reset).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub reads: u64,
    pub writes: u64,
    pub allocate_block: OpCount,
    pub deallocate_block: OpCount,
    pub gen_handle: OpCount,
    pub destroy_handle: OpCount,
    pub tell_ping_info_addr: OpCount,
    pub unknown_command: OpCount,
    pub ping: OpCount,
    pub ping_with_data: OpCount,
    pub faults: u64,
    /// Accesses the device ignored (odd widths, unknown offsets, …).
    pub ignored: u64,
}

/// The control registers' current values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterFile {
    pub status: u32,
    pub guest_page_size: u32,
    pub block_size: u64,
    pub block_offset: u64,
    pub ping: u32,
    pub ping_info_addr: u64,
    pub handle: u32,
    pub phys_start: u64,
}

/// A consistent snapshot of the model's inspectable state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceState {
    /// Live contexts, by handle.
    pub handles: Vec<HandleInfo>,
    /// The shared area, tiled by blocks in offset order.
    pub blocks: Vec<BlockInfo>,
    /// Host memory backing guest blocks (host memory allocator service).
    pub mappings: Vec<HostMapping>,
    /// Size of the shared area (BAR1).
    pub shared_size: u64,
    pub registers: RegisterFile,
    pub counters: Counters,
}

impl DeviceState {
    /// Blocks the guest allocated and has not freed.
    pub fn guest_blocks(&self) -> impl Iterator<Item = &BlockInfo> {
        self.blocks.iter().filter(|b| b.owner == BlockOwner::Guest)
    }

    /// Areas host services carved for contexts (what the guest claims).
    pub fn claims(&self) -> impl Iterator<Item = &BlockInfo> {
        self.blocks
            .iter()
            .filter(|b| matches!(b.owner, BlockOwner::Host { .. }))
    }

    /// True when nothing is held: no handle, no allocated block, no claim,
    /// no host mapping. The invariant after the last file is closed.
    pub fn is_idle(&self) -> bool {
        self.handles.is_empty()
            && self.mappings.is_empty()
            && self.blocks.iter().all(|b| b.owner == BlockOwner::Free)
    }

    /// Bytes of the shared area not free.
    pub fn used_bytes(&self) -> u64 {
        self.blocks
            .iter()
            .filter(|b| b.owner != BlockOwner::Free)
            .map(|b| b.size)
            .sum()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DeviceEvent {
    /// The server is listening; QEMU may connect.
    Listening {
        socket: String,
        bar1_size: u64,
    },
    /// A client connected and negotiated the protocol version.
    Connected {
        /// Version the client proposed, `major.minor`.
        client_version: String,
        /// The capabilities JSON the client sent.
        client_caps: String,
    },
    /// The client went away (or was dropped by a fault).
    Disconnected {
        reason: String,
    },
    /// The client shared (a window of) guest RAM.
    DmaMap {
        gpa: u64,
        size: u64,
        /// False when no file descriptor came with it: the device cannot
        /// reach that memory.
        mapped: bool,
    },
    DmaUnmap {
        gpa: u64,
        size: u64,
    },
    /// The client configured interrupts.
    Irqs {
        index: u32,
        action: String,
        start: u32,
        count: u32,
        fds: u32,
    },
    /// The device was reset (by the client or the pipeline).
    Reset {
        by: String,
    },
    Reg(RegAccess),
    Command(CommandDone),
    Ping(PingDone),
    Fault(FaultFired),
    /// The state after a command or ping changed it.
    State(DeviceState),
    /// Something the guest or client did that the device refused or
    /// ignored, or a warning about the host side.
    Anomaly {
        text: String,
    },
    /// The server stopped; `reason` says why.
    Stopped {
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_map_to_their_offsets_and_back() {
        for r in Register::ALL {
            assert_eq!(Register::at(r.offset()), Some(r));
        }
        assert_eq!(Register::at(2), None);
        assert_eq!(Register::at(56), None);
        assert_eq!(Register::at(u64::MAX - 3), None);
        assert_eq!(
            serde_json::to_string(&Register::PingInfoAddrLow).unwrap(),
            "\"PING_INFO_ADDR_LOW\""
        );
    }

    #[test]
    fn idle_means_nothing_held() {
        let mut s = DeviceState {
            blocks: vec![BlockInfo {
                offset: 0,
                size: 0x1000,
                owner: BlockOwner::Free,
            }],
            shared_size: 0x1000,
            ..Default::default()
        };
        assert!(s.is_idle());
        s.blocks[0].owner = BlockOwner::Host { handle: 1 };
        assert!(!s.is_idle());
        assert_eq!(s.claims().count(), 1);
        assert_eq!(s.used_bytes(), 0x1000);
    }

    #[test]
    fn events_round_trip_through_json() {
        let ev = DeviceEvent::Reg(RegAccess {
            access: Access::Write,
            space: Space::Bar0,
            offset: 0,
            width: 4,
            reg: Some(Register::Command),
            value: 3,
            decoded: "GEN_HANDLE".into(),
            handle: 1,
            status: 0,
        });
        let line = serde_json::to_string(&ev).unwrap();
        assert!(line.contains(r#""reg":"COMMAND""#), "{line}");
        assert_eq!(serde_json::from_str::<DeviceEvent>(&line).unwrap(), ev);
    }
}
