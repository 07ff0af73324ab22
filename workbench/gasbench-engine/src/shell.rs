//! `gasbench shell`: the guest console relayed to the user's terminal
//! while the agent runs busybox `sh` on it. The bytes go both ways as
//! they are (the user's own interactive session); the console is still
//! written to console.log and put on the bus as lines, as in a run.

use std::time::Duration;

use gasbench_abi::protocol::{AgentMsg, HostMsg};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use crate::guest::Guest;
use crate::interrupt::Interrupt;

/// The user's terminal.
pub struct ShellIo {
    /// What the user types; closed when the user leaves (detaches).
    pub input: mpsc::UnboundedReceiver<Vec<u8>>,
    /// Where the console's bytes go.
    pub output: mpsc::UnboundedSender<Vec<u8>>,
}

/// How a shell session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShellEnd {
    /// The shell exited with this status.
    Exited(i32),
    /// The user left with the shell still running.
    Detached,
    /// The run was stopped (a signal), with its cause.
    Interrupted(String),
}

/// How long the shell may run: as long as the user likes.
const SHELL_LIMIT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Ask the agent for a shell on the console and relay until it ends, the
/// user leaves or `interrupt` is set. A guest left with a shell running
/// is marked unfit (its agent is busy), so its teardown does not wait
/// for an orderly power-off.
pub async fn relay(
    guest: &mut Guest,
    mut io: ShellIo,
    interrupt: &mut Interrupt,
) -> Result<ShellEnd, String> {
    let mut bytes = guest.session.vm.console_bytes();
    guest
        .session
        .send(&HostMsg::Shell)
        .map_err(|e| e.to_string())?;
    enum Next {
        Output(Vec<u8>),
        Input(Option<Vec<u8>>),
        Agent(Result<AgentMsg, String>),
        Stop(String),
    }
    loop {
        let next = tokio::select! {
            b = bytes.recv() => match b {
                Ok(b) => Next::Output(b),
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => Next::Agent(Err("the console closed".into())),
            },
            k = io.input.recv() => Next::Input(k),
            m = guest.session.next(SHELL_LIMIT, "running the shell") => Next::Agent(m.map_err(|e| e.to_string())),
            cause = interrupt.wait() => Next::Stop(cause),
        };
        match next {
            Next::Output(b) => {
                let _ = io.output.send(b);
            }
            Next::Input(Some(k)) => guest
                .session
                .vm
                .console_write(&k)
                .await
                .map_err(|e| format!("typing into the console: {e}"))?,
            Next::Input(None) => {
                guest.unfit = Some("the user left the shell running".into());
                return Ok(ShellEnd::Detached);
            }
            Next::Agent(Ok(AgentMsg::ShellEnded { status, error })) => {
                // What the console still had before the shell ended.
                while let Ok(b) = bytes.try_recv() {
                    let _ = io.output.send(b);
                }
                return match error {
                    Some(e) => Err(e),
                    None => Ok(ShellEnd::Exited(status)),
                };
            }
            Next::Agent(Ok(_)) => {}
            Next::Agent(Err(e)) => return Err(e),
            Next::Stop(cause) => {
                guest.unfit = Some(cause.clone());
                return Ok(ShellEnd::Interrupted(cause));
            }
        }
    }
}
