//! `include/uapi/linux/goldfish_address_space.h`, as Rust.
//!
//! Patch 1/6 of the RFC is missing from the digest; its content is known
//! from Arnd Bergmann's quote of it and from the driver in 6/6, which uses
//! magic `'G'`, `_IOWR` and numbers 10..=14. The structs are `repr(C)` with
//! no implicit padding (checked by the tests below), so their byte images
//! are what the kernel copies from and to user space.

/// `GOLDFISH_ADDRESS_SPACE_IOCTL_MAGIC`.
pub const IOCTL_MAGIC: u8 = b'G';

const IOC_NRBITS: u32 = 8;
const IOC_TYPEBITS: u32 = 8;
const IOC_SIZEBITS: u32 = 14;
const IOC_NRSHIFT: u32 = 0;
const IOC_TYPESHIFT: u32 = IOC_NRSHIFT + IOC_NRBITS;
const IOC_SIZESHIFT: u32 = IOC_TYPESHIFT + IOC_TYPEBITS;
const IOC_DIRSHIFT: u32 = IOC_SIZESHIFT + IOC_SIZEBITS;
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

/// The generic `_IOC(dir, type, nr, size)` encoding (x86 and most others).
pub const fn ioc(dir: u32, ty: u8, nr: u8, size: usize) -> u32 {
    (dir << IOC_DIRSHIFT)
        | ((ty as u32) << IOC_TYPESHIFT)
        | ((nr as u32) << IOC_NRSHIFT)
        | ((size as u32) << IOC_SIZESHIFT)
}

/// `_IOWR(type, nr, T)`.
pub const fn iowr(ty: u8, nr: u8, size: usize) -> u32 {
    ioc(IOC_READ | IOC_WRITE, ty, nr, size)
}

/// `struct goldfish_address_space_allocate_block`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocateBlock {
    pub size: u64,
    pub offset: u64,
    pub phys_addr: u64,
}

/// `struct goldfish_address_space_ping`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ping {
    pub offset: u64,
    pub size: u64,
    pub metadata: u64,
    pub version: u32,
    pub wait_fd: u32,
    pub wait_flags: u32,
    pub direction: u32,
}

/// `struct goldfish_address_space_claim_shared`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClaimShared {
    pub offset: u64,
    pub size: u64,
}

/// The five ioctls of the RFC's ABI subset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ioctl {
    AllocateBlock,
    DeallocateBlock,
    Ping,
    ClaimShared,
    UnclaimShared,
}

impl Ioctl {
    pub const ALL: [Ioctl; 5] = [
        Ioctl::AllocateBlock,
        Ioctl::DeallocateBlock,
        Ioctl::Ping,
        Ioctl::ClaimShared,
        Ioctl::UnclaimShared,
    ];

    /// The `nr` field of the ioctl number.
    pub const fn nr(self) -> u8 {
        match self {
            Ioctl::AllocateBlock => 10,
            Ioctl::DeallocateBlock => 11,
            Ioctl::Ping => 12,
            Ioctl::ClaimShared => 13,
            Ioctl::UnclaimShared => 14,
        }
    }

    /// Size of the argument the kernel copies (the `size` field).
    pub const fn arg_size(self) -> usize {
        match self {
            Ioctl::AllocateBlock => size_of::<AllocateBlock>(),
            Ioctl::DeallocateBlock | Ioctl::UnclaimShared => size_of::<u64>(),
            Ioctl::Ping => size_of::<Ping>(),
            Ioctl::ClaimShared => size_of::<ClaimShared>(),
        }
    }

    /// The full request number passed to `ioctl(2)`.
    pub const fn request(self) -> u32 {
        iowr(IOCTL_MAGIC, self.nr(), self.arg_size())
    }

