//! The five commands written to COMMAND: what each does to the device's
//! state, its STATUS, and the event that records it.

use super::*;

impl Device {
    pub(super) fn command(&mut self, offset: u64, code: u32) -> Effects {
        let kind = CommandKind::from_code(code);
        let trigger = match kind {
            CommandKind::AllocateBlock => Some(Trigger::AllocateBlock),
            CommandKind::DeallocateBlock => Some(Trigger::DeallocateBlock),
            CommandKind::GenHandle => Some(Trigger::GenHandle),
            CommandKind::DestroyHandle => Some(Trigger::DestroyHandle),
            CommandKind::TellPingInfoAddr => Some(Trigger::TellPingInfoAddr),
            CommandKind::Unknown => None,
        };
        let fired = trigger.and_then(|t| self.faults.observe(t));
        let mut fx = Effects::default();
        let mut corrupt = None;
        let outcome = match fired.map(|f| f.action) {
            Some(FaultAction::DropConnection) => {
                fx.disconnect = true;
                Outcome {
                    status: self.regs.status,
                    decoded: "not executed: the connection is dropped".into(),
                    changed: false,
                }
            }
            Some(FaultAction::Fail { errno: e }) => {
                if kind == CommandKind::AllocateBlock {
                    self.regs.set_block_offset(crate::BAD_OFFSET);
                }
                Outcome {
                    status: e.0,
                    decoded: format!("{}: not executed (fault)", errno::describe(e.0)),
                    changed: false,
                }
            }
            Some(FaultAction::InvalidHandle) => {
                self.regs.handle = INVALID_HANDLE;
                Outcome {
                    status: 0,
                    decoded: "handle 0xffffffff (fault: no context created)".into(),
                    changed: false,
                }
            }
            other => {
                if let Some(FaultAction::Delay { ms }) = other {
                    fx.delay = Some(Duration::from_millis(ms));
                }
                if let Some(FaultAction::CorruptEcho { xor }) = other {
                    corrupt = Some(xor);
                }
                match kind {
                    CommandKind::AllocateBlock => self.cmd_allocate(),
                    CommandKind::DeallocateBlock => self.cmd_deallocate(),
                    CommandKind::GenHandle => self.cmd_gen_handle(),
                    CommandKind::DestroyHandle => self.cmd_destroy_handle(),
                    CommandKind::TellPingInfoAddr => self.cmd_tell_ping_info(),
                    CommandKind::Unknown => {
                        Outcome::err(errno::ENOSYS, format!("no command {code}"))
                    }
                }
            }
        };
        let mut outcome = outcome;
        if let Some(xor) = corrupt {
            let addr = self.regs.ping_info_addr() ^ xor;
            (self.regs.ping_info_lo, self.regs.ping_info_hi) = split(addr);
            outcome
                .decoded
                .push_str(&format!("; echo corrupted to {addr:#x} (fault)"));
        }
        if !fx.disconnect {
            self.regs.status = outcome.status;
        }
        let failed = outcome.status != 0
            || matches!(fired.map(|f| f.action), Some(FaultAction::InvalidHandle));
        let count = self.count_for(kind);
        if failed {
            count.failed += 1;
        } else {
            count.ok += 1;
        }
        if self.cfg.irq_on_command && !fx.disconnect {
            fx.irq = true;
        }
        if self.trace.enabled() {
            self.trace_reg(
                Access::Write,
                offset,
                4,
                Some(Register::Command),
                u64::from(code),
                kind.name().to_string(),
            );
        }
        if let Some(f) = &fired {
            self.trace_fault(f);
        }
        if self.trace.enabled() {
            self.trace.emit(DeviceEvent::Command(CommandDone {
                command: kind,
                code,
                handle: self.regs.handle,
                decoded: outcome.decoded,
                status: self.regs.status,
                fault: fired.map(|f| f.action.describe()),
            }));
        }
        if outcome.changed {
            self.trace_state();
        }
        fx
    }

    fn count_for(&mut self, kind: CommandKind) -> &mut OpCount {
        let c = &mut self.counters;
        match kind {
            CommandKind::AllocateBlock => &mut c.allocate_block,
            CommandKind::DeallocateBlock => &mut c.deallocate_block,
            CommandKind::GenHandle => &mut c.gen_handle,
            CommandKind::DestroyHandle => &mut c.destroy_handle,
            CommandKind::TellPingInfoAddr => &mut c.tell_ping_info_addr,
            CommandKind::Unknown => &mut c.unknown_command,
        }
    }

