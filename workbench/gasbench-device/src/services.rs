//! Host ping services. A context's first ping chooses one by its
//! `metadata` (reply metadata 0 = bound, `u64::MAX` = no such service);
//! every later ping is served by it. Numbers 5 and 6 are the Android
//! emulator's device types; the echo is gasbench's own.
//!
//! - **Echo** (`metadata` 100 on the first ping). Each later ping comes
//!   back with `metadata` bit-inverted and `wait_flags` set to the echo's
//!   sequence number (1, 2, …); everything else unchanged. With
//!   PING_WITH_DATA the payload bytes come back inverted too.
//! - **Host memory allocator** (5). `metadata` 1 backs guest memory
//!   `offset..offset+size` (a guest-physical range inside one block the
//!   guest allocated) with host memory; 2 releases the mapping at
//!   `offset`. Reply metadata 0 on success, `u64::MAX` on refusal.
//! - **Shared slots** (6). `metadata` 1 carves `size` bytes (rounded up to
//!   the page size) out of the shared area for the context and returns
//!   `offset` (relative to the shared area, ready for CLAIM_SHARED) and the
//!   rounded `size`; 2 returns the claim whose shared-area offset plus
//!   PHYS_START is `offset` (the driver adds PHYS_START to every offset it
//!   sends). Claims die with the context.

use gasbench_events::device::{PingInfo, ServiceKind};

pub const ECHO: u64 = 100;
pub const HOST_MEMORY_ALLOCATOR: u64 = 5;
pub const SHARED_SLOTS: u64 = 6;

/// Reply metadata: done.
pub const REPLY_OK: u64 = 0;
/// Reply metadata: refused (the emulator's -1).
pub const REPLY_ERR: u64 = u64::MAX;

/// Allocator services' operations, in `metadata`.
pub const OP_ALLOCATE: u64 = 1;
pub const OP_FREE: u64 = 2;

pub fn for_metadata(metadata: u64) -> Option<ServiceKind> {
    match metadata {
        ECHO => Some(ServiceKind::Echo),
        HOST_MEMORY_ALLOCATOR => Some(ServiceKind::HostMemoryAllocator),
        SHARED_SLOTS => Some(ServiceKind::SharedSlots),
        _ => None,
    }
}

pub fn id(kind: ServiceKind) -> u64 {
    match kind {
        ServiceKind::Echo => ECHO,
        ServiceKind::HostMemoryAllocator => HOST_MEMORY_ALLOCATOR,
        ServiceKind::SharedSlots => SHARED_SLOTS,
    }
}

pub fn name(kind: ServiceKind) -> &'static str {
    match kind {
        ServiceKind::Echo => "echo",
        ServiceKind::HostMemoryAllocator => "host memory allocator",
        ServiceKind::SharedSlots => "shared slots",
    }
}

/// The echo's transformation, in place.
pub fn echo(reply: &mut PingInfo, data: &mut [u8], seq: u32) {
    reply.metadata = !reply.metadata;
    reply.wait_flags = seq;
    for b in data {
        *b = !*b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names() {
        for k in [
            ServiceKind::Echo,
            ServiceKind::HostMemoryAllocator,
            ServiceKind::SharedSlots,
        ] {
            assert_eq!(for_metadata(id(k)), Some(k));
            assert!(!name(k).is_empty());
        }
        assert_eq!(for_metadata(0), None);
        let mut p = PingInfo {
            metadata: 0x1234,
            ..Default::default()
        };
        let mut data = [0x0f, 0xf0];
        echo(&mut p, &mut data, 7);
        assert_eq!(p.metadata, !0x1234);
        assert_eq!(p.wait_flags, 7);
        assert_eq!(data, [0xf0, 0x0f]);
    }
}
