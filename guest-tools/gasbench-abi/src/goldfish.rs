//! The goldfish address space device's side of the contract, as the
//! Android emulator defines it and the driver under test speaks it: the
//! BAR0 register map, the command codes written to COMMAND, and the ping
//! page header. The device model serves it, the trace decodes it, the
//! TUI's synthetic runs drive it; each takes it from here.

use serde::{Deserialize, Serialize};

/// The control registers in BAR0, by name. Offsets follow the Android
/// emulator's device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Register {
    Command,
    Status,
    GuestPageSize,
    BlockSizeLow,
    BlockSizeHigh,
    BlockOffsetLow,
    BlockOffsetHigh,
    Ping,
    PingInfoAddrLow,
    PingInfoAddrHigh,
    Handle,
    PhysStartLow,
    PhysStartHigh,
    PingWithData,
}

impl Register {
    /// In offset order: register `i` is at `4 * i`.
    pub const ALL: [Register; 14] = [
        Register::Command,
        Register::Status,
        Register::GuestPageSize,
        Register::BlockSizeLow,
        Register::BlockSizeHigh,
        Register::BlockOffsetLow,
        Register::BlockOffsetHigh,
        Register::Ping,
        Register::PingInfoAddrLow,
        Register::PingInfoAddrHigh,
        Register::Handle,
        Register::PhysStartLow,
        Register::PhysStartHigh,
        Register::PingWithData,
    ];

    /// Byte offset in BAR0.
    pub fn offset(self) -> u64 {
        Register::ALL
            .iter()
            .position(|r| *r == self)
            .map_or(0, |i| 4 * i as u64)
    }

    /// The register at `offset`, if one starts there.
    pub fn at(offset: u64) -> Option<Register> {
        if !offset.is_multiple_of(4) {
            return None;
        }
        Register::ALL.get((offset / 4) as usize).copied()
    }

    pub fn name(self) -> &'static str {
        match self {
            Register::Command => "COMMAND",
            Register::Status => "STATUS",
            Register::GuestPageSize => "GUEST_PAGE_SIZE",
            Register::BlockSizeLow => "BLOCK_SIZE_LOW",
            Register::BlockSizeHigh => "BLOCK_SIZE_HIGH",
            Register::BlockOffsetLow => "BLOCK_OFFSET_LOW",
            Register::BlockOffsetHigh => "BLOCK_OFFSET_HIGH",
            Register::Ping => "PING",
            Register::PingInfoAddrLow => "PING_INFO_ADDR_LOW",
            Register::PingInfoAddrHigh => "PING_INFO_ADDR_HIGH",
            Register::Handle => "HANDLE",
            Register::PhysStartLow => "PHYS_START_LOW",
            Register::PhysStartHigh => "PHYS_START_HIGH",
            Register::PingWithData => "PING_WITH_DATA",
        }
    }
}

/// The device's commands (values written to COMMAND).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandKind {
    AllocateBlock,
    DeallocateBlock,
    GenHandle,
    DestroyHandle,
    TellPingInfoAddr,
    /// A value the device does not know (STATUS = ENOSYS).
    Unknown,
}

impl CommandKind {
    /// The known commands, each with its code.
    pub const KNOWN: [(CommandKind, u32); 5] = [
        (CommandKind::AllocateBlock, 1),
        (CommandKind::DeallocateBlock, 2),
        (CommandKind::GenHandle, 3),
        (CommandKind::DestroyHandle, 4),
        (CommandKind::TellPingInfoAddr, 5),
    ];

    pub fn from_code(code: u32) -> CommandKind {
        CommandKind::KNOWN
            .iter()
            .find(|(_, c)| *c == code)
            .map_or(CommandKind::Unknown, |(k, _)| *k)
    }

    /// The value the driver writes to COMMAND; None for [`CommandKind::Unknown`].
    pub fn code(self) -> Option<u32> {
        CommandKind::KNOWN
            .iter()
            .find(|(k, _)| *k == self)
            .map(|(_, c)| *c)
    }

    pub fn name(self) -> &'static str {
        match self {
            CommandKind::AllocateBlock => "ALLOCATE_BLOCK",
            CommandKind::DeallocateBlock => "DEALLOCATE_BLOCK",
            CommandKind::GenHandle => "GEN_HANDLE",
            CommandKind::DestroyHandle => "DESTROY_HANDLE",
            CommandKind::TellPingInfoAddr => "TELL_PING_INFO_ADDR",
            CommandKind::Unknown => "UNKNOWN",
        }
    }
}

/// Length of the ping page header.
pub const PING_INFO_LEN: usize = 48;

/// PING_WITH_DATA: payload bytes that fit in the ping page after the header.
pub const PING_DATA_MAX: usize = 4096 - PING_INFO_LEN;

