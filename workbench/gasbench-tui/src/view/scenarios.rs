//! The scenario list with live verdicts. The selection filters the trace.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{empty_hint, fit_spans, pane_block, row_style};
use crate::fmt;
use crate::model::{Model, Pane};
use crate::theme::sym;
use gasbench_trace::summary::Expectation;

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
            let cut = e.running && m.log_ended_early();
            let (mark, ms) = if cut {
                (sym::WARN, t.warn)
            } else if e.running {
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
                Some(_) if cut => "cut off".to_string(),
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
        lines.extend(check_lines(m, &res.expectations, spare - 1, w));
        if res.expectations.is_empty() {
            lines.push(Line::from(Span::styled("  no checks yet", t.dim)));
        }
    }
    f.render_widget(Paragraph::new(lines), inner);
}

/// The checks of one scenario in `room` lines of `w` columns: the failed
/// ones first (they are what the list is read for, and a long scenario's
/// first checks are mostly passes), then the rest in step order. When not
/// all fit, the last line says how many are left out.
fn check_lines<'a>(m: &Model, checks: &'a [Expectation], room: usize, w: usize) -> Vec<Line<'a>> {
    let t = &m.theme;
    let ordered: Vec<&Expectation> = checks
        .iter()
        .filter(|e| !e.held)
        .chain(checks.iter().filter(|e| e.held))
        .collect();
    let mut lines = Vec::new();
    let mut shown = 0;
    for (i, e) in ordered.iter().enumerate() {
        let rest = ordered.len() - i - 1;
        // Keep a line for `… N more` unless this is the last check.
        let budget = room.saturating_sub(lines.len() + usize::from(rest > 0));
        if budget == 0 {
            break;
        }
        let step = Span::styled(format!("step {} ", e.step), t.dim);
        if e.held {
            lines.push(Line::from(vec![
                Span::styled(format!(" {} ", sym::OK), t.ok),
                step,
                Span::raw(fmt::fit(
                    &format!("{}: {}", e.title(), e.actual),
                    w.saturating_sub(11),
                )),
            ]));
        } else {
            let mark = Span::styled(format!(" {} ", sym::FAIL), t.fail);
            let outcome = vec![
                Span::raw("expected "),
                Span::styled(e.expected.clone(), t.ok),
                Span::raw(", got "),
                Span::styled(e.actual.clone(), t.fail),
            ];
            if budget >= 2 {
                // What was checked, then the verdict under it.
                lines.push(Line::from(vec![
                    mark,
                    step,
                    Span::raw(fmt::fit(&e.title(), w.saturating_sub(11))),
                ]));
                let mut second = vec![Span::raw("     ")];
                second.extend(outcome);
                lines.push(Line::from(fit_spans(second, w)));
            } else {
                let mut one = vec![mark, step, Span::raw(format!("{}: ", e.title()))];
                one.extend(outcome);
                lines.push(Line::from(fit_spans(one, w)));
            }
        }
        shown += 1;
    }
    if shown < ordered.len() {
        let left: Vec<&&Expectation> = ordered[shown..].iter().collect();
        let failed = left.iter().filter(|e| !e.held).count();
        let note = if failed > 0 {
            format!("  … {} more ({failed} failed)", left.len())
        } else {
            format!("  … {} more, all {}", left.len(), sym::OK)
        };
        lines.push(Line::from(Span::styled(
            note,
            if failed > 0 { t.fail } else { t.dim },
        )));
    }
    lines
}
