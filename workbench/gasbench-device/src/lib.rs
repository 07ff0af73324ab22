//! The goldfish address space device, as a model with no I/O.
//!
//! Upstream QEMU has no goldfish address space device; gasbench emulates
//! it so the Rust driver under review has hardware to drive. This crate is
//! the device itself: PCI config space ([`config_space`]), the BAR0 control
//! registers and their commands, the shared-area allocator
//! ([`allocator`]), contexts and their host ping services ([`services`]),
//! fault plans ([`faults`]) and a state snapshot. The transport
//! (gasbench-vfu) feeds it accesses and carries out the [`Effects`] it
//! returns.
//!
//! **Architecture invariant:** this crate never opens a socket or a file
//! and never sleeps. Guest memory comes in through [`GuestRam`], events go
//! out through [`DeviceTrace`], delays and disconnects go out as
//! [`Effects`]. Nothing a guest does may panic it: every input is checked.
//!
//! Register semantics follow the Android emulator's device
//! (`hw/pci/goldfish_address_space.c`), with these deliberate differences:
//! successful GEN_HANDLE, DESTROY_HANDLE and TELL_PING_INFO_ADDR leave
//! STATUS 0 (the emulator's falls through to ENOSYS); DESTROY_HANDLE and
//! TELL_PING_INFO_ADDR on an unknown handle report EINVAL; DEALLOCATE_BLOCK
//! refuses a host claim; accesses that are not 32-bit and aligned are
//! ignored (64-bit aligned ones are split in two, low half first);
//! GUEST_PAGE_SIZE 0 makes ALLOCATE_BLOCK fail with EINVAL rather than
//! divide by zero.

pub mod allocator;
pub mod config_space;
mod device;
pub mod errno;
pub mod faults;
pub mod memory;
pub mod services;
pub mod shared_area;
pub mod trace;

use serde::{Deserialize, Serialize};

pub use device::{AccessError, Device, Effects, MAX_HANDLES, MAX_MAPPINGS, Region};
pub use faults::{FaultAction, FaultPlan, FaultPlanError, FaultRule, Trigger};
pub use gasbench_events::device::DeviceState;
pub use memory::{DmaError, GuestRam, NoRam};
pub use trace::{Collect, Deferred, DeviceTrace, NoTrace};

pub const VENDOR_ID: u16 = 0x607d;
pub const DEVICE_ID: u16 = 0xf153;
pub const REVISION: u8 = 1;
/// Base class 0x05 (memory controller), subclass 0x80 (other).
pub const CLASS_CODE: u32 = 0x05_80_00;
/// BAR0: the control registers.
pub const BAR0_SIZE: u64 = 0x1000;
/// BAR1 when not configured: 16 MiB (the emulator's is 16 GiB).
pub const DEFAULT_BAR1_SIZE: u64 = 16 << 20;
pub const MIN_BAR1_SIZE: u64 = 4 << 10;
pub const MAX_BAR1_SIZE: u64 = 64 << 30;
/// What the driver treats as "no handle".
pub const INVALID_HANDLE: u32 = u32::MAX;
/// BLOCK_OFFSET after a failed allocation.
pub const BAD_OFFSET: u64 = u64::MAX;
/// GUEST_PAGE_SIZE until the driver writes it.
pub const DEFAULT_GUEST_PAGE_SIZE: u32 = 4096;

/// What can be chosen about the device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Size of the shared area (BAR1): a power of two, 4 KiB to 64 GiB.
    #[serde(default = "default_bar1_size")]
    pub bar1_size: u64,
    /// Pulse INTx after every command, as the emulator does. Off by
    /// default: the posted driver requests no interrupt, and an unhandled
    /// level interrupt only makes noise in the guest.
    #[serde(default)]
    pub irq_on_command: bool,
}

fn default_bar1_size() -> u64 {
    DEFAULT_BAR1_SIZE
}

impl Default for DeviceConfig {
    fn default() -> Self {
        DeviceConfig {
            bar1_size: DEFAULT_BAR1_SIZE,
            irq_on_command: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("BAR1 size {0:#x} is not a power of two (PCI BARs are)")]
    NotPowerOfTwo(u64),
    #[error("BAR1 size {0:#x} is outside {MIN_BAR1_SIZE:#x}..={MAX_BAR1_SIZE:#x}")]
    OutOfRange(u64),
}

impl DeviceConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = self.bar1_size;
        if !(MIN_BAR1_SIZE..=MAX_BAR1_SIZE).contains(&s) {
            return Err(ConfigError::OutOfRange(s));
        }
        if !s.is_power_of_two() {
            return Err(ConfigError::NotPowerOfTwo(s));
        }
        Ok(())
    }
}

/// Parse a size: `4096`, `0x1000`, `64K`, `16M`, `16MiB`, `1G`, `2GiB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let bad = || format!("{text:?} is not a size (examples: 4096, 0x1000, 64K, 16M, 1G)");
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16).map_err(|_| bad());
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(bad()),
    };
    n.checked_mul(1u64 << shift).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("0x1000"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size(" 2 GiB "), Ok(2 << 30));
        assert!(parse_size("").is_err());
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn bar1_size_is_checked() {
        assert!(DeviceConfig::default().validate().is_ok());
        let c = |s| DeviceConfig {
            bar1_size: s,
            ..Default::default()
        };
        assert_eq!(
            c(3 << 20).validate(),
            Err(ConfigError::NotPowerOfTwo(3 << 20))
        );
        assert_eq!(c(1024).validate(), Err(ConfigError::OutOfRange(1024)));
        assert_eq!(c(1 << 40).validate(), Err(ConfigError::OutOfRange(1 << 40)));
        assert!(c(4096).validate().is_ok());
    }
}
