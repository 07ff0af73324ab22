//! What the device pane shows, folded from device events.
//!
//! This is the only module that reads `DeviceEvent`'s fields: the pane
//! draws [`DeviceView`], so when the device's events grow (claims carved
//! by host services, counters in the snapshot) only [`DeviceView::apply`]
//! changes.

use std::collections::BTreeMap;

use gasbench_events::device::{Access, BlockOwner, DeviceEvent, ServiceKind, Space};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// Allocated by the guest (ALLOCATE_BLOCK).
    Allocated,
    /// Claimed: carved for a context by a host service.
    Claimed,
    Free,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    pub offset: u64,
    pub size: u64,
    pub kind: BlockKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandleRow {
    pub handle: u32,
    pub ping_page: Option<u64>,
    pub service: Option<String>,
    pub pings: u64,
}

/// Successes and failures of one command.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count {
    pub ok: u64,
    pub failed: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceView {
    /// The server is up, waiting for QEMU.
    pub listening: bool,
    pub connected: Option<bool>,
    pub disconnect_reason: Option<String>,
    /// The connection ended because the VM did (QEMU shut down or was
    /// being torn down): the end of a run, not an error.
    pub ended_with_vm: bool,
    pub handles: Vec<HandleRow>,
    /// The shared BAR, in offset order.
    pub blocks: Vec<Block>,
    pub shared_size: u64,
    /// By command name.
    pub commands: BTreeMap<String, Count>,
    pub pings: Count,
    pub reads: u64,
    pub writes: u64,
    /// Injected faults, newest last: (event seq, description).
    pub faults: Vec<(u64, String)>,
    /// Things the device refused or ignored, newest last.
    pub anomalies: Vec<String>,
    /// A state snapshot has been seen (else the map is unknown, not empty).
    pub have_state: bool,
}

fn service_name(s: ServiceKind) -> &'static str {
    match s {
        ServiceKind::Echo => "echo",
        ServiceKind::HostMemoryAllocator => "host memory",
        ServiceKind::SharedSlots => "shared slots",
    }
}

/// How one device event reads in a call's detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceLine {
    pub kind: LineKind,
    /// Register, command or `PING #h`.
    pub name: String,
    pub value: Option<u64>,
    pub text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineKind {
    Read,
    Write,
    CommandOk,
    CommandFailed,
    Ping,
    Fault,
    Anomaly,
    Other,
}

/// The line a device event makes in a call's detail; `None` for state
/// snapshots (the device pane shows state).
pub fn describe(e: &DeviceEvent) -> Option<DeviceLine> {
    let line = |kind, name: &str, value, text: String| {
        Some(DeviceLine {
            kind,
            name: name.to_owned(),
            value,
            text,
        })
    };
    match e {
        DeviceEvent::Reg(r) => {
            let name = match (r.reg, r.space) {
                (Some(reg), _) => reg.name().to_owned(),
                (None, Space::Bar0) => format!("BAR0+{:#x}", r.offset),
                (None, Space::Bar1) => format!("BAR1+{:#x}", r.offset),
                (None, Space::Config) => format!("config+{:#x}", r.offset),
            };
            let kind = match r.access {
                Access::Read => LineKind::Read,
                Access::Write => LineKind::Write,
            };
            line(kind, &name, Some(r.value), r.decoded.clone())
        }
        DeviceEvent::Command(c) => {
            let mut text = c.decoded.clone();
            if c.status != 0 {
                text.push_str(&format!("  STATUS {}", c.status));
            }
            if let Some(f) = &c.fault {
                text.push_str(&format!("  fault: {f}"));
            }
            let kind = if c.status == 0 {
                LineKind::CommandOk
            } else {
                LineKind::CommandFailed
            };
            line(kind, c.command.name(), None, text)
        }
        DeviceEvent::Ping(p) => {
            let mut text = p.decoded.clone();
            if let Some(err) = &p.error {
                text.push_str(&format!("  error: {err}"));
            }
            if let Some(f) = &p.fault {
                text.push_str(&format!("  fault: {f}"));
            }
            line(LineKind::Ping, &format!("PING #{}", p.handle), None, text)
        }
        DeviceEvent::Fault(f) => line(
            LineKind::Fault,
            "FAULT",
            None,
            format!(
                "rule {} on {} #{}: {}",
                f.rule, f.trigger, f.occurrence, f.action
            ),
        ),
        DeviceEvent::Anomaly { text } => line(LineKind::Anomaly, "anomaly", None, text.clone()),
        DeviceEvent::State(_) => None,
        DeviceEvent::Reset { by } => line(LineKind::Other, "reset", None, format!("by {by}")),
        DeviceEvent::Disconnected { reason } | DeviceEvent::Stopped { reason } => {
            line(LineKind::Anomaly, "disconnected", None, reason.clone())
        }
        DeviceEvent::Listening { .. }
        | DeviceEvent::Connected { .. }
        | DeviceEvent::DmaMap { .. }
        | DeviceEvent::DmaUnmap { .. }
        | DeviceEvent::Irqs { .. } => None,
    }
}

