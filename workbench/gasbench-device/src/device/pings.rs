//! PING and PING_WITH_DATA: the ping page read from guest RAM, the context
//! bound to a host service on its first ping, the services' replies
//! (echo, the host memory allocator, shared slots) written back.

use super::*;

impl Device {
    pub(super) fn ping(
        &mut self,
        offset: u64,
        reg: Register,
        handle: u32,
        ram: &dyn GuestRam,
    ) -> Effects {
        let with_data = reg == Register::PingWithData;
        let trigger = if with_data {
            Trigger::PingWithData
        } else {
            Trigger::Ping
        };
        let fired = self.faults.observe(trigger);
        let mut fx = Effects::default();
        match fired.map(|f| f.action) {
            Some(FaultAction::Delay { ms }) => fx.delay = Some(Duration::from_millis(ms)),
            Some(FaultAction::DropConnection) => fx.disconnect = true,
            _ => {}
        }
        let mut done = PingDone {
            handle,
            with_data,
            service: None,
            page: None,
            request: None,
            reply: None,
            decoded: String::new(),
            error: None,
            fault: fired.map(|f| f.action.describe()),
        };
        let mut changed = false;
        if fx.disconnect {
            done.decoded = "not served: the connection is dropped".into();
        } else {
            changed = self.serve_ping(handle, with_data, ram, &mut done);
        }
        let count = if with_data {
            &mut self.counters.ping_with_data
        } else {
            &mut self.counters.ping
        };
        if done.error.is_some() || fx.disconnect {
            count.failed += 1;
        } else {
            count.ok += 1;
        }
        if self.trace.enabled() {
            self.trace_reg(
                Access::Write,
                offset,
                4,
                Some(reg),
                u64::from(handle),
                format!("ping handle {handle}"),
            );
        }
        if let Some(f) = &fired {
            self.trace_fault(f);
        }
        if self.trace.enabled() {
            self.trace.emit(DeviceEvent::Ping(done));
        }
        if changed {
            self.trace_state();
        }
        fx
    }

    /// Read the page, run the service, write the page back. True when the
    /// device's state changed.
    fn serve_ping(
        &mut self,
        handle: u32,
        with_data: bool,
        ram: &dyn GuestRam,
        done: &mut PingDone,
    ) -> bool {
        let Some(ctx) = self.contexts.get(&handle) else {
            done.error = Some(format!("no handle {handle}"));
            return false;
        };
        done.service = ctx.service;
        let Some(page) = ctx.ping_page else {
            done.error = Some(format!(
                "handle {handle} has no ping page (TELL_PING_INFO_ADDR first)"
            ));
            return false;
        };
        done.page = Some(page);
        let mut header = [0u8; PING_INFO_LEN];
        if let Err(e) = ram.dma_read(page, &mut header) {
            done.error = Some(format!("cannot read the ping page: {e}"));
            return false;
        }
        let request = PingInfo::decode(&header);
        done.request = Some(request);
        let mut reply = request;
        let mut data = Vec::new();
        let mut changed = false;
        if with_data && request.data_size > PING_DATA_MAX as u64 {
            reply.metadata = REPLY_ERR;
            done.decoded = format!(
                "data_size {} does not fit in the ping page (at most {PING_DATA_MAX})",
                request.data_size
            );
        } else {
            if with_data {
                data = vec![0u8; request.data_size as usize];
                let at = page + PING_INFO_LEN as u64;
                if let Err(e) = ram.dma_read(at, &mut data) {
                    done.error = Some(format!("cannot read the ping data: {e}"));
                    return false;
                }
            }
            let service = self.contexts.get(&handle).and_then(|c| c.service);
            match service {
                None => {
                    let chosen = services::for_metadata(request.metadata);
                    if let Some(c) = self.contexts.get_mut(&handle) {
                        c.service = chosen;
                    }
                    match chosen {
                        Some(s) => {
                            reply.metadata = REPLY_OK;
                            done.decoded = format!("bound to {}", services::name(s));
                            changed = true;
                        }
                        None => {
                            reply.metadata = REPLY_ERR;
                            done.decoded = format!(
                                "no service {} (echo {}, host memory allocator {}, shared slots {})",
                                request.metadata,
                                services::ECHO,
                                services::HOST_MEMORY_ALLOCATOR,
                                services::SHARED_SLOTS
                            );
                        }
                    }
                }
                Some(ServiceKind::Echo) => {
                    let seq = self
                        .contexts
                        .get_mut(&handle)
                        .map(|c| {
                            c.served = c.served.wrapping_add(1);
                            c.served
                        })
                        .unwrap_or(0);
                    services::echo(&mut reply, &mut data, seq);
                    done.decoded = format!(
                        "echo #{seq}: metadata {:#x} → {:#x}",
                        request.metadata, reply.metadata
                    );
                }
                Some(ServiceKind::HostMemoryAllocator) => {
                    let (ok, d) = self.serve_host_memory(handle, &request);
                    reply.metadata = if ok { REPLY_OK } else { REPLY_ERR };
                    changed = ok;
                    done.decoded = d;
                }
                Some(ServiceKind::SharedSlots) => {
                    let (ok, d) = self.serve_shared_slots(handle, &request, &mut reply);
                    reply.metadata = if ok { REPLY_OK } else { REPLY_ERR };
                    changed = ok;
                    done.decoded = d;
                }
            }
        }
        if let Some(c) = self.contexts.get_mut(&handle) {
            c.pings += 1;
            done.service = c.service;
        }
        if let Err(e) = ram.dma_write(page, &reply.encode()) {
            done.error = Some(format!("cannot write the ping page back: {e}"));
            return changed;
        }
        if with_data
            && !data.is_empty()
            && let Err(e) = ram.dma_write(page + PING_INFO_LEN as u64, &data)
        {
            done.error = Some(format!("cannot write the ping data back: {e}"));
        }
        done.reply = Some(reply);
        changed
    }

