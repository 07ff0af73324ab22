//! Stopping a run early and keeping what it found: a Ctrl-C sets the
//! [`Interrupt`], the running scenario ends with the verdicts of the steps
//! it finished (and one saying where it was interrupted), no further
//! scenario starts, and teardown runs as usual. Dropping the run's future
//! instead would lose those verdicts.

use tokio::sync::watch;

/// The receiving side; cheap to clone. `None`: never set.
#[derive(Clone, Debug)]
pub struct Interrupt(Option<watch::Receiver<bool>>);

/// The sending side: [`Interrupter::interrupt`] sets every [`Interrupt`]
/// made from it.
#[derive(Debug)]
pub struct Interrupter(watch::Sender<bool>);

impl Interrupter {
    pub fn interrupt(&self) {
        self.0.send_replace(true);
    }
}

impl Interrupt {
    pub fn new() -> (Interrupter, Interrupt) {
        let (tx, rx) = watch::channel(false);
        (Interrupter(tx), Interrupt(Some(rx)))
    }

    /// One that is never set (runs nobody can interrupt: benchmarks).
    pub fn never() -> Interrupt {
        Interrupt(None)
    }

    pub fn is_set(&self) -> bool {
        self.0.as_ref().is_some_and(|rx| *rx.borrow())
    }

    /// Resolves once set; never, if the sender goes away unset.
    pub async fn wait(&mut self) {
        let set = match &mut self.0 {
            Some(rx) => rx.wait_for(|set| *set).await.is_ok(),
            None => false,
        };
        if !set {
            std::future::pending::<()>().await;
        }
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
        tx.interrupt();
        rx.wait().await;
        other.wait().await;
        assert!(rx.is_set() && other.is_set());
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
