//! The vfio-user wire format (QEMU's docs/interop/vfio-user.rst), as
//! plain data: every message is a 16-byte header and a payload, all in the
//! host's byte order (little-endian here). Parsing never trusts a length:
//! payload readers return `None` when the bytes are not there.

/// Bytes in every message header.
pub const HEADER_LEN: usize = 16;

/// Commands (client → server unless noted).
pub mod cmd {
    pub const VERSION: u16 = 1;
    pub const DMA_MAP: u16 = 2;
    pub const DMA_UNMAP: u16 = 3;
    pub const DEVICE_GET_INFO: u16 = 4;
    pub const DEVICE_GET_REGION_INFO: u16 = 5;
    pub const DEVICE_GET_REGION_IO_FDS: u16 = 6;
    pub const DEVICE_GET_IRQ_INFO: u16 = 7;
    pub const DEVICE_SET_IRQS: u16 = 8;
    pub const REGION_READ: u16 = 9;
    pub const REGION_WRITE: u16 = 10;
    /// Server → client.
    pub const DMA_READ: u16 = 11;
    /// Server → client.
    pub const DMA_WRITE: u16 = 12;
    pub const DEVICE_RESET: u16 = 13;
    pub const DIRTY_PAGES: u16 = 14;
    pub const REGION_WRITE_MULTI: u16 = 15;
    pub const DEVICE_FEATURE: u16 = 16;
    pub const MIG_DATA_READ: u16 = 17;
    pub const MIG_DATA_WRITE: u16 = 18;
}

pub fn command_name(c: u16) -> &'static str {
    match c {
        cmd::VERSION => "VERSION",
        cmd::DMA_MAP => "DMA_MAP",
        cmd::DMA_UNMAP => "DMA_UNMAP",
        cmd::DEVICE_GET_INFO => "DEVICE_GET_INFO",
        cmd::DEVICE_GET_REGION_INFO => "DEVICE_GET_REGION_INFO",
        cmd::DEVICE_GET_REGION_IO_FDS => "DEVICE_GET_REGION_IO_FDS",
        cmd::DEVICE_GET_IRQ_INFO => "DEVICE_GET_IRQ_INFO",
        cmd::DEVICE_SET_IRQS => "DEVICE_SET_IRQS",
        cmd::REGION_READ => "REGION_READ",
        cmd::REGION_WRITE => "REGION_WRITE",
        cmd::DMA_READ => "DMA_READ",
        cmd::DMA_WRITE => "DMA_WRITE",
        cmd::DEVICE_RESET => "DEVICE_RESET",
        cmd::DIRTY_PAGES => "DIRTY_PAGES",
        cmd::REGION_WRITE_MULTI => "REGION_WRITE_MULTI",
        cmd::DEVICE_FEATURE => "DEVICE_FEATURE",
        cmd::MIG_DATA_READ => "MIG_DATA_READ",
        cmd::MIG_DATA_WRITE => "MIG_DATA_WRITE",
        _ => "UNKNOWN",
    }
}

/// Header flags.
pub const TYPE_MASK: u32 = 0xf;
pub const TYPE_COMMAND: u32 = 0;
pub const TYPE_REPLY: u32 = 1;
pub const FLAG_NO_REPLY: u32 = 0x10;
pub const FLAG_ERROR: u32 = 0x20;

/// The protocol version gasbench speaks.
pub const VERSION_MAJOR: u16 = 0;
pub const VERSION_MINOR: u16 = 1;

/// Limits we advertise and enforce.
pub const MAX_DATA_XFER: u32 = 1 << 20;
pub const MAX_MSG_FDS: u32 = 8;
/// The largest message accepted: a REGION_WRITE of MAX_DATA_XFER bytes.
pub const MAX_MESSAGE: u32 = (HEADER_LEN as u32) + 16 + MAX_DATA_XFER;
/// Most fds taken from one message (the kernel caps SCM_RIGHTS at 253).
pub const MAX_RECV_FDS: usize = 16;

/// `<linux/vfio.h>` values the protocol reuses.
pub mod vfio {
    pub const DEVICE_FLAGS_RESET: u32 = 1 << 0;
    pub const DEVICE_FLAGS_PCI: u32 = 1 << 1;

    pub const REGION_INFO_FLAG_READ: u32 = 1 << 0;
    pub const REGION_INFO_FLAG_WRITE: u32 = 1 << 1;

    pub const PCI_BAR0_REGION_INDEX: u32 = 0;
    pub const PCI_BAR1_REGION_INDEX: u32 = 1;
    pub const PCI_CONFIG_REGION_INDEX: u32 = 7;
    pub const PCI_NUM_REGIONS: u32 = 9;

    pub const PCI_INTX_IRQ_INDEX: u32 = 0;
    pub const PCI_NUM_IRQS: u32 = 5;

    pub const IRQ_INFO_EVENTFD: u32 = 1 << 0;
    pub const IRQ_INFO_MASKABLE: u32 = 1 << 1;
    pub const IRQ_INFO_AUTOMASKED: u32 = 1 << 2;

    pub const IRQ_SET_DATA_NONE: u32 = 1 << 0;
    pub const IRQ_SET_DATA_BOOL: u32 = 1 << 1;
    pub const IRQ_SET_DATA_EVENTFD: u32 = 1 << 2;
    pub const IRQ_SET_ACTION_MASK: u32 = 1 << 3;
    pub const IRQ_SET_ACTION_UNMASK: u32 = 1 << 4;
    pub const IRQ_SET_ACTION_TRIGGER: u32 = 1 << 5;

