//! What the device pane shows, folded from device events.
//!
//! This is the only module that reads `DeviceEvent`'s fields: the pane
//! draws [`DeviceView`], so when the device's events grow (claims carved
//! by host services, counters in the snapshot) only [`DeviceView::apply`]
//! changes.

use std::collections::BTreeMap;

use gasbench_events::device::{Access, DeviceEvent};

/// Who holds a range of the shared BAR.
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
    pub connected: Option<bool>,
    pub disconnect_reason: Option<String>,
    pub handles: Vec<HandleRow>,
    /// The shared BAR, in offset order.
    pub blocks: Vec<Block>,
    pub shared_size: u64,
    /// By command name, in the device's order of first use.
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

impl DeviceView {
    pub fn apply(&mut self, seq: u64, e: &DeviceEvent) {
        match e {
            DeviceEvent::Connected => {
                self.connected = Some(true);
                self.disconnect_reason = None;
            }
            DeviceEvent::Disconnected { reason } => {
                self.connected = Some(false);
                self.disconnect_reason = Some(reason.clone());
            }
            DeviceEvent::Reg(r) => match r.access {
                Access::Read => self.reads += 1,
                Access::Write => self.writes += 1,
            },
            DeviceEvent::Command(c) => {
                let n = self.commands.entry(c.command.clone()).or_default();
                if c.status == 0 {
                    n.ok += 1;
                } else {
                    n.failed += 1;
                }
                if let Some(f) = &c.fault {
                    self.faults.push((seq, format!("{}: {f}", c.command)));
                }
            }
            DeviceEvent::Ping {
                handle, service, ..
            } => {
                self.pings.ok += 1;
                if let Some(h) = self.handles.iter_mut().find(|h| h.handle == *handle) {
                    h.pings += 1;
                    h.service = Some(service.clone());
                }
            }
            DeviceEvent::State(s) => {
                self.have_state = true;
                self.shared_size = s.shared_size;
                let old = std::mem::take(&mut self.handles);
                self.handles = s
                    .handles
                    .iter()
                    .map(|&h| {
                        let prev = old.iter().find(|o| o.handle == h);
                        HandleRow {
                            handle: h,
                            ping_page: s
                                .ping_pages
                                .iter()
                                .find(|(ph, _)| *ph == h)
                                .map(|(_, a)| *a),
                            service: prev.and_then(|p| p.service.clone()),
                            pings: prev.map_or(0, |p| p.pings),
                        }
                    })
                    .collect();
                let mut blocks: Vec<Block> = s
                    .blocks
                    .iter()
                    .map(|&(offset, size)| Block {
                        offset,
                        size,
                        kind: BlockKind::Allocated,
                    })
                    .chain(s.free.iter().map(|&(offset, size)| Block {
                        offset,
                        size,
                        kind: BlockKind::Free,
                    }))
                    .collect();
                blocks.sort_by_key(|b| b.offset);
                self.blocks = blocks;
            }
            DeviceEvent::Anomaly { text } => {
                self.anomalies.push(text.clone());
                if self.anomalies.len() > 200 {
                    self.anomalies.remove(0);
                }
            }
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
    use gasbench_events::device::{CommandDone, DeviceState};

    #[test]
    fn state_snapshots_become_a_map_and_commands_count_by_status() {
        let mut d = DeviceView::default();
        d.apply(
            1,
            &DeviceEvent::State(DeviceState {
                handles: vec![1, 2],
                blocks: vec![(0xf000, 0x1000)],
                free: vec![(0, 0xf000)],
                ping_pages: vec![(1, 0x1234000)],
                shared_size: 0x10000,
            }),
        );
        for status in [0, 0, 12] {
            d.apply(
                2,
                &DeviceEvent::Command(CommandDone {
                    command: "ALLOCATE_BLOCK".into(),
                    code: 1,
                    handle: Some(1),
                    decoded: String::new(),
                    status,
                    fault: (status != 0).then(|| "fail ENOMEM".into()),
                }),
            );
        }
        assert_eq!(d.handles[0].ping_page, Some(0x1234000));
        assert_eq!(d.commands["ALLOCATE_BLOCK"], Count { ok: 2, failed: 1 });
        assert_eq!(d.faults, [(2, "ALLOCATE_BLOCK: fail ENOMEM".to_string())]);
        let map = d.map(16);
        assert_eq!(map.len(), 16);
        assert_eq!(map[15], BlockKind::Allocated);
        assert!(map[..15].iter().all(|k| *k == BlockKind::Free));
        // A 4 KiB block in a 64 KiB BAR drawn in 4 cells still shows.
        assert_eq!(d.map(4)[3], BlockKind::Allocated);
        assert_eq!(d.bytes(BlockKind::Free), 0xf000);
    }
}