/// The ping page header: the uapi ping struct followed by `data_size`
/// (the driver's `PingInfoHeader`), what the driver writes before a PING
/// and reads back after it. 48 bytes in the guest's byte order, which is
/// little-endian (gasbench runs x86-64 guests).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingInfo {
    /// Guest-physical address (shared BAR start + offset) as the driver
    /// fills it; services that hand out areas put shared-area offsets here.
    pub offset: u64,
    pub size: u64,
    pub metadata: u64,
    pub version: u32,
    pub wait_fd: u32,
    pub wait_flags: u32,
    pub direction: u32,
    pub data_size: u64,
}

impl PingInfo {
    /// Each field's offset and width in bytes, in layout order.
    pub const LAYOUT: [(&'static str, usize, usize); 8] = [
        ("offset", 0, 8),
        ("size", 8, 8),
        ("metadata", 16, 8),
        ("version", 24, 4),
        ("wait_fd", 28, 4),
        ("wait_flags", 32, 4),
        ("direction", 36, 4),
        ("data_size", 40, 8),
    ];

    pub fn decode(b: &[u8; PING_INFO_LEN]) -> PingInfo {
        let u64_at = |at: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(x)
        };
        let u32_at = |at: usize| {
            let mut x = [0u8; 4];
            x.copy_from_slice(&b[at..at + 4]);
            u32::from_le_bytes(x)
        };
        PingInfo {
            offset: u64_at(0),
            size: u64_at(8),
            metadata: u64_at(16),
            version: u32_at(24),
            wait_fd: u32_at(28),
            wait_flags: u32_at(32),
            direction: u32_at(36),
            data_size: u64_at(40),
        }
    }

    /// The header from the start of `b`, if it is long enough.
    pub fn decode_prefix(b: &[u8]) -> Option<PingInfo> {
        b.get(..PING_INFO_LEN)
            .and_then(|h| <&[u8; PING_INFO_LEN]>::try_from(h).ok())
            .map(PingInfo::decode)
    }

    pub fn encode(&self) -> [u8; PING_INFO_LEN] {
        let mut b = [0u8; PING_INFO_LEN];
        b[0..8].copy_from_slice(&self.offset.to_le_bytes());
        b[8..16].copy_from_slice(&self.size.to_le_bytes());
        b[16..24].copy_from_slice(&self.metadata.to_le_bytes());
        b[24..28].copy_from_slice(&self.version.to_le_bytes());
        b[28..32].copy_from_slice(&self.wait_fd.to_le_bytes());
        b[32..36].copy_from_slice(&self.wait_flags.to_le_bytes());
        b[36..40].copy_from_slice(&self.direction.to_le_bytes());
        b[40..48].copy_from_slice(&self.data_size.to_le_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_sit_four_bytes_apart_and_name_themselves() {
        for (i, r) in Register::ALL.iter().enumerate() {
            assert_eq!(r.offset(), 4 * i as u64);
            assert_eq!(Register::at(r.offset()), Some(*r));
        }
        assert_eq!(Register::PingWithData.offset(), 52);
        assert_eq!(Register::at(56), None);
        assert_eq!(Register::at(2), None);
        assert_eq!(Register::PingInfoAddrHigh.name(), "PING_INFO_ADDR_HIGH");
    }

    #[test]
    fn command_codes_round_trip() {
        for (k, c) in CommandKind::KNOWN {
            assert_eq!(CommandKind::from_code(c), k);
            assert_eq!(k.code(), Some(c));
        }
        assert_eq!(CommandKind::from_code(0), CommandKind::Unknown);
        assert_eq!(CommandKind::from_code(6), CommandKind::Unknown);
        assert_eq!(CommandKind::Unknown.code(), None);
    }

    #[test]
    fn the_ping_header_is_laid_out_as_the_driver_writes_it() {
        // Field offsets from PingInfoHeader::encode in the posted driver.
        let p = PingInfo {
            offset: 0x0102030405060708,
            size: 0x1112131415161718,
            metadata: 0x2122232425262728,
            version: 0x31323334,
            wait_fd: 0x41424344,
            wait_flags: 0x51525354,
            direction: 0x61626364,
            data_size: 0x7172737475767778,
        };
        let b = p.encode();
        for (name, at, width) in PingInfo::LAYOUT {
            // The lowest byte of each field ends in 8 or 4 by construction.
            let low = b[at];
            assert!(low & 0x0f == 0x08 || low & 0x0f == 0x04, "{name}");
            assert!(at + width <= PING_INFO_LEN);
        }
        assert_eq!(b[0], 0x08);
        assert_eq!(b[24], 0x34);
        assert_eq!(b[40], 0x78);
        assert_eq!(PingInfo::decode(&b), p);
        assert_eq!(PingInfo::decode_prefix(&b[..]), Some(p));
        assert_eq!(PingInfo::decode_prefix(&b[..47]), None);
    }
}
