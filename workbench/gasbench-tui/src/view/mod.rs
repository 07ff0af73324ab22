//! `view(&Model, &mut Frame)`: the whole screen from the model. No state
//! changes here; the only reads outside the model are the trace details
//! for the rows on screen (through the model's `EventLookup`).

pub mod device;
pub mod logs;
pub mod pipeline;
pub mod results;
pub mod scenarios;
pub mod trace;

use ratatui::Frame;
use ratatui::layout::{Alignment, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Clear, Paragraph};

use crate::fmt;
use crate::keys::{BINDINGS, FILTER_HELP};
use crate::layout;
use crate::model::{Mode, Model, Pane};
use crate::theme::sym;

/// Draw everything.
pub fn view(m: &Model, f: &mut Frame) {
    let area = f.area();
    let a = layout::areas(area, m);
    header(m, f, a.header);
    if let Some(t) = a.tabs {
        tabs(m, f, t);
    }
    for (pane, rect) in &a.panes {
        draw_pane(m, f, *pane, *rect);
    }
    footer(m, f, a.footer);
    if m.help {
        help(m, f, area);
    }
    inert(f);
}

/// The last pass over the screen: no cell may carry a character that
/// makes a terminal do something. ratatui already drops C0/C1 controls;
/// bidi overrides and line separators would still reach the terminal.
/// The text from the guest is made visible where it enters the model
/// (`LogView::push`); this catches whatever else a guest or a mail put
/// in a name, a subject or a value.
fn inert(f: &mut Frame) {
    for cell in f.buffer_mut().content.iter_mut() {
        if !gasbench_termsafe::is_clean_line(cell.symbol()) {
            cell.set_symbol("\u{FFFD}");
        }
    }
}

fn draw_pane(m: &Model, f: &mut Frame, pane: Pane, r: Rect) {
    match pane {
        Pane::Pipeline => pipeline::draw(m, f, r),
        Pane::Scenarios => scenarios::draw(m, f, r),
        Pane::Trace => trace::draw(m, f, r),
        Pane::Device => device::draw(m, f, r),
        Pane::Console => logs::draw(m, f, r, Pane::Console),
        Pane::Build => logs::draw(m, f, r, Pane::Build),
        Pane::Results => results::draw(m, f, r),
    }
}

/// A pane's frame: its title (with the pane's key) and a summary on the
/// right of the top border.
pub(crate) fn pane_block<'a>(m: &Model, pane: Pane, info: Line<'a>) -> Block<'a> {
    let focused = m.focus == pane;
    let t = &m.theme;
    let (ts, bs) = if focused {
        (t.title_focused, t.border_focused)
    } else {
        (t.title, t.border)
    };
    let title = Line::from(vec![
        Span::styled(format!(" {} ", pane.index() + 1), t.dim),
        Span::styled(format!("{} ", pane.title()), ts),
    ]);
    Block::bordered()
        .border_type(if focused {
            BorderType::Thick
        } else {
            BorderType::Rounded
        })
        .border_style(bs)
        .title(title)
        .title_top(info.alignment(Alignment::Right))
}

fn header(m: &Model, f: &mut Frame, r: Rect) {
    let t = &m.theme;
    let mut right: Vec<Span> = Vec::new();
    let (pass, fail, running) = m.summary.counts();
    if pass + fail + running > 0 {
        right.push(Span::styled(format!("{} {pass}", sym::OK), t.ok));
        right.push(Span::raw(" "));
        right.push(Span::styled(
            format!("{} {fail}", sym::FAIL),
            if fail > 0 { t.fail } else { t.dim },
        ));
        right.push(Span::styled(" │ ", t.dim));
    }
    let accel = m.run.accel.as_deref().map(str::to_ascii_uppercase);
    right.push(Span::styled(
        accel.unwrap_or_else(|| "accel ?".into()),
        t.header,
    ));
    right.push(Span::styled(" │ ", t.dim));
    if let Some(p) = &m.run.profile {
        right.push(Span::styled(
            format!("profile {p}"),
            if p == "default" { t.dim } else { t.accent },
        ));
        right.push(Span::styled(" │ ", t.dim));
    }
    let vm = m.run.vm_state.as_deref().unwrap_or("no VM");
    let vm_style = match vm {
        "running" => t.ok,
        "died" | "internal-error" | "guest-panicked" => t.fail,
        "no VM" | "stopped" | "shutdown" => t.dim,
        _ => t.warn,
    };
    right.push(Span::styled(format!("VM {vm}"), vm_style));
    right.push(Span::styled(" │ ", t.dim));
    let clock = match m.run.finished {
        Some((passed, ms)) => {
            let s = if passed { t.ok } else { t.fail };
            let mark = if passed { sym::OK } else { sym::FAIL };
            Span::styled(format!("{mark} {}", fmt::elapsed_us(ms * 1000)), s)
        }
        None if m.log_ended_early() => Span::styled(
            format!("{} log ends {}", sym::WARN, fmt::elapsed_us(m.now_us)),
            t.warn,
        ),
        None => Span::styled(fmt::elapsed_us(m.now_us), t.header),
    };
    right.push(clock);
    right.push(Span::raw(" "));
    let right_w: usize = right.iter().map(|s| s.content.chars().count()).sum();

    let mut left: Vec<Span> = vec![Span::styled(
        " gasbench ",
        t.title_focused.add_modifier(Modifier::REVERSED),
    )];
    let mode = match &m.mode {
        Mode::Live if m.quitting => Span::styled(" ● stopping ", t.warn),
        Mode::Live => Span::styled(" ● live ", t.running),
        Mode::Browse { .. } => Span::styled(" ◆ browse ", t.accent),
    };
    left.push(mode);
    let mut facts = Vec::new();
    if let Some(k) = m.run.kernel_release.as_ref().or(m.run.base.as_ref()) {
        facts.push(format!("kernel {k}"));
    }
    let series = series_summary(m);
    if !series.is_empty() {
        facts.push(series);
    }
    let room = (r.width as usize).saturating_sub(right_w + 20 + 1);
    left.push(Span::styled(
        fmt::fit(&facts.join(" │ "), room),
        t.header.remove_modifier(Modifier::BOLD),
    ));
    let left_w: usize = left.iter().map(|s| s.content.chars().count()).sum();
    let gap = (r.width as usize).saturating_sub(left_w + right_w).max(1);
    left.push(Span::raw(" ".repeat(gap)));
    left.extend(right);
    f.render_widget(Paragraph::new(Line::from(left)), r);
}

