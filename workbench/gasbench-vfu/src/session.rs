//! One client connection: read a message, hand it to the device, reply.
//!
//! Every message is read whole before it is looked at (so a bad one never
//! desynchronises the stream), sizes are checked before anything is
//! allocated, and every failure is an error reply or the end of the
//! session with a reason, never a panic.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use gasbench_device::{Effects, GuestRam, Region};
use gasbench_events::device::DeviceEvent;

use crate::dma::DmaSpace;
use crate::irq::Irqs;
use crate::shared::Shared;
use crate::sock::{self, Received};
use crate::wire::{self, Fields, HEADER_LEN, Header, cmd, put_u16, put_u32, put_u64, vfio};

const EINVAL: u32 = libc::EINVAL as u32;
const E2BIG: u32 = libc::E2BIG as u32;
const ENOTSUP: u32 = libc::ENOTSUP as u32;
const ENOSYS: u32 = libc::ENOSYS as u32;

pub(crate) struct Session<'a> {
    shared: &'a Shared,
    stream: UnixStream,
    dma: DmaSpace,
    irqs: Irqs,
    negotiated: bool,
    /// The current message's payload (reused).
    payload: Vec<u8>,
    /// The reply's payload (reused).
    out: Vec<u8>,
    fds: Vec<OwnedFd>,
}

enum Reply {
    /// Header plus `out`.
    Ok,
    Error(u32),
}

impl<'a> Session<'a> {
    pub fn new(shared: &'a Shared, stream: UnixStream) -> Self {
        Session {
            shared,
            stream,
            dma: DmaSpace::with_limits(shared.dma_limits()),
            irqs: Irqs::default(),
            negotiated: false,
            payload: Vec::with_capacity(4096),
            out: Vec::with_capacity(4096),
            fds: Vec::new(),
        }
    }

    fn emit(&self, ev: DeviceEvent) {
        self.shared.device().emit(ev);
    }

    fn anomaly(&self, text: String) {
        self.emit(DeviceEvent::Anomaly { text });
    }

