//! Interrupts: the device has INTx only (no MSI/MSI-X capability). QEMU
//! hands over an eventfd with SET_IRQS; raising INTx is writing 1 to it.
//! INTx is automasked: after a pulse it stays masked until the client
//! unmasks it (QEMU does on the guest's EOI).

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;

use crate::wire::vfio::*;

#[derive(Default)]
pub struct Irqs {
    intx: Option<File>,
    /// Unmask notifications (KVM resamplefd); kept, not used.
    unmask_fd: Option<File>,
    masked: bool,
    pending: bool,
}

impl Irqs {
    /// Apply a SET_IRQS. `Ok(description)` or `Err(errno)`.
    pub fn set(
        &mut self,
        index: u32,
        flags: u32,
        start: u32,
        count: u32,
        mut fds: Vec<OwnedFd>,
        data: &[u8],
    ) -> Result<String, u32> {
        let einval = libc::EINVAL as u32;
        if index >= PCI_NUM_IRQS {
            return Err(einval);
        }
        let data_kind = flags & (IRQ_SET_DATA_NONE | IRQ_SET_DATA_BOOL | IRQ_SET_DATA_EVENTFD);
        let action = flags & (IRQ_SET_ACTION_MASK | IRQ_SET_ACTION_UNMASK | IRQ_SET_ACTION_TRIGGER);
        if data_kind.count_ones() != 1 || action.count_ones() != 1 {
            return Err(einval);
        }
        // Only INTx has an interrupt; every index accepts "disable all".
        let disable_all = data_kind == IRQ_SET_DATA_NONE && count == 0;
        let slots = if index == PCI_INTX_IRQ_INDEX { 1 } else { 0 };
        if !disable_all && start.checked_add(count).is_none_or(|end| end > slots) {
            return Err(einval);
        }
        if data_kind == IRQ_SET_DATA_BOOL && data.len() < count as usize {
            return Err(einval);
        }
        if data_kind == IRQ_SET_DATA_EVENTFD && fds.len() > count as usize {
            return Err(einval);
        }
        if index != PCI_INTX_IRQ_INDEX {
            return Ok("disabled (no such interrupts)".into());
        }
        let fire = match data_kind {
            IRQ_SET_DATA_NONE => count > 0,
            IRQ_SET_DATA_BOOL => data.first().is_some_and(|&b| b != 0),
            _ => false,
        };
        match action {
            IRQ_SET_ACTION_TRIGGER => match data_kind {
                IRQ_SET_DATA_EVENTFD => {
                    self.intx = fds.pop().map(File::from);
                    self.masked = false;
                    Ok(if self.intx.is_some() {
                        "INTx → eventfd".into()
                    } else {
                        "INTx eventfd removed".into()
                    })
                }
                _ if disable_all => {
                    self.intx = None;
                    Ok("INTx disabled".into())
                }
                _ => {
                    if fire {
                        self.pulse();
                    }
                    Ok("INTx triggered by the client".into())
                }
            },
            IRQ_SET_ACTION_MASK => {
                if data_kind == IRQ_SET_DATA_EVENTFD {
                    return Ok("mask notifications ignored".into());
                }
                if fire || disable_all {
                    self.masked = true;
                }
                Ok("INTx masked".into())
            }
            _ => {
                if data_kind == IRQ_SET_DATA_EVENTFD {
                    self.unmask_fd = fds.pop().map(File::from);
                    return Ok("INTx unmask eventfd".into());
                }
                if fire || disable_all {
                    self.masked = false;
                    if std::mem::take(&mut self.pending) {
                        self.pulse();
                    }
                }
                Ok("INTx unmasked".into())
            }
        }
    }

    /// Raise INTx. False when there is no eventfd to signal.
    pub fn pulse(&mut self) -> bool {
        if self.masked {
            self.pending = true;
            return self.intx.is_some();
        }
        let Some(f) = &mut self.intx else {
            return false;
        };
        let ok = f.write_all(&1u64.to_ne_bytes()).is_ok();
        self.masked = true;
        ok
    }

