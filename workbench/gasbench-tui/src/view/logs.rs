//! The guest console and the build log: scrolling text with severities.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{empty_hint, pane_block, row_style};
use crate::fmt;
use crate::model::{LogView, Model, Pane, Severity};
use crate::theme::sym;

pub fn draw(m: &Model, f: &mut Frame, r: Rect, pane: Pane) {
    let t = &m.theme;
    let log: &LogView = match pane {
        Pane::Build => &m.build_log,
        _ => &m.console,
    };
    let warns = log
        .lines
        .iter()
        .filter(|l| matches!(l.severity, Severity::Warn | Severity::Bug))
        .count();
    let mut info = vec![Span::styled(
        format!(
            " {} lines ",
            fmt::count(log.lines.len() as u64 + log.dropped)
        ),
        t.dim,
    )];
    if warns > 0 {
        info.push(Span::styled(format!("{} {warns} ", sym::WARN), t.warn));
    }
    if !log.filter.is_empty() {
        info.push(Span::styled(
            format!(
                "/{} {} shown ",
                fmt::tail(&log.filter, (r.width as usize / 3).max(8)),
                fmt::count(log.visible_len() as u64)
            ),
            t.accent,
        ));
    }
    if !log.cursor.follow {
        info.push(Span::styled("paused (G follows) ", t.warn));
    }
    let block = pane_block(m, pane, Line::from(info));
    let inner = block.inner(r);
    f.render_widget(block, r);
    if log.visible_len() == 0 {
        let hint = match (pane, log.filter.is_empty()) {
            (_, false) => "nothing matches the filter",
            (Pane::Build, _) => "no build output yet",
            _ => "no console output yet",
        };
        empty_hint(m, f, inner, hint);
        return;
    }
    let rows = inner.height as usize;
    let (sel, off) = log.cursor.window(log.visible_len(), rows);
    let focused = m.focus == pane;
    let w = inner.width as usize;
    let mut lines = Vec::with_capacity(rows);
    for i in off..(off + rows).min(log.visible_len()) {
        let Some(l) = log.visible_line(i) else { break };
        let (gutter, style) = match l.severity {
            Severity::Normal => (" ", ratatui::style::Style::new()),
            Severity::Warn => (sym::WARN, t.warn),
            Severity::Bug => (sym::FAIL, t.fail),
            Severity::Meta => (" ", t.dim),
        };
        let selected = i == sel && !log.cursor.follow;
        lines.push(
            Line::from(vec![
                Span::styled(gutter, style),
                Span::styled(fmt::fit(&l.text, w.saturating_sub(1)), style),
            ])
            .style(row_style(m, selected, focused)),
        );
    }
    f.render_widget(Paragraph::new(lines), inner);
}
