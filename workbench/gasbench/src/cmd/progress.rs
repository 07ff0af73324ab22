//! The one progress reporter every long command shares (setup, kernel
//! build, run, repro, shell): on a terminal, lines above an indicatif bar
//! with an ETA for the kernel build; elsewhere (a pipe, a file, CI) plain
//! timestamped lines, the build's progress every [`PLAIN_EVERY`] with
//! its ETA. `-q` keeps warnings, errors and results only; `-v` adds
//! every patch, config check and compiler error as it comes.
//!
//! Everything printed goes through gasbench-termsafe: progress lines
//! quote patch subjects, kernel console lines and file names.

use std::io::IsTerminal;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a plain (non-terminal) build progress line is printed.
pub const PLAIN_EVERY: Duration = Duration::from_secs(15);
/// The longest line the reporter prints.
const LINE_CAP: usize = 4000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

/// `-q`/`-v` of a long command.
#[derive(clap::Args, Clone, Copy, Debug, Default)]
pub struct Talk {
    /// Print only warnings, errors and the result (no progress).
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more: every patch, config check and compiler error as it
    /// comes.
    #[arg(short, long)]
    pub verbose: bool,
}

impl Talk {
    pub fn verbosity(&self) -> Verbosity {
        if self.quiet {
            Verbosity::Quiet
        } else if self.verbose {
            Verbosity::Verbose
        } else {
            Verbosity::Normal
        }
    }

    /// Make this the reporter's verbosity (a long command does this first).
    pub fn apply(&self) {
        reporter().set_verbosity(self.verbosity());
    }
}

/// `--color`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ColorChoice {
    /// Colour on a terminal unless NO_COLOR is set.
    #[default]
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether to colour output on a stream that is (or not) a terminal.
    pub fn enabled(self, terminal: bool, no_color: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => terminal && !no_color,
        }
    }
}

/// How the reporter prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// stderr is a terminal: a live bar.
    Bar,
    /// Plain lines (not a terminal, or CI).
    Plain,
}

/// The kernel build's bar or, in plain mode, its pacing.
struct Build {
    bar: Option<ProgressBar>,
    started: Instant,
    first_done: u64,
    last_plain: Option<Instant>,
}

pub struct Reporter {
    started: Instant,
    mode: Mode,
    color: bool,
    /// `--color` and NO_COLOR, for the TUI, which draws on the terminal
    /// it owns whatever stderr is.
    tui_color: bool,
    verbosity: Mutex<Verbosity>,
    build: Mutex<Option<Build>>,
    /// The terminal belongs to the guest (`gasbench shell`): nothing of
    /// the host's is printed over it.
    muted: std::sync::atomic::AtomicBool,
}

static REPORTER: OnceLock<Reporter> = OnceLock::new();

/// Set up the reporter once, at start (later calls change nothing).
pub fn init(color: ColorChoice) -> &'static Reporter {
    REPORTER.get_or_init(|| {
        let terminal = std::io::stderr().is_terminal();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
        let mut r = Reporter::new(
            if terminal && !ci {
                Mode::Bar
            } else {
                Mode::Plain
            },
            color.enabled(terminal, no_color),
        );
        r.tui_color = color.enabled(true, no_color);
        r
    })
}

/// The reporter ([`init`] with `--color auto` when nothing set it up).
pub fn reporter() -> &'static Reporter {
    init(ColorChoice::Auto)
}

