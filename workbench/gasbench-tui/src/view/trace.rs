//! The ioctl trace: a table of calls, and under it (Enter) the selected
//! call's decoded structs and the device register accesses it caused.
//!
//! Only the rows on screen are read back from the event log, so the cost
//! of a frame does not grow with the length of the trace.

use gasbench_abi::protocol::{AgentMsg, CallRecord};
use gasbench_abi::uapi::Ioctl;
use gasbench_events::EventBody;
use gasbench_events::device::DeviceEvent;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use serde_json::Value;

use super::{empty_hint, pane_block, row_style};
use crate::device::{self, DeviceLine, LineKind};
use crate::fmt;
use crate::model::{Model, Pane};
use crate::store::CallRow;
use crate::theme::sym;

/// At most this many events are read to show one call's device activity.
const DETAIL_SCAN: u64 = 4000;

/// Rows of calls visible in a trace pane drawn in `r`.
pub fn table_rows(r: Rect, expanded: bool) -> usize {
    let inner = r.height.saturating_sub(2);
    let table = if expanded { split(inner).0 } else { inner };
    table.saturating_sub(1).max(1) as usize
}

/// Rows inside the expanded detail of a trace pane drawn in `r` (under
/// its top rule).
pub fn detail_rows(r: Rect) -> usize {
    let inner = r.height.saturating_sub(2);
    split(inner).1.saturating_sub(1) as usize
}

/// How far a detail of `len` lines in `rows` rows can scroll: at the end
/// one row says what is above, the rest show the last lines.
pub fn detail_max_scroll(len: usize, rows: usize) -> usize {
    if len <= rows {
        0
    } else {
        len - rows.saturating_sub(1).max(1)
    }
}

/// The part of a detail shown at `scroll`: (first line, end, lines above,
/// lines below). Where lines are hidden a row says so, above or below.
fn detail_window(len: usize, rows: usize, scroll: usize) -> (usize, usize, usize, usize) {
    if len <= rows {
        return (0, len, 0, 0);
    }
    let scroll = scroll.min(detail_max_scroll(len, rows));
    let above_row = usize::from(scroll > 0);
    let room = rows.saturating_sub(above_row);
    // Keep a row for `… N more` unless the rest fits.
    let shown = if len - scroll <= room {
        len - scroll
    } else {
        room.saturating_sub(1)
    };
    (scroll, scroll + shown, scroll, len - scroll - shown)
}

/// The selected call as text to quote in a reply: its row (time,
/// thread, fd, call, decoded arguments, result) and its whole detail
/// (decoded structs, the register accesses it caused, kernel reports),
/// every control character made visible.
pub fn copy_text(m: &Model) -> Option<String> {
    let row = m.selected_call()?;
    let mut out = String::new();
    for line in detail_lines(m, row, usize::MAX / 4) {
        let text: String = line.spans.iter().map(|s| s.content.as_ref()).collect();
        // Arguments and paths came from the guest: pasted, they must not
        // act on the reader's terminal.
        out.push_str(gasbench_termsafe::line_capped(text.trim_end(), 16_000).as_ref());
        out.push('\n');
    }
    Some(out)
}

/// Lines of the selected call's detail (what J/K scroll through).
pub fn detail_line_count(m: &Model) -> usize {
    m.selected_call()
        .map_or(0, |row| detail_lines(m, row, usize::MAX / 2).len())
}

/// Heights of the table and the detail when a call is expanded.
fn split(inner: u16) -> (u16, u16) {
    let table = (inner * 2 / 5).max(4).min(inner);
    (table, inner - table)
}

struct Cols {
    thread: bool,
    fd: bool,
    name: usize,
    args: usize,
    result: usize,
    dur: bool,
    regs: bool,
}

