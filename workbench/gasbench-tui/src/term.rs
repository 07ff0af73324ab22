//! The real terminal: raw mode and the alternate screen on the way in,
//! and the way back out on every exit path (normal return, `?`, panic).

use std::io::{self, Stdout, Write};
use std::sync::Once;

use crossterm::cursor::{Hide, Show};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

pub type Term = Terminal<CrosstermBackend<Stdout>>;

/// Puts the terminal back when dropped, however the scope is left.
pub struct TerminalGuard {
    pub terminal: Term,
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Leave raw mode and the alternate screen, show the cursor. Safe to call
/// more than once and from a panic hook.
pub fn restore() {
    let _ = disable_raw_mode();
    let mut out = io::stdout();
    let _ = execute!(out, LeaveAlternateScreen, Show);
    let _ = out.flush();
}

static HOOK: Once = Once::new();

/// Restore the terminal before a panic message is printed, so the message
/// is readable and the shell is usable afterwards.
fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

/// Enter the TUI's terminal mode.
pub fn setup() -> io::Result<TerminalGuard> {
    install_panic_hook();
    enable_raw_mode()?;
    let mut out = io::stdout();
    if let Err(e) = execute!(out, EnterAlternateScreen, Hide) {
        restore();
        return Err(e);
    }
    match Terminal::new(CrosstermBackend::new(out)) {
        Ok(terminal) => Ok(TerminalGuard { terminal }),
        Err(e) => {
            restore();
            Err(e)
        }
    }
}

/// The user's terminal in raw mode, as it is (no alternate screen): for
/// `gasbench shell`, where keys go to the guest's console byte by byte.
/// Restored when dropped and before a panic message.
pub struct RawMode(());

impl RawMode {
    pub fn enable() -> io::Result<RawMode> {
        install_panic_hook();
        enable_raw_mode()?;
        Ok(RawMode(()))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = disable_raw_mode();
        let _ = io::stdout().flush();
    }
}
