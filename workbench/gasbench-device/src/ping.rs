//! The ping page header: what the driver writes before a PING and reads
//! back after it. 48 bytes, little-endian (the protocol uses the host's
//! byte order; gasbench runs x86-64 guests on x86-64 hosts).

pub use gasbench_events::device::PingInfo;

/// Length of the header in the ping page.
pub const PING_INFO_LEN: usize = 48;

/// PING_WITH_DATA: payload bytes that fit in the ping page after the header.
pub const PING_DATA_MAX: usize = 4096 - PING_INFO_LEN;

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

pub fn encode(p: &PingInfo) -> [u8; PING_INFO_LEN] {
    let mut b = [0u8; PING_INFO_LEN];
    b[0..8].copy_from_slice(&p.offset.to_le_bytes());
    b[8..16].copy_from_slice(&p.size.to_le_bytes());
    b[16..24].copy_from_slice(&p.metadata.to_le_bytes());
    b[24..28].copy_from_slice(&p.version.to_le_bytes());
    b[28..32].copy_from_slice(&p.wait_fd.to_le_bytes());
    b[32..36].copy_from_slice(&p.wait_flags.to_le_bytes());
    b[36..40].copy_from_slice(&p.direction.to_le_bytes());
    b[40..48].copy_from_slice(&p.data_size.to_le_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_driver() {
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
        let b = encode(&p);
        assert_eq!(b[0], 0x08);
        assert_eq!(b[8], 0x18);
        assert_eq!(b[16], 0x28);
        assert_eq!(b[24], 0x34);
        assert_eq!(b[28], 0x44);
        assert_eq!(b[32], 0x54);
        assert_eq!(b[36], 0x64);
        assert_eq!(b[40], 0x78);
        assert_eq!(decode(&b), p);
    }
}