fn columns(w: usize) -> Cols {
    // time 7, name, args (flex), result 11, dur 8, regs 4, thr 3, fd 3.
    let mut c = Cols {
        thread: w >= 64,
        fd: w >= 60,
        name: if w >= 100 { 20 } else { 16 },
        args: 0,
        result: 11,
        dur: w >= 52,
        regs: w >= 56,
    };
    let fixed = 9
        + c.name
        + 1
        + c.result
        + 1
        + if c.dur { 8 } else { 0 }
        + if c.regs { 5 } else { 0 }
        + if c.thread { 4 } else { 0 }
        + if c.fd { 4 } else { 0 };
    c.args = w.saturating_sub(fixed);
    c
}

/// `ioctl:ALLOCATE_BLOCK` → `ALLOCATE_BLOCK`: the fd column already says
/// it is a goldfish ioctl; raw ioctls keep the name `ioctl`.
fn short_name(name: &str) -> &str {
    name.strip_prefix("ioctl:").unwrap_or(name)
}

/// An argument of `call` as a reader of strace output expects it: flags
/// and modes decoded (`O_RDONLY|O_DIRECTORY`, `AT_REMOVEDIR`, `0o700`),
/// AT_FDCWD by name, addresses and sizes in hex.
fn value(call: &str, key: &str, v: &Value) -> String {
    use gasbench_abi::consts;
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                match key {
                    // Directory fds: AT_FDCWD is how people read -100.
                    "dir" | "dirfd" if i == -100 => return "AT_FDCWD".into(),
                    "mode" if i >= 0 => return consts::mode_text(i),
                    "flags" => {
                        if let Some(text) = consts::call_flags_text(call, i) {
                            return text;
                        }
                    }
                    "cmd" if call == "fcntl" => {
                        if let Some((name, _)) =
                            consts::FCNTL_CMDS.iter().find(|(_, c)| i64::from(*c) == i)
                        {
                            return (*name).to_string();
                        }
                    }
                    _ => {}
                }
            }
            match n.as_u64() {
                Some(u)
                    if u > 4095
                        || matches!(
                            key,
                            "offset" | "size" | "phys_addr" | "metadata" | "addr" | "request"
                        ) && u > 9 =>
                {
                    format!("{u:#x}")
                }
                _ => n.to_string(),
            }
        }
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

fn is_zero(v: &Value) -> bool {
    v.as_u64() == Some(0) || v.as_i64() == Some(0)
}

/// An object's fields, goldfish structs in their uapi layout order (the
/// order a kernel developer reads them in), others as they come.
fn ordered<'a>(name: &str, o: &'a serde_json::Map<String, Value>) -> Vec<(&'a str, &'a Value)> {
    let layout = Ioctl::from_name(short_name(name)).map_or(&[][..], |i| i.layout());
    let rank = |k: &str| layout.iter().position(|f| f.0 == k).unwrap_or(usize::MAX);
    let mut v: Vec<(&str, &Value)> = o.iter().map(|(k, v)| (k.as_str(), v)).collect();
    v.sort_by_key(|(k, _)| rank(k));
    v
}

/// `size=0x3000 → offset=0x7000 phys_addr=0xfe007000`: the arguments that
/// carry something (zero fields are left to the detail view), then the out
/// fields that changed.
pub fn args_summary(rec: &CallRecord) -> String {
    let mut parts = Vec::new();
    if let Value::Object(inp) = &rec.args_in {
        for (k, v) in ordered(&rec.name, inp) {
            if matches!(k, "request" | "fd" | "nr") || is_zero(v) {
                continue;
            }
            parts.push(format!("{k}={}", value(&rec.name, k, v)));
        }
        // All zero (ALLOCATE_BLOCK of size 0): the zeros are the story.
        if parts.is_empty() {
            for (k, v) in ordered(&rec.name, inp).into_iter().take(2) {
                if !matches!(k, "request" | "fd" | "nr") {
                    parts.push(format!("{k}={}", value(&rec.name, k, v)));
                }
            }
        }
    } else if !rec.args_in.is_null() {
        parts.push(rec.args_in.to_string());
    }
    let mut out = Vec::new();
    if let Value::Object(o) = &rec.args_out {
        for (k, v) in ordered(&rec.name, o) {
            if rec.args_in.get(k) != Some(v) {
                out.push(format!("{k}={}", value(&rec.name, k, v)));
            }
        }
    }
    let mut s = parts.join(" ");
    if !out.is_empty() {
        s.push_str(" → ");
        s.push_str(&out.join(" "));
    }
    s
}