impl Reporter {
    pub fn new(mode: Mode, color: bool) -> Reporter {
        Reporter {
            started: Instant::now(),
            mode,
            color,
            tui_color: color,
            verbosity: Mutex::new(Verbosity::Normal),
            build: Mutex::new(None),
            muted: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn color(&self) -> bool {
        self.color
    }

    /// The TUI's theme: colours unless `--color never`, or NO_COLOR with
    /// `--color auto`.
    pub fn tui_theme(&self) -> gasbench_tui::Theme {
        if self.tui_color {
            gasbench_tui::Theme::colored()
        } else {
            gasbench_tui::Theme::mono()
        }
    }

    /// Print nothing until unmuted (the terminal is the guest's).
    pub fn mute(&self, muted: bool) {
        self.muted.store(muted, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn set_verbosity(&self, v: Verbosity) {
        *self.verbosity.lock().unwrap_or_else(|p| p.into_inner()) = v;
    }

    pub fn verbosity(&self) -> Verbosity {
        *self.verbosity.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stamp(&self) -> String {
        format!("[{:>7.2}]", self.started.elapsed().as_secs_f64())
    }

    /// A line printed whatever the verbosity (a result, an error), as is
    /// but sanitised, above the bar if there is one.
    pub fn emit(&self, text: &str) {
        if self.muted.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let line = gasbench_termsafe::line_capped(text, LINE_CAP);
        let build = self.build.lock().unwrap_or_else(|p| p.into_inner());
        // Never a panic: a closed terminal must not stop an orderly stop.
        let print = || {
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        };
        match build.as_ref().and_then(|b| b.bar.as_ref()) {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }

    /// A progress line, timestamped (not with `-q`).
    pub fn line(&self, text: &str) {
        if self.verbosity() >= Verbosity::Normal {
            self.emit(&format!("{} {text}", self.stamp()));
        }
    }

    /// A detail line, timestamped (with `-v` only).
    pub fn detail(&self, text: &str) {
        if self.verbosity() >= Verbosity::Verbose {
            self.emit(&format!("{} {text}", self.stamp()));
        }
    }

    /// A warning, timestamped, printed even with `-q`.
    pub fn warn(&self, text: &str) {
        self.emit(&format!("{} {text}", self.stamp()));
    }

    /// The kernel build's progress: `done` of `total` steps, `current`
    /// the file being built. A bar with an ETA on a terminal; a line
    /// every [`PLAIN_EVERY`] otherwise.
    pub fn build(&self, done: u64, total: u64, current: &str) {
        if self.verbosity() == Verbosity::Quiet {
            return;
        }
        let current = gasbench_termsafe::line_capped(current, 60);
        let mut guard = self.build.lock().unwrap_or_else(|p| p.into_inner());
        let build = guard.get_or_insert_with(|| Build {
            bar: (self.mode == Mode::Bar).then(|| self.new_bar(total)),
            started: Instant::now(),
            first_done: done,
            last_plain: None,
        });
        if let Some(bar) = &build.bar {
            bar.set_length(total.max(done));
            bar.set_position(done);
            bar.set_message(current.to_string());
            return;
        }
        if build.last_plain.is_some_and(|t| t.elapsed() < PLAIN_EVERY) {
            return;
        }
        build.last_plain = Some(Instant::now());
        let pct = (done * 100).checked_div(total).unwrap_or(0).min(100);
        let eta = eta(
            done.saturating_sub(build.first_done),
            total.saturating_sub(done),
            build.started.elapsed(),
        );
        let line = format!(
            "{} build      {done}/{total} ({pct}%){} {current}",
            self.stamp(),
            eta.map(|e| format!(", ETA {}", short_duration(e)))
                .unwrap_or_default()
        );
        drop(guard);
        self.emit(&line);
    }

    /// The build is over: its bar goes away.
    pub fn end_build(&self) {
        let build = self.build.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(bar) = build.and_then(|b| b.bar) {
            bar.finish_and_clear();
        }
    }

    fn new_bar(&self, total: u64) -> ProgressBar {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        let template = if self.color {
            "  build {bar:30.cyan/blue} {pos:>5}/{len} {percent:>3}% ETA {eta:>4} {wide_msg}"
        } else {
            "  build [{bar:30}] {pos:>5}/{len} {percent:>3}% ETA {eta:>4} {wide_msg}"
        };
        bar.set_style(
            ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("#>-"),
        );
        bar.enable_steady_tick(Duration::from_millis(250));
        bar
    }
}

/// Time left at the rate so far (`done` steps in `elapsed`), once there
/// is a rate to speak of.
pub fn eta(done: u64, left: u64, elapsed: Duration) -> Option<Duration> {
    if done < 10 || elapsed < Duration::from_secs(2) {
        return None;
    }
    Some(Duration::from_secs_f64(
        elapsed.as_secs_f64() * left as f64 / done as f64,
    ))
}

/// `42s`, `3m05s`, `1h02m`.
pub fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_follows_the_flag_then_no_color_then_the_terminal() {
        assert!(ColorChoice::Always.enabled(false, true));
        assert!(!ColorChoice::Never.enabled(true, false));
        assert!(ColorChoice::Auto.enabled(true, false));
        assert!(!ColorChoice::Auto.enabled(true, true));
        assert!(!ColorChoice::Auto.enabled(false, false));
    }

    #[test]
    fn the_eta_is_the_rate_so_far_once_there_is_one() {
        assert_eq!(eta(5, 100, Duration::from_secs(10)), None);
        assert_eq!(eta(100, 100, Duration::from_secs(1)), None);
        assert_eq!(
            eta(100, 300, Duration::from_secs(60)),
            Some(Duration::from_secs(180))
        );
        assert_eq!(short_duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(short_duration(Duration::from_secs(3725)), "1h02m");
    }

    #[test]
    fn quiet_drops_progress_and_verbose_adds_detail() {
        let r = Reporter::new(Mode::Plain, false);
        r.set_verbosity(Verbosity::Quiet);
        assert_eq!(r.verbosity(), Verbosity::Quiet);
        let talk = Talk {
            quiet: false,
            verbose: true,
        };
        assert_eq!(talk.verbosity(), Verbosity::Verbose);
        assert!(Verbosity::Verbose > Verbosity::Normal);
        // Plain mode never makes a bar.
        r.set_verbosity(Verbosity::Normal);
        r.build(10, 100, "CC kernel/fork.o");
        assert!(r.build.lock().unwrap().as_ref().unwrap().bar.is_none());
        r.end_build();
        assert!(r.build.lock().unwrap().is_none());
    }
}