    fn cmd_allocate(&mut self) -> Outcome {
        let asked = self.regs.block_size();
        let ps = self.regs.guest_page_size;
        if asked == 0 {
            return Outcome::err(errno::EINVAL, "size 0".into());
        }
        if ps == 0 {
            return Outcome::err(errno::EINVAL, "GUEST_PAGE_SIZE is 0".into());
        }
        let Some(size) = round_size(asked, ps) else {
            self.regs.set_block_offset(crate::BAD_OFFSET);
            return Outcome::err(
                errno::ENOMEM,
                format!("size {asked:#x} rounds past 64 bits"),
            );
        };
        self.regs.set_block_size(size);
        match self.alloc.allocate(size, BlockOwner::Guest) {
            Some(offset) => {
                self.regs.set_block_offset(offset);
                Outcome::ok(
                    format!("size {asked:#x} → {size:#x} at offset {offset:#x}"),
                    true,
                )
            }
            None => {
                self.regs.set_block_offset(crate::BAD_OFFSET);
                let largest = self.alloc.largest_free();
                Outcome::err(
                    errno::ENOMEM,
                    format!(
                        "no free block of {size:#x} (asked {asked:#x}; largest free {largest:#x})"
                    ),
                )
            }
        }
    }

    fn cmd_deallocate(&mut self) -> Outcome {
        let offset = self.regs.block_offset();
        match self.alloc.free(offset, |o| o == BlockOwner::Guest) {
            Ok(block) => {
                // The emulator runs "deallocation callbacks": host memory
                // backing the block goes with it.
                let before = self.mappings.len();
                let end = block.offset + block.size;
                self.mappings
                    .retain(|m| m.offset < block.offset || m.offset >= end);
                let dropped = before - self.mappings.len();
                let mut d = format!("freed {:#x} bytes at offset {offset:#x}", block.size);
                if dropped > 0 {
                    d.push_str(&format!("; dropped {dropped} host mapping(s)"));
                }
                Outcome::ok(d, true)
            }
            Err(FreeError::NoBlock) => Outcome::err(
                errno::EINVAL,
                format!("no block starts at offset {offset:#x}"),
            ),
            Err(FreeError::AlreadyFree) => Outcome::err(
                errno::EINVAL,
                format!("the block at offset {offset:#x} is free"),
            ),
            Err(FreeError::WrongOwner(owner)) => Outcome::err(
                errno::EINVAL,
                match owner {
                    BlockOwner::Host { handle } => {
                        format!(
                            "offset {offset:#x} is a claim of handle {handle}, not a guest block"
                        )
                    }
                    _ => format!("offset {offset:#x} is not a guest block"),
                },
            ),
        }
    }

    pub(super) fn cmd_gen_handle(&mut self) -> Outcome {
        if self.contexts.len() >= MAX_HANDLES {
            self.regs.handle = INVALID_HANDLE;
            return Outcome::err(errno::ENOSPC, format!("{MAX_HANDLES} handles are live"));
        }
        // A counter from 1. It skips 0 and 0xffffffff (the driver's "no
        // handle"; the emulator would hand it out after 2^32 opens) and,
        // once it wraps, handles still live.
        let handle = loop {
            let h = self.next_handle;
            self.next_handle = self.next_handle.wrapping_add(1);
            if h != 0 && h != INVALID_HANDLE && !self.contexts.contains_key(&h) {
                break h;
            }
        };
        self.contexts.insert(handle, Context::default());
        self.regs.handle = handle;
        Outcome::ok(format!("handle {handle}"), true)
    }

    fn cmd_destroy_handle(&mut self) -> Outcome {
        let handle = self.regs.handle;
        let Some(ctx) = self.contexts.remove(&handle) else {
            return Outcome::err(errno::EINVAL, format!("no handle {handle}"));
        };
        let claims = self.alloc.owned_by(BlockOwner::Host { handle });
        for off in &claims {
            let _ = self.alloc.free(*off, |_| true);
        }
        let before = self.mappings.len();
        self.mappings.retain(|m| m.handle != handle);
        let dropped = before - self.mappings.len();
        let mut d = format!("handle {handle} destroyed");
        if let Some(s) = ctx.service {
            d.push_str(&format!(" ({})", services::name(s)));
        }
        if !claims.is_empty() {
            d.push_str(&format!("; freed {} claim(s)", claims.len()));
        }
        if dropped > 0 {
            d.push_str(&format!("; dropped {dropped} host mapping(s)"));
        }
        Outcome::ok(d, true)
    }

    fn cmd_tell_ping_info(&mut self) -> Outcome {
        let handle = self.regs.handle;
        let addr = self.regs.ping_info_addr();
        match self.contexts.get_mut(&handle) {
            Some(ctx) => {
                ctx.ping_page = Some(addr);
                Outcome::ok(format!("handle {handle} ping page {addr:#x}"), true)
            }
            None => Outcome::err(errno::EINVAL, format!("no handle {handle}")),
        }
    }
}