/// The kernel reports attributed to this call (its scenario and number).
fn reports_of<'m>(
    m: &'m Model,
    row: &CallRow,
    call: u64,
) -> Vec<&'m gasbench_events::report::KernelReport> {
    let sc = m.trace.scenario(row);
    m.summary
        .reports
        .iter()
        .filter(|s| {
            let a = &s.report.attribution;
            a.call == Some(call) && a.scenario.as_deref() == sc
        })
        .map(|s| &s.report)
        .collect()
}

fn record(m: &Model, row: &CallRow) -> Option<CallRecord> {
    let e = m.lookup.event(row.end_seq()?)?;
    match e.body {
        EventBody::Agent(AgentMsg::CallEnd(rec)) => Some(rec),
        _ => None,
    }
}

pub fn draw(m: &Model, f: &mut Frame, r: Rect) {
    let t = &m.theme;
    let store = &m.trace;
    let mut info = vec![Span::styled(
        format!(" {} calls ", fmt::count(store.len() as u64)),
        t.dim,
    )];
    if let Some(sc) = store.scenario_filter() {
        info.push(Span::styled(format!("scenario {sc} "), t.accent));
    }
    if !store.filter().is_empty() {
        // The pane's own title keeps its place: a long filter shows its end.
        let room = (r.width as usize / 3).max(8);
        info.push(Span::styled(
            format!("/{} ", fmt::tail(&store.filter().text, room)),
            t.accent,
        ));
    }
    if store.visible_len() != store.len() {
        info.push(Span::styled(
            format!("{} shown ", fmt::count(store.visible_len() as u64)),
            t.dim,
        ));
    }
    if !m.trace_cursor.follow && store.visible_len() > 0 {
        info.push(Span::styled("paused (G follows) ", t.warn));
    }
    let block = pane_block(m, Pane::Trace, Line::from(info));
    let inner = block.inner(r);
    f.render_widget(block, r);

    let (table_area, detail_area) = if m.expanded {
        let (a, _) = split(inner.height);
        let [ta, da] = Layout::vertical([Constraint::Length(a), Constraint::Min(0)]).areas(inner);
        (ta, Some(da))
    } else {
        (inner, None)
    };
    let w = table_area.width as usize;
    let c = columns(w);
    let mut head = vec![Span::raw(fmt::rpad("time", 7)), Span::raw(" ")];
    if c.thread {
        head.push(Span::raw(fmt::rpad("thr", 3) + " "));
    }
    if c.fd {
        head.push(Span::raw(fmt::rpad("fd", 3) + " "));
    }
    head.push(Span::raw(fmt::pad("call", c.name + 1)));
    head.push(Span::raw(fmt::pad("arguments", c.args + 1)));
    head.push(Span::raw(fmt::pad("result", c.result + 1)));
    if c.dur {
        head.push(Span::raw(fmt::rpad("took", 7) + " "));
    }
    if c.regs {
        head.push(Span::raw(fmt::rpad("regs", 4)));
    }
    let [head_area, rows_area] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(table_area);
    f.render_widget(
        Paragraph::new(Line::from(head).style(t.title.patch(t.dim))),
        head_area,
    );

    let len = store.visible_len();
    if len == 0 {
        let hint = if store.is_empty() {
            if m.is_live() {
                "no calls yet · r runs the selected scenario"
            } else {
                "this run made no calls"
            }
        } else {
            "no call matches the filter"
        };
        empty_hint(m, f, rows_area, hint);
        return;
    }
    let rows = rows_area.height as usize;
    let (sel, off) = m.trace_cursor.window(len, rows);
    let focused = m.focus == Pane::Trace;
    let mut lines = Vec::with_capacity(rows);
    for i in off..(off + rows).min(len) {
        let Some((_, row)) = store.visible_row(i) else {
            break;
        };
        let rec = record(m, row);
        let flagged = rec
            .as_ref()
            .is_some_and(|r| !reports_of(m, row, r.call).is_empty());
        let name_owned = if flagged {
            format!("{} {}", sym::WARN, short_name(store.name(row)))
        } else {
            short_name(store.name(row)).to_string()
        };
        let name = name_owned.as_str();
        let mut spans = vec![
            Span::styled(fmt::rpad(&fmt::stamp_us(row.t_us), 7), t.dim),
            Span::raw(" "),
        ];
        if c.thread {
            spans.push(Span::styled(format!("{:>3} ", row.thread), t.dim));
        }
        if c.fd {
            let fd = row.fd().map_or("-".to_string(), |f| f.to_string());
            spans.push(Span::raw(format!("{fd:>3} ")));
        }
        spans.push(Span::styled(
            fmt::pad(name, c.name + 1),
            if flagged {
                t.fail
            } else if name
                .chars()
                .next()
                .is_some_and(|ch| ch.is_ascii_uppercase())
            {
                t.accent
            } else {
                Style::new()
            },
        ));
        let args = match &rec {
            Some(rec) => args_summary(rec),
            // Still in the kernel, or the log is still being read.
            None if !row.finished() || !m.bus_closed => "…".into(),
            None => "(record not readable)".into(),
        };
        spans.push(Span::raw(fmt::pad(&args, c.args)));
        spans.push(Span::raw(" "));
        let (result, rs) = if !row.finished() && m.log_ended_early() {
            // The log stops while the call was in the kernel.
            (format!("{} no end", sym::WARN), t.warn)
        } else if !row.finished() {
            (format!("{} running", sym::RUNNING), t.running)
        } else if let Some(errno) = store.errno(row) {
            (format!("{} {} {errno}", sym::FAIL, row.ret), t.fail)
        } else {
            (format!("{} {}", sym::OK, row.ret), t.ok)
        };
        spans.push(Span::styled(fmt::pad(&result, c.result + 1), rs));
        if c.dur {
            let d = if row.finished() {
                fmt::duration_ns(row.duration_ns)
            } else {
                String::new()
            };
            spans.push(Span::styled(fmt::rpad(&d, 7) + " ", t.dim));
        }
        if c.regs {
            let n = if row.regs == 0 {
                "·".to_string()
            } else if row.overlapped {
                format!("{}~", row.regs)
            } else {
                row.regs.to_string()
            };
            spans.push(Span::raw(fmt::rpad(&n, 4)));
        }
        lines.push(Line::from(spans).style(row_style(m, i == sel, focused)));
    }
    f.render_widget(Paragraph::new(lines), rows_area);

    if let (Some(da), Some((_, row))) = (detail_area, store.visible_row(sel)) {
        detail(m, f, da, row);
    }
}