    /// Serve until the client leaves, a fault drops it, or the server
    /// stops. Returns why the session ended.
    pub fn run(&mut self) -> String {
        // Until VERSION completes, the client is on the clock.
        let handshake = self.shared.handshake_timeout();
        let handshake_by = Instant::now() + handshake;
        loop {
            if self.shared.stopping() {
                return "the server stopped".into();
            }
            // Anything reported outside a message goes out before we wait.
            self.shared.flush();
            let mut hb = [0u8; HEADER_LEN];
            self.fds.clear();
            let idle = if self.negotiated {
                None
            } else {
                let left = handshake_by.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    let why = format!(
                        "the client did not complete the VERSION handshake within {:.1} s",
                        handshake.as_secs_f64()
                    );
                    self.anomaly(why.clone());
                    return why;
                }
                Some(left)
            };
            let _ = self.stream.set_read_timeout(idle);
            // Once a header has begun, the rest of it must follow.
            let body_limit = self.shared.body_timeout();
            let stream = &self.stream;
            let header = sock::recv_exact_with_fds_then(stream, &mut hb, &mut self.fds, || {
                let _ = stream.set_read_timeout(Some(body_limit));
            });
            match header {
                Ok(Received::Full) => {}
                Ok(Received::Closed) => return "the client closed the connection".into(),
                Err(_) if self.shared.stopping() => return "the server stopped".into(),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    let why = format!(
                        "the client stalled mid-header ({e}) for {:.1} s",
                        body_limit.as_secs_f64()
                    );
                    self.anomaly(why.clone());
                    return why;
                }
                // The wait before a header, which only a client that has
                // not negotiated yet has a limit on.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let why = format!(
                        "the client did not complete the VERSION handshake within {:.1} s",
                        handshake.as_secs_f64()
                    );
                    self.anomaly(why.clone());
                    return why;
                }
                Err(e) => return format!("receive failed: {e}"),
            }
            let h = Header::parse(&hb);
            if (h.size as usize) < HEADER_LEN || h.size > wire::MAX_MESSAGE {
                // The stream cannot be trusted past a bad size: say so and go.
                let why = format!(
                    "protocol error: {} message of {} bytes (limit {})",
                    wire::command_name(h.command),
                    h.size,
                    wire::MAX_MESSAGE
                );
                self.anomaly(why.clone());
                let _ = sock::send_all(&self.stream, &[&h.error_reply(E2BIG).encode()]);
                return why;
            }
            let len = h.size as usize - HEADER_LEN;
            self.payload.resize(len, 0);
            // The body follows its header at once from a real client; one
            // that stalls mid-message must not hold the only session.
            let limit = self.shared.body_timeout();
            let _ = self.stream.set_read_timeout(Some(limit));
            let body = (&self.stream).read_exact(&mut self.payload);
            if let Err(e) = body {
                if self.shared.stopping() {
                    return "the server stopped".into();
                }
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) {
                    let why = format!(
                        "the client stalled mid-message ({}, {len} payload bytes) for {:.1} s",
                        wire::command_name(h.command),
                        limit.as_secs_f64()
                    );
                    self.anomaly(why.clone());
                    return why;
                }
                return format!(
                    "the client disconnected mid-message ({}, {len} payload bytes): {e}",
                    wire::command_name(h.command)
                );
            }
            if h.msg_type() != wire::TYPE_COMMAND {
                // We send no commands, so nothing may be replied to.
                self.anomaly(format!(
                    "ignored a message of type {} ({}) from the client",
                    h.msg_type(),
                    wire::command_name(h.command)
                ));
                continue;
            }
            self.shared.before_message();
            let started = Instant::now();
            self.out.clear();
            let (reply, fx) = self.dispatch(&h);
            // The access's events reach the bus before the reply leaves:
            // when the guest sees its access complete (and the agent writes
            // CallEnd), the register trace is already in order before it.
            self.shared.flush();
            if fx.disconnect {
                self.shared.account(started.elapsed());
                sock::shutdown(&self.stream);
                return format!(
                    "fault: dropped the connection on {} instead of replying",
                    wire::command_name(h.command)
                );
            }
            let busy = started.elapsed();
            if let Some(d) = fx.delay {
                self.sleep(d);
            }
            let resumed = Instant::now();
            // Raise INTx before the reply: when the guest's access
            // completes, the interrupt is already on its way.
            if fx.irq {
                self.irqs.pulse();
            }
            if !h.no_reply() {
                let sent = match reply {
                    Reply::Ok => {
                        let rh = h.reply(self.out.len()).encode();
                        sock::send_all(&self.stream, &[&rh, &self.out])
                    }
                    Reply::Error(errno) => {
                        sock::send_all(&self.stream, &[&h.error_reply(errno).encode()])
                    }
                };
                if let Err(e) = sent {
                    if self.shared.stopping() {
                        return "the server stopped".into();
                    }
                    return format!("send failed: {e}");
                }
            }
            self.shared.account(busy + resumed.elapsed());
        }
    }

    /// Sleep, but not past a stop request.
    fn sleep(&self, d: Duration) {
        let until = Instant::now() + d;
        while !self.shared.stopping() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(20)));
        }
    }

    fn dispatch(&mut self, h: &Header) -> (Reply, Effects) {
        let none = Effects::default();
        if !self.negotiated && h.command != cmd::VERSION {
            self.anomaly(format!(
                "{} before VERSION: the client must negotiate first",
                wire::command_name(h.command)
            ));
            return (Reply::Error(EINVAL), none);
        }
        let reply = match h.command {
            cmd::VERSION => self.version(),
            cmd::DMA_MAP => self.dma_map(),
            cmd::DMA_UNMAP => self.dma_unmap(),
            cmd::DEVICE_GET_INFO => self.device_info(),
            cmd::DEVICE_GET_REGION_INFO => self.region_info(),
            cmd::DEVICE_GET_IRQ_INFO => self.irq_info(),
            cmd::DEVICE_SET_IRQS => self.set_irqs(),
            cmd::REGION_READ => return self.region_read(),
            cmd::REGION_WRITE => return self.region_write(),
            cmd::DEVICE_RESET => {
                self.shared.device().reset("client");
                Reply::Ok
            }
            c if c < 19 => {
                self.anomaly(format!("{} is not supported", wire::command_name(c)));
                Reply::Error(ENOTSUP)
            }
            c => {
                self.anomaly(format!("unknown command {c}"));
                Reply::Error(ENOSYS)
            }
        };
        (reply, none)
    }

    fn version(&mut self) -> Reply {
        let mut f = Fields::new(&self.payload);
        let (Some(major), Some(minor)) = (f.u16(), f.u16()) else {
            return Reply::Error(EINVAL);
        };
        let data = f.rest();
        let caps = if data.is_empty() {
            String::new()
        } else {
            // NUL-terminated UTF-8 JSON.
            let Some((&0, json)) = data.split_last() else {
                self.anomaly("VERSION capabilities are not NUL-terminated".into());
                return Reply::Error(EINVAL);
            };
            let Ok(text) = std::str::from_utf8(json) else {
                self.anomaly("VERSION capabilities are not UTF-8".into());
                return Reply::Error(EINVAL);
            };
            match serde_json::from_str::<serde_json::Value>(text) {
                Ok(v) if v.is_object() => text.to_string(),
                _ => {
                    self.anomaly(format!(
                        "VERSION capabilities are not a JSON object: {text:.200}"
                    ));
                    return Reply::Error(EINVAL);
                }
            }
        };
        if major != wire::VERSION_MAJOR {
            self.anomaly(format!(
                "the client speaks vfio-user {major}.{minor}; we speak 0.x"
            ));
            return Reply::Error(ENOTSUP);
        }
        self.negotiated = true;
        let caps_out = wire::server_capabilities();
        put_u16(&mut self.out, wire::VERSION_MAJOR);
        put_u16(&mut self.out, minor.min(wire::VERSION_MINOR));
        self.out.extend_from_slice(caps_out.as_bytes());
        self.out.push(0);
        self.emit(DeviceEvent::Connected {
            client_version: format!("{major}.{minor}"),
            client_caps: caps,
        });
        Reply::Ok
    }

    fn dma_map(&mut self) -> Reply {
        let mut f = Fields::new(&self.payload);
        let (Some(_argsz), Some(flags), Some(offset), Some(gpa), Some(size)) =
            (f.u32(), f.u32(), f.u64(), f.u64(), f.u64())
        else {
            return Reply::Error(EINVAL);
        };
        if self.fds.len() > 1 {
            self.anomaly(format!(
                "DMA_MAP came with {} fds (at most 1)",
                self.fds.len()
            ));
            return Reply::Error(EINVAL);
        }
        let fd = self.fds.pop();
        match self.dma.map(flags, offset, gpa, size, fd) {
            Ok(m) => {
                if let Some(note) = m.note {
                    self.anomaly(format!("DMA window {gpa:#x}+{size:#x}: {note}"));
                }
                self.emit(DeviceEvent::DmaMap {
                    gpa,
                    size,
                    mapped: m.reachable,
                });
                Reply::Ok
            }
            Err(e) => {
                self.anomaly(format!("DMA_MAP refused: {e}"));
                Reply::Error(e.errno())
            }
        }
    }

    fn dma_unmap(&mut self) -> Reply {
        let mut f = Fields::new(&self.payload);
        let (Some(argsz), Some(flags), Some(gpa), Some(size)) =
            (f.u32(), f.u32(), f.u64(), f.u64())
        else {
            return Reply::Error(EINVAL);
        };
        if flags & vfio::DMA_UNMAP_FLAG_GET_DIRTY_BITMAP != 0 {
            return Reply::Error(ENOTSUP);
        }
        let all = flags & vfio::DMA_UNMAP_FLAG_ALL != 0;
        match self.dma.unmap(gpa, size, all) {
            Ok(_) => {
                self.emit(DeviceEvent::DmaUnmap { gpa, size });
                put_u32(&mut self.out, argsz);
                put_u32(&mut self.out, flags);
                put_u64(&mut self.out, gpa);
                put_u64(&mut self.out, size);
                Reply::Ok
            }
            Err(e) => {
                self.anomaly(format!("DMA_UNMAP refused: {e}"));
                Reply::Error(e.errno())
            }
        }
    }

    fn device_info(&mut self) -> Reply {
        put_u32(&mut self.out, 16);
        put_u32(
            &mut self.out,
            vfio::DEVICE_FLAGS_PCI | vfio::DEVICE_FLAGS_RESET,
        );
        put_u32(&mut self.out, vfio::PCI_NUM_REGIONS);
        put_u32(&mut self.out, vfio::PCI_NUM_IRQS);
        Reply::Ok
    }

    /// The region a vfio PCI region index names, and its size.
    fn region(&self, index: u32) -> Option<(Region, u64)> {
        let region = match index {
            vfio::PCI_BAR0_REGION_INDEX => Region::Bar0,
            vfio::PCI_BAR1_REGION_INDEX => Region::Bar1,
            vfio::PCI_CONFIG_REGION_INDEX => Region::Config,
            _ => return None,
        };
        let size = self.shared.device().region_size(region);
        Some((region, size))
    }

    fn region_info(&mut self) -> Reply {
        let mut f = Fields::new(&self.payload);
        let (Some(_argsz), Some(_flags), Some(index)) = (f.u32(), f.u32(), f.u32()) else {
            return Reply::Error(EINVAL);
        };
        if index >= vfio::PCI_NUM_REGIONS {
            return Reply::Error(EINVAL);
        }
        let (flags, size) = match self.region(index) {
            Some((_, size)) => (
                vfio::REGION_INFO_FLAG_READ | vfio::REGION_INFO_FLAG_WRITE,
                size,
            ),
            None => (0, 0),
        };
        put_u32(&mut self.out, vfio::REGION_INFO_LEN);
        put_u32(&mut self.out, flags);
        put_u32(&mut self.out, index);
        put_u32(&mut self.out, 0); // cap_offset
        put_u64(&mut self.out, size);
        put_u64(&mut self.out, 0); // offset (nothing is mmappable)
        Reply::Ok
    }

    fn irq_info(&mut self) -> Reply {
        let mut f = Fields::new(&self.payload);
        let (Some(_argsz), Some(_flags), Some(index)) = (f.u32(), f.u32(), f.u32()) else {
            return Reply::Error(EINVAL);
        };
        if index >= vfio::PCI_NUM_IRQS {
            return Reply::Error(EINVAL);
        }
        let (flags, count) = if index == vfio::PCI_INTX_IRQ_INDEX {
            (
                vfio::IRQ_INFO_EVENTFD | vfio::IRQ_INFO_MASKABLE | vfio::IRQ_INFO_AUTOMASKED,
                1,
            )
        } else {
            (vfio::IRQ_INFO_EVENTFD, 0)
        };
        put_u32(&mut self.out, 16);
        put_u32(&mut self.out, flags);
        put_u32(&mut self.out, index);
        put_u32(&mut self.out, count);
        Reply::Ok
    }

    fn set_irqs(&mut self) -> Reply {
        let mut f = Fields::new(&self.payload);
        let (Some(_argsz), Some(flags), Some(index), Some(start), Some(count)) =
            (f.u32(), f.u32(), f.u32(), f.u32(), f.u32())
        else {
            return Reply::Error(EINVAL);
        };
        let data = f.rest().to_vec();
        let nfds = self.fds.len() as u32;
        let fds = std::mem::take(&mut self.fds);
        match self.irqs.set(index, flags, start, count, fds, &data) {
            Ok(action) => {
                self.emit(DeviceEvent::Irqs {
                    index,
                    action,
                    start,
                    count,
                    fds: nfds,
                });
                Reply::Ok
            }
            Err(errno) => {
                self.anomaly(format!(
                    "SET_IRQS refused: index {index} flags {flags:#x} start {start} count {count}"
                ));
                Reply::Error(errno)
            }
        }
    }

    /// (region, offset, count) of a REGION_READ/WRITE, checked.
    fn access(&self) -> Result<(Region, u64, u32, u32), u32> {
        let mut f = Fields::new(&self.payload);
        let (Some(offset), Some(index), Some(count)) = (f.u64(), f.u32(), f.u32()) else {
            return Err(EINVAL);
        };
        if count > wire::MAX_DATA_XFER {
            return Err(E2BIG);
        }
        match self.region(index) {
            Some((region, _)) => Ok((region, offset, index, count)),
            None => Err(EINVAL),
        }
    }

    fn region_read(&mut self) -> (Reply, Effects) {
        let (region, offset, index, count) = match self.access() {
            Ok(a) => a,
            Err(e) => return (Reply::Error(e), Effects::default()),
        };
        put_u64(&mut self.out, offset);
        put_u32(&mut self.out, index);
        put_u32(&mut self.out, count);
        let at = self.out.len();
        self.out.resize(at + count as usize, 0);
        let result = self
            .shared
            .device()
            .read(region, offset, &mut self.out[at..]);
        match result {
            Ok(fx) => (Reply::Ok, fx),
            Err(_) => (Reply::Error(EINVAL), Effects::default()),
        }
    }

    fn region_write(&mut self) -> (Reply, Effects) {
        let (region, offset, index, count) = match self.access() {
            Ok(a) => a,
            Err(e) => return (Reply::Error(e), Effects::default()),
        };
        let data = &self.payload[16..];
        if data.len() != count as usize {
            self.anomaly(format!(
                "REGION_WRITE says {count} bytes but carries {}",
                data.len()
            ));
            return (Reply::Error(EINVAL), Effects::default());
        }
        let ram: &dyn GuestRam = &self.dma;
        let result = self.shared.device().write(region, offset, data, ram);
        match result {
            Ok(fx) => {
                put_u64(&mut self.out, offset);
                put_u32(&mut self.out, index);
                put_u32(&mut self.out, count);
                (Reply::Ok, fx)
            }
            Err(_) => (Reply::Error(EINVAL), Effects::default()),
        }
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        // The spec: on disconnect, unmap client memory and close irq fds;
        // keep the device state for a client that reconnects.
        self.dma.clear();
        self.irqs.clear();
    }
}