    pub const DMA_MAP_FLAG_READ: u32 = 1 << 0;
    pub const DMA_MAP_FLAG_WRITE: u32 = 1 << 1;
    pub const DMA_UNMAP_FLAG_GET_DIRTY_BITMAP: u32 = 1 << 0;
    pub const DMA_UNMAP_FLAG_ALL: u32 = 1 << 1;

    /// Size of `struct vfio_region_info` without capabilities.
    pub const REGION_INFO_LEN: u32 = 32;
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub command: u16,
    /// The whole message, header included.
    pub size: u32,
    pub flags: u32,
    pub error: u32,
}

impl Header {
    pub fn parse(b: &[u8; HEADER_LEN]) -> Header {
        Header {
            id: u16::from_le_bytes([b[0], b[1]]),
            command: u16::from_le_bytes([b[2], b[3]]),
            size: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            flags: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
            error: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
        }
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..2].copy_from_slice(&self.id.to_le_bytes());
        b[2..4].copy_from_slice(&self.command.to_le_bytes());
        b[4..8].copy_from_slice(&self.size.to_le_bytes());
        b[8..12].copy_from_slice(&self.flags.to_le_bytes());
        b[12..16].copy_from_slice(&self.error.to_le_bytes());
        b
    }

    pub fn msg_type(&self) -> u32 {
        self.flags & TYPE_MASK
    }

    pub fn no_reply(&self) -> bool {
        self.flags & FLAG_NO_REPLY != 0
    }

    /// The reply header for this command, `payload` bytes after it.
    pub fn reply(&self, payload: usize) -> Header {
        Header {
            id: self.id,
            command: self.command,
            size: (HEADER_LEN + payload) as u32,
            flags: TYPE_REPLY,
            error: 0,
        }
    }

    /// An error reply: header only.
    pub fn error_reply(&self, errno: u32) -> Header {
        Header {
            id: self.id,
            command: self.command,
            size: HEADER_LEN as u32,
            flags: TYPE_REPLY | FLAG_ERROR,
            error: errno,
        }
    }
}

/// Reads little-endian fields from a payload, failing softly.
pub struct Fields<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Fields { b, at: 0 }
    }

    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let end = self.at.checked_add(N)?;
        let s = self.b.get(self.at..end)?;
        self.at = end;
        let mut x = [0u8; N];
        x.copy_from_slice(s);
        Some(x)
    }

    pub fn u16(&mut self) -> Option<u16> {
        self.take::<2>().map(u16::from_le_bytes)
    }
    pub fn u32(&mut self) -> Option<u32> {
        self.take::<4>().map(u32::from_le_bytes)
    }
    pub fn u64(&mut self) -> Option<u64> {
        self.take::<8>().map(u64::from_le_bytes)
    }
    /// Everything not read yet.
    pub fn rest(&self) -> &'a [u8] {
        &self.b[self.at.min(self.b.len())..]
    }
}

/// Appends little-endian fields to a reply.
pub fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}
pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// The capabilities JSON of our VERSION reply.
pub fn server_capabilities() -> String {
    serde_json::json!({
        "capabilities": {
            "max_msg_fds": MAX_MSG_FDS,
            "max_data_xfer_size": MAX_DATA_XFER,
            "pgsizes": 4096,
        }
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_replies() {
        let h = Header {
            id: 0x1234,
            command: cmd::REGION_READ,
            size: 32,
            flags: FLAG_NO_REPLY,
            error: 0,
        };
        assert_eq!(Header::parse(&h.encode()), h);
        assert_eq!(h.encode()[2], 9);
        assert!(h.no_reply());
        assert_eq!(h.msg_type(), TYPE_COMMAND);
        let r = h.reply(20);
        assert_eq!((r.id, r.size, r.flags), (0x1234, 36, TYPE_REPLY));
        let e = h.error_reply(22);
        assert_eq!(
            (e.size, e.flags, e.error),
            (16, TYPE_REPLY | FLAG_ERROR, 22)
        );
        assert_eq!(command_name(cmd::DMA_MAP), "DMA_MAP");
        assert_eq!(command_name(999), "UNKNOWN");
    }

    #[test]
    fn fields_fail_softly() {
        let b = [1u8, 0, 2, 0, 0, 0, 3];
        let mut f = Fields::new(&b);
        assert_eq!(f.u16(), Some(1));
        assert_eq!(f.u32(), Some(2));
        assert_eq!(f.u64(), None);
        assert_eq!(f.rest(), &[3]);
    }

    #[test]
    fn capabilities_are_json_qemu_accepts() {
        let v: serde_json::Value = serde_json::from_str(&server_capabilities()).unwrap();
        let caps = &v["capabilities"];
        assert!(caps["max_msg_fds"].as_u64().unwrap() <= 16);
        assert!(caps["max_data_xfer_size"].as_u64().unwrap() <= 64 << 20);
        assert_eq!(caps["pgsizes"], 4096);
        // QEMU's reply buffer is the size of its own request (~200 bytes).
        assert!(server_capabilities().len() < 150);
    }
}