fn json_fields(name: &str, v: &Value) -> String {
    match v {
        Value::Object(o) => ordered(name, o)
            .into_iter()
            .map(|(k, v)| format!("{k}={}", value(name, k, v)))
            .collect::<Vec<_>>()
            .join(" "),
        Value::Null => "—".into(),
        other => other.to_string(),
    }
}

/// The expanded call: structs in and out, result, and every device event
/// between its CallBegin and CallEnd.
fn detail(m: &Model, f: &mut Frame, r: Rect, row: &CallRow) {
    let t = &m.theme;
    let block = Block::new()
        .borders(Borders::TOP)
        .border_style(t.border)
        .title(Span::styled(" call detail · Esc closes ", t.title));
    let inner = block.inner(r);
    f.render_widget(block, r);
    let lines = detail_lines(m, row, inner.width as usize);
    let rows = inner.height as usize;
    let (from, to, above, below) = detail_window(lines.len(), rows, m.detail_offset());
    let lines_of = |n: usize| if n == 1 { "line" } else { "lines" };
    let mut shown: Vec<Line> = Vec::with_capacity(rows);
    if above > 0 {
        shown.push(Line::from(Span::styled(
            format!("   ↑ {above} {} above (K, PgUp)", lines_of(above)),
            t.dim,
        )));
    }
    shown.extend(lines.into_iter().skip(from).take(to - from));
    if below > 0 {
        shown.push(Line::from(Span::styled(
            format!("   … {below} more {} (J, PgDn)", lines_of(below)),
            t.dim,
        )));
    }
    f.render_widget(Paragraph::new(shown), inner);
}