    pub fn clear(&mut self) {
        *self = Irqs::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::FromRawFd;

    fn eventfd() -> File {
        // SAFETY: eventfd returns a new fd or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        assert!(fd >= 0);
        // SAFETY: fd is new and owned by nobody else.
        unsafe { File::from_raw_fd(fd) }
    }

    fn count(f: &mut File) -> u64 {
        let mut b = [0u8; 8];
        match f.read(&mut b) {
            Ok(8) => u64::from_ne_bytes(b),
            _ => 0,
        }
    }

    #[test]
    fn intx_pulses_are_automasked_until_unmasked() {
        let mut irqs = Irqs::default();
        assert!(!irqs.pulse(), "no eventfd yet");
        let mut ev = eventfd();
        let fd: OwnedFd = ev.try_clone().unwrap().into();
        irqs.set(
            0,
            IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER,
            0,
            1,
            vec![fd],
            &[],
        )
        .unwrap();
        assert!(irqs.pulse());
        assert_eq!(count(&mut ev), 1);
        assert!(irqs.pulse(), "masked: remembered as pending");
        assert_eq!(count(&mut ev), 0);
        irqs.set(
            0,
            IRQ_SET_DATA_NONE | IRQ_SET_ACTION_UNMASK,
            0,
            1,
            vec![],
            &[],
        )
        .unwrap();
        assert_eq!(count(&mut ev), 1, "the pending pulse fires on unmask");
        // The client can trigger it too.
        irqs.set(
            0,
            IRQ_SET_DATA_NONE | IRQ_SET_ACTION_UNMASK,
            0,
            1,
            vec![],
            &[],
        )
        .unwrap();
        irqs.set(
            0,
            IRQ_SET_DATA_BOOL | IRQ_SET_ACTION_TRIGGER,
            0,
            1,
            vec![],
            &[1],
        )
        .unwrap();
        assert_eq!(count(&mut ev), 1);
        // Disable all.
        irqs.set(
            0,
            IRQ_SET_DATA_NONE | IRQ_SET_ACTION_TRIGGER,
            0,
            0,
            vec![],
            &[],
        )
        .unwrap();
        assert!(!irqs.pulse());
    }

    #[test]
    fn bad_requests_are_einval() {
        let mut irqs = Irqs::default();
        let e = libc::EINVAL as u32;
        assert_eq!(
            irqs.set(
                9,
                IRQ_SET_DATA_NONE | IRQ_SET_ACTION_TRIGGER,
                0,
                0,
                vec![],
                &[]
            ),
            Err(e)
        );
        assert_eq!(
            irqs.set(0, IRQ_SET_ACTION_TRIGGER, 0, 1, vec![], &[]),
            Err(e),
            "no data flag"
        );
        assert_eq!(
            irqs.set(
                0,
                IRQ_SET_DATA_NONE | IRQ_SET_DATA_BOOL | IRQ_SET_ACTION_TRIGGER,
                0,
                1,
                vec![],
                &[]
            ),
            Err(e)
        );
        assert_eq!(
            irqs.set(
                0,
                IRQ_SET_DATA_NONE | IRQ_SET_ACTION_TRIGGER,
                1,
                1,
                vec![],
                &[]
            ),
            Err(e)
        );
        assert_eq!(
            irqs.set(
                0,
                IRQ_SET_DATA_NONE | IRQ_SET_ACTION_TRIGGER,
                u32::MAX,
                2,
                vec![],
                &[]
            ),
            Err(e)
        );
        assert_eq!(
            irqs.set(
                0,
                IRQ_SET_DATA_BOOL | IRQ_SET_ACTION_TRIGGER,
                0,
                1,
                vec![],
                &[]
            ),
            Err(e)
        );
        assert_eq!(
            irqs.set(
                1,
                IRQ_SET_DATA_NONE | IRQ_SET_ACTION_TRIGGER,
                0,
                1,
                vec![],
                &[]
            ),
            Err(e),
            "no MSI"
        );
        assert!(
            irqs.set(
                2,
                IRQ_SET_DATA_NONE | IRQ_SET_ACTION_TRIGGER,
                0,
                0,
                vec![],
                &[]
            )
            .is_ok()
        );
    }
}
