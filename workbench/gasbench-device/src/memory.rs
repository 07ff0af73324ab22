//! Guest RAM as the device reaches it: two methods, so the model never
//! knows whether memory is a mapped memfd, a test buffer or absent.
//!
//! Anything implementing vm-memory's `GuestMemory` (which covers
//! `GuestMemoryMmap`) is guest RAM; the transport implements it for the
//! windows QEMU shares with DMA_MAP.

use vm_memory::{Bytes, GuestAddress};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DmaError {
    #[error("guest memory {gpa:#x}..+{len:#x} is not shared with the device")]
    Unmapped { gpa: u64, len: usize },
    #[error(
        "guest memory {gpa:#x}..+{len:#x} was shared without a file descriptor (the device cannot reach it)"
    )]
    NoFd { gpa: u64, len: usize },
    #[error("guest memory {gpa:#x}..+{len:#x} is read-only to the device")]
    ReadOnly { gpa: u64, len: usize },
    #[error("guest memory access {gpa:#x}..+{len:#x}: {reason}")]
    Other {
        gpa: u64,
        len: usize,
        reason: String,
    },
}

/// Guest-physical memory the device may read and write.
pub trait GuestRam {
    fn dma_read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), DmaError>;
    fn dma_write(&self, gpa: u64, data: &[u8]) -> Result<(), DmaError>;
}

impl<M: vm_memory::GuestMemory> GuestRam for M {
    fn dma_read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        check_range(gpa, buf.len())?;
        self.read_slice(buf, GuestAddress(gpa))
            .map_err(|_| DmaError::Unmapped {
                gpa,
                len: buf.len(),
            })
    }

    fn dma_write(&self, gpa: u64, data: &[u8]) -> Result<(), DmaError> {
        check_range(gpa, data.len())?;
        self.write_slice(data, GuestAddress(gpa))
            .map_err(|_| DmaError::Unmapped {
                gpa,
                len: data.len(),
            })
    }
}

/// No guest memory at all: every access fails. For a device that has not
/// been given DMA windows yet.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoRam;

impl GuestRam for NoRam {
    fn dma_read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        Err(DmaError::Unmapped {
            gpa,
            len: buf.len(),
        })
    }
    fn dma_write(&self, gpa: u64, data: &[u8]) -> Result<(), DmaError> {
        Err(DmaError::Unmapped {
            gpa,
            len: data.len(),
        })
    }
}

fn check_range(gpa: u64, len: usize) -> Result<(), DmaError> {
    if gpa.checked_add(len as u64).is_none() {
        return Err(DmaError::Unmapped { gpa, len });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    #[test]
    fn vm_memory_backs_the_trait() {
        let mem: GuestMemoryMmap =
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0x1000), 0x2000)]).unwrap();
        mem.dma_write(0x1ff0, b"across a page").unwrap();
        let mut buf = [0u8; 13];
        mem.dma_read(0x1ff0, &mut buf).unwrap();
        assert_eq!(&buf, b"across a page");
        assert!(mem.dma_read(0x0, &mut buf).is_err());
        assert!(mem.dma_read(0x2ff8, &mut buf).is_err(), "runs past the end");
        assert!(mem.dma_write(u64::MAX - 2, b"wrap").is_err());
        assert!(NoRam.dma_read(0x1000, &mut buf).is_err());
    }
}
