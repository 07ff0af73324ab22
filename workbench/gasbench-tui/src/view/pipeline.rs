//! Stages with progress bars, then every patch's apply/build result.

use gasbench_events::kernel::{ApplyStatus, PatchRole};
use gasbench_events::run::Outcome;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{pane_block, row_style};
use crate::fmt;
use crate::model::{Model, Pane, StageState, posted_position};
use crate::theme::{Theme, sym};

pub(crate) fn stage_mark(t: &Theme, s: StageState) -> (&'static str, Style) {
    match s {
        StageState::Pending => (sym::PENDING, t.pending),
        StageState::Running => (sym::RUNNING, t.running),
        StageState::Done(Outcome::Ok) => (sym::OK, t.ok),
        StageState::Done(Outcome::Cached) => (sym::CACHED, t.ok),
        StageState::Done(Outcome::Skipped) => (sym::SKIP, t.dim),
        StageState::Done(Outcome::Failed) => (sym::FAIL, t.fail),
    }
}

pub fn draw(m: &Model, f: &mut Frame, r: Rect) {
    let t = &m.theme;
    let p = &m.pipeline;
    let done = p
        .stages
        .iter()
        .filter(|s| matches!(s.state, StageState::Done(_)))
        .count();
    let info = Line::from(Span::styled(
        format!(" {done}/{} stages ", p.stages.len()),
        t.dim,
    ));
    let block = pane_block(m, Pane::Pipeline, info);
    let inner = block.inner(r);
    f.render_widget(block, r);
    let w = inner.width as usize;
    let focused = m.focus == Pane::Pipeline;

    let mut lines: Vec<Line> = Vec::new();
    // A log that ends mid-run: its running stages were cut off there.
    let cut = m.log_ended_early();
    for s in &p.stages {
        let cut_off = cut && s.state == StageState::Running;
        let (mark, ms) = if cut_off {
            (sym::WARN, t.warn)
        } else {
            stage_mark(t, s.state)
        };
        let mut spans = vec![
            Span::styled(format!(" {mark} "), ms),
            Span::styled(fmt::pad(s.stage.name(), 10), ms.patch(t.title)),
        ];
        let time = match s.state {
            StageState::Done(_) => fmt::ms(s.elapsed_ms),
            StageState::Running => fmt::elapsed_us(m.now_us.saturating_sub(s.began_us)),
            StageState::Pending => String::new(),
        };
        let room = w.saturating_sub(13 + 8);
        if cut_off {
            let at = if s.total > 0 {
                format!(" at {}/{}", s.done, s.total)
            } else {
                String::new()
            };
            spans.push(Span::styled(
                fmt::pad(&format!("cut off{at} · {}", s.detail), room),
                t.warn,
            ));
        } else if s.state == StageState::Running && s.total > 0 {
            let bw = (room / 2).clamp(6, 24);
            let (a, b) = fmt::bar(s.done, s.total, bw);
            let pct = s.done.min(s.total) * 100 / s.total;
            spans.push(Span::styled(a, t.bar_done));
            spans.push(Span::styled(b, t.bar_todo));
            spans.push(Span::styled(format!(" {pct:>3}% "), t.title));
            let rest = room.saturating_sub(bw + 6);
            spans.push(Span::styled(fmt::pad(&s.detail, rest), t.dim));
        } else {
            let detail = if s.total > 0
                && !matches!(s.state, StageState::Pending | StageState::Done(Outcome::Ok))
            {
                format!("{}/{} {}", s.done, s.total, s.detail)
            } else {
                s.detail.clone()
            };
            spans.push(Span::styled(fmt::pad(&detail, room), t.dim));
        }
        spans.push(Span::styled(fmt::rpad(&time, 7), t.dim));
        lines.push(Line::from(spans));
    }
    if !p.patches.is_empty() {
        lines.push(Line::from(Span::styled(
            fmt::pad(" patches", w),
            t.dim
                .patch(Style::new().add_modifier(ratatui::style::Modifier::UNDERLINED)),
        )));
    }
    for (i, pr) in p.patches.iter().enumerate() {
        let cross_broken = pr.cross.as_ref().is_some_and(|(_, e)| e.is_some());
        let (mark, ms) = match (pr.status, pr.builds) {
            (ApplyStatus::Failed, _) | (_, Some(false)) => (sym::FAIL, t.fail),
            _ if cross_broken => (sym::FAIL, t.fail),
            (ApplyStatus::AppliedWithFuzz, _) => (sym::WARN, t.warn),
            (ApplyStatus::Applied, _) => (sym::OK, t.ok),
        };
        // `goldfish-address-space v3` → `goldfish`: enough to tell the
        // series apart in a narrow column.
        let series = pr
            .series
            .split(|c: char| c == '-' || c.is_whitespace())
            .next()
            .unwrap_or("");
        // The posting's own numbering (`3/6`), not the apply queue's;
        // the port's patches say so (`port 2/6` stands for posted 2/6).
        let size = pr.posted_total.map_or(String::new(), |t| format!("/{t}"));
        let pos = match (pr.role, pr.posted_index) {
            (PatchRole::Fixup, _) | (PatchRole::Replacement, None) => "port".to_string(),
            (PatchRole::Replacement, Some(k)) => format!("port {k}{size}"),
            (_, Some(k)) => format!("{k}{size}"),
            (_, None) => format!("{}/{}", pr.index, pr.total),
        };
        let mut build = match pr.builds {
            Some(true) => Span::styled(" builds", t.ok),
            Some(false) => Span::styled(" build ✗", t.fail),
            None => Span::raw(""),
        };
        // `builds arm ✗`: x86_64 first, then the second architecture.
        if let Some((arch, err)) = &pr.cross {
            let (text, style) = match err {
                None => (format!("{} {arch} {}", build.content, sym::OK), build.style),
                Some(_) => (format!("{} {arch} ✗", build.content), t.fail),
            };
            build = Span::styled(text, style);
        }
        let label = format!("{} {pos:>8} ", fmt::pad(series, 8));
        let used = 3 + label.chars().count() + build.content.chars().count();
        // The position is in the label; the subject's `[RFC PATCH v3 3/6]`
        // would only repeat it. (A fixup's `[gasbench fixup v7.2.12]`
        // names the base it was written for, and stays.)
        let mut subject = match posted_position(&pr.subject) {
            Some(_) => pr
                .subject
                .split_once(']')
                .map_or(pr.subject.as_str(), |(_, rest)| rest.trim_start())
                .to_string(),
            None => pr.subject.clone(),
        };
        if let Some(err) = &pr.first_error {
            subject = format!("{subject} — {err}");
        } else if let Some((arch, Some(err))) = &pr.cross {
            subject = format!("{subject} — {arch}: {err}");
        } else if pr.status != ApplyStatus::Applied && !pr.detail.is_empty() {
            subject = format!("{subject} — {}", pr.detail);
        }
        let sel = focused && p.cursor.selected == p.stages.len() + i;
        let line = Line::from(vec![
            Span::styled(format!(" {mark} "), ms),
            Span::styled(label, t.dim),
            Span::raw(fmt::pad(&subject, w.saturating_sub(used))),
            build,
        ])
        .style(row_style(m, sel, focused));
        lines.push(line);
    }
    if !p.artifacts.is_empty() && lines.len() < inner.height as usize {
        let kinds: Vec<&str> = p.artifacts.iter().map(|(k, _)| k.as_str()).collect();
        lines.push(Line::from(Span::styled(
            fmt::fit(&format!(" artifacts: {}", kinds.join(", ")), w),
            t.dim,
        )));
    }
    // Scroll so the selected patch stays visible.
    let (_, off) = p.cursor.window(lines.len(), inner.height as usize);
    let skip = if focused { off } else { 0 };
    f.render_widget(Paragraph::new(lines).scroll((skip as u16, 0)), inner);
}