/// Every line of a call's detail, for `w` columns.
fn detail_lines(m: &Model, row: &CallRow, w: usize) -> Vec<Line<'static>> {
    let t = &m.theme;
    let rec = record(m, row);
    let mut lines: Vec<Line> = Vec::new();
    let name = m.trace.name(row);
    let mut head = vec![Span::styled(format!(" {name}"), t.title), Span::raw("  ")];
    match &rec {
        Some(rec) => {
            let (res, rs) = match &rec.errno {
                Some(e) => (format!("{} {} {e}", sym::FAIL, rec.ret), t.fail),
                None => (format!("{} {}", sym::OK, rec.ret), t.ok),
            };
            head.push(Span::styled(res, rs));
            head.push(Span::styled(
                format!(" in {}", fmt::duration_ns(rec.duration_ns)),
                t.dim,
            ));
        }
        None if m.log_ended_early() => head.push(Span::styled(
            format!("{} the log ends while it is in the kernel", sym::WARN),
            t.warn,
        )),
        None => head.push(Span::styled(
            format!("{} still in the kernel", sym::RUNNING),
            t.running,
        )),
    }
    let mut facts = format!("  · thread {} step {}", row.thread, row.step);
    if let Some(fd) = row.fd() {
        facts.push_str(&format!(" fd {fd}"));
    }
    if let Some(rec) = &rec {
        facts.push_str(&format!(" call #{}", rec.call));
        if rec.iteration > 0 {
            facts.push_str(&format!(" iteration {}", rec.iteration));
        }
    }
    if let Some(sc) = m.trace.scenario(row) {
        facts.push_str(&format!(" · {sc}"));
    }
    head.push(Span::styled(facts, t.dim));
    lines.push(Line::from(head));
    if let Some(rec) = &rec {
        lines.push(Line::from(vec![
            Span::styled(" in   ", t.dim),
            Span::raw(fmt::fit(
                &json_fields(&rec.name, &rec.args_in),
                w.saturating_sub(6),
            )),
        ]));
        lines.push(Line::from(vec![
            Span::styled(" out  ", t.dim),
            Span::raw(fmt::fit(
                &json_fields(&rec.name, &rec.args_out),
                w.saturating_sub(6),
            )),
        ]));
        if let Some(fa) = &rec.fault {
            let what = if fa.injected {
                format!("{} fault #{} injected", fa.fault.name(), fa.nth)
            } else {
                format!(
                    "{} fault #{} armed, not reached: the call's no-fault attempt",
                    fa.fault.name(),
                    fa.nth
                )
            };
            lines.push(Line::from(vec![
                Span::styled(" fail ", t.dim),
                Span::styled(fmt::fit(&what, w.saturating_sub(6)), t.warn),
            ]));
        }
        for r in reports_of(m, row, rec.call) {
            lines.push(Line::from(vec![
                Span::styled(" bug  ", t.fail),
                Span::styled(
                    fmt::fit(
                        &format!("report #{} {}", r.id, r.one_line()),
                        w.saturating_sub(6),
                    ),
                    t.fail,
                ),
            ]));
            if let Some(stack) = r.stacks.first() {
                for f in stack.frames.iter().filter(|f| f.reliable).take(4) {
                    let at = f.location.as_deref().unwrap_or("");
                    lines.push(Line::from(Span::styled(
                        fmt::fit(&format!("        {} {at}", f.function), w),
                        t.dim,
                    )));
                }
            }
        }
    }

    // The device's side: events between CallBegin and CallEnd.
    let end = row
        .end_seq()
        .unwrap_or(row.begin_seq + DETAIL_SCAN)
        .min(row.begin_seq + DETAIL_SCAN);
    let own = rec.as_ref().map(|r| r.call);
    let mut dev: Vec<(u64, DeviceLine)> = Vec::new();
    let mut regs = 0;
    let mut others: Vec<String> = Vec::new();
    for seq in row.begin_seq + 1..end {
        let Some(e) = m.lookup.event(seq) else { break };
        match &e.body {
            EventBody::Device(d) => {
                if matches!(d, DeviceEvent::Reg(_)) {
                    regs += 1;
                }
                if let Some(l) = device::describe(d) {
                    dev.push((e.t_us, l));
                }
            }
            // Calls that began, or ended, while this one was open.
            EventBody::Agent(AgentMsg::CallBegin {
                call, thread, name, ..
            }) => others.push(format!("#{call} t{thread} {}", short_name(name))),
            EventBody::Agent(AgentMsg::CallEnd(r)) if Some(r.call) != own => {
                let s = format!("#{} t{} {}", r.call, r.thread, short_name(&r.name));
                if !others.contains(&s) {
                    others.push(s);
                }
            }
            _ => {}
        }
    }
    let mut sub = vec![Span::styled(
        format!(" device: {regs} register accesses"),
        t.title,
    )];
    if row.overlapped || !others.is_empty() {
        sub.push(Span::styled(
            "  ~ other calls were open: attribution shared",
            t.warn,
        ));
    }
    lines.push(Line::from(sub));
    if !others.is_empty() {
        lines.push(Line::from(Span::styled(
            fmt::fit(&format!("   also open: {}", others.join(", ")), w),
            t.warn,
        )));
    }
    for (t_us, l) in &dev {
        let dt = t_us.saturating_sub(row.t_us);
        let at = Span::styled(format!("  {:>8} ", format!("+{dt}µs")), t.dim);
        let (mark, ms) = match l.kind {
            LineKind::Read => ("R", t.read),
            LineKind::Write => ("W", t.write),
            LineKind::CommandOk => (sym::OK, t.ok),
            LineKind::CommandFailed => (sym::FAIL, t.fail),
            LineKind::Ping => ("⇄", t.accent),
            LineKind::Fault => (sym::WARN, t.warn),
            LineKind::Anomaly => (sym::WARN, t.warn),
            LineKind::Other => (" ", t.dim),
        };
        let mut spans = vec![
            at,
            Span::styled(format!("{mark} "), ms),
            Span::styled(
                fmt::pad(&l.name, 20),
                if l.value.is_some() {
                    Style::new()
                } else {
                    t.title
                },
            ),
        ];
        if let Some(v) = l.value {
            spans.push(Span::styled(format!("{v:#010x}  "), ms));
        }
        let text_style = match l.kind {
            LineKind::CommandFailed | LineKind::Fault | LineKind::Anomaly => ms,
            LineKind::Read | LineKind::Write => t.dim,
            _ => Style::new(),
        };
        spans.push(Span::styled(l.text.clone(), text_style));
        lines.push(Line::from(spans));
    }
    if dev.is_empty() {
        lines.push(Line::from(Span::styled(
            "   none: this call did not touch the device",
            t.dim,
        )));
    }
    lines
}
