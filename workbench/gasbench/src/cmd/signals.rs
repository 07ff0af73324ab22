//! How a command that runs things is stopped from outside: SIGINT
//! (Ctrl-C), SIGTERM and SIGHUP all mean "stop, keep what you found". The
//! first ends the running scenario with the verdicts it has and tears down
//! in order; a second, or a teardown longer than its grace time, stops at
//! once. The exit status says which signal it was (128 + its number: 130,
//! 143, 129).
//!
//! The signals are caught on a thread of their own (signal-hook) and sent
//! as [`Stop`]s into a channel, together with failures that stop a run the
//! same way (a full disk), so one loop ([`supervise`]) handles them all.

use std::future::Future;
use std::time::Duration;

use gasbench_engine::interrupt::Interrupter;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// A signal that stops gasbench.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
    Hangup,
}

impl Signal {
    fn from_raw(n: i32) -> Option<Signal> {
        match n {
            SIGINT => Some(Signal::Interrupt),
            SIGTERM => Some(Signal::Terminate),
            SIGHUP => Some(Signal::Hangup),
            _ => None,
        }
    }

    fn number(self) -> i32 {
        match self {
            Signal::Interrupt => SIGINT,
            Signal::Terminate => SIGTERM,
            Signal::Hangup => SIGHUP,
        }
    }

    /// The shell's convention for "ended by this signal".
    pub fn exit_code(self) -> u8 {
        128 + self.number() as u8
    }

    /// What stopped the run, as the verdicts and errors say it.
    pub fn cause(self) -> &'static str {
        match self {
            Signal::Interrupt => "interrupted (Ctrl-C)",
            Signal::Terminate => "interrupted (SIGTERM)",
            Signal::Hangup => "interrupted (SIGHUP)",
        }
    }
}

/// Why a run is asked to stop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    Signal(Signal),
    /// Something the run cannot go on without failed (the event log could
    /// not be written): the text says what.
    Failure(String),
}

/// SIGINT, SIGTERM and SIGHUP caught from now on (until dropped), as
/// [`Stop`]s on [`Signals::stops`]. Failures can be sent on the same
/// channel through [`Signals::sender`].
pub struct Signals {
    handle: signal_hook::iterator::Handle,
    tx: UnboundedSender<Stop>,
    pub stops: UnboundedReceiver<Stop>,
}

impl Signals {
    pub fn install() -> std::io::Result<Signals> {
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        let handle = signals.handle();
        let (tx, stops) = unbounded_channel();
        let to_run = tx.clone();
        std::thread::Builder::new()
            .name("gasbench-signals".into())
            .spawn(move || {
                for n in signals.forever() {
                    if let Some(s) = Signal::from_raw(n) {
                        // Nobody listening any more: gasbench is on its way out.
                        let _ = to_run.send(Stop::Signal(s));
                    }
                }
            })?;
        Ok(Signals { handle, tx, stops })
    }

    /// Where failures that stop the run go.
    pub fn sender(&self) -> UnboundedSender<Stop> {
        self.tx.clone()
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        self.handle.close();
    }
}

/// How a supervised piece of work ended.
#[derive(Debug)]
pub struct Ending<T> {
    /// What the work returned, unless it had to be dropped.
    pub output: Option<T>,
    /// The first signal, if one came.
    pub signal: Option<Signal>,
    /// Why the run was asked to stop (a signal's cause or a failure).
    pub cause: Option<String>,
    /// Set when the work was dropped rather than finished: why.
    pub dropped: Option<String>,
}

/// Run `work`. The first [`Stop`] sets `interrupter` with its cause, and
/// `work` gets `grace` to end with what it has; a second signal, or the
/// grace running out, drops it at once (its VM and device server go with
/// their Drop). `notify` is told each step, for the user.
pub async fn supervise<W: Future>(
    work: W,
    stops: &mut UnboundedReceiver<Stop>,
    interrupter: &Interrupter,
    grace: Duration,
    mut notify: impl FnMut(&str),
) -> Ending<W::Output> {
    tokio::pin!(work);
    let mut ending = Ending {
        output: None,
        signal: None,
        cause: None,
        dropped: None,
    };
    let first = tokio::select! {
        out = &mut work => {
            ending.output = Some(out);
            return ending;
        }
        stop = next_stop(stops) => stop,
    };
    let cause = match &first {
        Stop::Signal(s) => {
            ending.signal = Some(*s);
            s.cause().to_string()
        }
        Stop::Failure(why) => format!("stopped: {why}"),
    };
    notify(&format!(
        "{cause}: ending the scenario with the verdicts it has and stopping the VM (up to {} s; Ctrl-C again to stop at once)",
        grace.as_secs_f64()
    ));
    interrupter.interrupt(cause.clone());
    ending.cause = Some(cause);
    let deadline = tokio::time::sleep(grace);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            out = &mut work => {
                ending.output = Some(out);
                return ending;
            }
            _ = &mut deadline => {
                ending.dropped = Some(format!(
                    "the orderly stop took longer than {} s", grace.as_secs_f64()
                ));
                break;
            }
            stop = next_stop(stops) => match stop {
                Stop::Signal(s) => {
                    ending.signal.get_or_insert(s);
                    ending.dropped = Some(format!("{} again", match s {
                        Signal::Interrupt => "Ctrl-C",
                        Signal::Terminate => "SIGTERM",
                        Signal::Hangup => "SIGHUP",
                    }));
                    break;
                }
                // Already stopping.
                Stop::Failure(_) => continue,
            },
        }
    }
    if let Some(why) = &ending.dropped {
        notify(&format!("{why}: stopping at once"));
    }
    ending
}