/// `mkdirat2 v2 2/2 ✓ · goldfish v3 2/6 as posted, 4 ported`: per
/// series, its posted patches (by the posting's own numbering, not the
/// apply queue's) and what became of those that did not apply.
fn series_summary(m: &Model) -> String {
    m.pipeline
        .series_apply()
        .iter()
        .filter(|s| s.posted > 0)
        .map(|s| {
            let name = short_series(&s.series);
            let head = format!("{name} {}/{}", s.as_posted, s.posted);
            if s.as_posted == s.posted {
                return format!("{head} {}", sym::OK);
            }
            let mut parts = vec![format!("{head} as posted")];
            if s.ported > 0 {
                parts.push(format!("{} ported", s.ported));
            }
            if s.failed > 0 {
                parts.push(format!("{} failed {}", s.failed, sym::FAIL));
            }
            if s.pending() > 0 {
                parts.push(format!("{} to go", s.pending()));
            }
            parts.join(", ")
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// `goldfish-address-space-v3` → `goldfish v3`: the series' first word
/// and its version, enough to tell series apart in a header.
pub(crate) fn short_series(series: &str) -> String {
    let mut words = series.split(|c: char| c == '-' || c.is_whitespace());
    let first = words.next().unwrap_or("");
    match words.next_back() {
        Some(v)
            if v.len() > 1 && v.starts_with('v') && v[1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            format!("{first} {v}")
        }
        _ => first.to_owned(),
    }
}

fn tabs(m: &Model, f: &mut Frame, r: Rect) {
    let t = &m.theme;
    let mut spans = Vec::new();
    for p in Pane::ALL {
        let label = format!(" {} {} ", p.index() + 1, p.title());
        let style = if p == m.focus { t.selected } else { t.dim };
        spans.push(Span::styled(label, style));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), r);
}

fn footer(m: &Model, f: &mut Frame, r: Rect) {
    let t = &m.theme;
    let line = if let Some(inp) = &m.input {
        let prompt = format!(" / filter {}: ", inp.pane.title().to_lowercase());
        let keys = "   Enter keep · Esc clear";
        // The end of the text (where the cursor is) stays on screen; the
        // key hint gives way first.
        let room = (r.width as usize).saturating_sub(prompt.chars().count() + 1);
        let keys = if inp.text.chars().count() + keys.chars().count() <= room {
            keys
        } else {
            ""
        };
        Line::from(vec![
            Span::styled(prompt, t.key),
            Span::raw(fmt::tail(&inp.text, room)),
            Span::styled("█", t.accent),
            Span::styled(keys, t.dim),
        ])
    } else if let Some(st) = &m.status {
        // A long message ends with … rather than at the edge.
        Line::from(Span::styled(
            fmt::fit(&format!(" {}", st.text), r.width as usize),
            if st.error { t.fail } else { t.accent },
        ))
    } else {
        // (key, what, how much it matters): what does not fit the width
        // goes, least important first; `? help` and `q quit` always stay.
        let mut hints: Vec<(&str, &str, u8)> = vec![("?", "help", 9), ("Tab", "pane", 2)];
        match m.focus {
            Pane::Trace => {
                hints.push(("Enter", if m.expanded { "collapse" } else { "expand" }, 6));
                if m.expanded {
                    hints.push(("J/K", "scroll detail", 5));
                }
                hints.push(("/", "filter", 7));
                hints.push(("y", "copy", 4));
            }
            Pane::Scenarios => {
                hints.push(("j/k", "select", 5));
                hints.push(("r", "run", 7));
            }
            Pane::Console | Pane::Build => hints.push(("/", "filter", 7)),
            _ => {}
        }
        if m.is_live() {
            hints.push(("r", "run", 3));
            hints.push(("b", "build", 1));
            hints.push(("s", "stop VM", 1));
        }
        hints.push(("q", "quit", 9));
        hints.dedup_by(|a, b| a.0 == b.0);
        let width = |h: &[(&str, &str, u8)]| -> usize {
            1 + h
                .iter()
                .map(|(k, w, _)| k.chars().count() + w.chars().count() + 3)
                .sum::<usize>()
        };
        while width(&hints) > r.width as usize {
            let Some(least) = hints
                .iter()
                .enumerate()
                .filter(|(_, h)| h.2 < 9)
                .min_by_key(|(i, h)| (h.2, usize::MAX - i))
                .map(|(i, _)| i)
            else {
                break;
            };
            hints.remove(least);
        }
        let mut spans = vec![Span::raw(" ")];
        for (k, what, _) in hints {
            spans.push(Span::styled(k, t.key));
            spans.push(Span::styled(format!(" {what}  "), t.dim));
        }
        Line::from(spans)
    };
    let used = line.width() as u16;
    f.render_widget(Paragraph::new(line), r);
    // The right end: what is open and how far a replay has read.
    let right = match (&m.loading, &m.mode) {
        (Some((n, done, total)), _) => {
            let pct = if *total > 0 { done * 100 / total } else { 0 };
            format!("loading {} events {pct}% ", fmt::count(*n))
        }
        (None, Mode::Browse { path }) => {
            format!("{} events · {} ", fmt::count(m.events_seen), path)
        }
        (None, Mode::Live) => format!("{} events ", fmt::count(m.events_seen)),
    };
    let w = right.chars().count() as u16;
    if r.width > used + w + 2 {
        let rr = Rect::new(r.x + r.width - w, r.y, w, 1);
        f.render_widget(Paragraph::new(Span::styled(right, t.dim)), rr);
    }
}

fn help(m: &Model, f: &mut Frame, area: Rect) {
    let t = &m.theme;
    let mut lines: Vec<Line> = Vec::new();
    for b in BINDINGS {
        lines.push(Line::from(vec![
            Span::styled(format!(" {:<18}", b.keys), t.key),
            Span::raw(b.what),
        ]));
    }
    lines.push(Line::raw(""));
    for h in FILTER_HELP {
        lines.push(Line::from(Span::styled(format!(" {h}"), t.dim)));
    }
    lines.push(Line::from(vec![
        Span::styled(format!(" {} ok ", sym::OK), t.ok),
        Span::styled(format!("{} failed ", sym::FAIL), t.fail),
        Span::styled(format!("{} running ", sym::RUNNING), t.running),
        Span::styled(format!("{} pending ", sym::PENDING), t.pending),
        Span::styled(format!("{} cached ", sym::CACHED), t.dim),
        Span::styled(format!("{} warning ", sym::WARN), t.warn),
        Span::styled("~ attribution shared (calls overlapped)", t.dim),
    ]));
    let w = (lines.iter().map(Line::width).max().unwrap_or(40) as u16 + 2).min(area.width);
    let h = (lines.len() as u16 + 2).min(area.height);
    let r = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    );
    f.render_widget(Clear, r);
    let block = Block::bordered()
        .border_type(BorderType::Thick)
        .border_style(t.border_focused)
        .title(Span::styled(" keys ", t.title_focused))
        .title_bottom(Line::from(Span::styled(" Esc closes ", t.dim)).alignment(Alignment::Right));
    f.render_widget(Paragraph::new(lines).block(block), r);
}

/// A centred, dimmed hint for a pane with nothing to show yet.
pub(crate) fn empty_hint(m: &Model, f: &mut Frame, r: Rect, text: &str) {
    if r.height == 0 {
        return;
    }
    let y = r.y + r.height / 2;
    let text = fmt::fit(text, r.width as usize);
    let line = Line::from(Span::styled(text, m.theme.dim)).alignment(Alignment::Center);
    f.render_widget(Paragraph::new(line), Rect::new(r.x, y, r.width, 1));
}

/// Cut a line of styled spans to `width` characters, ending in `…` when
/// cut (the styled counterpart of [`fmt::fit`]).
pub(crate) fn fit_spans(spans: Vec<Span<'_>>, width: usize) -> Vec<Span<'_>> {
    let total: usize = spans.iter().map(|s| s.content.chars().count()).sum();
    if total <= width {
        return spans;
    }
    let mut left = width;
    let mut out = Vec::new();
    for s in spans {
        let n = s.content.chars().count();
        if n < left {
            left -= n;
            out.push(s);
        } else {
            out.push(Span::styled(fmt::fit(&s.content, left.max(1)), s.style));
            if left == 0 {
                out.pop();
            }
            break;
        }
    }
    out
}

/// Style for a whole selected row.
pub(crate) fn row_style(m: &Model, selected: bool, focused: bool) -> Style {
    if selected && focused {
        m.theme.selected
    } else if selected {
        Style::new().add_modifier(Modifier::BOLD)
    } else {
        Style::new()
    }
}
