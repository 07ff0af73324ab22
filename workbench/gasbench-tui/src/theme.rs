//! Colours and the symbols that carry the same meaning without them.
//!
//! Every state is shown twice: by a symbol (✓ ✗ ● ○ ! ▸) that is always
//! drawn, and by a colour. With `NO_COLOR` set the colours go and text
//! modifiers (bold, reverse, dim, underline) stand in, so a monochrome
//! terminal still tells a failure from a pass at a glance.

use ratatui::style::{Color, Modifier, Style};

/// Semantic styles. Views never name a colour directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Theme {
    pub color: bool,
    pub ok: Style,
    pub fail: Style,
    pub warn: Style,
    pub running: Style,
    pub pending: Style,
    pub dim: Style,
    pub accent: Style,
    pub title: Style,
    pub title_focused: Style,
    pub border: Style,
    pub border_focused: Style,
    pub selected: Style,
    pub header: Style,
    pub key: Style,
    pub bar_done: Style,
    pub bar_todo: Style,
    /// Shared-BAR map: guest-allocated, claimed by a host service, free.
    pub block_alloc: Style,
    pub block_claim: Style,
    pub block_free: Style,
    pub read: Style,
    pub write: Style,
}

/// Status symbols, identical in both themes.
pub mod sym {
    pub const OK: &str = "✓";
    pub const FAIL: &str = "✗";
    pub const RUNNING: &str = "●";
    pub const PENDING: &str = "○";
    pub const SKIP: &str = "–";
    pub const CACHED: &str = "≡";
    pub const WARN: &str = "!";
    pub const SELECTED: &str = "▸";
}

impl Theme {
    /// The theme the environment asks for: monochrome when `NO_COLOR` is
    /// set to anything non-empty (no-color.org), colour otherwise.
    pub fn from_env() -> Theme {
        match std::env::var_os("NO_COLOR") {
            Some(v) if !v.is_empty() => Theme::mono(),
            _ => Theme::colored(),
        }
    }

    pub fn colored() -> Theme {
        let plain = Style::new();
        Theme {
            color: true,
            ok: plain.fg(Color::Green),
            fail: plain.fg(Color::Red).add_modifier(Modifier::BOLD),
            warn: plain.fg(Color::Yellow),
            running: plain.fg(Color::Cyan).add_modifier(Modifier::BOLD),
            pending: plain.fg(Color::DarkGray),
            dim: plain.fg(Color::DarkGray),
            accent: plain.fg(Color::Cyan),
            title: plain.add_modifier(Modifier::BOLD),
            title_focused: plain.fg(Color::Cyan).add_modifier(Modifier::BOLD),
            border: plain.fg(Color::DarkGray),
            border_focused: plain.fg(Color::Cyan),
            selected: plain.bg(Color::Indexed(237)).add_modifier(Modifier::BOLD),
            header: plain.fg(Color::Gray).add_modifier(Modifier::BOLD),
            key: plain.fg(Color::Cyan).add_modifier(Modifier::BOLD),
            bar_done: plain.fg(Color::Cyan),
            bar_todo: plain.fg(Color::DarkGray),
            block_alloc: plain.fg(Color::Blue),
            block_claim: plain.fg(Color::Magenta),
            block_free: plain.fg(Color::DarkGray),
            read: plain.fg(Color::Green),
            write: plain.fg(Color::Yellow),
        }
    }

    pub fn mono() -> Theme {
        let plain = Style::new();
        let bold = plain.add_modifier(Modifier::BOLD);
        let dim = plain.add_modifier(Modifier::DIM);
        Theme {
            color: false,
            ok: plain,
            fail: bold.add_modifier(Modifier::UNDERLINED),
            warn: bold,
            running: bold,
            pending: dim,
            dim,
            accent: plain,
            title: plain,
            title_focused: bold.add_modifier(Modifier::REVERSED),
            border: dim,
            border_focused: bold,
            selected: plain.add_modifier(Modifier::REVERSED),
            header: bold,
            key: bold,
            bar_done: bold,
            bar_todo: dim,
            block_alloc: bold,
            block_claim: plain,
            block_free: dim,
            read: plain,
            write: bold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn styles(t: &Theme) -> Vec<Style> {
        vec![
            t.ok,
            t.fail,
            t.warn,
            t.running,
            t.pending,
            t.dim,
            t.accent,
            t.title,
            t.title_focused,
            t.border,
            t.border_focused,
            t.selected,
            t.header,
            t.key,
            t.bar_done,
            t.bar_todo,
            t.block_alloc,
            t.block_claim,
            t.block_free,
            t.read,
            t.write,
        ]
    }

    #[test]
    fn mono_names_no_colour_and_still_tells_states_apart() {
        let t = Theme::mono();
        for s in styles(&t) {
            assert_eq!(s.fg, None, "{s:?}");
            assert_eq!(s.bg, None, "{s:?}");
        }
        assert_ne!(t.fail, t.ok);
        assert_ne!(t.selected, t.ok);
        assert_ne!(t.block_alloc, t.block_free);
        assert_ne!(t.title_focused, t.title);
    }

    #[test]
    fn colour_theme_distinguishes_pass_and_fail_by_colour() {
        let t = Theme::colored();
        assert_ne!(t.ok.fg, t.fail.fg);
        assert!(t.color && !Theme::mono().color);
    }
}