    /// Host memory allocator: back (op 1) or release (op 2) guest memory
    /// inside a block the guest allocated.
    fn serve_host_memory(&mut self, handle: u32, req: &PingInfo) -> (bool, String) {
        let phys_start = self.regs.phys_start();
        match req.metadata {
            OP_ALLOCATE => {
                let (phys, size) = (req.offset, req.size);
                let fail = |why: String| (false, format!("allocate {phys:#x}+{size:#x}: {why}"));
                if size == 0 {
                    return fail("size 0".into());
                }
                let Some(rel) = phys.checked_sub(phys_start) else {
                    return fail(format!(
                        "below the shared area (phys start {phys_start:#x})"
                    ));
                };
                let Some(end) = rel.checked_add(size).filter(|&e| e <= self.cfg.bar1_size) else {
                    return fail("runs past the shared area".into());
                };
                match self.alloc.containing(rel) {
                    Some(b) if b.owner == BlockOwner::Guest && end <= b.offset + b.size => {}
                    _ => return fail("not inside one block the guest allocated".into()),
                }
                if self
                    .mappings
                    .iter()
                    .any(|m| m.offset < end && rel < m.offset + m.size)
                {
                    return fail("overlaps host memory already mapped".into());
                }
                if self.mappings.len() >= MAX_MAPPINGS {
                    return fail(format!("{MAX_MAPPINGS} mappings exist"));
                }
                self.mappings.push(Mapping {
                    handle,
                    offset: rel,
                    phys,
                    size,
                });
                (true, format!("backed {phys:#x}+{size:#x} with host memory"))
            }
            OP_FREE => {
                let phys = req.offset;
                match self
                    .mappings
                    .iter()
                    .position(|m| m.handle == handle && m.phys == phys)
                {
                    Some(i) => {
                        let m = self.mappings.remove(i);
                        (
                            true,
                            format!("released host memory at {phys:#x}+{:#x}", m.size),
                        )
                    }
                    None => (
                        false,
                        format!("release {phys:#x}: not mapped by handle {handle}"),
                    ),
                }
            }
            op => (
                false,
                format!("unknown operation {op} (1 allocate, 2 release)"),
            ),
        }
    }

    /// Shared slots: carve (op 1) or return (op 2) an area of the shared BAR
    /// for this context; offsets are relative to the shared area.
    fn serve_shared_slots(
        &mut self,
        handle: u32,
        req: &PingInfo,
        reply: &mut PingInfo,
    ) -> (bool, String) {
        let owner = BlockOwner::Host { handle };
        match req.metadata {
            OP_ALLOCATE => {
                let ps = match self.regs.guest_page_size {
                    0 => DEFAULT_GUEST_PAGE_SIZE,
                    p => p,
                };
                let size = req.size;
                let rounded = (size != 0)
                    .then(|| size.checked_next_multiple_of(u64::from(ps)))
                    .flatten();
                let Some(rounded) = rounded else {
                    return (false, format!("claim of {size:#x} bytes: bad size"));
                };
                match self.alloc.allocate(rounded, owner) {
                    Some(off) => {
                        self.shared.zero(off, rounded);
                        reply.offset = off;
                        reply.size = rounded;
                        (true, format!("claim {rounded:#x} bytes at offset {off:#x}"))
                    }
                    None => (false, format!("claim of {rounded:#x} bytes: no room")),
                }
            }
            OP_FREE => {
                // Like every offset the driver sends, this one has the
                // shared area's physical start added.
                let phys = req.offset;
                let Some(off) = phys.checked_sub(self.regs.phys_start()) else {
                    return (false, format!("return {phys:#x}: below the shared area"));
                };
                match self.alloc.free(off, |o| o == owner) {
                    Ok(b) => (
                        true,
                        format!("returned claim of {:#x} bytes at offset {off:#x}", b.size),
                    ),
                    Err(_) => (
                        false,
                        format!("return offset {off:#x}: not a claim of handle {handle}"),
                    ),
                }
            }
            op => (false, format!("unknown operation {op} (1 claim, 2 return)")),
        }
    }
}
