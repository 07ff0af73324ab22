//! Keys → actions. One table, also the source of the help overlay, so a
//! key cannot work without being documented or be documented without
//! working (a test checks both directions).

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::action::Action;
use crate::model::{Model, Pane};

/// One line of the help overlay: the keys, and what they do.
pub struct Binding {
    pub keys: &'static str,
    pub what: &'static str,
}

/// Every key in normal mode, in the order the help shows them.
pub const BINDINGS: &[Binding] = &[
    Binding {
        keys: "?",
        what: "this help (Esc or ? closes it)",
    },
    Binding {
        keys: "Tab / Shift-Tab",
        what: "next / previous pane",
    },
    Binding {
        keys: "1 … 7",
        what: "jump to a pane (Pipeline … Results)",
    },
    Binding {
        keys: "j k / ↓ ↑",
        what: "move down / up",
    },
    Binding {
        keys: "PgDn PgUp / ^d ^u",
        what: "move a page",
    },
    Binding {
        keys: "g G / Home End",
        what: "first row / last row and follow new ones",
    },
    Binding {
        keys: "Enter",
        what: "trace: expand the call (structs, register accesses)",
    },
    Binding {
        keys: "J K / PgDn PgUp",
        what: "trace, call expanded: scroll its detail (j/k still move)",
    },
    Binding {
        keys: "/ n N",
        what: "filter trace, console or build log; n N: next/prev match",
    },
    Binding {
        keys: "y",
        what: "trace: copy the call (clipboard, and a file in the run dir)",
    },
    Binding {
        keys: "Esc",
        what: "close / collapse / clear the message",
    },
    Binding {
        keys: "z",
        what: "zoom the focused pane to the full screen",
    },
    Binding {
        keys: "r",
        what: "run the selected scenario (all when «all» is selected)",
    },
    Binding {
        keys: "R",
        what: "run all scenarios",
    },
    Binding {
        keys: "b",
        what: "rebuild the kernel",
    },
    Binding {
        keys: "p",
        what: "next kernel profile (default, debug, race)",
    },
    Binding {
        keys: "s",
        what: "stop the VM",
    },
    Binding {
        keys: "q / Ctrl-C",
        what: "quit (stops the VM cleanly; again to leave at once)",
    },
];

/// Filter syntax, shown under the keys.
pub const FILTER_HELP: &[&str] = &[
    "trace filter: words match the call name or errno; every term must hold",
    "  fd:3  t:2 (thread)  step:4  err  ok  regs (touched the device)  !word (not)",
    "while typing: Enter keeps the filter, Esc clears it (n N still find it)",
];

/// The action for a key, given what is on screen.
pub fn map(m: &Model, key: KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && matches!(key.code, KeyCode::Char('c')) {
        return Some(if m.quitting {
            Action::ForceQuit
        } else {
            Action::Quit
        });
    }
    if m.input.is_some() {
        return match key.code {
            KeyCode::Enter => Some(Action::FilterSubmit),
            KeyCode::Esc => Some(Action::FilterCancel),
            KeyCode::Backspace => Some(Action::FilterBackspace),
            KeyCode::Char(c) if !ctrl => Some(Action::FilterChar(c)),
            _ => None,
        };
    }
    if m.help {
        return match key.code {
            KeyCode::Esc | KeyCode::Char('?') | KeyCode::Char('q') => Some(Action::ToggleHelp),
            _ => None,
        };
    }
    if ctrl {
        return match key.code {
            KeyCode::Char('d') => Some(Action::PageDown),
            KeyCode::Char('u') => Some(Action::PageUp),
            _ => None,
        };
    }
    Some(match key.code {
        KeyCode::Char('?') => Action::ToggleHelp,
        KeyCode::Tab => Action::FocusNext,
        KeyCode::BackTab => Action::FocusPrev,
        KeyCode::Char(c @ '1'..='7') => Action::Focus(Pane::ALL[(c as u8 - b'1') as usize]),
        KeyCode::Char('j') | KeyCode::Down => Action::Down,
        KeyCode::Char('k') | KeyCode::Up => Action::Up,
        KeyCode::PageDown => Action::PageDown,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::Char('g') | KeyCode::Home => Action::Top,
        KeyCode::Char('G') | KeyCode::End => Action::Bottom,
        KeyCode::Enter => Action::Enter,
        KeyCode::Char('J') => Action::ScrollDetail(1),
        KeyCode::Char('K') => Action::ScrollDetail(-1),
        KeyCode::Char('/') => Action::StartFilter,
        KeyCode::Char('y') => Action::Copy,
        KeyCode::Char('n') => Action::NextMatch { forward: true },
        KeyCode::Char('N') => Action::NextMatch { forward: false },
        KeyCode::Esc => Action::Escape,
        KeyCode::Char('z') => Action::ToggleZoom,
        KeyCode::Char('r') => Action::RunSelected,
        KeyCode::Char('R') => Action::RunAll,
        KeyCode::Char('b') => Action::Rebuild,
        KeyCode::Char('p') => Action::NextProfile,
        KeyCode::Char('s') => Action::StopVm,
        KeyCode::Char('q') => Action::Quit,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Mode;
    use crate::theme::Theme;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    /// Every key the help names does something, and every key that does
    /// something in normal mode is named in the help.
    #[test]
    fn the_help_and_the_keymap_agree() {
        let m = Model::from_events(vec![], Mode::Live, Theme::mono());
        let documented: String = BINDINGS
            .iter()
            .map(|b| b.keys)
            .collect::<Vec<_>>()
            .join(" ");
        let mut codes: Vec<(KeyCode, &str)> = vec![
            (KeyCode::Tab, "Tab"),
            (KeyCode::BackTab, "Shift-Tab"),
            (KeyCode::Down, "↓"),
            (KeyCode::Up, "↑"),
            (KeyCode::PageDown, "PgDn"),
            (KeyCode::PageUp, "PgUp"),
            (KeyCode::Home, "Home"),
            (KeyCode::End, "End"),
            (KeyCode::Enter, "Enter"),
            (KeyCode::Esc, "Esc"),
        ];
        let chars: Vec<String> = (' '..='~').map(|c| c.to_string()).collect();
        for (c, s) in (' '..='~').zip(chars.iter()) {
            codes.push((KeyCode::Char(c), s.as_str()));
        }
        for (code, name) in codes {
            let bound = map(&m, key(code)).is_some();
            let named = documented.split_whitespace().any(|w| w == name)
                || (matches!(code, KeyCode::Char('1'..='7')) && documented.contains("1 … 7"));
            assert_eq!(bound, named, "key {name}: bound {bound}, in help {named}");
        }
        let ctrl = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL);
        assert_eq!(map(&m, ctrl('c')), Some(Action::Quit));
        assert_eq!(map(&m, ctrl('d')), Some(Action::PageDown));
        assert!(documented.contains("Ctrl-C") && documented.contains("^d"));
    }

    #[test]
    fn typing_a_filter_captures_letters_that_are_otherwise_commands() {
        let mut m = Model::from_events(vec![], Mode::Live, Theme::mono());
        m.input = Some(crate::model::FilterInput {
            pane: Pane::Trace,
            text: String::new(),
        });
        assert_eq!(
            map(&m, key(KeyCode::Char('q'))),
            Some(Action::FilterChar('q'))
        );
        assert_eq!(map(&m, key(KeyCode::Esc)), Some(Action::FilterCancel));
        m.input = None;
        m.help = true;
        assert_eq!(map(&m, key(KeyCode::Char('r'))), None);
        assert_eq!(map(&m, key(KeyCode::Char('?'))), Some(Action::ToggleHelp));
    }
}
