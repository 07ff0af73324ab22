//! Stopping a run early and keeping what it found: a signal (Ctrl-C,
//! SIGTERM, SIGHUP), a full disk or the TUI's stop sets the [`Interrupt`]
//! with its cause; the running scenario ends with the verdicts of the
//! steps it finished (and one saying where it was stopped and why), no
//! further scenario starts, and teardown runs as usual. Dropping the run's
//! future instead would lose those verdicts.

use tokio::sync::watch;

/// The receiving side; cheap to clone. `None`: never set.
#[derive(Clone, Debug)]
pub struct Interrupt(Option<watch::Receiver<Option<String>>>);

/// The sending side: [`Interrupter::interrupt`] sets every [`Interrupt`]
/// made from it.
#[derive(Debug)]
pub struct Interrupter(watch::Sender<Option<String>>);

impl Interrupter {
    /// Set it, with what stopped the run ("interrupted (Ctrl-C)"); the
    /// first cause stays.
    pub fn interrupt(&self, cause: impl Into<String>) {
        let cause = cause.into();
        self.0.send_if_modified(|c| {
            if c.is_some() {
                return false;
            }
            *c = Some(cause);
            true
        });
    }
}

impl Interrupt {
    pub fn new() -> (Interrupter, Interrupt) {
        let (tx, rx) = watch::channel(None);
        (Interrupter(tx), Interrupt(Some(rx)))
    }

    /// One that is never set (runs nobody can interrupt: benchmarks).
    pub fn never() -> Interrupt {
        Interrupt(None)
    }

    pub fn is_set(&self) -> bool {
        self.cause().is_some()
    }

    /// What stopped the run, once it was.
    pub fn cause(&self) -> Option<String> {
        self.0.as_ref().and_then(|rx| rx.borrow().clone())
    }

    /// Resolves once set, with the cause; never, if the sender goes away
    /// unset.
    pub async fn wait(&mut self) -> String {
        if let Some(rx) = &mut self.0
            && let Ok(c) = rx.wait_for(Option::is_some).await
            && let Some(cause) = c.clone()
        {
            return cause;
        }
        std::future::pending::<String>().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn waits_until_set_and_stays_set() {
        let (tx, mut rx) = Interrupt::new();
        let mut other = rx.clone();
        assert!(!rx.is_set());
        assert!(
            tokio::time::timeout(Duration::from_millis(20), rx.wait())
                .await
                .is_err()
        );
        tx.interrupt("interrupted (SIGTERM)");
        tx.interrupt("a later cause does not replace the first");
        assert_eq!(rx.wait().await, "interrupted (SIGTERM)");
        assert_eq!(other.wait().await, "interrupted (SIGTERM)");
        assert!(rx.is_set() && other.is_set());
        assert_eq!(rx.cause().as_deref(), Some("interrupted (SIGTERM)"));
    }

    #[tokio::test]
    async fn a_sender_gone_unset_or_never_does_not_fire() {
        let (tx, mut rx) = Interrupt::new();
        drop(tx);
        assert!(
            tokio::time::timeout(Duration::from_millis(20), rx.wait())
                .await
                .is_err()
        );
        let mut never = Interrupt::never();
        assert!(
            tokio::time::timeout(Duration::from_millis(20), never.wait())
                .await
                .is_err()
        );
    }
}
