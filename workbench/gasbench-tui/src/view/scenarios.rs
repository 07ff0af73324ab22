//! The scenario list with live verdicts. The selection filters the trace.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{empty_hint, pane_block, row_style};
use crate::fmt;
use crate::model::{Model, Pane};
use crate::theme::sym;

pub fn draw(m: &Model, f: &mut Frame, r: Rect) {
    let t = &m.theme;
    let entries = m.scenario_entries();
    let (pass, fail, _) = m.summary.counts();
    let info = Line::from(vec![
        Span::styled(format!(" {} ", sym::OK), t.ok),
        Span::styled(format!("{pass} "), t.dim),
        Span::styled(
            format!("{} ", sym::FAIL),
            if fail > 0 { t.fail } else { t.dim },
        ),
        Span::styled(format!("{fail} "), t.dim),
    ]);
    let block = pane_block(m, Pane::Scenarios, info);
    let inner = block.inner(r);
    f.render_widget(block, r);
    if entries.len() <= 1 {
        empty_hint(
            m,
            f,
            inner,
            if m.is_live() {
                "no scenarios yet · R runs the suite"
            } else {
                "this run ran no scenario"
            },
        );
        return;
    }
    let w = inner.width as usize;
    let focused = m.focus == Pane::Scenarios;
    // The list first; what is left under it shows the selected
    // scenario's checks.
    let rows = (inner.height as usize).min(entries.len());
    let (sel, off) = m.scenario_cursor.window(entries.len(), rows);
    let mut lines = Vec::new();
    for (i, e) in entries.iter().enumerate().skip(off).take(rows) {
        let pointer = if i == sel { sym::SELECTED } else { " " };
        let line = if i == 0 {
            let n = entries.len() - 1;
            Line::from(vec![
                Span::raw(format!("{pointer}  ")),
                Span::styled(fmt::pad("all scenarios", w.saturating_sub(14)), t.title),
                Span::styled(fmt::rpad(&format!("{n} known"), 10), t.dim),
            ])
        } else {
            let res = m.summary.scenarios.iter().find(|s| s.name == e.name);
            let (mark, ms) = if e.running {
                (sym::RUNNING, t.running)
            } else {
                match res.and_then(|r| r.passed) {
                    Some(true) => (sym::OK, t.ok),
                    Some(false) => (sym::FAIL, t.fail),
                    None if res.is_some() => (sym::FAIL, t.warn),
                    None => (sym::PENDING, t.pending),
                }
            };
            let detail = match res {
                Some(r) if e.running => format!("{} checks…", r.expectations.len()),
                Some(r) => {
                    let held = r.expectations.iter().filter(|x| x.held).count();
                    let total = r.expectations.len();
                    format!("{held}/{total}  {}", fmt::ms(r.elapsed_ms))
                }
                None => String::new(),
            };
            let dw = 14;
            Line::from(vec![
                Span::raw(format!("{pointer} ")),
                Span::styled(format!("{mark} "), ms),
                Span::raw(fmt::pad(&e.name, w.saturating_sub(4 + dw))),
                Span::styled(fmt::rpad(&detail, dw), t.dim),
            ])
        };
        lines.push(line.style(row_style(m, i == sel, focused)));
    }
    let spare = (inner.height as usize).saturating_sub(rows);
    if spare >= 3
        && let Some(name) = entries
            .get(sel)
            .map(|e| e.name.as_str())
            .filter(|n| !n.is_empty())
        && let Some(res) = m.summary.scenarios.iter().find(|s| s.name == name)
    {
        lines.push(Line::from(Span::styled(
            fmt::pad(&format!(" checks of {name}"), w),
            t.dim.add_modifier(ratatui::style::Modifier::UNDERLINED),
        )));
        for e in res.expectations.iter().take(spare - 1) {
            let line = if e.held {
                Line::from(vec![
                    Span::styled(format!(" {} ", sym::OK), t.ok),
                    Span::styled(format!("step {} ", e.step), t.dim),
                    Span::raw(fmt::fit(
                        &format!("{}: {}", e.what, e.actual),
                        w.saturating_sub(11),
                    )),
                ])
            } else {
                Line::from(vec![
                    Span::styled(format!(" {} ", sym::FAIL), t.fail),
                    Span::styled(format!("step {} ", e.step), t.dim),
                    Span::raw(format!("{}: expected ", e.what)),
                    Span::styled(e.expected.clone(), t.ok),
                    Span::raw(", got "),
                    Span::styled(e.actual.clone(), t.fail),
                ])
            };
            lines.push(line);
        }
        if res.expectations.is_empty() {
            lines.push(Line::from(Span::styled("  no checks yet", t.dim)));
        }
    }
    f.render_widget(Paragraph::new(lines), inner);
}
