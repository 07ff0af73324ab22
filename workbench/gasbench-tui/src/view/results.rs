//! Results: verdict counts, failing expectations (expected vs actual),
//! KTAP, kernel warnings, and PING latency.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Sparkline};

use super::pane_block;
use crate::fmt;
use crate::model::{Model, Pane};
use crate::theme::sym;

fn lines(m: &Model, w: usize) -> Vec<Line<'static>> {
    let t = &m.theme;
    let s = &m.summary;
    let (pass, fail, running) = s.counts();
    let mut out = vec![Line::from(vec![
        Span::styled(" scenarios ", t.title),
        Span::styled(format!("{} {pass} passed  ", sym::OK), t.ok),
        Span::styled(
            format!("{} {fail} failed  ", sym::FAIL),
            if fail > 0 { t.fail } else { t.dim },
        ),
        Span::styled(
            format!("{} {running} running", sym::RUNNING),
            if running > 0 { t.running } else { t.dim },
        ),
    ])];
    if let Some((passed, ms)) = m.run.finished {
        out.push(Line::from(vec![
            Span::styled(" verdict   ", t.title),
            if passed {
                Span::styled(format!("{} every expectation held", sym::OK), t.ok)
            } else {
                Span::styled(format!("{} the run failed", sym::FAIL), t.fail)
            },
            Span::styled(format!("  in {}", fmt::ms(ms)), t.dim),
        ]));
    }
    for (bin, (ok, notok, skip)) in s.ktap_counts() {
        out.push(Line::from(vec![
            Span::styled(" ktap      ", t.title),
            Span::raw(format!("{} ", fmt::fit(&bin, w.saturating_sub(32)))),
            Span::styled(format!("{} {ok} ", sym::OK), t.ok),
            Span::styled(
                format!("{} {notok} ", sym::FAIL),
                if notok > 0 { t.fail } else { t.dim },
            ),
            Span::styled(format!("{} {skip} skipped", sym::SKIP), t.dim),
        ]));
    }
    let failing: Vec<_> = s
        .scenarios
        .iter()
        .flat_map(|sc| sc.failed_expectations().map(move |e| (sc, e)))
        .collect();
    if !failing.is_empty() {
        out.push(Line::from(Span::styled(
            format!(" failing expectations {}", failing.len()),
            t.fail,
        )));
        for (sc, e) in failing {
            out.push(Line::from(vec![
                Span::styled(format!(" {} ", sym::FAIL), t.fail),
                Span::styled(sc.name.clone(), t.title),
                Span::styled(format!(" step {}: ", e.step), t.dim),
                Span::raw(fmt::fit(&e.title(), w.saturating_sub(sc.name.len() + 14))),
            ]));
            out.push(Line::from(vec![
                Span::styled("     expected ", t.dim),
                Span::styled(fmt::fit(&e.expected, w.saturating_sub(14)), t.ok),
            ]));
            out.push(Line::from(vec![
                Span::styled("     actual   ", t.dim),
                Span::styled(fmt::fit(&e.actual, w.saturating_sub(14)), t.fail),
            ]));
        }
    }
    for err in &s.errors {
        out.push(Line::from(Span::styled(
            fmt::fit(&format!(" {} {err}", sym::FAIL), w),
            t.fail,
        )));
    }
    if !s.kernel_warnings.is_empty() {
        out.push(Line::from(Span::styled(
            format!(" kernel warnings {}", s.kernel_warnings.len()),
            t.warn,
        )));
        for k in s.kernel_warnings.iter().take(20) {
            out.push(Line::from(Span::styled(
                fmt::fit(&format!(" {} {}", sym::WARN, k.trim()), w),
                t.warn,
            )));
        }
    }
    out
}

/// Rows the results list scrolls through (for paging).
pub fn line_count(m: &Model) -> usize {
    lines(m, 80).len()
}

pub fn draw(m: &Model, f: &mut Frame, r: Rect) {
    let t = &m.theme;
    let block = pane_block(m, Pane::Results, Line::default());
    let inner = block.inner(r);
    f.render_widget(block, r);
    let ping = &m.ping;
    let spark_h = if ping.count == 0 {
        1
    } else if inner.height >= 12 {
        4
    } else {
        2
    };
    let [text_area, spark_area] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(spark_h)]).areas(inner);
    let w = text_area.width as usize;
    let all = lines(m, w);
    let rows = text_area.height as usize;
    let (_, off) = m.results_cursor.window(all.len(), rows);
    f.render_widget(Paragraph::new(all).scroll((off as u16, 0)), text_area);

    let q = |x| ping.quantile(x).unwrap_or(0);
    match ping.count {
        0 => f.render_widget(
            Paragraph::new(Span::styled(" PING latency: no pings yet", t.dim)),
            spark_area,
        ),
        n => {
            let [label, spark] =
                Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(spark_area);
            let (p50, p90, p99, max) = (
                fmt::duration_ns(q(0.5)),
                fmt::duration_ns(q(0.9)),
                fmt::duration_ns(q(0.99)),
                fmt::duration_ns(ping.max),
            );
            // The most that fits whole: a figure cut mid-unit misleads.
            let candidates = [
                (
                    " PING latency ",
                    format!(
                        "n={} p50 ≈{p50} p90 ≈{p90} p99 ≈{p99} max {max}",
                        fmt::count(n)
                    ),
                ),
                (" PING latency ", format!("p50 ≈{p50} p90 ≈{p90} max {max}")),
                (" PING ", format!("p50 ≈{p50} p90 ≈{p90} max {max}")),
                (" PING ", format!("p50 ≈{p50} max {max}")),
            ];
            let width = label.width as usize;
            let (name, figures) = candidates
                .iter()
                .find(|(a, b)| a.chars().count() + b.chars().count() <= width)
                .unwrap_or(&candidates[candidates.len() - 1]);
            let figures = fmt::fit(figures, width.saturating_sub(name.chars().count()));
            f.render_widget(
                Paragraph::new(Line::from(vec![
                    Span::styled(*name, t.title),
                    Span::styled(figures, t.dim),
                ])),
                label,
            );
            // The newest pings that fit, one column each, in µs.
            let n: usize = spark.width.saturating_sub(1) as usize;
            let data: Vec<u64> = ping
                .recent
                .iter()
                .skip(ping.recent.len().saturating_sub(n))
                .map(|ns| ns / 1000)
                .collect();
            let area = Rect::new(
                spark.x + 1,
                spark.y,
                spark.width.saturating_sub(1),
                spark.height,
            );
            f.render_widget(Sparkline::default().data(&data).style(t.accent), area);
        }
    }
}