impl DeviceView {
    pub fn apply(&mut self, seq: u64, e: &DeviceEvent) {
        let _ = seq;
        match e {
            DeviceEvent::Listening { bar1_size, .. } => {
                self.listening = true;
                if !self.have_state {
                    self.shared_size = *bar1_size;
                    self.blocks = vec![Block {
                        offset: 0,
                        size: *bar1_size,
                        kind: BlockKind::Free,
                    }];
                }
            }
            DeviceEvent::Connected { .. } => {
                self.connected = Some(true);
                self.disconnect_reason = None;
                self.ended_with_vm = false;
            }
            DeviceEvent::Disconnected { reason } | DeviceEvent::Stopped { reason } => {
                self.connected = Some(false);
                self.disconnect_reason = Some(reason.clone());
            }
            DeviceEvent::Reg(r) => match r.access {
                Access::Read => self.reads += 1,
                Access::Write => self.writes += 1,
            },
            DeviceEvent::Command(c) => {
                let n = self.commands.entry(c.command.name().to_owned()).or_default();
                if c.status == 0 {
                    n.ok += 1;
                } else {
                    n.failed += 1;
                }
            }
            DeviceEvent::Ping(p) => {
                if p.error.is_some() {
                    self.pings.failed += 1;
                } else {
                    self.pings.ok += 1;
                }
            }
            DeviceEvent::Fault(f) => {
                self.faults.push((
                    seq,
                    format!("{} #{}: {}", f.trigger, f.occurrence, f.action),
                ));
            }
            DeviceEvent::State(s) => {
                self.have_state = true;
                self.shared_size = s.shared_size;
                self.handles = s
                    .handles
                    .iter()
                    .map(|h| HandleRow {
                        handle: h.handle,
                        ping_page: h.ping_page,
                        service: h.service.map(|k| service_name(k).to_owned()),
                        pings: h.pings,
                    })
                    .collect();
                self.blocks = s
                    .blocks
                    .iter()
                    .map(|b| Block {
                        offset: b.offset,
                        size: b.size,
                        kind: match b.owner {
                            BlockOwner::Free => BlockKind::Free,
                            BlockOwner::Guest => BlockKind::Allocated,
                            BlockOwner::Host { .. } => BlockKind::Claimed,
                        },
                    })
                    .collect();
                // The snapshot's counters are the device's own: exact even
                // when the trace was switched on late.
                self.reads = s.counters.reads;
                self.writes = s.counters.writes;
            }
            DeviceEvent::Anomaly { text } => self.note(text.clone()),
            DeviceEvent::Reset { by } => self.note(format!("reset by {by}")),
            DeviceEvent::DmaMap { mapped: false, gpa, size } => self.note(format!(
                "guest RAM {gpa:#x}+{size:#x} shared without a file: ping pages there are unreachable"
            )),
            DeviceEvent::DmaMap { .. } | DeviceEvent::DmaUnmap { .. } | DeviceEvent::Irqs { .. } => {}
        }
    }

    fn note(&mut self, text: String) {
        self.anomalies.push(text);
        if self.anomalies.len() > 200 {
            self.anomalies.remove(0);
        }
    }

    pub fn bytes(&self, kind: BlockKind) -> u64 {
        self.blocks
            .iter()
            .filter(|b| b.kind == kind)
            .map(|b| b.size)
            .sum()
    }