/// The next stop; a closed channel just means none will come.
async fn next_stop(stops: &mut UnboundedReceiver<Stop>) -> Stop {
    match stops.recv().await {
        Some(s) => s,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gasbench_engine::interrupt::Interrupt;

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(Signal::Interrupt.exit_code(), 130);
        assert_eq!(Signal::Terminate.exit_code(), 143);
        assert_eq!(Signal::Hangup.exit_code(), 129);
    }

    /// Work that ends with what it has once interrupted, after `teardown`.
    async fn orderly(mut interrupt: Interrupt, teardown: Duration) -> String {
        let cause = interrupt.wait().await;
        tokio::time::sleep(teardown).await;
        format!("kept the verdicts ({cause})")
    }

    #[tokio::test]
    async fn work_that_finishes_alone_is_not_touched() {
        let (interrupter, _) = Interrupt::new();
        let (_tx, mut rx) = unbounded_channel();
        let e = supervise(
            async { 7 },
            &mut rx,
            &interrupter,
            Duration::from_secs(60),
            |_| {},
        )
        .await;
        assert_eq!(e.output, Some(7));
        assert!(e.signal.is_none() && e.cause.is_none() && e.dropped.is_none());
    }

    #[tokio::test]
    async fn one_signal_lets_the_work_end_in_order() {
        let (interrupter, interrupt) = Interrupt::new();
        let (tx, mut rx) = unbounded_channel();
        tx.send(Stop::Signal(Signal::Terminate)).unwrap();
        let mut told = Vec::new();
        let e = supervise(
            orderly(interrupt, Duration::ZERO),
            &mut rx,
            &interrupter,
            Duration::from_secs(600),
            |t| told.push(t.to_string()),
        )
        .await;
        assert_eq!(
            e.output.as_deref(),
            Some("kept the verdicts (interrupted (SIGTERM))")
        );
        assert_eq!(e.signal, Some(Signal::Terminate));
        assert!(e.dropped.is_none());
        assert!(told[0].contains("Ctrl-C again to stop at once"), "{told:?}");
    }

    #[tokio::test]
    async fn a_second_signal_drops_the_work_at_once() {
        let (interrupter, interrupt) = Interrupt::new();
        let (tx, mut rx) = unbounded_channel();
        tx.send(Stop::Signal(Signal::Interrupt)).unwrap();
        tx.send(Stop::Signal(Signal::Hangup)).unwrap();
        // A teardown that would take an hour.
        let e = supervise(
            orderly(interrupt, Duration::from_secs(3600)),
            &mut rx,
            &interrupter,
            Duration::from_secs(3600),
            |_| {},
        )
        .await;
        assert!(e.output.is_none());
        assert_eq!(e.signal, Some(Signal::Interrupt), "the first signal counts");
        assert_eq!(e.dropped.as_deref(), Some("SIGHUP again"));
    }

    #[tokio::test]
    async fn a_teardown_longer_than_its_grace_still_ends() {
        let (interrupter, interrupt) = Interrupt::new();
        let (tx, mut rx) = unbounded_channel();
        tx.send(Stop::Signal(Signal::Interrupt)).unwrap();
        let e = supervise(
            orderly(interrupt, Duration::from_secs(3600)),
            &mut rx,
            &interrupter,
            Duration::from_millis(50),
            |_| {},
        )
        .await;
        assert!(e.output.is_none());
        assert_eq!(
            e.dropped.as_deref(),
            Some("the orderly stop took longer than 0.05 s")
        );
    }

    #[tokio::test]
    async fn a_failure_stops_the_run_like_a_signal_without_one() {
        let (interrupter, interrupt) = Interrupt::new();
        let (tx, mut rx) = unbounded_channel();
        tx.send(Stop::Failure("cannot write events.jsonl: disk full".into()))
            .unwrap();
        let e = supervise(
            orderly(interrupt, Duration::ZERO),
            &mut rx,
            &interrupter,
            Duration::from_secs(600),
            |_| {},
        )
        .await;
        assert_eq!(
            e.output.as_deref(),
            Some("kept the verdicts (stopped: cannot write events.jsonl: disk full)")
        );
        assert_eq!(e.signal, None);
    }
}
