//! Where each pane goes, for a screen size. Pure, shared by the view and
//! by `update` (which needs page heights to scroll).
//!
//! Two arrangements:
//! - **dashboard** (≥ 120×32): every pane at once; Pipeline, Scenarios and
//!   Results on the left, the Trace on the right above Device and the
//!   Console/Build log slot.
//! - **compact** (smaller, or `z`): a tab bar and the focused pane alone.
//!   80×24 is this arrangement.

use ratatui::layout::{Constraint, Layout, Rect};

use crate::model::{Model, Pane};

pub const DASHBOARD_MIN: (u16, u16) = (120, 32);

pub struct Areas {
    pub header: Rect,
    /// Pane tabs (compact arrangement only).
    pub tabs: Option<Rect>,
    pub footer: Rect,
    pub panes: Vec<(Pane, Rect)>,
}

impl Areas {
    pub fn of(&self, pane: Pane) -> Option<Rect> {
        self.panes.iter().find(|(p, _)| *p == pane).map(|(_, r)| *r)
    }
}

pub fn dashboard(area: Rect, zoom: bool) -> bool {
    !zoom && area.width >= DASHBOARD_MIN.0 && area.height >= DASHBOARD_MIN.1
}

pub fn areas(area: Rect, m: &Model) -> Areas {
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    if !dashboard(area, m.zoom) {
        let [tabs, pane] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(body);
        return Areas {
            header,
            tabs: Some(tabs),
            footer,
            panes: vec![(m.focus, pane)],
        };
    }
    let left_w = (body.width * 32 / 100).clamp(40, 64);
    let [left, right] =
        Layout::horizontal([Constraint::Length(left_w), Constraint::Min(0)]).areas(body);
    // Each left pane asks for what it needs; the pipeline and the results
    // give way first so the scenario list (what `r` acts on) stays visible.
    let pipeline_want = (m.pipeline.stages.len() + m.pipeline.patches.len()) as u16 + 4;
    let pipeline_h = pipeline_want.min(body.height * 45 / 100).max(7);
    let results_h = (body.height * 30 / 100).clamp(8, 16);
    let [pipeline, scenarios, results] = Layout::vertical([
        Constraint::Length(pipeline_h),
        Constraint::Min(4),
        Constraint::Length(results_h),
    ])
    .areas(left);
    let [trace, bottom] =
        Layout::vertical([Constraint::Percentage(58), Constraint::Min(8)]).areas(right);
    let [device, log] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Min(0)]).areas(bottom);
    let log_pane = if matches!(m.focus, Pane::Console | Pane::Build) {
        m.focus
    } else {
        m.log_slot
    };
    Areas {
        header,
        tabs: None,
        footer,
        panes: vec![
            (Pane::Pipeline, pipeline),
            (Pane::Scenarios, scenarios),
            (Pane::Results, results),
            (Pane::Trace, trace),
            (Pane::Device, device),
            (log_pane, log),
        ],
    }
}

/// Rows a pane's list scrolls in (inside its border and column header).
pub fn list_rows(m: &Model, pane: Pane) -> usize {
    let area = Rect::new(0, 0, m.viewport.width, m.viewport.height);
    let Some(r) = areas(area, m).of(pane) else {
        return 10;
    };
    let inner = r.height.saturating_sub(2) as usize;
    match pane {
        Pane::Trace => crate::view::trace::table_rows(r, m.expanded),
        Pane::Pipeline | Pane::Device => inner.saturating_sub(1).max(1),
        _ => inner.max(1),
    }
}

/// Rows the expanded call's detail has in the trace pane.
pub fn detail_rows(m: &Model) -> usize {
    let area = Rect::new(0, 0, m.viewport.width, m.viewport.height);
    areas(area, m)
        .of(Pane::Trace)
        .map_or(10, crate::view::trace::detail_rows)
}