    /// The BAR drawn as `cells` cells: each cell shows what holds most of
    /// its bytes (any allocated or claimed byte wins over free, so a small
    /// block in a large BAR never disappears).
    pub fn map(&self, cells: usize) -> Vec<BlockKind> {
        if cells == 0 || self.shared_size == 0 {
            return Vec::new();
        }
        let per = self.shared_size.div_ceil(cells as u64).max(1);
        (0..cells as u64)
            .map(|c| {
                let (lo, hi) = (c * per, ((c + 1) * per).min(self.shared_size));
                let mut best = BlockKind::Free;
                for b in &self.blocks {
                    let (bl, bh) = (b.offset, b.offset.saturating_add(b.size));
                    if bl < hi && bh > lo {
                        match b.kind {
                            BlockKind::Allocated => return BlockKind::Allocated,
                            BlockKind::Claimed => best = BlockKind::Claimed,
                            BlockKind::Free => {}
                        }
                    }
                }
                best
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gasbench_events::device::{
        BlockInfo, CommandDone, CommandKind, DeviceState, FaultFired, HandleInfo,
    };

    #[test]
    fn state_snapshots_become_a_map_and_commands_count_by_status() {
        let mut d = DeviceView::default();
        d.apply(
            1,
            &DeviceEvent::State(DeviceState {
                handles: vec![HandleInfo {
                    handle: 1,
                    ping_page: Some(0x1234000),
                    service: Some(ServiceKind::SharedSlots),
                    pings: 3,
                }],
                blocks: vec![
                    BlockInfo {
                        offset: 0,
                        size: 0xe000,
                        owner: BlockOwner::Free,
                    },
                    BlockInfo {
                        offset: 0xe000,
                        size: 0x1000,
                        owner: BlockOwner::Host { handle: 1 },
                    },
                    BlockInfo {
                        offset: 0xf000,
                        size: 0x1000,
                        owner: BlockOwner::Guest,
                    },
                ],
                shared_size: 0x10000,
                ..Default::default()
            }),
        );
        for status in [0, 0, 12] {
            d.apply(
                2,
                &DeviceEvent::Command(CommandDone {
                    command: CommandKind::AllocateBlock,
                    code: 1,
                    handle: 1,
                    decoded: String::new(),
                    status,
                    fault: None,
                }),
            );
        }
        d.apply(
            3,
            &DeviceEvent::Fault(FaultFired {
                rule: 0,
                trigger: "allocate_block".into(),
                occurrence: 2,
                action: "fail ENOMEM".into(),
            }),
        );
        assert_eq!(d.handles[0].service.as_deref(), Some("shared slots"));
        assert_eq!(d.commands["ALLOCATE_BLOCK"], Count { ok: 2, failed: 1 });
        assert_eq!(
            d.faults,
            [(3, "allocate_block #2: fail ENOMEM".to_string())]
        );
        let map = d.map(16);
        assert_eq!(map.len(), 16);
        assert_eq!(map[15], BlockKind::Allocated);
        assert_eq!(map[14], BlockKind::Claimed);
        assert!(map[..14].iter().all(|k| *k == BlockKind::Free));
        // A 4 KiB block in a 64 KiB BAR drawn in 4 cells still shows.
        assert_eq!(d.map(4)[3], BlockKind::Allocated);
        assert_eq!(d.bytes(BlockKind::Free), 0xe000);
    }

    #[test]
    fn details_describe_accesses_commands_and_faults_not_state() {
        use gasbench_events::device::{RegAccess, Register};
        let reg = DeviceEvent::Reg(RegAccess {
            access: Access::Write,
            space: Space::Bar0,
            offset: 0,
            width: 4,
            reg: Some(Register::Command),
            value: 1,
            decoded: "ALLOCATE_BLOCK".into(),
            handle: 1,
            status: 0,
        });
        let l = describe(&reg).unwrap();
        assert_eq!(
            (l.kind, l.name.as_str(), l.value),
            (LineKind::Write, "COMMAND", Some(1))
        );
        assert!(describe(&DeviceEvent::State(DeviceState::default())).is_none());
    }
}