    /// The macro name in the uapi header.
    pub const fn c_name(self) -> &'static str {
        match self {
            Ioctl::AllocateBlock => "GOLDFISH_ADDRESS_SPACE_IOCTL_ALLOCATE_BLOCK",
            Ioctl::DeallocateBlock => "GOLDFISH_ADDRESS_SPACE_IOCTL_DEALLOCATE_BLOCK",
            Ioctl::Ping => "GOLDFISH_ADDRESS_SPACE_IOCTL_PING",
            Ioctl::ClaimShared => "GOLDFISH_ADDRESS_SPACE_IOCTL_CLAIM_SHARED",
            Ioctl::UnclaimShared => "GOLDFISH_ADDRESS_SPACE_IOCTL_UNCLAIM_SHARED",
        }
    }

    /// The short name scenarios use (`ALLOCATE_BLOCK`).
    pub const fn name(self) -> &'static str {
        match self {
            Ioctl::AllocateBlock => "ALLOCATE_BLOCK",
            Ioctl::DeallocateBlock => "DEALLOCATE_BLOCK",
            Ioctl::Ping => "PING",
            Ioctl::ClaimShared => "CLAIM_SHARED",
            Ioctl::UnclaimShared => "UNCLAIM_SHARED",
        }
    }

    /// Parse a short name (`PING`) or the header's macro name.
    pub fn from_name(name: &str) -> Option<Ioctl> {
        Ioctl::ALL
            .into_iter()
            .find(|i| i.name() == name || i.c_name() == name)
    }

    /// The argument's fields as `(name, byte offset, width in bytes)`, in
    /// layout order. DEALLOCATE_BLOCK and UNCLAIM_SHARED take a bare `u64`
    /// offset, named `offset` here.
    pub const fn layout(self) -> &'static [(&'static str, usize, usize)] {
        match self {
            Ioctl::AllocateBlock => &[("size", 0, 8), ("offset", 8, 8), ("phys_addr", 16, 8)],
            Ioctl::DeallocateBlock | Ioctl::UnclaimShared => &[("offset", 0, 8)],
            Ioctl::Ping => &[
                ("offset", 0, 8),
                ("size", 8, 8),
                ("metadata", 16, 8),
                ("version", 24, 4),
                ("wait_fd", 28, 4),
                ("wait_flags", 32, 4),
                ("direction", 36, 4),
            ],
            Ioctl::ClaimShared => &[("offset", 0, 8), ("size", 8, 8)],
        }
    }

    /// Encode field values (missing fields are 0) into the argument's byte
    /// image. Values wider than a field are truncated to it, as a C cast
    /// would; callers that care check ranges first.
    pub fn encode(self, field: impl Fn(&str) -> u64) -> Vec<u8> {
        let mut out = vec![0u8; self.arg_size()];
        for &(name, at, width) in self.layout() {
            let v = field(name).to_ne_bytes();
            out[at..at + width].copy_from_slice(&v[..width]);
        }
        out
    }

    /// Decode a byte image into `(field, value)` pairs; `None` if too short.
    pub fn decode(self, bytes: &[u8]) -> Option<Vec<(&'static str, u64)>> {
        self.layout()
            .iter()
            .map(|&(name, at, width)| {
                let mut v = [0u8; 8];
                v[..width].copy_from_slice(bytes.get(at..at + width)?);
                Some((name, u64::from_ne_bytes(v)))
            })
            .collect()
    }

    /// Decode a request number back to a known ioctl.
    pub fn from_request(request: u32) -> Option<Ioctl> {
        Ioctl::ALL.into_iter().find(|i| i.request() == request)
    }
}

/// A `repr(C)` uapi struct that can be moved to and from its byte image.
pub trait UapiStruct: Copy + Default {
    /// Native-endian byte image, exactly `size_of::<Self>()` long.
    fn to_bytes(&self) -> Vec<u8>;
    /// Decode from a byte image; `None` if `bytes` is too short.
    fn from_bytes(bytes: &[u8]) -> Option<Self>;
}

fn take_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

fn take_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

impl UapiStruct for AllocateBlock {
    fn to_bytes(&self) -> Vec<u8> {
        [self.size, self.offset, self.phys_addr]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect()
    }
    fn from_bytes(b: &[u8]) -> Option<Self> {
        Some(Self {
            size: take_u64(b, 0)?,
            offset: take_u64(b, 8)?,
            phys_addr: take_u64(b, 16)?,
        })
    }
}

impl UapiStruct for Ping {
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(size_of::<Self>());
        for v in [self.offset, self.size, self.metadata] {
            out.extend_from_slice(&v.to_ne_bytes());
        }
        for v in [self.version, self.wait_fd, self.wait_flags, self.direction] {
            out.extend_from_slice(&v.to_ne_bytes());
        }
        out
    }
    fn from_bytes(b: &[u8]) -> Option<Self> {
        Some(Self {
            offset: take_u64(b, 0)?,
            size: take_u64(b, 8)?,
            metadata: take_u64(b, 16)?,
            version: take_u32(b, 24)?,
            wait_fd: take_u32(b, 28)?,
            wait_flags: take_u32(b, 32)?,
            direction: take_u32(b, 36)?,
        })
    }
}

impl UapiStruct for ClaimShared {
    fn to_bytes(&self) -> Vec<u8> {
        [self.offset, self.size]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect()
    }
    fn from_bytes(b: &[u8]) -> Option<Self> {
        Some(Self {
            offset: take_u64(b, 0)?,
            size: take_u64(b, 8)?,
        })
    }
}

