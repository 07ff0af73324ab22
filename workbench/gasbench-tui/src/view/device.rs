//! The device: connection, the shared BAR as a map, live handles, command
//! counters and injected faults.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{empty_hint, pane_block, row_style};
use crate::device::BlockKind;
use crate::fmt;
use crate::model::{Model, Pane};
use crate::theme::sym;

pub fn draw(m: &Model, f: &mut Frame, r: Rect) {
    let t = &m.theme;
    let d = &m.device;
    let conn = match d.connected {
        Some(true) => Span::styled(format!(" {} connected ", sym::RUNNING), t.ok),
        Some(false) if d.ended_with_vm => {
            Span::styled(format!(" {} ended with the VM ", sym::SKIP), t.dim)
        }
        Some(false) => Span::styled(format!(" {} disconnected ", sym::FAIL), t.fail),
        None => Span::styled(format!(" {} not attached ", sym::PENDING), t.dim),
    };
    let block = pane_block(m, Pane::Device, Line::from(conn));
    let inner = block.inner(r);
    f.render_widget(block, r);
    if d.connected.is_none() && !d.have_state && d.commands.is_empty() {
        empty_hint(m, f, inner, "device not attached yet");
        return;
    }
    let w = inner.width as usize;
    let focused = m.focus == Pane::Device;
    let section = |title: &str| {
        Line::from(Span::styled(
            fmt::pad(&format!(" {title}"), w),
            t.dim.add_modifier(Modifier::UNDERLINED),
        ))
    };
    let mut lines: Vec<Line> = Vec::new();

    // The shared BAR.
    lines.push(Line::from(vec![
        Span::styled(" BAR1 ", t.title),
        Span::styled(
            if d.have_state {
                fmt::bytes(d.shared_size)
            } else {
                "?".into()
            },
            t.dim,
        ),
        Span::styled("   accesses ", t.title),
        Span::styled(
            format!("R {}  W {}", fmt::count(d.reads), fmt::count(d.writes)),
            t.dim,
        ),
    ]));
    lines.push(Line::from(vec![
        Span::styled(" █", t.block_alloc),
        Span::styled(
            format!(" alloc {}", fmt::bytes(d.bytes(BlockKind::Allocated))),
            t.dim,
        ),
        Span::styled("  ▒", t.block_claim),
        Span::styled(
            format!(" claim {}", fmt::bytes(d.bytes(BlockKind::Claimed))),
            t.dim,
        ),
        Span::styled("  ░", t.block_free),
        Span::styled(
            format!(" free {}", fmt::bytes(d.bytes(BlockKind::Free))),
            t.dim,
        ),
    ]));
    let map_w = w.saturating_sub(2);
    let map_rows = if inner.height >= 16 { 2 } else { 1 };
    let cells = d.map(map_w * map_rows);
    for chunk in cells.chunks(map_w.max(1)) {
        let mut spans = vec![Span::raw(" ")];
        // Merge runs of the same kind into one span.
        let mut run: Option<(BlockKind, usize)> = None;
        let flush = |spans: &mut Vec<Span>, k: BlockKind, n: usize| {
            let (ch, s) = match k {
                BlockKind::Allocated => ("█", t.block_alloc),
                BlockKind::Claimed => ("▒", t.block_claim),
                BlockKind::Free => ("░", t.block_free),
            };
            spans.push(Span::styled(ch.repeat(n), s));
        };
        for &k in chunk {
            run = match run {
                Some((rk, n)) if rk == k => Some((rk, n + 1)),
                Some((rk, n)) => {
                    flush(&mut spans, rk, n);
                    Some((k, 1))
                }
                None => Some((k, 1)),
            };
        }
        if let Some((k, n)) = run {
            flush(&mut spans, k, n);
        }
        lines.push(Line::from(spans));
    }

    // Counters.
    lines.push(section("commands                 ok  fail"));
    let mut counters: Vec<(String, crate::device::Count)> =
        d.commands.iter().map(|(k, v)| (k.clone(), *v)).collect();
    if d.pings.ok + d.pings.failed > 0 {
        counters.push(("PING".into(), d.pings));
    }
    if counters.is_empty() {
        lines.push(Line::from(Span::styled("  none yet", t.dim)));
    }
    for (name, c) in counters {
        lines.push(Line::from(vec![
            Span::raw(format!(" {}", fmt::pad(&name, 22))),
            Span::raw(fmt::rpad(&c.ok.to_string(), 5)),
            Span::styled(
                fmt::rpad(&c.failed.to_string(), 6),
                if c.failed > 0 { t.fail } else { t.dim },
            ),
        ]));
    }

    // Handles and faults: the selectable part.
    lines.push(section(&format!("handles {}", d.handles.len())));
    let first_selectable = lines.len();
    for (i, h) in d.handles.iter().enumerate() {
        let page = h
            .ping_page
            .map_or("no ping page".to_string(), |p| format!("page {p:#x}"));
        let svc = h.service.clone().unwrap_or_else(|| "unbound".into());
        lines.push(
            Line::from(vec![
                Span::styled(format!(" #{:<4}", h.handle), t.accent),
                Span::raw(fmt::pad(&page, 20)),
                Span::styled(fmt::pad(&svc, 14), t.dim),
                Span::styled(format!("{} pings", h.pings), t.dim),
            ])
            .style(row_style(
                m,
                focused && m.device_cursor.selected == i,
                focused,
            )),
        );
    }
    if d.handles.is_empty() {
        lines.push(Line::from(Span::styled("  none live", t.dim)));
    }
    lines.push(section(&format!("faults injected {}", d.faults.len())));
    for (i, (_, text)) in d.faults.iter().enumerate() {
        let sel = focused && m.device_cursor.selected == d.handles.len() + i;
        lines.push(
            Line::from(Span::styled(
                fmt::fit(&format!(" {} {text}", sym::WARN), w),
                t.warn,
            ))
            .style(row_style(m, sel, focused)),
        );
    }
    if let Some(reason) = d.disconnect_reason.as_ref().filter(|_| !d.ended_with_vm) {
        lines.push(Line::from(Span::styled(
            fmt::fit(&format!(" {} disconnected: {reason}", sym::FAIL), w),
            t.fail,
        )));
    }
    for a in d.anomalies.iter().rev().take(3) {
        lines.push(Line::from(Span::styled(
            fmt::fit(&format!(" {} {a}", sym::WARN), w),
            t.warn,
        )));
    }
    // Keep the selected handle/fault on screen.
    let h = inner.height as usize;
    let sel_line = first_selectable + m.device_cursor.selected;
    let skip = if focused && sel_line >= h {
        sel_line + 1 - h
    } else {
        0
    };
    f.render_widget(Paragraph::new(lines).scroll((skip as u16, 0)), inner);
}