/// The ping page the device reads on a PING write: the uapi ping struct
/// followed by `data_size` (the driver's `PingInfoHeader`, 48 bytes); its
/// one layout is [`crate::goldfish::PingInfo`].
pub use crate::goldfish::PingInfo;

impl UapiStruct for PingInfo {
    fn to_bytes(&self) -> Vec<u8> {
        self.encode().to_vec()
    }
    fn from_bytes(b: &[u8]) -> Option<Self> {
        PingInfo::decode_prefix(b)
    }
}

/// `mkdirat2()` as posted: the syscall number depends on the base the
/// series was ported to (472 as posted; 473 on 7.3, where 472 is
/// `fchroot`), so the agent is told the number at run time.
pub mod mkdirat2 {
    /// The number the RFC v2 posting assigns.
    pub const NR_AS_POSTED: i64 = 472;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_sizes_match_the_quoted_header() {
        // The quoted header has only u64/u32 members in natural order, so
        // no padding: the byte images are exactly the sums of the fields.
        assert_eq!(size_of::<AllocateBlock>(), 24);
        assert_eq!(size_of::<Ping>(), 40);
        assert_eq!(size_of::<ClaimShared>(), 16);
        assert_eq!(size_of::<PingInfo>(), 48);
    }

    #[test]
    fn ioctl_numbers_are_iowr_g_10_to_14() {
        // _IOWR('G', 10, struct goldfish_address_space_allocate_block)
        // = 3 << 30 | 24 << 16 | 0x47 << 8 | 10
        assert_eq!(Ioctl::AllocateBlock.request(), 0xC018_470A);
        assert_eq!(Ioctl::DeallocateBlock.request(), 0xC008_470B);
        assert_eq!(Ioctl::Ping.request(), 0xC028_470C);
        assert_eq!(Ioctl::ClaimShared.request(), 0xC010_470D);
        assert_eq!(Ioctl::UnclaimShared.request(), 0xC008_470E);
        for i in Ioctl::ALL {
            assert_eq!(Ioctl::from_request(i.request()), Some(i));
        }
        assert_eq!(Ioctl::from_request(0xC008_470F), None);
    }

    #[test]
    fn layout_encoding_matches_the_structs() {
        let p = Ping {
            offset: 1,
            size: 2,
            metadata: 3,
            version: 4,
            wait_fd: 5,
            wait_flags: 6,
            direction: 7,
        };
        let vals = [
            ("offset", 1),
            ("size", 2),
            ("metadata", 3),
            ("version", 4),
            ("wait_fd", 5),
            ("wait_flags", 6),
            ("direction", 7),
        ];
        let get = |n: &str| vals.iter().find(|(k, _)| *k == n).map_or(0, |(_, v)| *v);
        assert_eq!(Ioctl::Ping.encode(get), p.to_bytes());
        assert_eq!(Ioctl::Ping.decode(&p.to_bytes()).unwrap(), vals.to_vec());
        let a = AllocateBlock {
            size: 0x1000,
            offset: 0,
            phys_addr: 0,
        };
        assert_eq!(
            Ioctl::AllocateBlock.encode(|n| if n == "size" { 0x1000 } else { 0 }),
            a.to_bytes()
        );
        assert_eq!(Ioctl::DeallocateBlock.encode(|_| 9), 9u64.to_ne_bytes());
        assert!(Ioctl::ClaimShared.decode(&[0; 15]).is_none());
        for i in Ioctl::ALL {
            assert_eq!(Ioctl::from_name(i.name()), Some(i));
            assert_eq!(Ioctl::from_name(i.c_name()), Some(i));
            let (_, at, w) = *i.layout().last().unwrap();
            assert_eq!(at + w, i.arg_size(), "{i:?}");
        }
        assert_eq!(Ioctl::from_name("MMAP"), None);
    }

    #[test]
    fn byte_images_round_trip_and_reject_short_input() {
        let p = Ping {
            offset: 1,
            size: 2,
            metadata: 3,
            version: 4,
            wait_fd: 5,
            wait_flags: 6,
            direction: 7,
        };
        let bytes = p.to_bytes();
        assert_eq!(bytes.len(), 40);
        assert_eq!(Ping::from_bytes(&bytes), Some(p));
        assert_eq!(Ping::from_bytes(&bytes[..39]), None);
        let a = AllocateBlock {
            size: 0x1000,
            offset: 0x2000,
            phys_addr: 0xfe00_0000,
        };
        assert_eq!(AllocateBlock::from_bytes(&a.to_bytes()), Some(a));
        let info = PingInfo {
            data_size: 9,
            ..Default::default()
        };
        assert_eq!(PingInfo::from_bytes(&info.to_bytes()), Some(info));
    }
}
